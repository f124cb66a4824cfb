"""Result tables on the terminal (rich): the CLI's renderers of fusedet.tables.ResultTable and
fusedet.detection_table.DetectionTable (the library renders CSV, Markdown, LaTeX and JSON itself)."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.markup import escape
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
    """A DetectionTable (Table VII) as the table and its notes (why some cells are '-')."""
    rendered = result_table(table.result_table())
    notes = [Text(n, style="dim") for n in table.notes()]
    return Group(rendered, *notes) if notes else rendered
