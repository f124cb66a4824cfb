"""The on-disk cache of one fuser's 8-bit fused images.

``CACHE/fused/<fuser name>-<hash of the key>/<stem>-<hash of the pair's files>.png``: keyed by the
fuser's cache key (weights, settings, version), the value ranges the pair is read with, and by the pair (the IR and VIS files' paths, sizes
and modification times: fusedet.hashing.pair_digest), so pairs of two datasets with the same stems, or a
dataset regenerated in place, never share an entry. Writes are atomic (a temporary file of the
writer's own, then a rename), so concurrent runs, or the processes of one sharded run, may share a
cache folder: a reader sees a whole entry or none, and two writers of one entry write the same bytes.

By default (`default_cache_dir`) CACHE is the machine's fusedet cache, ``$FUSEDET_CACHE`` (default
``~/.cache/fusedet``), shared by every run on the machine: a second output folder, or another subset
of the sources, finds the images fused before. ``--cache-dir`` (``RunSettings.cache_dir``) overrides it.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import cv2
import numpy as np

from fusedet.datasets.atomic import write_text_atomic
from fusedet.datasets.io import write_image
from fusedet.fusers import Fuser
from fusedet.hashing import pair_digest
from fusedet.runtime import fusedet_cache_root
from fusedet.settings import RunSettings


def default_cache_dir(run: RunSettings) -> Path:
    """The cache folder of a run: its `cache_dir` when given, else the machine's fusedet cache
    (``$FUSEDET_CACHE``, default ``~/.cache/fusedet``; fusedet.runtime.fusedet_cache_root). Fused
    images go to ``CACHE/fused`` (this module), fine-tuning exports to ``CACHE/yolo``
    (fusedet.yolo_export)."""
    return Path(run.cache_dir) if run.cache_dir is not None else fusedet_cache_root()


class FusedCache:
    """PNG cache of one fuser's fused images (RGB uint8), see the module docstring."""

    def __init__(self, root: str | os.PathLike, fuser: Fuser, ranges: str = "auto,auto") -> None:
        """`ranges`: the IR and visible value-range specs the pairs are read with (part of the key)."""
        key = fuser.cache_key() + ("" if ranges == "auto,auto" else f"|ranges={ranges}")
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        safe = re.sub(r"[^A-Za-z0-9._+-]", "_", fuser.name)
        self.dir = Path(root) / "fused" / f"{safe}-{digest}"
        self.key = key
        key_file = self.dir / "cache_key.txt"
        if not key_file.is_file():
            write_text_atomic(key_file, key + "\n")

    def path(self, record) -> Path:
        """The cache file of a pair record (anything with stem, ir_path, vis_path)."""
        return self.dir / f"{record.stem}-{pair_digest(record)}.png"

    def load(self, record) -> np.ndarray | None:
        """The cached RGB uint8 image, or None (absent or unreadable: it is then recomputed)."""
        path = self.path(record)
        if not path.is_file():
            return None
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        return None if image is None else np.ascontiguousarray(image[:, :, ::-1])

    def save(self, record, image: np.ndarray) -> Path:
        """Write `image` (RGB uint8) as the pair's entry, atomically; returns its path."""
        path = self.path(record)
        write_image(path, image)
        return path
