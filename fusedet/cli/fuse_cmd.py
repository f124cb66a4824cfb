"""`fusedet fuse`: fuse every IR/VIS pair of two folders into PNG files named by stem.

Parse, call (``fusedet.fuse_folder``), print. A colour visible image gives an RGB PNG, a gray one (one
channel, or three equal channels as in TNO) a one-channel PNG; existing outputs are skipped unless
--force, so an interrupted run resumes where it stopped (a rerun with another fuser or value range is
refused rather than mixing fusions in one folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from fusedet.cli.app import app
from fusedet.cli.common import RANGE_HELP, FusedetCommand, RichEvents, command, console, examples, make_progress
from fusedet.errors import InputError

if TYPE_CHECKING:
    from fusedet.dmnet_fuser import DMNetFuser


def fuser_spec(fuser: str | None, weights: Path | None) -> str:
    """The fuser spec of --fuser / --weights (a DMNet checkpoint); both given is an error."""
    from fusedet.fusers import check_fuser_spec

    if fuser and weights:
        raise InputError("give --weights (a DMNet checkpoint) or --fuser, not both")
    if weights:
        if not weights.is_file():
            raise InputError(f"{weights}: no such checkpoint file")
        return f"dmnet:{weights}"
    spec = fuser or "dmnet"
    check_fuser_spec(spec)
    return spec


def dmnet_with_precision(spec: str, precision: str) -> DMNetFuser:
    """The DMNet fuser of `spec` in `precision` (fusedet.dmnet_fuser); InputError for another fuser."""
    from fusedet.dmnet_fuser import DMNetFuser
    from fusedet.fusers import check_fuser_spec

    if check_fuser_spec(spec) != "dmnet":
        raise InputError(f"--precision is an option of the dmnet fuser, not of {spec!r}")
    return DMNetFuser(spec.partition(":")[2] or None, precision=precision)


@app.command(
    "fuse",
    cls=FusedetCommand,
    epilog=examples(
        "fusedet fuse --ir data/tno/ir --vis data/tno/vi --out fused/dmnet",
        "fusedet fuse --ir M3FD/Ir --vis M3FD/Vis --out fused/max --fuser max",
    ),
)
@command
def fuse(
    ir: Path = typer.Option(..., "--ir", help="Folder of infrared images."),
    vis: Path = typer.Option(..., "--vis", help="Folder of visible images (matched to IR by file stem)."),
    out: Path = typer.Option(..., "--out", help="Output folder; fused images are written as STEM.png."),
    weights: Path | None = typer.Option(
        None, "--weights", help="DMNet checkpoint \\[default: the shipped lite weights].", show_default=False
    ),
    fuser: str | None = typer.Option(
        None, "--fuser", help="Another fuser instead of DMNet: mean, max, dmnet:PATH \\[default: dmnet].", show_default=False
    ),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda or cuda:N \\[default: cuda when available].", show_default=False),
    batch: int = typer.Option(1, "--batch", min=1, help="Pairs per forward pass (pairs of one size are batched)."),
    workers: int = typer.Option(2, "--workers", min=0, help="Image-reading threads."),
    force: bool = typer.Option(False, "--force", help="Fuse again pairs whose output already exists."),
    ir_range: str = typer.Option("auto", "--ir-range", help=RANGE_HELP),
    vis_range: str = typer.Option("auto", "--vis-range", help=RANGE_HELP),
    precision: str = typer.Option(
        "auto", "--precision",
        help="DMNet's arithmetic: auto (mixed on a CPU with AMX, else fp32), fp32, mixed (the diffusion U-Net in bf16) or bf16 (autocast).",
    ),
) -> None:
    """Fuse IR/VIS pairs with DMNet (or another fuser) into colour or gray PNG files."""
    from fusedet.folder_fusion import fuse_folder
    from fusedet.settings import RunSettings

    spec = fuser_spec(fuser, weights)
    if precision != "auto":
        spec = dmnet_with_precision(spec, precision)
    run = RunSettings(device=device, fuse_batch=batch, workers=workers, ir_range=ir_range, vis_range=vis_range)
    with make_progress() as progress:
        result = fuse_folder(ir, vis, out, fuser=spec, run=run, force=force, events=RichEvents(progress))
    if not result.fused:
        console.print(f"all {result.skipped} pairs already fused in {out} (use --force to redo them)")
        return
    console.print(
        f"fused {len(result.fused)} pairs with {result.fuser['cache_key']} into {out}"
        + (f" ({result.skipped} already there, skipped)" if result.skipped else "")
    )
