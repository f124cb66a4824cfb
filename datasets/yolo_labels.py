"""YOLO text labels: one ``class xc yc w h`` line per object, coordinates normalised to [0, 1].

Fields may be separated by any whitespace (the MSRS label files use two spaces and a trailing
space). An empty file is an image without objects. Anything else that is not five numbers with an
integer class id raises InputError naming the file and the line. Files are decoded by
:func:`fusedet.datasets.text.read_lines` (byte-order marks, UTF-16, CRLF line ends).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from fusedet.datasets.class_names import clean_class_name, name_key
from fusedet.datasets.text import read_lines, shown
from fusedet.errors import InputError


def read_yolo_labels(path: str | Path) -> np.ndarray:
    """N x 5 float64 array [class, xc, yc, w, h] (N may be 0)."""
    path = Path(path)
    rows = []
    for number, line in enumerate(read_lines(path, kind="label file"), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise InputError(f"{path}:{number}: expected 5 fields 'class xc yc w h', found {len(fields)}: {line.strip()!r}")
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise InputError(f"{path}:{number}: not a number in {line.strip()!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise InputError(f"{path}:{number}: non-finite value in {line.strip()!r}")
        if not values[0].is_integer() or values[0] < 0:
            raise InputError(f"{path}:{number}: class id must be a non-negative integer, got {fields[0]!r}")
        rows.append(values)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def yolo_to_xyxy(labels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Normalised centre/size rows (N x 5 or N x 4 without the class) -> N x 4 pixel (x1, y1, x2, y2)."""
    xywh = np.asarray(labels, dtype=np.float64)[:, -4:]
    xc, yc, w, h = xywh[:, 0] * width, xywh[:, 1] * height, xywh[:, 2] * width, xywh[:, 3] * height
    return np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], axis=1)


def read_class_list(path: str | Path) -> tuple[list[str], list[str]]:
    """(class names, notes) from a ``classes.txt``: either one name per line, or ``id name`` lines.

    With ids, they must be 0..K-1 (in any order); the list is returned in id order. Names are
    cleaned (:func:`fusedet.datasets.class_names.clean_class_name`: NFKC, invisible characters
    removed, whitespace collapsed), and every name the cleaning changed is reported in the notes with
    ``repr``. Two names that are one name after normalisation raise InputError.
    """
    path = Path(path)
    lines = [line for line in read_lines(path, kind="class list") if line and not line.startswith("#")]
    if not lines:
        raise InputError(f"{path}: no class names in this file")
    split = [line.split(maxsplit=1) for line in lines]
    if all(len(parts) == 2 and parts[0].isdigit() for parts in split):
        by_id = {int(parts[0]): parts[1] for parts in split}
        if sorted(by_id) != list(range(len(lines))) or len(by_id) != len(lines):
            raise InputError(f"{path}: class ids must be 0..{len(lines) - 1} without gaps or repeats")
        raw = [by_id[i] for i in range(len(lines))]
    else:
        raw = lines
    names, notes, seen = [], [], {}
    for name in raw:
        clean = clean_class_name(name)
        if not clean:
            raise InputError(f"{path}: class name {name!r} is empty once invisible characters are removed")
        if clean != name:
            notes.append(f"{path}: class name {name!r} read as {clean!r} (invisible or compatibility characters removed)")
        key = name_key(clean)
        if key in seen:
            raise InputError(f"{path}: class names {shown(seen[key])} and {shown(clean)} are the same name (case, spaces, '_' and '-' ignored)")
        seen[key] = clean
        names.append(clean)
    return names, notes


def read_class_names(path: str | Path) -> list[str]:
    """The class names of a ``classes.txt`` (see :func:`read_class_list`)."""
    return read_class_list(path)[0]
