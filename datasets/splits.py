"""Train/val/test splits: a split file the user gives, split files the dataset has, else a seeded
split we record. Every split text file is read through :mod:`fusedet.datasets.text` (byte-order
marks, UTF-16, CRLF), so a list saved by a Windows editor reads like any other.

Sources, in the order readers try them:
- a **split file** the user gives (``split_file=`` of every loader, ``--split-file`` on the CLI),
  :func:`read_split_file`: either ``STEM SPLIT`` lines (MSRS's ``split.txt``), or a **plain list of
  stems**, one per line, which is read as the split named by the file (``train.txt``, ``val.txt``,
  ``test.txt``, ``pred.txt``) and as ``test`` otherwise (a published test list); the two kinds of line
  cannot be mixed in one file. Pairs the file does not list are left out (and counted in a note);
  a listed stem without an image pair is an error naming the file and the stems.
- ``meta/{train,val,test}.txt`` (M3FD style) and TarDAL's ``meta/pred.txt`` (its test split): one
  stem per line.
- a ``STEM split`` table (MSRS ``split.txt``).
- the subfolder an image sits in (LLVIP ``infrared/test/...``).
- :func:`seeded_split`: sorted stems shuffled with ``numpy.random.default_rng(seed)`` and cut
  70/10/20 into train/val/test (counts rounded, test takes the rest). Same stems and seed, same split.

In every list a line may be a stem or a file name or path (``Ir/00012.png``, ``00012.png``), of
which the stem is taken; blank lines and ``#`` comments are skipped. Split names accept
training/valid/validation/testing for train/val/test. What was used is recorded in a
:class:`SplitInfo` (method, files, seed, ratios, pair counts), printable and serialisable.
"""

from __future__ import annotations

import copy
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from fusedet.datasets.io import few
from fusedet.datasets.records import SPLITS, DetectionDataset
from fusedet.datasets.text import read_lines, shown
from fusedet.errors import InputError

SEEDED_RATIOS: tuple[float, float, float] = (0.7, 0.1, 0.2)
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "test": "test", "testing": "test"}
# Split-list file names under meta/ -> split. TarDAL (the M3FD authors' code) calls its test list pred.txt.
LIST_FILES: tuple[tuple[str, str], ...] = (("train", "train"), ("val", "val"), ("test", "test"), ("pred", "test"))
_KNOWN_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".xml", ".txt"}

LineStem = Callable[[str], str]


@dataclass(frozen=True)
class SplitInfo:
    """How a dataset's pairs were given their splits.

    `method`: "split file" (given by the user), "split lists" (meta/*.txt), "split table"
    (STEM split lines), "folders", "seeded", or a reader's own (e.g. "set numbers" for KAIST).
    `files` are shown relative to the dataset root when inside it. `counts` (pairs per split, in
    train/val/test order) and `left_out` (pairs on disk given no split) are filled in by the dataset
    from its records.
    """

    method: str
    files: tuple[str, ...] = ()
    seed: int | None = None
    stems: int | None = None  # how many stems a seeded split was drawn over
    ratios: tuple[float, ...] | None = None
    detail: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    left_out: int = 0

    def describe(self) -> str:
        """One line, e.g. ``split file splits/msrs.txt (STEM SPLIT lines): 180 train, 30 val, 61 test pairs``."""
        if self.method == "seeded":
            ratios = self.ratios or SEEDED_RATIOS
            percent = "/".join(f"{100 * r / sum(ratios):g}" for r in ratios)
            head = f"seeded split (seed {self.seed}, {percent} train/val/test of {self.stems} sorted stems)"
        else:
            head = self.method + (" " + ", ".join(self.files) if self.files else "")
        if self.detail:
            head += f" ({self.detail})"
        if self.counts:
            head += ": " + ", ".join(f"{self.counts.get(s, 0)} {s}" for s in SPLITS) + " pairs"
        if self.left_out:
            head += f"; {self.left_out} pair(s) in no split left out"
        return head

    def to_dict(self) -> dict:
        """JSON-ready description for run.json."""
        return {
            "method": self.method,
            "files": list(self.files),
            "seed": self.seed,
            "stems": self.stems,
            "ratios": list(self.ratios) if self.ratios else None,
            "detail": self.detail,
            "counts": {s: self.counts.get(s, 0) for s in SPLITS},
            "left_out": self.left_out,
            "description": self.describe(),
        }


def normalise_split(name: str, where: str) -> str:
    """'training'/'valid'/'validation'/'testing' -> train/val/test; anything else raises InputError."""
    split = SPLIT_ALIASES.get(name.strip().lower())
    if split is None:
        raise InputError(f"{where}: unknown split {name!r}; expected one of {', '.join(SPLITS)}")
    return split


def line_stem(line: str) -> str:
    """The stem a split-list line names: ``Ir/00012.png`` -> ``00012``, ``00012`` -> ``00012``."""
    path = Path(line.replace("\\", "/"))
    return path.stem if path.suffix.lower() in _KNOWN_SUFFIXES else path.name


def _shown_list(items: Iterable[str]) -> str:
    return few([shown(s) for s in items])


