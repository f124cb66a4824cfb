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


class RichEvents:
    """The CLI's adapter from the library's events protocol (fusedet.events) to rich progress bars:
    one bar per stage, notes printed above the bars."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self._tasks: dict[str, int] = {}
        self._totals: dict[str, int | None] = {}

    def start(self, stage: str, total: int | None = None) -> None:
        self._tasks[stage] = self.progress.add_task(escape(stage), total=total, status="")
        self._totals[stage] = total

    def advance(self, stage: str, n: int = 1, status: str = "") -> None:
        task = self._tasks.get(stage)
        if task is None:
            self.start(stage)
            task = self._tasks[stage]
        self.progress.update(task, advance=n, status=escape(status))

    def note(self, message: str) -> None:
        self.progress.console.print(f"[yellow]note:[/] {escape(message)}", soft_wrap=True)

    def finish(self, stage: str, status: str = "") -> None:
        task = self._tasks.get(stage)
        if task is not None:
            total = self._totals.get(stage)
            done = total if total is not None else 1
            self.progress.update(task, completed=done, total=done, status=escape(status))
