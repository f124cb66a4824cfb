"""The GPU check: fusedet's GPU figures in one run of at most 8 minutes, written to one JSON file.

    bench/gpu_check.sh                                   # on a machine with a CUDA GPU: gpu_check.json
    bench/gpu_check.sh --out figures.json --parts fuse,train
    python bench/gpu_check.py --dry-run --out dry.json   # the same script on CPU, lite preset, tiny sizes

Parts (each in its own process, under its own time limit; a part that fails or runs out of time is
recorded under "errors" and the others still run; the JSON is rewritten after every part, so a check
cut short still leaves the figures of the parts it finished):

- ``fuse``: the ``paper`` DMNet (random-initialised weights: speed does not depend on them) fusing
  one 480x640 and one 1024x768 pair in fp32 and bf16 (autocast), as the ``dmnet`` fuser does: the
  median seconds per pair over --repeats stage-II forward passes after a warm-up, the peak GPU memory
  (``torch.cuda.max_memory_allocated``, weights included, as bench/fuse_speed.py measures it), and
  the largest --fuse-batch that fits (batches doubled until one runs out of memory, then bisected,
  within a time budget; the seconds per pair of each batch tried).
- ``train``: one stage-I and one stage-II ``train-fuser`` step of ``paper`` on 16 crops of 128x128
  under bf16 autocast (what ``--precision auto`` picks on CUDA): bench/dmnet_step_speed.measure_steps.
- ``evaluate``: ``fusedet evaluate --dataset demo --dataset-option n_pairs=200 --dataset-option
  size=1024x768 --split all --sources ir,vi,paper=dmnet:CKPT --weights demo`` from an empty cache,
  CKPT a random-initialised ``paper`` checkpoint (bench/random_checkpoint.py); the demo data and the
  checkpoint are made in the background while the first parts run. Reported: pairs per second of each
  stage from run.json's timings, and the command's wall time.
- ``metrics``: the eleven fusion metrics on the GPU, 25 pairs x 7 fused images (175 triplets) of
  480x640 (synthetic images: the time does not depend on the content), as `fusedet metrics` scores a
  pair (fusedet.eval.fusion_metrics.PairScorer), against the same on the CPU.

The targets for the ``paper`` preset on one H100-class GPU (bf16): <= 0.1 s and <= 6 GB per 1024x768
pair, about 0.04 s per 480x640 pair; the paper reports 1.466 s and 9.94 GB per 480x640 pair on an
A100. ``--dry-run`` runs every part on the CPU with the ``lite`` preset at tiny sizes (about a minute):
it checks the script, not the GPU. Without CUDA and without --dry-run the script exits at once (code 2).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PARTS = ("fuse", "train", "evaluate", "metrics")
SCHEMA = "fusedet-gpu-check/1"
BUDGET_S = 480  # the whole check, start-up included

# H x W of the fused pairs; targets: (preset, precision, "WxH") -> (seconds per pair, GB)
TARGETS = {("paper", "bf16", "1024x768"): (0.1, 6.0), ("paper", "bf16", "640x480"): (0.04, None)}
PAPER_FIGURES = {"seconds_per_480x640_pair": 1.466, "peak_gb": 9.94, "gpu": "A100", "source": "DMNet paper, Table VIII"}

FULL = {
    "device": "cuda",
    "preset": "paper",
    "sizes": [[480, 640], [768, 1024]],
    "precisions": ["fp32", "bf16"],
    "repeats": 3,
    "batch_cap": 64,
    "search_budget_s": 25.0,
    "train": {"crop": 128, "batch": 16, "precision": "bf16", "repeats": 2},
    "evaluate": {"n_pairs": 200, "size": "1024x768", "bootstrap": 1000},
    "metrics": {"pairs": 25, "methods": 7, "size": [480, 640]},
    "timeouts_s": {"fuse_setting": 40, "train": 70, "evaluate": 200, "metrics": 45},
    "isolated": ["fuse", "train", "metrics"],
}
DRY = {
    "device": "cpu",
    "preset": "lite",
    "sizes": [[32, 32], [48, 64]],
    "precisions": ["fp32", "bf16"],
    "repeats": 1,
    "batch_cap": 4,
    "search_budget_s": 10.0,
    "train": {"crop": 32, "batch": 2, "precision": "fp32", "repeats": 1},
    "evaluate": {"n_pairs": 4, "size": "64x64", "bootstrap": 10},
    "metrics": {"pairs": 2, "methods": 2, "size": [64, 64]},
    "timeouts_s": {"fuse_setting": 60, "train": 90, "evaluate": 150, "metrics": 60},
    "isolated": ["train"],  # the others in this process: a quicker check of the same code
}


def size_name(size) -> str:
    """[H, W] -> 'WxH' (how fusedet names image sizes)."""
    return f"{size[1]}x{size[0]}"


# --- parts (each runs in a child process) -------------------------------------------------------------


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def fuse_setting(preset: str, device: str, precision: str, size: list[int], cfg: dict) -> dict:
    """Seconds per pair and peak memory at batch 1, then the largest batch that fits (see the module
    docstring). On the CPU the search stops at the cap (there is no GPU memory to run out of)."""
    import torch

    from dmnet import DMNet

    torch.manual_seed(0)
    with torch.device(device):  # parameters made on the device: the 392M-parameter init takes no CPU time
        model = DMNet.from_preset(preset).eval()
    weights_gb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30
    cuda = device.startswith("cuda")

    def forward(batch: int) -> float:
        ir = torch.rand(batch, 1, *size, device=device)
        vis = torch.rand(batch, 1, *size, device=device)
        _sync(device)
        start = time.perf_counter()
        with torch.inference_mode(), torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            model(ir, vis).float().clamp(0.0, 1.0)
        _sync(device)
        return time.perf_counter() - start

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    forward(1)  # warm-up: allocator, cuDNN autotuning, lazy inits
    times = sorted(forward(1) for _ in range(cfg["repeats"]))
    out = {"size": size_name(size), "precision": precision, "preset": preset, "device": device,
           "s_per_pair": times[len(times) // 2], "weights_gb": round(weights_gb, 3)}
    out["peak_gb"] = torch.cuda.max_memory_allocated() / 2**30 if cuda else None

    def attempt(batch: int) -> float | None:
        try:
            return forward(batch) / batch
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
            if not _is_oom(exc):
                raise
            if cuda:
                torch.cuda.empty_cache()
            return None

    ok, bound, tried = largest_fitting_batch(attempt, out["s_per_pair"], cfg["batch_cap"], cfg["search_budget_s"])
    out.update(max_fuse_batch=ok, max_fuse_batch_bound=bound, batch_cap=cfg["batch_cap"],
               s_per_pair_by_batch={str(b): t for b, t in sorted(tried.items())})
    return out


def largest_fitting_batch(attempt, first_s: float, cap: int, budget_s: float, clock=time.monotonic) -> tuple[int, str, dict]:
    """The largest batch in [1, cap] for which ``attempt(batch)`` (seconds per pair, or None when it
    ran out of memory) succeeds, batch 1 known to take `first_s` s per pair: doubled until a batch
    fails or the cap, then bisected between the last that fitted and the first that did not. A pass
    that would end past `budget_s` (estimated from the last fitting batch's time per pair) is not
    started. Returns (batch, what bounded it: "cap", "out of memory", "time", or "out of memory
    (bisection cut short by time)", {batch: seconds per pair or None})."""
    tried: dict[int, float | None] = {1: first_s}
    deadline = clock() + budget_s
    ok, bad, bound = 1, None, "cap"
    while ok < cap:
        nxt = min(ok * 2, cap)
        if clock() + 1.1 * nxt * tried[ok] > deadline:
            bound = "time"
            break
        tried[nxt] = attempt(nxt)
        if tried[nxt] is None:
            bad, bound = nxt, "out of memory"
            break
        ok = nxt
    while bad is not None and bad - ok > 1:
        mid = (ok + bad) // 2
        if clock() + 1.1 * mid * tried[ok] > deadline:
            bound = "out of memory (bisection cut short by time)"
            break
        tried[mid] = attempt(mid)
        if tried[mid] is None:
            bad = mid
        else:
            ok = mid
    return ok, bound, tried


def train_part(preset: str, device: str, cfg: dict) -> dict:
    """One stage-I and one stage-II training step (bench/dmnet_step_speed.measure_steps)."""
    sys.path.insert(0, str(HERE))
    from dmnet_step_speed import measure_steps

    t = cfg["train"]
    return measure_steps(preset, device, t["batch"], t["crop"], t["precision"], t["repeats"], infer_size=None)


def metrics_part(device: str, cfg: dict) -> dict:
    """Seconds per triplet of the eleven metrics on `device` and on the CPU, synthetic pairs."""
    import numpy as np
    import torch

    from fusedet.eval.fusion_metrics import PairScorer

    m = cfg["metrics"]
    rng = np.random.default_rng(0)
    h, w = m["size"]
    pairs = [[rng.integers(0, 256, (h, w), dtype=np.uint8) for _ in range(2 + m["methods"])] for _ in range(m["pairs"])]

    def run(where: str) -> float:
        PairScorer(pairs[0][0], pairs[0][1], device=where).score(pairs[0][2:])  # warm-up
        _sync(where)
        start = time.perf_counter()
        for ir, vis, *fused in pairs:
            PairScorer(ir, vis, device=where).score(fused)
        _sync(where)
        return (time.perf_counter() - start) / (m["pairs"] * m["methods"])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MS-SSIM on the dry run's tiny images
        out = {"device": device, "size": size_name(m["size"]), "triplets": m["pairs"] * m["methods"], "s_per_triplet": run(device)}
        if device != "cpu":
            out["cpu_s_per_triplet"] = run("cpu")
            out["cpu_threads"] = torch.get_num_threads()
    return out


def _child(fn, args: tuple, timeout: float, isolated: bool = True) -> dict:
    """fn(*args) in a fresh spawned process (its own memory peak; killed after `timeout` s), or in
    this process when not `isolated`."""
    if not isolated:
        return fn(*args)
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        try:
            return pool.apply_async(fn, args).get(timeout=timeout)
        except mp.TimeoutError:
            pool.terminate()
            raise TimeoutError(f"ran past its {timeout:.0f} s") from None


# --- the evaluate part: background preparation and the command -----------------------------------------


def prepare_evaluate(work: Path, cfg: dict, env: dict) -> dict[str, subprocess.Popen]:
    """Start making the demo data and the random checkpoint in the background."""
    e = cfg["evaluate"]
    demo = ("from fusedet.datasets.registry import load_dataset; "
            f"load_dataset('demo', None, n_pairs={e['n_pairs']}, size={e['size']!r})")
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return {
        "demo": subprocess.Popen([sys.executable, "-c", demo], env=env, stdout=open(logs / "demo.log", "w"), stderr=subprocess.STDOUT),
        "checkpoint": subprocess.Popen([sys.executable, str(HERE / "random_checkpoint.py"), "--preset", cfg["preset"],
                                        "--out", str(work / "dmnet_random.pt")], env=env, stdout=open(logs / "checkpoint.log", "w"),
                                       stderr=subprocess.STDOUT),
    }


def evaluate_part(work: Path, cfg: dict, env: dict, background: dict[str, subprocess.Popen], started: float, timeout: float) -> dict:
    """Wait for the background work, then time `fusedet evaluate` (see the module docstring)."""
    waited = time.perf_counter()
    for name, proc in background.items():
        if proc.wait(timeout=max(1.0, timeout - (time.perf_counter() - waited))) != 0:
            log = (work / "logs" / f"{name}.log").read_text()[-2000:]
            raise RuntimeError(f"making the {name} failed: {log}")
    prepared_s = time.perf_counter() - started
    e = cfg["evaluate"]
    out_dir = work / "evaluate"
    command = [sys.executable, str(ROOT / "cli.py"), "evaluate", "--dataset", "demo", "--dataset-option", f"n_pairs={e['n_pairs']}",
               "--dataset-option", f"size={e['size']}", "--split", "all", "--sources", f"ir,vi,{cfg['preset']}=dmnet:{work / 'dmnet_random.pt'}",
               "--weights", "demo", "--device", cfg["device"], "--bootstrap", str(e["bootstrap"]), "--out", str(out_dir)]
    remaining = timeout - (time.perf_counter() - waited)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=max(1.0, remaining))
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"fusedet evaluate exited {done.returncode}: {done.stderr[-2000:]}")
    run = json.loads((out_dir / "run.json").read_text())
    timings = run["timings_s"]
    pairs = run["dataset"]["pairs"]
    return {
        "command": " ".join(["fusedet", *command[3:]]),
        "pairs": pairs,
        "size": e["size"],
        "wall_s": wall,
        "pairs_per_s": {stage: pairs / s for stage, s in timings.items() if s > 0 and stage != "ground truth"},
        "timings_s": timings,
        "prepared_in_background_s": prepared_s,
        "detector": run["detector"].get("weights"),
    }


