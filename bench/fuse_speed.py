"""DMNet inference speed and peak memory per 480x640 pair, for each preset, on CPU and CUDA.

    python bench/fuse_speed.py                         # every preset; CPU (2 threads) and CUDA if present
    python bench/fuse_speed.py --presets lite --devices cpu --repeats 5
    python bench/fuse_speed.py --presets lite --devices cpu --breakdown   # + seconds per DMNet stage

Each (preset, device, precision) runs in a fresh process, so peak memory is its own: on CPU the peak
resident set size of that process (ru_maxrss, which includes the ~0.4 GB of the Python + torch
runtime; "forward" is the growth during the timed passes), on CUDA ``torch.cuda.max_memory_allocated``.
Time is the median over --repeats stage-II forward passes (``model(ir, vis_y)``, the inference path,
under ``torch.inference_mode``) after one warm-up pass, with random weights (speed does not depend on
their values). Targets (issue 5): ``lite`` on 2 CPU cores <= 1 s per pair; ``paper`` on an H100
<= 0.3 s and <= 6 GB; the paper reports 1.466 s and 9.94 GB on an A100 (Table VIII).

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
import multiprocessing as mp
import resource
import statistics
import sys
import time

TARGETS = {("lite", "cpu"): (1.0, None), ("paper", "cuda"): (0.3, 6.0)}


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
    if device == "cpu" and (malloc == "keep" or (malloc == "auto" and small_model(model))):
        runtime.session().__enter__()  # this child process exits when the measurement is done
        runtime.keep_freed_memory()
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
    times = [once() for _ in range(repeats)]
    out = {"seconds": statistics.median(times), "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
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
    args = parser.parse_args(argv)

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
    print("| preset | device | precision | params (M) | s / pair | peak memory (GB) | target |")
    print("|---|---|---|---:|---:|---:|---|")
    ctx = mp.get_context("spawn")
    stages = []
    for preset in args.presets.split(","):
        for device in devices:
            for precision in ("fp32", "bf16") if device == "cuda" else ("fp32",):
                with ctx.Pool(1) as pool:
                    r = pool.apply(measure, (preset, device, precision, args.threads, args.repeats,
                                             (height, width), args.malloc, args.breakdown))
                where = r.get("device_name", f"CPU x{args.threads} threads")
                mem = f"{r['peak_gb']:.2f}" + (f" (forward {r['forward_gb']:.2f})" if "forward_gb" in r else "")
                print(f"| {preset} | {where} | {precision} | {r['params_m']:.3f} | {r['seconds']:.3f} | {mem} | "
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
