"""Train/val/test splits: split files when the dataset has them, else a seeded split we record.

Sources, in the order readers try them:
- ``meta/{train,val,test}.txt`` (M3FD style): one stem per line; a line may also be a file name or
  path (``Ir/00012.png``), of which the stem is taken; blank lines and ``#`` comments are skipped.
- a ``STEM split`` table (MSRS ``split.txt``).
- the subfolder an image sits in (LLVIP ``infrared/test/...``).
- :func:`seeded_split`: sorted stems shuffled with ``numpy.random.default_rng(seed)`` and cut
  70/10/20 into train/val/test (counts rounded, test takes the rest). Same stems and seed, same split.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from fusedet.datasets.io import few
from fusedet.datasets.records import SPLITS
from fusedet.errors import InputError

SEEDED_RATIOS: tuple[float, float, float] = (0.7, 0.1, 0.2)
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "test": "test", "testing": "test"}
_KNOWN_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".xml", ".txt"}


def normalise_split(name: str, where: str) -> str:
    """'training'/'valid'/'validation'/'testing' -> train/val/test; anything else raises InputError."""
    split = SPLIT_ALIASES.get(name.strip().lower())
    if split is None:
        raise InputError(f"{where}: unknown split {name!r}; expected one of {', '.join(SPLITS)}")
    return split


def _line_stem(line: str) -> str:
    path = Path(line.replace("\\", "/"))
    return path.stem if path.suffix.lower() in _KNOWN_SUFFIXES else path.name


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read split file ({exc})") from None


def read_split_lists(meta_dir: Path) -> tuple[dict[str, str], list[Path]] | None:
    """stem -> split from ``meta_dir/{train,val,test}.txt`` (any of them), or None if none exists.

    Returns the mapping and the files read. A stem listed in two files raises InputError.
    """
    mapping: dict[str, str] = {}
    origin: dict[str, Path] = {}
    files: list[Path] = []
    for split in SPLITS:
        path = Path(meta_dir) / f"{split}.txt"
        if not path.is_file():
            continue
        files.append(path)
        for line in _read_lines(path):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            stem = _line_stem(line)
            if stem in mapping and mapping[stem] != split:
                raise InputError(f"stem {stem!r} is listed in two split files: {origin[stem]} and {path}")
            mapping[stem], origin[stem] = split, path
    return (mapping, files) if files else None


def read_split_table(path: Path) -> dict[str, str]:
    """stem -> split from ``STEM split`` lines (whitespace separated; blank lines and # comments skipped)."""
    mapping: dict[str, str] = {}
    for number, line in enumerate(_read_lines(Path(path)), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 2:
            raise InputError(f"{path}:{number}: expected 'STEM split', found {line.strip()!r}")
        stem, split = _line_stem(fields[0]), normalise_split(fields[1], f"{path}:{number}")
        if mapping.get(stem, split) != split:
            raise InputError(f"{path}:{number}: stem {stem!r} is given two splits")
        mapping[stem] = split
    return mapping


def seeded_split(stems: Iterable[str], seed: int, ratios: Sequence[float] = SEEDED_RATIOS) -> dict[str, str]:
    """Deterministic split: sorted stems shuffled by `seed`, first round(r_train*n) train, next round(r_val*n) val, rest test."""
    ordered = sorted(set(stems))
    if len(ratios) != 3 or min(ratios) < 0 or sum(ratios) <= 0:
        raise ValueError(f"ratios must be three non-negative numbers, got {ratios}")
    total = float(sum(ratios))
    n = len(ordered)
    n_train = int(round(n * ratios[0] / total))
    n_val = min(int(round(n * ratios[1] / total)), n - n_train)
    order = np.random.default_rng(seed).permutation(n)
    mapping = {}
    for rank, index in enumerate(order):
        mapping[ordered[index]] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    return mapping


def seeded_split_source(seed: int, n: int, ratios: Sequence[float] = SEEDED_RATIOS) -> str:
    """The text recorded in DetectionDataset.split_source for a seeded split."""
    percent = "/".join(f"{100 * r / sum(ratios):g}" for r in ratios)
    return f"seeded split (seed {seed}, {percent} train/val/test of {n} sorted stems)"


def assign_splits(
    stems: Sequence[str],
    *,
    root: Path,
    seed: int,
    folder_splits: dict[str, str | None] | None = None,
    table: Path | None = None,
) -> tuple[dict[str, str], str, list[str]]:
    """Choose each stem's split: ``meta/*.txt`` > `table` (a ``STEM split`` file) > folders > seeded.

    Returns (stem -> split for the stems that have one, split_source text, notes). A stem listed in
    a split file without an image pair raises InputError (the benchmark would silently shrink);
    pairs listed in no split file are left out and reported in the notes.
    """
    root = Path(root)
    notes: list[str] = []
    listed = read_split_lists(root / "meta")
    if listed is not None:
        mapping, files = listed
        source = ", ".join(str(p.relative_to(root)) for p in files)
    elif table is not None and table.is_file():
        mapping, source = read_split_table(table), str(table.relative_to(root))
        files = [table]
    elif folder_splits and all(folder_splits.get(s) for s in stems):
        return {s: folder_splits[s] for s in stems}, "folders (" + ", ".join(sorted(set(folder_splits.values()))) + ")", notes
    else:
        if folder_splits and any(folder_splits.get(s) for s in stems):
            raise InputError(f"{root}: some pairs sit in train/val/test subfolders and others do not; use one layout")
        return seeded_split(stems, seed), seeded_split_source(seed, len(stems)), notes
    present = set(stems)
    missing = sorted(s for s in mapping if s not in present)
    if missing:
        raise InputError(
            f"{', '.join(str(f) for f in files)}: {len(missing)} listed stem(s) have no image pair: {few(missing)}"
        )
    unlisted = [s for s in stems if s not in mapping]
    if unlisted:
        notes.append(f"{len(unlisted)} pair(s) listed in no split file ({source}) were left out: {few(unlisted)}")
    return {s: mapping[s] for s in stems if s in mapping}, source, notes
