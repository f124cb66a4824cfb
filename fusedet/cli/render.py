"""Result tables on the terminal (rich): the CLI's renderers of fusedet.tables.ResultTable and
fusedet.detection_table.DetectionTable (the library renders CSV, Markdown, LaTeX and JSON itself)."""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text


def result_table(table) -> Table:
    """A ResultTable as a rich Table: best value per column bold green, second underlined."""
    out = Table(title=table.title or None, header_style="bold cyan")
    out.add_column(table.row_header)
    for column in table.columns:
        out.add_column(column, justify="right")
    for cells in table.cells("[bold green]{}[/]", "[underline]{}[/]", escape):
        out.add_row(*cells)
    return out


def detection_table(table) -> RenderableType:
    """A DetectionTable (Table VII): the table (best per column bold, second underlined), the
    differences to the baseline when there are any, and the notes (why some cells are '-')."""
    parts: list[RenderableType] = [result_table(table.result_table())]
    if table.delta:
        parts.append(result_table(table.delta.result_table()))
    parts += [Text(n, style="dim") for n in table.notes()]
    return Group(*parts) if len(parts) > 1 else parts[0]


def report(report) -> RenderableType:
    """A DetectionReport: its main table, and with groups the mAP by group after it."""
    parts = [detection_table(report.table)]
    if report.groups:
        parts.append(result_table(report.group_summary()))
    return Group(*parts) if len(parts) > 1 else parts[0]


def print_wide(console: Console, renderable: RenderableType) -> None:
    """Print a table at its natural width, wider than the terminal if need be: numbers and row names
    are never cut ("6.23…", "DMNet (p…")."""
    natural = Measurement.get(console, console.options.update_width(1000), renderable).maximum
    terminal = console.width
    console.width = max(terminal, natural)
    try:
        console.print(renderable)
    finally:
        console.width = terminal
