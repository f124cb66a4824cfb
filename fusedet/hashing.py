"""Content hashes and file stamps: what identifies weights files in run records, and input files in
cache and resume keys."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from fusedet.errors import InputError


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks (weights files can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_stamp(path: str | os.PathLike) -> str:
    """``RESOLVED_PATH|SIZE|MTIME_NS`` of a file: changes whenever the file is rewritten or moved.

    Raises InputError naming the file when it does not exist."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        raise InputError(f"{path}: no such file") from None
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def files_digest(paths: Iterable[str | os.PathLike]) -> str:
    """A 12-hex-digit hash of the stamps of `paths` (see file_stamp), in order."""
    return hashlib.sha1("|".join(file_stamp(p) for p in paths).encode()).hexdigest()[:12]


def pair_digest(record) -> str:
    """files_digest of an IR/VIS pair record's two files (``record.ir_path``, ``record.vis_path``)."""
    return files_digest([record.ir_path, record.vis_path])
