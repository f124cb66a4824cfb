"""Shared CLI plumbing: consoles, the help layout, progress bars for library events, and turning
fusedet's errors into one clear line.

Every command is parse, call, print: it builds settings objects from its options, calls one library
function inside ``fusedet.runtime.session()`` (through ``command``), and prints the result.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
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
from typer.core import TyperCommand

from dmnet.errors import DMNetError
from fusedet import distributed, runtime
from fusedet.errors import FusedetError

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable)

RANGE_HELP = (
    "How pixel values become [0, 1]: auto (8-bit as is; narrow 16-bit thermal frames stretched 1-99 %, with a warning; "
    "float images must be in [0, 1]), full, minmax or percentile[:LO,HI]."
)


class FusedetCommand(TyperCommand):
    """A typer command whose help shows flags without a value type (``--paper``, not ``--paper <bool>``)."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


def examples(*lines: str) -> str:
    """A help epilog listing example command lines."""
    return "[bold]Examples[/]\n\n" + "\n\n".join(f"  {escape(line)}" for line in lines)


def command(fn: F) -> F:
    """Run a command inside ``fusedet.runtime.session()``. A fusedet error prints ``error: ...`` (no
    traceback) and exits with the error's code (2 for bad input, 1 for a failed training); dmnet's
    errors are bad input too. Ctrl-C says how to resume (exit 130). Anything else is a bug and keeps
    its traceback. Under torchrun only rank 0 prints (bars, messages, results); every rank prints its
    errors, the others' prefixed with their rank."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        main = distributed.is_main_process()
        try:
            with runtime.session(), _quiet(not main):
                return fn(*args, **kwargs)
        except (FusedetError, DMNetError) as exc:
            rank = "" if main else f"rank {os.environ.get('RANK')}: "
            err_console.print(f"[bold red]{rank}error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(code=getattr(exc, "exit_code", 2)) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: finished work is kept; rerun the same command to resume")
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def _quiet(quiet: bool) -> Iterator[None]:
    """Both consoles silent for the block when `quiet` (a torchrun process other than rank 0)."""
    before = console.quiet, err_console.quiet
    console.quiet, err_console.quiet = quiet or before[0], quiet or before[1]
    try:
        yield
    finally:
        console.quiet, err_console.quiet = before


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
    """The CLI's one adapter from the library's events protocol (fusedet.events) to rich progress
    bars: one bar per stage; a note starting with "warning:" or "note:" goes to standard error in
    yellow, any other note (information) to standard output."""

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
        head, sep, rest = message.partition(":")
        if sep and head in ("warning", "note"):
            self.progress.console.print(f"[yellow]{head}:[/]{escape(rest)}", soft_wrap=True)
        else:  # information (an epoch's losses): standard output, like the result
            console.print(escape(message), soft_wrap=True)

    def finish(self, stage: str, status: str = "") -> None:
        task = self._tasks.get(stage)
        if task is not None:
            total = self._totals.get(stage)
            done = total if total is not None else 1
            self.progress.update(task, completed=done, total=done, status=escape(status))
