"""Training crops for DMNet from folders of IR/VIS pairs (paper IV-B: random 128 x 128 crops).

A data folder is found with the dataset readers' own layout code (fusedet.datasets.layout.find_pairs,
and the KAIST and FLIR-aligned readers' pair finders), so every layout a reader accepts trains as it
is. Infrared and visible folders are recognised case-insensitively (infrared ``ir``, ``inf``,
``infrared``, ``thermal``, ``lwir``; visible ``vi``, ``vis``, ``visible``, ``rgb``) in the layouts

    ROOT/IR/*.png            ROOT/VIS/*.png             flat (MSRS ir/ vi/, M3FD Ir/ Vis/, TarDAL)
    ROOT/IR/<split>/*.png    ROOT/VIS/<split>/*.png     split subfolders (LLVIP infrared/{train,test})
    ROOT/<split>/IR/*.png    ROOT/<split>/VIS/*.png     split-first (MSRS as distributed)
    ROOT/[images/]setXX/VXXX/{lwir,visible}/            KAIST
    ROOT/[align/]JPEGImages/*_PreviewData + *_RGB       FLIR-aligned

matched by stem. Label folders beside them are ignored. ``split`` picks the pairs of one split
(default ``all``): the split comes from the same places as the detection readers' (meta/*.txt lists,
a ``split.txt`` table, the split subfolders, else the readers' seeded 70/10/20 split with seed 0; the
KAIST and FLIR readers' own lists and rules), so ``split="train"`` keeps the detection test pairs out
of the fuser's training. Each pair is fingerprinted by its files' names, sizes and modification times
(`TrainingData.fingerprint`), which a resumed run compares.

All pairs are decoded once, up front (bad pairs raise InputError before any training), and kept in
memory as float16 IR and visible luma (4 bytes per pixel per pair: 271 MSRS pairs take 330 MB).
Item ``i`` is crop number ``i % crops_per_pair`` of pair ``i // crops_per_pair``; its position depends
only on (seed, epoch, i), so a resumed run sees the same crops as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from fusedet.datasets.headers import pair_size
from fusedet.datasets.io import few, read_pair
from fusedet.datasets.layout import PairFiles, child_dir, find_pairs
from fusedet.datasets.splits import assign_splits, split_counts
from fusedet.datasets.value_range import RangeLog
from fusedet.errors import InputError
from fusedet.events import Events, as_events

IR_NAMES = ("ir", "inf", "infrared", "thermal", "lwir")
VIS_NAMES = ("vi", "vis", "visible", "rgb")
DATA_SPLITS = ("all", "train", "val", "test")
SPLIT_SEED = 0  # the seeded split of folders without split files: the dataset readers' default seed


@dataclass(frozen=True)
class TrainingPair:
    """One IR/VIS pair found for training: `key` names it uniquely across data folders (``FOLDER/STEM``)."""

    key: str
    stem: str
    ir_path: Path
    vis_path: Path


@dataclass(frozen=True)
class TrainingData:
    """The pairs `find_training_data` chose: `roots` (resolved data folders), `pairs` (those used),
    `split` (the split asked for), `found` (pairs found in all folders) and one `descriptions` line
    per folder (its layout, its splits, how many pairs were used)."""

    roots: tuple[str, ...]
    pairs: tuple[TrainingPair, ...]
    split: str
    found: int
    descriptions: tuple[str, ...]

    def fingerprint(self) -> dict[str, str]:
        """key -> ``IR_NAME:SIZE:MTIME_NS|VIS_NAME:SIZE:MTIME_NS`` of every pair used: changes when a pair
        is added, removed or rewritten (as the fused-image cache key's file stamps do)."""
        return {p.key: f"{_stamp(p.ir_path)}|{_stamp(p.vis_path)}" for p in self.pairs}

    def check_crop(self, crop: int) -> None:
        """InputError naming the smallest pairs when a pair is smaller than `crop` on a side (image
        headers only, no decoding), or when an IR image and its visible partner differ in size."""
        sizes = {p.key: pair_size(p.stem, p.ir_path, p.vis_path) for p in self.pairs}
        small = sorted((min(wh), key) for key, wh in sizes.items() if min(wh) < crop)
        if small:
            side, key = small[0]
            smallest = next(p for p in self.pairs if p.key == key)
            w, h = sizes[key]
            raise InputError(
                f"{len(small)} pair(s) smaller than the crop size {crop}: {few([k for _, k in small])}; the smallest, "
                f"{smallest.ir_path}, is {w}x{h} (W x H): use --crop {side} or less, or leave those pairs out"
            )


def _stamp(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        raise InputError(f"{path}: no such file") from None
    return f"{path.name}:{st.st_size}:{st.st_mtime_ns}"


def _subfolders(root: Path) -> list[Path]:
    return [p for p in sorted(root.iterdir()) if p.is_dir()]


def _kaist_image_root(root: Path) -> Path | None:
    image_root = child_dir(root, ["images"]) or root
    if any(re.fullmatch(r"set\d+", p.name, re.IGNORECASE) for p in _subfolders(image_root)):
        return image_root
    return None


def _is_flir(root: Path) -> bool:
    inner = [child_dir(root, [name]) for name in ("align", "aligned", "FLIR_aligned", "FLIR_align")]
    return any(child_dir(d, ["JPEGImages"]) is not None for d in [root, *inner] if d is not None)


def _discover(root: Path) -> tuple[list[PairFiles], str]:
    """(pairs, layout name) of one data folder, with the readers' pair finders."""
    from fusedet.datasets import flir, kaist  # their pair finders: the same code the detection readers run

    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    kaist_root = _kaist_image_root(root)
    if kaist_root is not None:
        return kaist._frames(kaist_root), "kaist (setXX/VXXX/lwir, visible)"
    if _is_flir(root):
        flir_root = flir._find_root(root)
        return flir._pairs(child_dir(flir_root, ["JPEGImages"])), "flir-aligned (JPEGImages/*_PreviewData, *_RGB)"
    for names, kind in ((IR_NAMES, "infrared"), (VIS_NAMES, "visible")):
        matches = [p.name for p in _subfolders(root) if p.name.lower() in names]
        if len(matches) > 1:
            raise InputError(f"{root}: more than one {kind} subfolder ({', '.join(matches)}); keep one, or point --data at each")
    try:
        pairs = find_pairs(root, IR_NAMES, VIS_NAMES)
    except InputError as exc:
        if "no image pairs found" not in str(exc):
            raise
        found = ", ".join(p.name for p in _subfolders(root)) or "no subfolders"
        raise InputError(
            f"{root}: expected one infrared subfolder ({'/'.join(IR_NAMES)}) and one visible subfolder "
            f"({'/'.join(VIS_NAMES)}), flat, with train/val/test subfolders, or inside train/val/test folders; "
            f"found: {found}"
        ) from None
    folders = sorted({f"{_relative(p.ir_path.parent, root)} + {_relative(p.vis_path.parent, root)}" for p in pairs})
    return pairs, ", ".join(folders)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix() + "/"
    except ValueError:
        return str(path)


def _splits(root: Path, pairs: list[PairFiles], layout: str) -> tuple[dict[str, str], str]:
    """stem -> split of a folder's pairs and how the split was made, as the dataset readers make it."""
    stems = [p.stem for p in pairs]
    if layout.startswith(("kaist", "flir")):
        from fusedet.datasets.registry import load_dataset

        name = "kaist" if layout.startswith("kaist") else "flir"
        try:
            dataset = load_dataset(name, root, seed=SPLIT_SEED)
        except InputError as exc:
            raise InputError(f"--data-split: the split of {root} comes from the {name} reader, which cannot read it: {exc}") from None
        return {r.stem: r.split for r in dataset.records}, dataset.split_info.describe()
    mapping, info, _ = assign_splits(
        stems, root=root, seed=SPLIT_SEED, folder_splits={p.stem: p.folder_split for p in pairs}, table=root / "split.txt"
    )
    return mapping, dataclasses.replace(info, counts=split_counts(mapping.values()), left_out=len(stems) - len(mapping)).describe()


def find_training_data(roots: Sequence[str | os.PathLike], split: str = "all") -> TrainingData:
    """Find the IR/VIS pairs of every data folder in `roots` (layouts: module docstring) and keep
    those of `split` (``all``, ``train``, ``val`` or ``test``). InputError for a folder without
    pairs, unpaired images, an unknown split, or a split that leaves no pair."""
    if not roots:
        raise InputError("no data folder given")
    if split not in DATA_SPLITS:
        raise InputError(f"unknown data split {split!r}; use one of {', '.join(DATA_SPLITS)}")
    labels = [Path(r).resolve().name or str(Path(r).resolve()) for r in roots]
    chosen: list[TrainingPair] = []
    lines, found = [], 0
    for i, root in enumerate(Path(r).expanduser() for r in roots):
        label = labels[i] if labels.count(labels[i]) == 1 else f"{labels[i]}#{i + 1}"
        pairs, layout = _discover(root)
        found += len(pairs)
        if split == "all":
            kept, how = pairs, ""
        else:
            mapping, how = _splits(root, pairs, layout)
            kept = [p for p in pairs if mapping.get(p.stem) == split]
        chosen += [TrainingPair(f"{label}/{p.stem}", p.stem, p.ir_path, p.vis_path) for p in kept]
        used = f"all {len(pairs)} pairs" if split == "all" else f"{len(kept)} of {len(pairs)} pairs ({split} split: {how})"
        lines.append(f"{root} ({layout}): {used}")
    if not chosen:
        raise InputError(f"the {split} split of {', '.join(str(r) for r in roots)} has no pairs: " + "; ".join(lines))
    return TrainingData(tuple(str(Path(r).expanduser().resolve()) for r in roots), tuple(chosen), split, found, tuple(lines))


class CropDataset(Dataset):
    """Random square crops of (IR, visible luma) pairs: items are two 1 x crop x crop float32 tensors."""

    def __init__(
        self,
        roots: Sequence[str | os.PathLike] | TrainingData,
        crop: int = 128,
        crops_per_pair: int = 1,
        seed: int = 0,
        ranges: tuple[str, str] = ("auto", "auto"),
        events: Events | None = None,
    ) -> None:
        """Read every pair of `roots` (data folders, all their pairs; or the pairs `find_training_data`
        chose) with IR and visible brought to [0, 1] as the value-range specs `ranges` say, decisions
        counted in ``self.log``, reporting progress to `events` (stage "reading pairs")."""
        if crop < 8 or crops_per_pair < 1:
            raise InputError(f"crop must be >= 8 and crops per pair >= 1 (got {crop}, {crops_per_pair})")
        self.data = roots if isinstance(roots, TrainingData) else find_training_data(roots)
        self.crop, self.crops_per_pair, self.seed, self.epoch = crop, crops_per_pair, seed, 0
        self.log = RangeLog()
        self.ranges = (str(ranges[0]), str(ranges[1]))
        self.roots = list(self.data.roots)
        self._images: list[torch.Tensor] = []  # 2 x H x W float16: IR, visible Y
        events = as_events(events)
        events.start("reading pairs", total=len(self.data.pairs))
        for item in self.data.pairs:
            pair = read_pair(item.ir_path, item.vis_path, item.key, ir_range=ranges[0], vis_range=ranges[1], log=self.log)
            if min(pair.size) < crop:
                raise InputError(
                    f"pair {item.key!r} ({pair.ir_path}, {pair.vis_path}) is {pair.size[1]}x{pair.size[0]} (W x H), "
                    f"smaller than the crop size {crop}; use a smaller --crop or leave the pair out"
                )
            self._images.append(torch.from_numpy(np.stack([pair.ir, pair.vis_y])).to(torch.float16))
            events.advance("reading pairs", 1, item.key)
        events.finish("reading pairs")

    @property
    def pairs(self) -> int:
        return len(self._images)

    def __len__(self) -> int:
        return self.pairs * self.crops_per_pair

    def set_epoch(self, epoch: int) -> None:
        """Select the crops of `epoch` (called by the trainer before each epoch)."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        image = self._images[index // self.crops_per_pair]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        top = int(rng.integers(0, image.shape[1] - self.crop + 1))
        left = int(rng.integers(0, image.shape[2] - self.crop + 1))
        patch = image[:, top : top + self.crop, left : left + self.crop].float()
        return patch[:1].clone(), patch[1:].clone()

    def describe(self) -> dict[str, Any]:
        """Plain-value description stored in checkpoints (and compared on resume)."""
        return describe_training(self.data, self.crop, self.crops_per_pair, self.ranges)


def describe_training(data: TrainingData, crop: int, crops_per_pair: int, ranges: tuple[str, str]) -> dict[str, Any]:
    """The plain-value description of a training's data stored in checkpoints and compared on resume
    (dmnet.train): folders, pair count, crops, value ranges and split when not the defaults, and the
    data fingerprint (`TrainingData.fingerprint`). Computed from file stamps, before any decoding."""
    out: dict[str, Any] = {"dirs": list(data.roots), "pairs": len(data.pairs), "crop": crop, "crops_per_pair": crops_per_pair}
    if tuple(ranges) != ("auto", "auto"):
        out["value_ranges"] = list(ranges)
    if data.split != "all":
        out["split"] = data.split
    out["fingerprint"] = data.fingerprint()
    return out
