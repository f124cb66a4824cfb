"""Speed of the eleven fusion metrics on the 25 TNO triplets of shared/data/golden_fused, against the
reference implementation's time (golden_fused/reference_timing.json: CDDFuse's Evaluator.py plus
scikit-image SSIM and pytorch_msssim MS-SSIM, seconds per triplet on a 2-core machine).

    python bench/metrics_speed.py                    # CPU (and CUDA when present), 3 repeats
    python bench/metrics_speed.py --devices cpu --workers 2 --repeats 5 --single

The timed path is the one `fusedet metrics --fused mean=... --fused max=...` runs: every pair is read
once (file decoding included in the time), its source statistics computed once, and both fused images
scored in one batch (fusedet.eval.metrics_folders.score_folders). Seconds per triplet = wall time of a
whole run / 50. Each run's values are checked against tno_mean.json and tno_max.json (largest relative
error printed), so the speed is measured at the stated agreement. --single also times the one-triplet
API (compute_metrics on preloaded images, no batching, no worker threads) for comparison.
Performance goal (issue 4): at least 20x faster than the reference, i.e. <= reference / 20 per triplet.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEEDUP_TARGET = 20.0


def _shared(arg: str | None) -> Path:
    data = Path(arg) if arg else Path(os.environ.get("FUSEDET_SHARED", ROOT.parent / "shared")) / "data"
    if not (data / "golden_fused").is_dir():
        sys.exit(f"golden_fused not found under {data} (pass --data DIR or set FUSEDET_SHARED)")
    return data


def _golden(data: Path) -> dict[str, dict]:
    out = {}
    for name in ("mean", "max"):
        values = json.loads((data / "golden_fused" / f"tno_{name}.json").read_text())
        out[name] = next(iter(values.values()))["per_image"]
    return out


def _worst_error(per_image: dict[str, dict[str, dict[str, float]]], golden: dict[str, dict]) -> float:
    worst = 0.0
    for name, images in per_image.items():
        for stem, values in images.items():
            for metric, value in values.items():
                ref = golden[name][stem][metric]
                worst = max(worst, abs(value - ref) / abs(ref))
    return worst


def bench_folders(data: Path, device: str, workers: int | None, repeats: int, golden: dict) -> dict:
    """Time whole `score_folders` runs (decode + metrics) over the two golden fusions."""
    from fusedet.eval.metrics_folders import plan_folders, score_folders

    plan = plan_folders(
        data / "tno" / "ir",
        data / "tno" / "vi",
        {"mean": data / "golden_fused" / "tno_mean", "max": data / "golden_fused" / "tno_max"},
    )
    triplets = len(plan.stems) * len(plan.fused)
    walls, cpus, worst = [], [], 0.0
    for _ in range(repeats + 1):  # the first run warms up (lazy imports, allocator, CUDA context)
        start, cpu_start = time.perf_counter(), time.process_time()
        result = score_folders(plan, device=device, workers=workers)
        if device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        walls.append((time.perf_counter() - start) / triplets)
        cpus.append((time.process_time() - cpu_start) / triplets)
        worst = max(worst, _worst_error(result.per_image, golden))
    walls, cpus = walls[1:], cpus[1:]
    return {"best": min(walls), "median": statistics.median(walls), "cpu": statistics.median(cpus), "worst": worst}


def bench_single(data: Path, device: str, golden: dict) -> dict:
    """Time compute_metrics on each preloaded triplet (no source reuse, no worker threads)."""
    from fusedet.datasets import list_images
    from fusedet.eval.fusion_metrics import compute_metrics
    from fusedet.eval.metrics_folders import load_gray

    stems = list(list_images(data / "tno" / "ir"))
    triplets = []
    for stem in stems:
        a = load_gray(data / "tno" / "ir" / f"{stem}.png")
        b = load_gray(data / "tno" / "vi" / f"{stem}.png")
        for name in ("mean", "max"):
            triplets.append((name, stem, a, b, load_gray(data / "golden_fused" / f"tno_{name}" / f"{stem}.png")))
    compute_metrics(*triplets[0][2:], device=device)  # warm-up
    start = time.perf_counter()
    per_image: dict[str, dict] = {"mean": {}, "max": {}}
    for name, stem, a, b, f in triplets:
        per_image[name][stem] = compute_metrics(a, b, f, device=device)
    return {"seconds": (time.perf_counter() - start) / len(triplets), "worst": _worst_error(per_image, golden)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="shared/data folder (default: ../shared/data or $FUSEDET_SHARED/data)")
    parser.add_argument("--devices", default="auto", help="cpu, cuda, or auto (cpu, plus cuda when present)")
    parser.add_argument("--workers", type=int, default=None, help="pairs scored at a time (default: as fusedet metrics)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up run")
    parser.add_argument("--single", action="store_true", help="also time the one-triplet API")
    args = parser.parse_args(argv)

    import torch

    data = _shared(args.data)
    golden = _golden(data)
    timing = json.loads((data / "golden_fused" / "reference_timing.json").read_text())
    reference = float(timing["seconds_per_triplet_mean"])
    devices = ["cpu", "cuda"] if args.devices == "auto" else args.devices.split(",")
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    print(
        f"reference: {reference:.3f} s/triplet on a {timing.get('cpus', '?')}-core machine; "
        f"target <= {reference / SPEEDUP_TARGET:.4f} s ({SPEEDUP_TARGET:.0f}x)"
    )
    print(f"this machine: {cores} usable CPU cores, torch {torch.__version__}, {torch.get_num_threads()} torch threads")
    print(f"{'device':<8}{'path':<22}{'s/triplet best':>15}{'median':>10}{'cpu-s/trip':>12}{'speedup':>9}{'max rel err':>13}")
    for device in devices:
        label = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
        r = bench_folders(data, device, args.workers, args.repeats, golden)
        verdict = "ok" if reference / r["best"] >= SPEEDUP_TARGET and r["worst"] <= 1e-3 else "MISSED"
        print(
            f"{device:<8}{'folders (batched)':<22}{r['best']:>15.4f}{r['median']:>10.4f}{r['cpu']:>12.4f}"
            f"{reference / r['best']:>8.1f}x{r['worst']:>13.1e}  {verdict}  [{label}]"
        )
        if args.single:
            s = bench_single(data, device, golden)
            speedup = reference / s["seconds"]
            print(f"{device:<8}{'compute_metrics (1x1)':<22}{s['seconds']:>15.4f}{'':>10}{'':>12}{speedup:>8.1f}x{s['worst']:>13.1e}")


if __name__ == "__main__":
    main()
