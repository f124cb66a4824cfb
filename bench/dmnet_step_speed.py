"""DMNet training-step and inference time on CPU, per preset (issue 5 lite targets).

    python bench/dmnet_step_speed.py                       # lite, 2 threads
    python bench/dmnet_step_speed.py --preset lite --threads 1 --repeats 5 --bf16

Prints, for one stage-I and one stage-II step (forward, backward, Adam) on a batch of 128x128 crops
and for one 480x640 inference (``model(ir, vis_y)``), the best wall time and the CPU time of that
run over --repeats after a warm-up. On a machine other jobs share, CPU time is the better guide to
the uncontended cost (one thread: wall ~= CPU time when the core is free).
Targets: lite stage-I + stage-II step on batch 8 of 128x128 < ~0.5 s, 480x640 inference <= 1 s,
both on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from dmnet import DMNet


def clock(fn, repeats: int) -> tuple[float, float]:
    """(best wall seconds, CPU seconds of that run) over `repeats` calls after one warm-up."""
    fn()
    runs = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    return min(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="lite")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="also time under CPU bf16 autocast")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = DMNet.from_preset(args.preset)
    print(f"preset {args.preset}: {model.num_parameters() / 1e6:.3f}M parameters, {args.threads} thread(s)")
    g = torch.Generator().manual_seed(0)
    ir, vis = torch.rand(2, args.batch, 1, args.crop, args.crop, generator=g)
    big_ir, big_vis = torch.rand(2, 1, 1, 480, 640, generator=g)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    for precision in ("fp32", "bf16") if args.bf16 else ("fp32",):
        def autocast(precision: str = precision):
            if precision == "bf16":
                return torch.autocast("cpu", dtype=torch.bfloat16)
            return contextlib.nullcontext()

        def step(stage: int) -> None:
            model.train()
            with autocast():
                losses = (model.stage1_losses if stage == 1 else model.stage2_losses)(ir, vis, g)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.step()

        def infer() -> None:
            model.eval()
            with torch.inference_mode(), autocast():
                model(big_ir, big_vis)

        for name, fn in (("stage-I step", lambda: step(1)), ("stage-II step", lambda: step(2)),
                         ("480x640 inference", infer)):
            wall, cpu = clock(fn, args.repeats)
            shape = f"batch {args.batch} x {args.crop}x{args.crop}" if "step" in name else "1 pair"
            print(f"{precision:5s} {name:18s} ({shape}): wall {wall:6.3f} s   cpu {cpu:6.3f} s")


if __name__ == "__main__":
    main()