def relative_name(path: Path, root: Path | None) -> str:
    """`path` relative to `root` when inside it, else as given (for messages and SplitInfo.files)."""
    if root is not None:
        try:
            return str(Path(path).resolve().relative_to(Path(root).resolve()))
        except ValueError:
            pass
    return str(path)


def _entries(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of the non-blank, non-comment lines of a split file."""
    out = []
    for number, line in enumerate(read_lines(path, kind="split file"), start=1):
        if not line or line.startswith("#"):
            continue
        out.append((number, line.split()))
    return out


def read_named_lists(
    files: Sequence[tuple[Path, str]], *, line_stem: LineStem = line_stem
) -> dict[str, str]:
    """stem -> split from plain stem lists, each file standing for one split ((path, split) pairs).

    A stem listed for two different splits raises InputError naming both files.
    """
    mapping: dict[str, str] = {}
    origin: dict[str, Path] = {}
    for path, split in files:
        for number, fields in _entries(Path(path)):
            if len(fields) != 1:
                raise InputError(f"{path}:{number}: expected one stem or file name per line, found {shown(' '.join(fields))}")
            stem = line_stem(fields[0])
            if stem in mapping and mapping[stem] != split:
                raise InputError(f"stem {shown(stem)} is listed in two split files: {origin[stem]} and {path}")
            mapping[stem], origin[stem] = split, Path(path)
    return mapping


def read_split_lists(meta_dir: Path, *, line_stem: LineStem = line_stem) -> tuple[dict[str, str], list[Path]] | None:
    """stem -> split from ``meta_dir/{train,val,test,pred}.txt`` (any of them), or None if none exists.

    Returns the mapping and the files read. A stem listed in two files of different splits raises InputError.
    """
    files = [(Path(meta_dir) / f"{name}.txt", split) for name, split in LIST_FILES if (Path(meta_dir) / f"{name}.txt").is_file()]
    if not files:
        return None
    return read_named_lists(files, line_stem=line_stem), [f for f, _ in files]


def read_split_table(path: Path, *, line_stem: LineStem = line_stem) -> dict[str, str]:
    """stem -> split from ``STEM split`` lines (whitespace separated; blank lines and # comments skipped)."""
    mapping: dict[str, str] = {}
    for number, fields in _entries(Path(path)):
        if len(fields) != 2:
            raise InputError(f"{path}:{number}: expected 'STEM split', found {shown(' '.join(fields))}")
        stem, split = line_stem(fields[0]), normalise_split(fields[1], f"{path}:{number}")
        if mapping.get(stem, split) != split:
            raise InputError(f"{path}:{number}: stem {shown(stem)} is given two splits")
        mapping[stem] = split
    return mapping


def plain_list_split(path: Path) -> str:
    """The split a plain stem list stands for: named by the file (train/val/test/pred.txt, also
    training/validation/testing), else test."""
    name = Path(path).stem.lower()
    return "test" if name == "pred" else SPLIT_ALIASES.get(name, "test")


def read_split_file(
    path: str | os.PathLike, *, line_stem: LineStem = line_stem, plain_split: str | None = None
) -> tuple[dict[str, str], str]:
    """Read a split file given by the user: (stem -> split, a few words on its format).

    Accepts ``STEM SPLIT`` lines, or a plain list of stems (one per line) that all go to
    `plain_split` (default: :func:`plain_list_split`). Stems may carry a directory and an image or
    annotation extension. Raises InputError on a missing or undecodable file, a file with no stem,
    mixed kinds of lines, an unknown split name, or a stem given two splits.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{path}: {'a folder, not a split file' if path.is_dir() else 'no such split file'}")
    entries = _entries(path)
    if not entries:
        raise InputError(f"{path}: no stem in this split file")
    kinds = {len(fields) for _, fields in entries}
    if kinds == {2}:
        return read_split_table(path, line_stem=line_stem), "STEM SPLIT lines"
    if kinds == {1}:
        split = plain_split or plain_list_split(path)
        if split not in SPLITS:
            raise InputError(f"plain_split {split!r}: expected one of {', '.join(SPLITS)}")
        return {line_stem(fields[0]): split for _, fields in entries}, f"a plain stem list, read as {split}"
    odd = [(n, f) for n, f in entries if len(f) not in (1, 2)]
    if odd:
        raise InputError(f"{path}:{odd[0][0]}: expected 'STEM SPLIT' or 'STEM', found {shown(' '.join(odd[0][1]))}")
    raise InputError(f"{path}: mixes 'STEM SPLIT' lines and plain stems; use one kind of line")


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


def check_listed(mapping: Mapping[str, str], stems: Sequence[str], files: Sequence[Path | str], root: Path) -> list[str]:
    """Raise InputError for listed stems without an image pair; return the notes on unlisted pairs."""
    present = set(stems)
    missing = sorted(s for s in mapping if s not in present)
    if missing:
        raise InputError(
            f"{', '.join(str(f) for f in files)}: {len(missing)} listed stem(s) have no image pair: {_shown_list(missing)} "
            f"(pairs looked for under {root})"
        )
    unlisted = [s for s in stems if s not in mapping]
    if unlisted:
        return [f"{len(unlisted)} pair(s) listed in no split file ({', '.join(str(f) for f in files)}) were left out: {_shown_list(unlisted)}"]
    return []


def assign_splits(
    stems: Sequence[str],
    *,
    root: Path,
    seed: int,
    folder_splits: dict[str, str | None] | None = None,
    table: Path | None = None,
    split_file: str | os.PathLike | None = None,
    line_stem: LineStem = line_stem,
) -> tuple[dict[str, str], SplitInfo, list[str]]:
    """Choose each stem's split: `split_file` > ``meta/*.txt`` > `table` (a ``STEM split`` file) > folders > seeded.

    Returns (stem -> split for the stems that have one, SplitInfo, notes). A stem listed in a split
    file without an image pair raises InputError (the benchmark would silently shrink); pairs listed
    in no split file are left out and reported in the notes.
    """
    root = Path(root)
    if split_file is not None:
        mapping, how = read_split_file(split_file, line_stem=line_stem)
        notes = check_listed(mapping, stems, [split_file], root)
        return restrict_to_listed(stems, mapping, SplitInfo("split file", (str(Path(split_file).expanduser()),), detail=how), notes)
    listed = read_split_lists(root / "meta", line_stem=line_stem)
    if listed is not None:
        mapping, files = listed
        detail = "pred.txt is the test split" if any(f.name == "pred.txt" for f in files) else ""
        notes = check_listed(mapping, stems, [relative_name(f, root) for f in files], root)
        return restrict_to_listed(stems, mapping, SplitInfo("split lists", tuple(relative_name(f, root) for f in files), detail=detail), notes)
    if table is not None and table.is_file():
        mapping = read_split_table(table, line_stem=line_stem)
        notes = check_listed(mapping, stems, [relative_name(table, root)], root)
        return restrict_to_listed(stems, mapping, SplitInfo("split table", (relative_name(table, root),)), notes)
    if folder_splits and all(folder_splits.get(s) for s in stems):
        names = ", ".join(sorted(set(folder_splits.values())))
        return {s: folder_splits[s] for s in stems}, SplitInfo("folders", detail=names), []
    if folder_splits and any(folder_splits.get(s) for s in stems):
        raise InputError(f"{root}: some pairs sit in train/val/test subfolders and others do not; use one layout")
    return seeded_split(stems, seed), SplitInfo("seeded", seed=int(seed), stems=len(set(stems)), ratios=SEEDED_RATIOS), []


def restrict_to_listed(
    stems: Sequence[str], mapping: Mapping[str, str], info: SplitInfo, notes: list[str]
) -> tuple[dict[str, str], SplitInfo, list[str]]:
    """The mapping limited to `stems` (in their order) and `info` with the number of pairs left out."""
    kept = {s: mapping[s] for s in stems if s in mapping}
    return kept, replace(info, left_out=len(set(stems)) - len(kept)), notes


def split_counts(splits: Iterable[str]) -> dict[str, int]:
    """Pairs per split, in train/val/test order."""
    counts = Counter(splits)
    return {s: counts.get(s, 0) for s in SPLITS}


def apply_split_file(
    dataset: DetectionDataset, path: str | os.PathLike, *, plain_split: str | None = None
) -> DetectionDataset:
    """A copy of `dataset` whose records take their splits from the split file `path`
    (:func:`read_split_file`); records the file does not list are left out (counted in a note).

    Stems are read with the dataset's own line-to-stem rule (``dataset.stem_of_line``: KAIST's
    ``set00/V000/I00000``, FLIR's ``FLIR_00002_PreviewData``). A listed stem with no record (no image
    pair, or a pair without annotation) raises InputError naming the file and the stems, with
    ``repr`` when they hold invisible characters. Prefer ``load_dataset(..., split_file=PATH)``,
    which also reaches pairs the dataset's own split left out.
    """
    to_stem = dataset.stem_of_line or line_stem
    mapping, how = read_split_file(path, line_stem=to_stem, plain_split=plain_split)
    by_stem = {r.stem: r for r in dataset.records}
    missing = sorted(s for s in mapping if s not in by_stem)
    if missing:
        raise InputError(
            f"{path}: {len(missing)} listed stem(s) have no record in dataset {dataset.name!r} "
            f"(no image pair, or no annotation): {_shown_list(missing)}"
        )
    records = [replace(r, split=mapping[r.stem]) for r in dataset.records if r.stem in mapping]
    left_out = len(dataset.records) - len(records)
    warnings = copy.deepcopy(dataset.warnings)
    if left_out:
        warnings.notes.append(f"{left_out} pair(s) not listed in {path} were left out")
    info = SplitInfo("split file", (str(Path(path).expanduser()),), detail=how, left_out=left_out)
    return DetectionDataset(
        name=dataset.name,
        root=dataset.root,
        classes=list(dataset.classes),
        records=records,
        warnings=warnings,
        split_info=info,
        layout=dataset.layout,
        options=dict(dataset.options),
        stem_of_line=dataset.stem_of_line,
    )
