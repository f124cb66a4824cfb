"""Shared CLI plumbing: consoles, progress bars, and turning expected errors into one clear line."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from dmnet.errors import DMNetError
from fusedet.errors import FusedetError

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable)

EXPECTED_ERRORS: tuple[type[BaseException], ...] = (FusedetError, DMNetError)


def handle_errors(fn: F) -> F:
    """Run a command; an expected error prints `error: ...` (no traceback) and exits with code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EXPECTED_ERRORS as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: finished work is kept; rerun the same command to resume")
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


def make_progress(**kwargs) -> Progress:
    """A rich progress bar with the columns every fusedet command uses (description, bar, n/N, times)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=err_console,
        **kwargs,
    )
