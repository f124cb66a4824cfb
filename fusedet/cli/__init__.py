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
    """Run the command line in this process; it ends by raising SystemExit, as click does (for wrappers,
    notebooks and tests that call it)."""
    app(prog_name="fusedet")


def run() -> None:
    """The `fusedet` console script (and `python cli.py`): :func:`main`, then the process ends through
    ``fusedet.runtime.exit_process`` (exit handlers run, streams are flushed, the interpreter's slow
    teardown is skipped; FUSEDET_FAST_EXIT=0 keeps it). An unexpected exception keeps its traceback."""
    from fusedet import runtime

    try:
        main()
    except SystemExit as exc:
        runtime.exit_process(exc.code)
    runtime.exit_process(0)


__all__ = ["app", "main", "run"]
