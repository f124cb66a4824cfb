"""DMNet training-step and inference time, per preset, on CPU or CUDA.

    python bench/dmnet_step_speed.py                       # lite, 2 threads
    python bench/dmnet_step_speed.py --preset lite --threads 1 --repeats 5 --bf16
    python bench/dmnet_step_speed.py --preset paper --device cuda --batch 16 --bf16   # as train-fuser on a GPU

Prints, for one stage-I and one stage-II step (forward, backward, Adam) on a batch of 128x128 crops
and for one 480x640 inference (``model(ir, vis_y)``), the best wall time and the CPU time of that
run over --repeats after a warm-up (on CUDA synchronised, with the peak GPU memory of the steps). On a
machine other jobs share, CPU time is the better guide to the uncontended cost (one thread: wall ~=
CPU time when the core is free). `measure_steps` is the same measurement for other scripts
(bench/gpu_check.py).
Targets: lite stage-I + stage-II step on batch 8 of 128x128 < ~0.5 s, 480x640 inference <= 1 s,
both on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from dmnet import DMNet


def clock(fn, repeats: int, sync=lambda: None) -> tuple[float, float]:
    """(best wall seconds, CPU seconds of that run) over `repeats` calls after one warm-up; `sync`
    waits for the device before each clock reading."""
    fn()
    runs = []
    for _ in range(repeats):
        sync()
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        sync()
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    return min(runs)


def measure_steps(preset: str, device: str = "cpu", batch: int = 8, crop: int = 128, precision: str = "fp32",
                  repeats: int = 3, infer_size: tuple[int, int] | None = (480, 640)) -> dict:
    """One stage-I and one stage-II training step (forward, backward, Adam) of `preset` on `batch`
    random `crop` x `crop` crops, and one inference at `infer_size` (H, W; None: skipped), under bf16
    autocast when `precision` is ``bf16``. Returns seconds (best wall, CPU) per step and, on CUDA,
    the peak memory of the steps in GB."""
    torch.manual_seed(0)
    with torch.device(device):  # parameters made on the device (the paper preset's init is slow on a CPU)
        model = DMNet.from_preset(preset)
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    g = torch.Generator(device=device).manual_seed(0)
    ir, vis = torch.rand(2, batch, 1, crop, crop, generator=g, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def autocast():
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()

    def step(stage: int) -> None:
        model.train()
        with autocast():
            losses = (model.stage1_losses if stage == 1 else model.stage2_losses)(ir, vis, g)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()

    out = {"preset": preset, "device": device, "precision": precision, "batch": batch, "crop": crop,
           "params_m": model.num_parameters() / 1e6}
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for stage in (1, 2):
        out[f"stage{stage}_s"], out[f"stage{stage}_cpu_s"] = clock(lambda stage=stage: step(stage), repeats, sync)
    if cuda:
        out["peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
    if infer_size is not None:
        big_ir, big_vis = torch.rand(2, 1, 1, *infer_size, generator=g, device=device)

        def infer() -> None:
            model.eval()
            with torch.inference_mode(), autocast():
                model(big_ir, big_vis)

        out["infer_s"], out["infer_cpu_s"] = clock(infer, repeats, sync)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="lite")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="also time under bf16 autocast")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{args.threads} thread(s)"
    for precision in ("fp32", "bf16") if args.bf16 else ("fp32",):
        r = measure_steps(args.preset, args.device, args.batch, args.crop, precision, args.repeats)
        print(f"preset {args.preset}: {r['params_m']:.3f}M parameters, {where}")
        shape = f"batch {args.batch} x {args.crop}x{args.crop}"
        for name, key in (("stage-I step", "stage1"), ("stage-II step", "stage2"), ("480x640 inference", "infer")):
            print(f"{precision:5s} {name:18s} ({shape if 'step' in name else '1 pair'}): "
                  f"wall {r[key + '_s']:6.3f} s   cpu {r[key + '_cpu_s']:6.3f} s")
        if "peak_gb" in r:
            print(f"{precision:5s} peak GPU memory of the steps: {r['peak_gb']:.2f} GB")


if __name__ == "__main__":
    main()
