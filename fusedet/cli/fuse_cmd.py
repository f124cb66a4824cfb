"""`fusedet fuse`: fuse every IR/VIS pair of two folders into PNG files named by stem.

The fuser (DMNet with the shipped weights unless told otherwise) fuses the IR image with the visible
image's luma Y; the visible Cb/Cr are put back (fusedet.fusers.fuse_color), so a colour visible image
gives a colour RGB PNG and a gray one (one channel, or three equal channels as in TNO) a one-channel
PNG. Pairs and image headers are checked before any work; outputs are written atomically and existing
ones are skipped unless --force, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path

import typer

from fusedet.cli.app import app
from fusedet.cli.common import console, handle_errors, make_progress
from fusedet.errors import InputError


def _resolve_fuser_spec(fuser: str | None, weights: Path | None) -> str:
    if fuser and weights:
        raise InputError("give --weights (a DMNet checkpoint) or --fuser, not both")
    if weights:
        if not weights.is_file():
            raise InputError(f"{weights}: no such checkpoint file")
        return f"dmnet:{weights}"
    return fuser or "dmnet"


def _device(device: str | None) -> str:
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA is not available here (use --device cpu)")
    return device


@app.command("fuse")
@handle_errors
def fuse(
    ir: Path = typer.Option(..., "--ir", help="Folder of infrared images."),
    vis: Path = typer.Option(..., "--vis", help="Folder of visible images (matched to IR by file stem)."),
    out: Path = typer.Option(..., "--out", help="Output folder; fused images are written as STEM.png."),
    weights: Path | None = typer.Option(None, "--weights", help="DMNet checkpoint (default: the shipped lite weights)."),
    fuser: str | None = typer.Option(None, "--fuser", help="Another fuser instead of DMNet: mean, max, dmnet:PATH."),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    batch: int = typer.Option(1, "--batch", min=1, help="Pairs per forward pass (pairs of one size are batched)."),
    force: bool = typer.Option(False, "--force", help="Fuse again pairs whose output already exists."),
) -> None:
    """Fuse IR/VIS pairs with DMNet (or another fuser) into colour or gray PNG files."""
    import numpy as np
    import torch

    from fusedet.datasets import PairFolder, rgb_to_gray, write_image
    from fusedet.datasets.headers import pair_size
    from fusedet.fusers import batches_by_size, fuse_color, get_fuser

    spec = _resolve_fuser_spec(fuser, weights)
    folder = PairFolder(ir, vis)
    for src in (folder.ir_dir, folder.vis_dir):
        if out.resolve() == src.resolve():
            raise InputError(f"--out {out} is an input folder; fused images would overwrite the sources")
    sizes = {s: pair_size(s, folder.ir_files[s], folder.vis_files[s]) for s in folder.stems}
    todo = [s for s in folder.stems if force or not (out / f"{s}.png").is_file()]
    skipped = len(folder.stems) - len(todo)
    if not todo:
        console.print(f"all {len(folder.stems)} pairs already fused in {out} (use --force to redo them)")
        return
    dev = _device(device)
    model = get_fuser(spec, device=dev)
    out.mkdir(parents=True, exist_ok=True)
    with make_progress() as progress:
        task = progress.add_task("fusing", total=len(folder.stems), completed=skipped, status="")
        for stems in batches_by_size(todo, sizes.__getitem__, batch):
            pairs = [folder.read(s) for s in stems]
            ir_t = torch.from_numpy(np.stack([p.ir for p in pairs]))[:, None].to(dev)
            vis_t = torch.from_numpy(np.stack([p.vis for p in pairs])).permute(0, 3, 1, 2).to(dev)
            with torch.inference_mode():
                fused = fuse_color(model, ir_t, vis_t).permute(0, 2, 3, 1).float().cpu().numpy()
            for pair, image in zip(pairs, fused):
                gray = np.array_equal(pair.vis[..., 0], pair.vis[..., 1]) and np.array_equal(pair.vis[..., 1], pair.vis[..., 2])
                write_image(out / f"{pair.stem}.png", rgb_to_gray(image) if gray else image)
            progress.update(task, advance=len(pairs), status=stems[-1])
    console.print(
        f"fused {len(todo)} pairs with {model.cache_key()} into {out}"
        + (f" ({skipped} already there, skipped)" if skipped else "")
    )
