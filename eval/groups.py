"""Image groups for per-condition tables: which test images are day and which night, which scene
type each shows.

A grouping maps every stem of the evaluated split to one group name. Three sources:

- ``day-night``: MSRS names its pairs by condition, ``00004N`` (night) and ``00001D`` (day): a stem
  ending in a digit and N (or n) is ``night``, a digit and D (or d) ``day``; any other stem goes to
  ``unlisted``. At least one
  stem must end in D or N (InputError otherwise: the dataset does not name its pairs this way).
- ``scene``: the demo dataset's ``meta/scenes.json`` (``{stem: {"condition": "night", ...}}``, see
  fusedet.datasets.demo): the group is the scene's lighting condition.
- a CSV file ``stem,group`` (one pair per line; an optional first line ``stem,group``; blank lines
  skipped): for any dataset, e.g. M3FD's scene categories. Listed stems outside the split are
  counted and ignored; stems of the split the file does not list form the group ``unlisted``. A
  line without exactly two non-empty fields, or a stem listed twice with different groups, is an
  InputError naming the file and line.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fusedet.errors import InputError

UNLISTED = "unlisted"
BUILTIN = ("day-night", "scene")


@dataclass(frozen=True)
class Grouping:
    """Group of every stem of the split; `order` lists the group names as tables show them."""

    spec: str  # what was asked for: day-night, scene, or the CSV path
    of: dict[str, str]  # stem -> group
    order: tuple[str, ...]
    ignored_stems: int = 0  # listed stems outside the split
    notes: tuple[str, ...] = field(default_factory=tuple)

    def members(self, stems: Sequence[str]) -> dict[str, list[int]]:
        """group -> indices into `stems` of its images, in `order` (groups without images left out)."""
        out: dict[str, list[int]] = {g: [] for g in self.order}
        for i, stem in enumerate(stems):
            group = self.of.get(stem, UNLISTED)
            out.setdefault(group, []).append(i)
        return {g: idx for g, idx in out.items() if idx}

    def counts(self) -> dict[str, int]:
        """group -> number of images of the split, in `order`."""
        out = {g: 0 for g in self.order}
        for group in self.of.values():
            out[group] = out.get(group, 0) + 1
        return {g: n for g, n in out.items() if n}


def load_groups(spec: str | os.PathLike, stems: Sequence[str], *, dataset_root: str | os.PathLike | None = None) -> Grouping:
    """The grouping `spec` names (``day-night``, ``scene`` or a CSV path) for the split's `stems`.

    ``scene`` reads ``DATASET_ROOT/meta/scenes.json``. InputError for an unknown spec, a missing or
    malformed file, or a grouping that puts no stem of the split anywhere but ``unlisted``."""
    text = str(spec)
    if text == "day-night":
        return day_night_groups(stems)
    if text == "scene":
        if dataset_root is None:
            raise InputError("--group-by scene needs the dataset's folder (meta/scenes.json of the demo dataset)")
        return scene_groups(Path(dataset_root) / "meta" / "scenes.json", stems)
    path = Path(text).expanduser()
    if path.suffix.lower() != ".csv" and not path.exists():
        raise InputError(f"--group-by {text!r}: use day-night, scene or a FILE.csv of stem,group lines")
    return csv_groups(path, stems)


def day_night_groups(stems: Sequence[str]) -> Grouping:
    """MSRS day / night from the last letter of each stem (module docstring)."""
    of = {}
    for stem in stems:
        last = stem[-1:].upper() if stem[-2:-1].isdigit() else ""
        of[stem] = "day" if last == "D" else "night" if last == "N" else UNLISTED
    if all(g == UNLISTED for g in of.values()):
        example = f" (e.g. {stems[0]!r})" if stems else ""
        raise InputError(f"--group-by day-night: no stem of the split ends in D or N{example}; it needs MSRS-style names like 00004N")
    notes = ()
    n_unlisted = sum(g == UNLISTED for g in of.values())
    if n_unlisted:
        notes = (f"{n_unlisted} stem(s) end in neither D nor N: group {UNLISTED}",)
    return Grouping(spec="day-night", of=of, order=("day", "night", UNLISTED), notes=notes)


def scene_groups(path: Path, stems: Sequence[str]) -> Grouping:
    """Scene conditions of the demo dataset's ``meta/scenes.json``."""
    try:
        scenes = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: not found; --group-by scene works on the demo dataset (meta/scenes.json)") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable scenes file ({exc})") from None
    if not isinstance(scenes, dict):
        raise InputError(f"{path}: expected an object {{stem: {{\"condition\": ...}}}}")
    of = {}
    for stem in stems:
        entry = scenes.get(stem)
        condition = entry.get("condition") if isinstance(entry, dict) else None
        if entry is not None and not isinstance(condition, str):
            raise InputError(f"{path}: stem {stem!r} has no \"condition\" text")
        of[stem] = condition or UNLISTED
    ignored = len(set(scenes) - set(stems))
    order = (*sorted({g for g in of.values() if g != UNLISTED}), UNLISTED)
    return Grouping(spec="scene", of=of, order=order, ignored_stems=ignored, notes=_unlisted_note(of, path.name))


def csv_groups(path: Path, stems: Sequence[str]) -> Grouping:
    """`stem,group` lines of a CSV file (module docstring)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: group file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: unreadable group file ({exc})") from None
    listed: dict[str, str] = {}
    first_group: list[str] = []
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or all(not cell.strip() for cell in row):
            continue
        cells = [cell.strip() for cell in row]
        if number == 1 and [c.lower() for c in cells] == ["stem", "group"]:
            continue
        if len(cells) != 2 or not cells[0] or not cells[1]:
            raise InputError(f"{path}:{number}: expected 'stem,group', got {','.join(row)!r}")
        stem, group = cells
        if listed.get(stem, group) != group:
            raise InputError(f"{path}:{number}: stem {stem!r} listed again with another group ({listed[stem]!r}, then {group!r})")
        listed[stem] = group
        if group not in first_group:
            first_group.append(group)
    if not listed:
        raise InputError(f"{path}: no 'stem,group' line")
    split = set(stems)
    of = {stem: listed.get(stem, UNLISTED) for stem in stems}
    ignored = sum(1 for stem in listed if stem not in split)
    if all(g == UNLISTED for g in of.values()):
        raise InputError(f"{path}: none of its {len(listed)} stems is in the split (e.g. {next(iter(listed))!r} vs {stems[0]!r})")
    notes = _unlisted_note(of, path.name)
    if ignored:
        notes += (f"{ignored} stem(s) of {path.name} are not in the split: ignored",)
    order = tuple(dict.fromkeys([*first_group, UNLISTED]))
    return Grouping(spec=str(path), of=of, order=order, ignored_stems=ignored, notes=notes)


def _unlisted_note(of: dict[str, str], source: str) -> tuple[str, ...]:
    n = sum(g == UNLISTED for g in of.values())
    return (f"{n} stem(s) of the split are not in {source}: group {UNLISTED}",) if n else ()
