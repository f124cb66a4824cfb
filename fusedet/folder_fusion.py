"""Fuse every IR/VIS pair of two folders into PNG files named by stem: the library call under
``fusedet fuse``.

The fuser (DMNet with the shipped weights unless told otherwise) fuses the IR image with the visible
image's luma Y; the visible Cb/Cr are put back (fusedet.fusers.fuse_color), so a colour visible image
gives an RGB PNG and a gray one (one channel, or three equal channels as in TNO) a one-channel PNG.
Pairs and image headers are checked before any work; outputs are written atomically (encoded in a
background thread while the next batch is fused) and existing ones are skipped unless `force`, so an
interrupted run resumes where it stopped; OUT/.fusedet_fuse.json
records the fuser (its cache key) and value ranges, and a rerun with others is refused rather than
mixing fusions in one folder. The same input and batch size give the same bytes; another batch size
may move a few pixels by one grey level (the convolution library picks its algorithm per batch size).

Under ``torchrun`` (fusedet.distributed) the processes share the pairs still to fuse: rank 0 lists
them, each process fuses its contiguous share on its own device and writes its outputs, and the call
returns on every rank once all are done; only rank 0 reports progress.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fusedet import distributed, runtime
from fusedet.datasets import PairFolder, rgb_to_gray, write_image
from fusedet.datasets.atomic import check_output_folder, write_text_atomic
from fusedet.datasets.headers import pair_size
from fusedet.datasets.value_range import RangeLog
from fusedet.devices import resolve_device
from fusedet.errors import InputError
from fusedet.events import Events, NullEvents, as_events
from fusedet.fusers import Fuser, batches_by_size, fuse_color, get_fuser
from fusedet.image_stream import prefetch
from fusedet.settings import RunSettings


@dataclass(frozen=True)
class FuseResult:
    """What `fuse_folder` did: the stems it fused, how many outputs it found already there, where it
    wrote, and the fuser's provenance (name, cache key, weights and sha256)."""

    out: Path
    fused: list[str]
    skipped: int
    fuser: dict = field(default_factory=dict)
    ranges: RangeLog = field(default_factory=RangeLog)


MADE_BY = ".fusedet_fuse.json"  # in OUT: the fuser (cache key) and value ranges that wrote its images


