"""The `fusedet` command line: `fusedet --help` lists the commands."""

from __future__ import annotations

from fusedet.cli.app import app

# isort: off
# Each module registers its command(s) on `app` when imported; heavy imports stay inside the commands.
import fusedet.cli.evaluate_cmd  # noqa: E402,F401
import fusedet.cli.finetune_cmd  # noqa: E402,F401
import fusedet.cli.fuse_cmd  # noqa: E402,F401
import fusedet.cli.train_fuser_cmd  # noqa: E402,F401
import fusedet.cli.metrics_cmd  # noqa: E402,F401
import fusedet.cli.compare_cmd  # noqa: E402,F401
# isort: on


def main() -> None:
    """Console-script entry point (also what `python cli.py` runs)."""
    app(prog_name="fusedet")


__all__ = ["app", "main"]
