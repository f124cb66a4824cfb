"""Atomic file writes: readers never see half a file, and an interrupted run leaves no debris."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fusedet.errors import InputError, WriteError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output_folder(folder: str | os.PathLike | None, flag: str = "--out") -> None:
    """InputError, before any work, unless `folder` is a folder or can be made one (None: nothing to
    check): it must not be a file, its nearest existing ancestor must be a folder (not a file: a path
    under a file can never be made), and that folder must be writable. Nothing is created."""
    if folder is None:
        return
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag} {folder} is a file, not a folder")
    existing = path if path.exists() else next((p for p in path.absolute().parents if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        raise InputError(f"{flag} {folder}: {existing} is a file, so no folder can be made under it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {folder}: no permission to write in {existing}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`, on error removed.

    For writers that want a path (matplotlib's savefig, torch.save, cv2.imwrite, ...). The file gets
    the usual permissions (0666 minus the umask), not mkstemp's 0600. An OSError while the file is made,
    written or renamed (disk full, read-only file system, a folder named like the file) becomes a
    :class:`fusedet.errors.WriteError` naming `path`: one line in the CLI, not a traceback.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    except OSError as exc:
        raise _write_error(path, exc) from exc
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    finally:
        tmp.unlink(missing_ok=True)


def append_text(path: str | os.PathLike, text: str) -> Path:
    """Append UTF-8 `text` to `path` (made, with its folder, if missing): for journals, whose torn last
    line a reader skips. An OSError becomes a :class:`fusedet.errors.WriteError` naming `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    return path


def _write_error(path: Path, exc: OSError) -> WriteError:
    """The one-line error for a file that could not be written (an OSError while writing or renaming)."""
    if isinstance(exc, WriteError):
        return exc
    nearest = next((p for p in path.parents if p.exists()), None)
    if path.is_dir():
        reason = "a folder of that name is in the way"
    elif nearest is not None and not nearest.is_dir():
        reason = f"{nearest} is a file, so no folder can be made under it"
    else:
        reason = (exc.strerror or str(exc)).lower()
    return WriteError(f"{path}: could not be written ({reason})")


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (temporary file + rename)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 `text` to `path` atomically (temporary file + rename)."""
    return write_bytes_atomic(path, text.encode("utf-8"))