def _check_made_by(out: Path, made_by: dict, done: int) -> None:
    """InputError when `out` already holds fused images that another fuser or other value ranges made
    (its MADE_BY record): skipping them would leave a folder of mixed fusions."""
    try:
        before = json.loads((out / MADE_BY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # no record (an older fusedet, or images put there by hand): they are kept, as before
    if isinstance(before, dict) and before != made_by:
        differ = ", ".join(f"{k} {before.get(k)!r} there, {v!r} now" for k, v in made_by.items() if before.get(k) != v)
        raise InputError(f"--out {out} holds {done} images fused with other settings ({differ}); "
                         "use --force to fuse them again, or another --out")


def _is_gray(vis: np.ndarray) -> bool:
    return bool(np.array_equal(vis[..., 0], vis[..., 1]) and np.array_equal(vis[..., 1], vis[..., 2]))


def _write_fused(out: Path, pairs: list, fused: np.ndarray) -> tuple[int, str]:
    """Write each pair's fused image (H x W x 3 RGB in [0, 1]) as OUT/STEM.png, one-channel where the
    visible image is gray; returns (pairs written, the last stem) for the progress bar."""
    for pair, image in zip(pairs, fused):
        write_image(out / f"{pair.stem}.png", rgb_to_gray(image) if _is_gray(pair.vis) else image)
    return len(pairs), pairs[-1].stem


@runtime.in_session
def fuse_folder(
    ir: str | os.PathLike,
    vis: str | os.PathLike,
    out: str | os.PathLike,
    *,
    fuser: str | Fuser = "dmnet",
    run: RunSettings | None = None,
    force: bool = False,
    events: Events | None = None,
) -> FuseResult:
    """Fuse the pairs of folders `ir` and `vis` (matched by stem) into ``OUT/STEM.png``.

    `fuser`: a spec (``dmnet``, ``dmnet:CKPT``, ``mean``, ``max``) or a Fuser. `run`: its `device`,
    `fuse_batch` (pairs of one size per forward pass), `workers` (reader threads) and `ir_range` /
    `vis_range` (how images become [0, 1]; decisions counted in the result's `ranges`) apply. Raises
    InputError, before any fusion, for unpaired or unreadable images, IR/VIS size mismatches, images
    smaller than the fuser takes, an unknown fuser or checkpoint, an `out` that cannot be a folder or is
    one of the input folders, or an `out` holding images fused with another fuser or value ranges
    (unless `force`). Under torchrun
    every process returns the whole run's result (every process's fused stems and value-range counts)."""
    run = run or RunSettings()
    world = distributed.current()
    events = as_events(events) if world.main else NullEvents()
    out = Path(out)
    ranges = RangeLog()
    folder = PairFolder(ir, vis, ir_range=run.ir_range, vis_range=run.vis_range, log=ranges)
    check_output_folder(out, "--out")
    for src in (folder.ir_dir, folder.vis_dir):
        if out.resolve() == src.resolve():
            raise InputError(f"--out {out} is an input folder; fused images would overwrite the sources")
    sizes = {s: pair_size(s, folder.ir_files[s], folder.vis_files[s]) for s in folder.stems}
    todo = world.broadcast([s for s in folder.stems if force or not (out / f"{s}.png").is_file()])
    model = get_fuser(fuser, device=resolve_device(run.device))
    for stem in todo:
        width, height = sizes[stem]
        if min(width, height) < model.min_side:
            raise InputError(f"{folder.ir_files[stem]}: {width}x{height} is too small for the {model.name} fuser "
                             f"(at least {model.min_side} pixels a side)")
    made_by = {"fuser": model.cache_key(), "ir_range": run.ir_range, "vis_range": run.vis_range}
    done = len(folder.stems) - len(todo)
    if done and not force:
        _check_made_by(out, made_by, done)
    result = FuseResult(out, todo, done, model.provenance(), ranges)
    if not todo:
        return result
    out.mkdir(parents=True, exist_ok=True)
    if world.main:
        write_text_atomic(out / MADE_BY, json.dumps(made_by, indent=2) + "\n")
    mine = world.shard(todo)
    stage = "fusing"
    if world.sharded:
        events.note(f"note: {world.size} processes share the {len(todo)} pairs to fuse; the bar shows rank 0's share")
        events.start(stage, total=len(mine))
    else:
        events.start(stage, total=len(folder.stems))
        events.advance(stage, result.skipped)
    batches = batches_by_size(mine, sizes.__getitem__, run.fuse_batch)
    # each batch's PNGs are encoded and written in a background thread while the next batch is fused
    # (OpenCV's encoder releases the GIL); at most one batch waits to be written
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fusedet-write") as writer:
        writing: Future | None = None
        for pairs in prefetch(lambda group: [folder.read(s) for s in group], batches, run.workers, 2):
            ir_t = torch.from_numpy(np.stack([p.ir for p in pairs]))[:, None].to(model.device)
            vis_t = torch.from_numpy(np.stack([p.vis for p in pairs])).permute(0, 3, 1, 2).to(model.device)
            with torch.inference_mode():
                fused = fuse_color(model, ir_t, vis_t).permute(0, 2, 3, 1).float().cpu().numpy()
            if writing is not None:
                events.advance(stage, *writing.result())
            writing = writer.submit(_write_fused, out, pairs, fused)
        if writing is not None:
            events.advance(stage, *writing.result())
    events.finish(stage)
    if world.sharded:  # waits for every process
        for rank, log in enumerate(world.gather(ranges)):
            if rank != world.rank:
                ranges.update(log)
    for line in ranges.warnings():
        events.note(f"warning: {line}")
    return result
