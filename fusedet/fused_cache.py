"""The on-disk cache of one fuser's 8-bit fused images.

``CACHE/fused/<fuser name>-<hash of the key>/<stem>-<hash of the pair's files>.png``: keyed by the
fuser's cache key (weights, settings, version), the value ranges the pair is read with, and by the pair (the IR and VIS files' paths, sizes
and modification times: fusedet.hashing.pair_digest), so pairs of two datasets with the same stems, or a
dataset regenerated in place, never share an entry. Writes are atomic (temporary file + rename), so
concurrent runs, or processes of one sharded run, may share a cache folder.
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
