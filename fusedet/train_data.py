"""Training crops for DMNet from folders of IR/VIS pairs (paper IV-B: random 128 x 128 crops).

A data folder is a directory holding one infrared and one visible subfolder whose images are matched
by stem (fusedet.datasets.PairFolder). The subfolder names are recognised case-insensitively:
infrared ``ir``, ``inf``, ``infrared``, ``thermal``, ``lwir``; visible ``vi``, ``vis``, ``visible``, ``rgb``.
So MSRS (``ir/``, ``vi/``), M3FD (``Ir/``, ``Vis/``) and the usual test-set layouts work as they are.

All pairs are decoded once, up front (bad pairs raise InputError before any training), and kept in
memory as float16 IR and visible luma (4 bytes per pixel per pair: 271 MSRS pairs take 330 MB).
Item ``i`` is crop number ``i % crops_per_pair`` of pair ``i // crops_per_pair``; its position depends
only on (seed, epoch, i), so a resumed run sees the same crops as an uninterrupted one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from fusedet.datasets import PairFolder
from fusedet.datasets.value_range import RangeLog
from fusedet.errors import InputError
from fusedet.events import Events, as_events

IR_NAMES = ("ir", "inf", "infrared", "thermal", "lwir")
VIS_NAMES = ("vi", "vis", "visible", "rgb")


def find_pair_dirs(root: str | os.PathLike) -> tuple[Path, Path]:
    """Return the (infrared, visible) subfolders of a data folder; InputError if not exactly one of each."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    subdirs = [p for p in sorted(root.iterdir()) if p.is_dir()]
    ir = [p for p in subdirs if p.name.lower() in IR_NAMES]
    vis = [p for p in subdirs if p.name.lower() in VIS_NAMES]
    if len(ir) != 1 or len(vis) != 1:
        found = ", ".join(p.name for p in subdirs) or "no subfolders"
        raise InputError(
            f"{root}: expected one infrared subfolder ({'/'.join(IR_NAMES)}) and one visible subfolder "
            f"({'/'.join(VIS_NAMES)}), found: {found}"
        )
    return ir[0], vis[0]


class CropDataset(Dataset):
    """Random square crops of (IR, visible luma) pairs: items are two 1 x crop x crop float32 tensors."""

    def __init__(
        self,
        roots: Sequence[str | os.PathLike],
        crop: int = 128,
        crops_per_pair: int = 1,
        seed: int = 0,
        ranges: tuple[str, str] = ("auto", "auto"),
        events: Events | None = None,
    ) -> None:
        """Read every pair of every folder in `roots` (IR and visible brought to [0, 1] as the value-range
        specs `ranges` say, decisions counted in ``self.log``), reporting progress to `events` (stage
        "reading pairs")."""
        if crop < 8 or crops_per_pair < 1:
            raise InputError(f"crop must be >= 8 and crops per pair >= 1 (got {crop}, {crops_per_pair})")
        if not roots:
            raise InputError("no data folder given")
        self.crop, self.crops_per_pair, self.seed, self.epoch = crop, crops_per_pair, seed, 0
        self.log = RangeLog()
        self.ranges = (str(ranges[0]), str(ranges[1]))
        folders = [PairFolder(*find_pair_dirs(root), ir_range=ranges[0], vis_range=ranges[1], log=self.log) for root in roots]
        self.roots = [str(Path(root).resolve()) for root in roots]
        self._images: list[torch.Tensor] = []  # 2 x H x W float16: IR, visible Y
        total = sum(len(f) for f in folders)
        events = as_events(events)
        events.start("reading pairs", total=total)
        for folder in folders:
            for stem in folder.stems:
                pair = folder.read(stem)
                if min(pair.size) < crop:
                    raise InputError(
                        f"pair {stem!r} ({pair.ir_path}, {pair.vis_path}) is {pair.size[1]}x{pair.size[0]} (W x H), "
                        f"smaller than the crop size {crop}; use a smaller --crop or leave the pair out"
                    )
                self._images.append(torch.from_numpy(np.stack([pair.ir, pair.vis_y])).to(torch.float16))
                events.advance("reading pairs", 1, stem)
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
        out = {"dirs": self.roots, "pairs": self.pairs, "crop": self.crop, "crops_per_pair": self.crops_per_pair}
        if self.ranges != ("auto", "auto"):
            out["value_ranges"] = list(self.ranges)
        return out
