"""One small events protocol for every long-running library call.

Library functions (evaluate, fuse a folder, score metrics, fine-tune, train DMNet, generate the demo
data) never draw progress bars themselves: they report what happens to an `Events` object, and the
caller decides what to show. The CLI passes one adapter that draws rich progress bars
(fusedet.cli.common.RichEvents); Python callers pass nothing (`NullEvents`, silent) or their own
object with these four methods:

- ``start(stage, total=None)``: a stage begins; `total` items (None: unknown, a spinner).
- ``advance(stage, n=1, status="")``: `n` more items of `stage` are done; `status` is a short text
  for the bar (the current stem, running losses).
- ``note(message)``: one line worth telling the user (a warning, a reused result).
- ``finish(stage, status="")``: the stage is over (its bar may stay or go).

A stage is named by the text shown to the user ("dmnet: fuse + detect"); names are unique within
one call. Methods must be cheap and must not raise: they run inside the work loops.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Events(Protocol):
    """What a long-running call reports (see the module docstring)."""

    def start(self, stage: str, total: int | None = None) -> None: ...

    def advance(self, stage: str, n: int = 1, status: str = "") -> None: ...

    def note(self, message: str) -> None: ...

    def finish(self, stage: str, status: str = "") -> None: ...


class NullEvents:
    """Reports nothing: the default for Python callers."""

    def start(self, stage: str, total: int | None = None) -> None:
        pass

    def advance(self, stage: str, n: int = 1, status: str = "") -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def finish(self, stage: str, status: str = "") -> None:
        pass


class RecordingEvents:
    """Keeps every event as a tuple, in order: for tests, and for callers that want a log.

    ``events.calls`` is a list of ``("start", stage, total)``, ``("advance", stage, n, status)``,
    ``("note", message)`` and ``("finish", stage, status)``; ``done(stage)`` sums the advances."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def start(self, stage: str, total: int | None = None) -> None:
        self.calls.append(("start", stage, total))

    def advance(self, stage: str, n: int = 1, status: str = "") -> None:
        self.calls.append(("advance", stage, n, status))

    def note(self, message: str) -> None:
        self.calls.append(("note", message))

    def finish(self, stage: str, status: str = "") -> None:
        self.calls.append(("finish", stage, status))

    def done(self, stage: str) -> int:
        """Items reported done for `stage`."""
        return sum(c[2] for c in self.calls if c[0] == "advance" and c[1] == stage)

    def notes(self) -> list[str]:
        return [c[1] for c in self.calls if c[0] == "note"]


def as_events(events: Events | None) -> Events:
    """`events`, or a NullEvents when None."""
    return NullEvents() if events is None else events


class PrefixedEvents:
    """Passes events on to `events` with every stage name prefixed (``"seed 1: ir: detect"``), so
    one call that repeats its stages (several training seeds) keeps stage names unique. Notes pass
    unchanged."""

    def __init__(self, events: Events, prefix: str) -> None:
        self.events, self.prefix = events, prefix

    def start(self, stage: str, total: int | None = None) -> None:
        self.events.start(self.prefix + stage, total)

    def advance(self, stage: str, n: int = 1, status: str = "") -> None:
        self.events.advance(self.prefix + stage, n, status)

    def note(self, message: str) -> None:
        self.events.note(message)

    def finish(self, stage: str, status: str = "") -> None:
        self.events.finish(self.prefix + stage, status)
