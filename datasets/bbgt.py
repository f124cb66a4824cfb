"""Piotr Dollar's bbGt annotation text files (the Caltech pedestrian / KAIST format).

Format (Piotr's Computer Vision Toolbox, ``detector/bbGt.m``, ``bbSave``/``bbLoad``): a first line
``% bbGt version=V`` then one object per line::

    lbl  l t w h  occ  vl vt vw vh  ign  ang

``[l t w h]`` is the box (left, top, width, height), ``occ`` an occlusion flag (KAIST: 0 none,
1 partial, 2 heavy), ``[vl vt vw vh]`` the visible part, ``ign`` an ignore flag, ``ang`` an angle.
Versions 0 and 1 have the first 10 fields, version 2 adds ``ign``, version 3 ``ang`` (12 fields, as
``bbSave`` writes). A file without the header line is version 0, as ``bbLoad`` reads it. Files are
decoded by :mod:`fusedet.datasets.text` (byte-order marks, UTF-16); a line with the wrong number of
fields or a field that is not a number raises InputError naming the file and the line.

Coordinates are MATLAB's 1-based pixel coordinates: the KAIST benchmark adds 1 to 0-based detector
boxes before matching them against these files (``kaist_eval_full.m``). :func:`bbgt_to_xyxy` gives
continuous 0-based pixel edges: ``x1 = l - 1, y1 = t - 1, x2 = x1 + w, y2 = y1 + h``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from fusedet.datasets.text import read_lines, shown
from fusedet.errors import InputError

FIELDS_BY_VERSION: dict[int, int] = {0: 10, 1: 10, 2: 11, 3: 12}  # including the label
_HEADER = re.compile(r"^%\s*bbGt\s+version\s*=\s*(\d+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class BbgtObject:
    """One object of a bbGt file, as written (1-based box; see the module docstring)."""

    label: str
    left: float
    top: float
    width: float
    height: float
    occlusion: int = 0
    visible: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    ignore: bool = False
    angle: float = 0.0


def read_bbgt(path: str | Path) -> list[BbgtObject]:
    """The objects of one bbGt file (InputError on malformed lines, naming file and line)."""
    path = Path(path)
    lines = read_lines(path, kind="bbGt annotation")
    version, start = 0, 0
    if lines and lines[0].startswith("%"):
        match = _HEADER.match(lines[0])
        if match is None:
            raise InputError(f"{path}:1: expected '% bbGt version=N', found {shown(lines[0])}")
        version, start = int(match.group(1)), 1
        if version not in FIELDS_BY_VERSION:
            raise InputError(f"{path}:1: unknown bbGt version {version} (0 to 3 exist)")
    want = FIELDS_BY_VERSION[version]
    objects = []
    for number, line in enumerate(lines[start:], start=start + 1):
        if not line or line.startswith("%"):
            continue
        fields = line.split()
        if len(fields) != want:
            raise InputError(f"{path}:{number}: bbGt version {version} has {want} fields per object, found {len(fields)}: {shown(line)}")
        try:
            values = [float(v) for v in fields[1:]]
        except ValueError:
            raise InputError(f"{path}:{number}: not a number in {shown(line)}") from None
        if not all(math.isfinite(v) for v in values):
            raise InputError(f"{path}:{number}: non-finite value in {shown(line)}")
        objects.append(
            BbgtObject(
                label=fields[0],
                left=values[0],
                top=values[1],
                width=values[2],
                height=values[3],
                occlusion=int(values[4]),
                visible=(values[5], values[6], values[7], values[8]),
                ignore=bool(values[9]) if want >= 11 else False,
                angle=values[10] if want >= 12 else 0.0,
            )
        )
    return objects


def bbgt_to_xyxy(obj: BbgtObject) -> tuple[float, float, float, float]:
    """A bbGt box as 0-based pixel edges (x1, y1, x2, y2)."""
    x1, y1 = obj.left - 1.0, obj.top - 1.0
    return x1, y1, x1 + obj.width, y1 + obj.height


def _matlab_round(value: float) -> int:
    """MATLAB's round: halves away from zero (Python's round goes to even)."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def write_bbgt(path: str | Path, objects: list[BbgtObject]) -> Path:
    """Write a version-3 bbGt file as ``bbSave`` does (integers rounded; the inverse of :func:`read_bbgt`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ["% bbGt version=3"]
    for o in objects:
        numbers = [o.left, o.top, o.width, o.height, o.occlusion, *o.visible, int(o.ignore), o.angle]
        rows.append(o.label + "".join(f" {_matlab_round(v)}" for v in numbers))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path