# --- the driver ---------------------------------------------------------------------------------------


def machine(device: str) -> dict:
    import torch

    import fusedet

    info = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda, "fusedet": fusedet.__version__,
            "python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": os.cpu_count()}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        info.update(name=props.name, total_memory_gb=props.total_memory / 2**30, capability=f"{props.major}.{props.minor}")
    return info


def verdicts(result: dict) -> dict:
    """Each target of the module docstring against the measured figure (only for a real GPU run)."""
    out = {}
    for row in result.get("fuse", []):
        target = TARGETS.get((row["preset"], row["precision"], row["size"]))
        if target is None or result.get("dry_run"):
            continue
        seconds, gb = target
        ok = row["s_per_pair"] <= seconds and (gb is None or (row["peak_gb"] is not None and row["peak_gb"] <= gb))
        out[f"{row['preset']} {row['precision']} {row['size']}"] = {"target_s": seconds, "target_gb": gb, "met": ok}
    return out


def write(path: Path, result: dict) -> None:
    result["verdicts"] = verdicts(result)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="the JSON file to write (default: gpu_check.json)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)} (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="on the CPU, lite preset, tiny sizes: checks the script, not a GPU")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary folder, removed at the end)")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        parser.error(f"unknown part(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(PARTS)}")
    args.parts = parts
    return args


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print(f"gpu_check: torch {torch.__version__} sees no CUDA GPU: nothing measured (--dry-run checks the script on the CPU)",
              file=sys.stderr)
        return 2
    cfg = DRY if args.dry_run else FULL
    device, preset = cfg["device"], cfg["preset"]
    work = Path(tempfile.mkdtemp(prefix="fusedet-gpu-check-")) if args.work is None else args.work
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FUSEDET_CACHE": str(work / "cache")}  # an empty cache: everything is computed
    result: dict = {"schema": SCHEMA, "dry_run": args.dry_run, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "machine": machine(device), "settings": cfg, "paper_figures": PAPER_FIGURES, "parts": args.parts,
                    "errors": {}, "part_seconds": {}}
    write(args.out, result)
    background = prepare_evaluate(work, cfg, env) if "evaluate" in args.parts else {}
    try:
        for part in args.parts:
            t0 = time.perf_counter()
            print(f"gpu_check: {part} ...", file=sys.stderr, flush=True)
            try:
                if part == "fuse":
                    result["fuse"] = []
                    for size in cfg["sizes"]:
                        for precision in cfg["precisions"]:
                            try:
                                result["fuse"].append(_child(fuse_setting, (preset, device, precision, size, cfg),
                                                             cfg["timeouts_s"]["fuse_setting"], "fuse" in cfg["isolated"]))
                            except Exception as exc:  # one setting failing leaves the others
                                result["errors"][f"fuse {size_name(size)} {precision}"] = f"{type(exc).__name__}: {exc}"
                            write(args.out, result)
                elif part == "train":
                    result["train_step"] = _child(train_part, (preset, device, cfg), cfg["timeouts_s"]["train"], "train" in cfg["isolated"])
                elif part == "evaluate":
                    result["evaluate"] = evaluate_part(work, cfg, env, background, started, cfg["timeouts_s"]["evaluate"])
                else:
                    result["metrics"] = _child(metrics_part, (device, cfg), cfg["timeouts_s"]["metrics"], "metrics" in cfg["isolated"])
            except Exception as exc:
                result["errors"][part] = f"{type(exc).__name__}: {exc}"
            result["part_seconds"][part] = time.perf_counter() - t0
            write(args.out, result)
    finally:
        for proc in background.values():
            if proc.poll() is None:
                proc.kill()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    result["total_s"] = time.perf_counter() - started
    write(args.out, result)
    print(summary(result))
    return 0 if not result["errors"] else 1


