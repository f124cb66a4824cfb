"""DMNet inference speed and peak memory per 480x640 pair, for each preset, on CPU and CUDA.

    python bench/fuse_speed.py                         # every preset; CPU (2 threads) and CUDA if present
    python bench/fuse_speed.py --presets lite --devices cpu --repeats 5
    python bench/fuse_speed.py --presets lite --devices cpu --breakdown   # + seconds per DMNet stage
    python bench/fuse_speed.py --end-to-end                             # `fusedet fuse`, 20 MSRS pairs
    python bench/fuse_speed.py --end-to-end --baseline /tmp/old-checkout --reference /tmp/old-fused

Precisions: fp32 and ``mixed`` (the U-Net in bf16, ``DMNet.lower_precision``: what ``fusedet fuse``
picks on a CPU with AMX) on CPU, fp32 and bf16 autocast on CUDA.
Each (preset, device, precision) runs in a fresh process, so peak memory is its own: on CPU the peak
resident set size of that process (ru_maxrss, which includes the ~0.4 GB of the Python + torch
runtime; "forward" is the growth during the timed passes), on CUDA ``torch.cuda.max_memory_allocated``.
"CPU s / pair" is the process's CPU time per pass (all its threads): with --threads 1 it does not
grow when other processes share the cores, so it compares code versions on a busy machine.
Time is the median over --repeats stage-II forward passes (``model(ir, vis_y)``, the inference path,
under ``torch.inference_mode``) after one warm-up pass, with random weights (speed does not depend on
their values). Targets: ``lite`` on 2 CPU cores <= 0.5 s per pair through ``fusedet fuse``; ``paper``
on an H100 <= 0.3 s and <= 6 GB; the paper reports 1.466 s and 9.94 GB on an A100 (Table VIII).

``--end-to-end`` times the command a user runs instead: ``fusedet fuse --device cpu`` with the shipped
weights on the first --pairs (default 20) pairs of ../shared/data/msrs (or --ir / --vis), and on the
first pair alone; seconds per pair = (t(N) - t(1)) / (N - 1), so start-up (imports, model load, the
first pass) is subtracted. --threads sets OMP_NUM_THREADS for the command. ``--baseline DIR`` runs a
second checkout of fusedet (its ``dmnet`` and ``fusedet`` first on PYTHONPATH) in alternation with
this one, for a ratio measured side by side; ``--reference DIR`` compares the fused PNGs with those
in DIR (share of values within 1 grey level, largest difference).

On CPU the process sets glibc's malloc the way the ``dmnet`` fuser (and so ``fusedet fuse``) does
(``--malloc auto``): freed memory kept for reuse for models under 10M parameters
(``fusedet.runtime.keep_freed_memory``), glibc's defaults for larger ones. ``--malloc keep`` and
``--malloc default`` force one or the other (with glibc's defaults every large tensor is a fresh,
zero-filled mmap).
``--breakdown`` times --repeats more passes stage by stage (forward hooks; CUDA synchronised per
stage) and prints the pass of median total: embed, DTB, DIB, the DM input conv, the diffusion
module (U-Net + latent fusion), CSAB, decoder.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {("lite", "cpu"): (0.5, None), ("paper", "cuda"): (0.3, 6.0)}
ROOT = Path(__file__).resolve().parents[1]
MSRS = ROOT.parent / "shared" / "data" / "msrs"


STAGES = ("encoder.embed", "encoder.dtb", "encoder.dib", "dm_in", "dm", "encoder.csab", "decoder")


def measure(preset: str, device: str, precision: str, threads: int, repeats: int, size: tuple[int, int],
            malloc: str = "auto", breakdown: bool = False) -> dict:
    """Run in a child process: build the preset, time `repeats` forward passes, report peak memory."""
    import torch

    from dmnet import DMNet
    from fusedet import runtime
    from fusedet.dmnet_fuser import small_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = DMNet.from_preset(preset).eval().to(device)
    if precision == "mixed":  # the U-Net in bf16 (what `fusedet fuse` picks on a CPU with AMX)
        model.lower_precision(torch.bfloat16)
    session = contextlib.ExitStack()  # this child process exits when the measurement is done
    if device == "cpu" and (malloc == "keep" or (malloc == "auto" and small_model(model))):
        # held in a variable: a session left to the garbage collector ends at once, and malloc with it
        session.enter_context(runtime.session())
        if not runtime.keep_freed_memory():
            raise RuntimeError("malloc reuse was asked for but is not in force")
    ir = torch.rand(1, 1, *size, device=device)
    vis = torch.rand(1, 1, *size, device=device)
    cuda = device == "cuda"

    def once() -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
            model(ir, vis)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    rss_before = _rss_gb()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    once()  # warm-up (allocator, cuDNN autotuning, lazy inits)
    times, cpu_times = [], []
    for _ in range(repeats):
        cpu = time.process_time()
        times.append(once())
        cpu_times.append(time.process_time() - cpu)
    out = {"seconds": statistics.median(times), "cpu_seconds": statistics.median(cpu_times),
           "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
    if cuda:
        out["peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
        out["device_name"] = torch.cuda.get_device_name()
    else:
        out["peak_gb"] = _rss_gb()
        out["forward_gb"] = out["peak_gb"] - rss_before
    if breakdown:
        passes = sorted((_stage_seconds(model, once, cuda) for _ in range(repeats)), key=lambda s: sum(s.values()))
        out["stages"] = passes[len(passes) // 2]
    return out


def _stage_seconds(model, run, cuda: bool) -> dict[str, float]:
    """Seconds spent in each of STAGES during one call of ``run`` (forward hooks), and "other"."""
    import torch

    modules = dict(model.named_modules())
    spent = {name: 0.0 for name in STAGES if name in modules}
    started: dict[str, float] = {}

    def now() -> float:
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def pre(name):
        return lambda *_: started.__setitem__(name, now())

    def post(name):
        return lambda *_: spent.__setitem__(name, spent[name] + now() - started[name])

    handles = [h for name in spent for h in (modules[name].register_forward_pre_hook(pre(name)),
                                             modules[name].register_forward_hook(post(name)))]
    total = run()
    for h in handles:
        h.remove()
    spent["other"] = max(total - sum(spent.values()), 0.0)
    return spent


def end_to_end(args) -> int:
    """Seconds per pair of `fusedet fuse` (start-up subtracted), for this checkout and --baseline."""
    import numpy as np
    from PIL import Image

    ir_dir, vis_dir = Path(args.ir or MSRS / "ir"), Path(args.vis or MSRS / "vi")
    if not ir_dir.is_dir() or not vis_dir.is_dir():
        print(f"no pairs: {ir_dir} / {vis_dir} (give --ir and --vis)", file=sys.stderr)
        return 2
    stems = sorted(p.name for p in ir_dir.iterdir() if (vis_dir / p.name).is_file())[: args.pairs]
    codes = {"this checkout": None} | ({"baseline": Path(args.baseline).resolve()} if args.baseline else {})
    fusedet = shutil.which("fusedet") or "fusedet"
    results: dict[str, list[float]] = {name: [] for name in codes}
    with tempfile.TemporaryDirectory(prefix="fusedet-fuse-speed-") as tmp_name:
        tmp = Path(tmp_name)
        folders = {}
        for count in (1, len(stems)):
            for side, src in (("ir", ir_dir), ("vi", vis_dir)):
                folder = tmp / f"{side}{count}"
                folder.mkdir()
                for name in stems[:count]:
                    (folder / name).symlink_to(src / name)
            folders[count] = (tmp / f"ir{count}", tmp / f"vi{count}")
        runs = 0
        print(f"`fusedet fuse --device cpu`, {len(stems)} pairs of {ir_dir.parent}, OMP_NUM_THREADS={args.threads}, "
              f"load {os.getloadavg()[0]:.2f}", flush=True)
        for _ in range(args.repeats):
            for name, path in codes.items():
                env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
                if path is not None:
                    env["PYTHONPATH"] = os.pathsep.join([str(path)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
                wall = {}
                for count in (1, len(stems)):
                    out = tmp / f"out{runs}"
                    runs += 1
                    ir, vi = folders[count]
                    start = time.perf_counter()
                    subprocess.run([fusedet, "fuse", "--ir", str(ir), "--vis", str(vi), "--out", str(out), "--device", "cpu"],
                                   env=env, check=True, capture_output=True)
                    wall[count] = time.perf_counter() - start
                    if count > 1 and name == "this checkout":
                        last_out = out
                per_pair = (wall[len(stems)] - wall[1]) / max(1, len(stems) - 1)
                results[name].append(per_pair)
                print(f"  {name}: {wall[len(stems)]:.1f} s for {len(stems)} pairs, {wall[1]:.1f} s for 1: "
                      f"{per_pair:.3f} s per pair (load {os.getloadavg()[0]:.2f})", flush=True)
        print("| code | s / pair (median) | runs |")
        print("|---|---:|---|")
        for name, values in results.items():
            print(f"| {name} | {statistics.median(values):.3f} | {', '.join(f'{v:.3f}' for v in values)} |")
        if args.baseline:
            ratios = [a / b for a, b in zip(results["this checkout"], results["baseline"])]
            print(f"this checkout / baseline, per repeat: {', '.join(f'{r:.2f}' for r in ratios)}")
        if args.reference:
            values = within = 0
            largest = 0
            for png in sorted(last_out.glob("*.png")):
                new = np.asarray(Image.open(png)).astype(np.int16)
                old = np.asarray(Image.open(Path(args.reference) / png.name)).astype(np.int16)
                diff = np.abs(new - old)
                values, within, largest = values + diff.size, within + int((diff <= 1).sum()), max(largest, int(diff.max()))
            print(f"fused PNGs against {args.reference}: {within / values:.4%} of {values} values within 1 grey level, "
                  f"largest difference {largest}")
    return 0


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: kilobytes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="lite,paper", help="comma-separated presets (default: lite,paper)")
    parser.add_argument("--devices", default=None, help="cpu,cuda (default: cpu, plus cuda when available)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per setting (default: 3)")
    parser.add_argument("--size", default="480x640", help="H x W of the pair (default: 480x640)")
    parser.add_argument("--malloc", choices=("auto", "keep", "default"), default="auto",
                        help="CPU: as the dmnet fuser does (auto: keep freed memory for small models), "
                             "keep freed memory for reuse, or glibc defaults")
    parser.add_argument("--breakdown", action="store_true", help="also print seconds per DMNet stage")
    parser.add_argument("--end-to-end", action="store_true", help="time `fusedet fuse` on real pairs instead")
    parser.add_argument("--pairs", type=int, default=20, help="--end-to-end: pairs (default 20)")
    parser.add_argument("--ir", default=None, help="--end-to-end: IR folder (default ../shared/data/msrs/ir)")
    parser.add_argument("--vis", default=None, help="--end-to-end: visible folder (default ../shared/data/msrs/vi)")
    parser.add_argument("--baseline", default=None, help="--end-to-end: another fusedet checkout, run alternately")
    parser.add_argument("--reference", default=None, help="--end-to-end: folder of fused PNGs to compare with")
    args = parser.parse_args(argv)
    if args.end_to_end:
        return end_to_end(args)

    import torch

    height, width = (int(v) for v in args.size.lower().split("x"))
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if "cuda" in devices and not torch.cuda.is_available():
        print("cuda requested but not available", file=sys.stderr)
        return 2
    print(f"DMNet fusion of one {height}x{width} pair; torch {torch.__version__}, CPU threads {args.threads}")
    if "cuda" not in devices:
        print("CUDA: not measured (no GPU here)")
    if "cpu" in devices:
        print("CPU malloc: " + {"auto": "as in fusedet fuse (freed memory kept for reuse for models under 10M parameters)",
                                "keep": "freed memory kept for reuse",
                                "default": "glibc defaults (large tensors are fresh mmaps)"}[args.malloc])
    print("| preset | device | precision | params (M) | s / pair | CPU s / pair | peak memory (GB) | target |")
    print("|---|---|---|---:|---:|---:|---:|---|")
    ctx = mp.get_context("spawn")
    stages = []
    for preset in args.presets.split(","):
        for device in devices:
            for precision in ("fp32", "bf16") if device == "cuda" else ("fp32", "mixed"):
                with ctx.Pool(1) as pool:
                    r = pool.apply(measure, (preset, device, precision, args.threads, args.repeats,
                                             (height, width), args.malloc, args.breakdown))
                where = r.get("device_name", f"CPU x{args.threads} threads")
                mem = f"{r['peak_gb']:.2f}" + (f" (forward {r['forward_gb']:.2f})" if "forward_gb" in r else "")
                print(f"| {preset} | {where} | {precision} | {r['params_m']:.3f} | {r['seconds']:.3f} | {r['cpu_seconds']:.3f} | {mem} | "
                      f"{_verdict(preset, device, r)} |", flush=True)
                if "stages" in r:
                    stages.append((f"{preset} {where} {precision}", r["stages"]))
    for label, spent in stages:
        print(f"\nseconds per stage, median pass ({label}):")
        print("| " + " | ".join(spent) + " |\n|" + "---:|" * len(spent))
        print("| " + " | ".join(f"{v:.3f}" for v in spent.values()) + " |")
    return 0


def _verdict(preset: str, device: str, r: dict) -> str:
    target = TARGETS.get((preset, device))
    if target is None:
        return ""
    seconds, gb = target
    ok = r["seconds"] <= seconds and (gb is None or r["peak_gb"] <= gb)
    want = f"<= {seconds} s" + (f", <= {gb} GB" if gb else "")
    return f"{want}: {'met' if ok else 'NOT met'}"


if __name__ == "__main__":
    sys.exit(main())
