"""The typer application; each command lives in its own module of fusedet.cli and registers on `app`."""

from __future__ import annotations

import typer

from fusedet import __version__

app = typer.Typer(
    name="fusedet",
    help="Infrared-visible image fusion (DMNet) and what it does for object detection.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"fusedet {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", callback=_print_version, is_eager=True),
) -> None:
    """Infrared-visible image fusion (DMNet) and what it does for object detection."""