def summary(result: dict) -> str:
    """The figures in a few lines (the JSON holds everything)."""
    lines = [f"gpu_check ({'dry run, CPU' if result['dry_run'] else result['machine'].get('name', '?')}): {result['total_s']:.0f} s"]
    for row in result.get("fuse", []):
        peak = f"{row['peak_gb']:.2f} GB" if row["peak_gb"] is not None else "-"
        lines.append(f"  fuse {row['preset']} {row['size']} {row['precision']}: {row['s_per_pair']:.4f} s/pair, peak {peak}, "
                     f"max --fuse-batch {row['max_fuse_batch']} ({row['max_fuse_batch_bound']})")
    if "train_step" in result:
        t = result["train_step"]
        lines.append(f"  train-fuser step {t['preset']} {t['crop']}x{t['crop']} x{t['batch']} {t['precision']}: "
                     f"stage I {t['stage1_s']:.3f} s, stage II {t['stage2_s']:.3f} s")
    if "evaluate" in result:
        e = result["evaluate"]
        lines.append(f"  evaluate {e['pairs']} pairs {e['size']}: {e['wall_s']:.1f} s; "
                     + ", ".join(f"{k} {v:.1f}/s" for k, v in e["pairs_per_s"].items()))
    if "metrics" in result:
        m = result["metrics"]
        lines.append(f"  metrics {m['size']} on {m['device']}: {1000 * m['s_per_triplet']:.1f} ms/triplet")
    for name, verdict in result.get("verdicts", {}).items():
        lines.append(f"  target {name}: {'met' if verdict['met'] else 'NOT met'}")
    for part, error in result["errors"].items():
        lines.append(f"  error in {part}: {error}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
