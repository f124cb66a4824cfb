"""Finding the IR/VIS image pairs of a dataset root, whatever way its folders are split.

Accepted layouts (folder names matched case-insensitively; ``IR`` and ``VIS`` stand for the names a
reader passes, e.g. ``Ir``/``Vis`` for M3FD, ``infrared``/``visible`` for LLVIP):

    ROOT/IR/*.png            ROOT/VIS/*.png             flat
    ROOT/IR/<split>/*.png    ROOT/VIS/<split>/*.png     split subfolders (LLVIP)
    ROOT/<split>/IR/*.png    ROOT/<split>/VIS/*.png     split-first (MSRS as distributed)

where <split> is train, val or test (or training/valid/validation/testing). Images are matched by
stem (:class:`fusedet.datasets.PairFolder`): an image without its partner raises InputError, and so
does a stem found in two places.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fusedet.datasets.io import IMAGE_EXTENSIONS, PairFolder
from fusedet.datasets.splits import SPLIT_ALIASES
from fusedet.errors import InputError


@dataclass(frozen=True)
class PairFiles:
    """One pair on disk; `folder_split` is the split its subfolder names, or None for a flat layout."""

    stem: str
    ir_path: Path
    vis_path: Path
    folder_split: str | None


def child_dir(parent: Path, names: Sequence[str]) -> Path | None:
    """The first subfolder of `parent` whose name matches one of `names` (case-insensitively)."""
    if not parent.is_dir():
        return None
    children = {p.name.lower(): p for p in sorted(parent.iterdir()) if p.is_dir()}
    for name in names:
        if name.lower() in children:
            return children[name.lower()]
    return None


def _has_images(folder: Path) -> bool:
    return any(p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir())


def _split_children(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for child in sorted(folder.iterdir()):
        split = SPLIT_ALIASES.get(child.name.lower())
        if child.is_dir() and split is not None:
            if split in found:
                raise InputError(f"{folder}: two subfolders name the split {split!r}: {found[split].name}, {child.name}")
            found[split] = child
    return found


def find_pairs(root: Path, ir_names: Sequence[str], vis_names: Sequence[str]) -> list[PairFiles]:
    """All IR/VIS pairs under `root`, sorted by stem (see the module docstring for the layouts)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: dataset root is not a folder")
    groups: list[tuple[Path, Path, str | None]] = []  # (ir folder, vis folder, split)
    ir_dir, vis_dir = child_dir(root, ir_names), child_dir(root, vis_names)
    if ir_dir is not None or vis_dir is not None:
        if ir_dir is None or vis_dir is None:
            missing = "/".join(ir_names) if ir_dir is None else "/".join(vis_names)
            raise InputError(f"{root}: found {(ir_dir or vis_dir).name}/ but no {missing}/ folder beside it")
        if _has_images(ir_dir) or _has_images(vis_dir):
            groups.append((ir_dir, vis_dir, None))
        ir_splits, vis_splits = _split_children(ir_dir), _split_children(vis_dir)
        for split in sorted(set(ir_splits) | set(vis_splits)):
            if split not in ir_splits or split not in vis_splits:
                have, lack = (ir_splits, vis_dir) if split in ir_splits else (vis_splits, ir_dir)
                raise InputError(f"{have[split]} has no partner folder {split}/ in {lack}")
            groups.append((ir_splits[split], vis_splits[split], split))
    else:
        for split, split_dir in _split_children(root).items():
            ir_sub, vis_sub = child_dir(split_dir, ir_names), child_dir(split_dir, vis_names)
            if ir_sub is not None and vis_sub is not None:
                groups.append((ir_sub, vis_sub, split))
    if not groups:
        raise InputError(
            f"{root}: no image pairs found; expected {ir_names[0]}/ and {vis_names[0]}/ folders "
            f"(flat, with train/val/test subfolders, or inside train/val/test folders)"
        )
    pairs: dict[str, PairFiles] = {}
    for ir_folder, vis_folder, split in groups:
        folder = PairFolder(ir_folder, vis_folder)
        for stem in folder.stems:
            if stem in pairs:
                raise InputError(f"stem {stem!r} appears twice: {pairs[stem].ir_path} and {folder.ir_files[stem]}")
            pairs[stem] = PairFiles(stem, folder.ir_files[stem], folder.vis_files[stem], split)
    return [pairs[stem] for stem in sorted(pairs)]
