"""The report options every command that writes a detection report takes (evaluate, finetune,
compare): --metric, --bootstrap, --bootstrap-seed, --baseline, --ci-style, --group-by.

Declared once here; a command lists them as parameters with these defaults and builds the
ReportSettings with `report_options(...)`."""

from __future__ import annotations

import typer

METRIC = typer.Option("ap50", "--metric", help="Main table: ap50 (AP@0.5, the paper's Table VII) or ap50_95 (COCO AP@[.5:.95]).")
BOOTSTRAP = typer.Option(
    1000, "--bootstrap", min=0, help="Paired bootstrap resamples of the test images for the 95 % intervals (0: none)."
)
BOOTSTRAP_SEED = typer.Option(0, "--bootstrap-seed", help="Seed of the bootstrap resamples (its own; --seed keeps choosing the split).")
BASELINE = typer.Option(
    "best-single", "--baseline", help="Row the differences are taken to: ir, vi, a source name, or best-single (the better of ir and vi on mAP)."
)
CI_STYLE = typer.Option("pm", "--ci-style", help="Cells as 45.0 ± 1.8 (pm: half the interval's width) or 45.0 [43.2, 46.9] (interval).")
GROUP_BY = typer.Option(
    None, "--group-by", help="Per-group tables: day-night (MSRS stems ending in D/N), scene (the demo's scene types) or FILE.csv of stem,group."
)


def report_options(metric: str, bootstrap: int, bootstrap_seed: int, baseline: str, ci_style: str, group_by: str | None = None,
                   paper: bool = False):
    """The ReportSettings of these flags (InputError for a bad value)."""
    from fusedet.settings import ReportSettings

    return ReportSettings(metric=metric, bootstrap=bootstrap, bootstrap_seed=bootstrap_seed, baseline=baseline, ci_style=ci_style,
                          group_by=group_by, paper=paper)
