"""Errors fusedet raises on purpose. The CLI prints each as one line, never a traceback:

- `InputError`: the user's input is wrong (a missing, unreadable or inconsistent file, a bad option);
  exit code 2. The message names the file or option and the problem.
- `TrainingError`: a long run failed inside another library (ultralytics' trainer) for a reason that
  is not a bad input fusedet could have checked; exit code 1. It keeps the cause and, when there is
  one, the path of the log that holds the library's full output.
- `WriteError`: a file could not be written where the output folder was checked writable before the
  run (the disk filled up, the file system turned read-only, a folder stands where the file goes);
  exit code 1. The message names the file and the system's reason; files written before it are whole.

Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
from pathlib import Path


class FusedetError(Exception):
    """Base class of every error fusedet raises on purpose (the CLI's exit code: 2 unless a subclass says otherwise)."""

    exit_code = 2


class InputError(FusedetError, ValueError):
    """Bad user input: a missing, unreadable or inconsistent file or folder, or a bad option (the message names it)."""

    exit_code = 2


class TrainingError(FusedetError):
    """A training (or other long run) failed inside another library; `log` holds its full output."""

    exit_code = 1

    def __init__(self, message: str, log: str | os.PathLike | None = None) -> None:
        self.log = Path(log) if log is not None else None
        super().__init__(message if self.log is None else f"{message} (full log: {self.log})")


class WriteError(FusedetError, OSError):
    """A file could not be written (disk full, read-only file system, a folder in its place): the message
    names the file and the reason."""

    exit_code = 1
