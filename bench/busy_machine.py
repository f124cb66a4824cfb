"""`fusedet fuse` and `fusedet evaluate` on a quiet and on a busy machine, side by side.

    python bench/busy_machine.py                                  # fuse 10 MSRS pairs + demo evaluate
    python bench/busy_machine.py --commands fuse --pairs 20 --repeats 3
    python bench/busy_machine.py --variants default,fusedet,spin10k,threads1

"Busy" is --competitors CPU-bound processes (default 2: single-threaded numpy matrix products, as
another user's work would be) started before the command and stopped after it; "quiet" is the same
command without them. Each variant sets the environment of the command:

- ``default``:  torch's own thread count (all cores) and libgomp's default waiting (spin, then sleep);
- ``passive``:  OMP_WAIT_POLICY=PASSIVE (threads waiting at a barrier sleep at once);
- ``spin10k``, ``spin30k``:  GOMP_SPINCOUNT=10000 or 30000 (libgomp spins that many rounds instead of
                300k before it sleeps);
- ``threads1``: OMP_NUM_THREADS=1;
- ``fusedet``:  fusedet's policy (``fusedet.threads``): ``openmp_environment`` added to the
                environment and ``torch_threads`` as OMP_NUM_THREADS, the settings fusedet's commands
                apply themselves before torch loads.

Quiet and busy runs of every variant alternate within each repeat, so a drift in the machine's
background load falls on both. Each run writes into fresh folders (no fused-image cache is reused).
Printed: wall seconds of each run (median over repeats) and busy / quiet per variant. A fair share of
2 cores beside 2 busy processes is 2x. The machine's load (``os.getloadavg``) is printed with the
figures: other work on the machine adds to both columns.

fuse: --pairs pairs of ../shared/data/msrs (or --ir / --vis folders). evaluate: ``fusedet evaluate
--dataset demo`` (its data generated once before the timings; --demo-pairs for a smaller demo), sources
ir, vi, dmnet.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MSRS = ROOT.parent / "shared" / "data" / "msrs"
BUSY_LOOP = "import numpy as np\na = np.random.rand(300, 300)\nwhile True:\n    a = a @ a\n    a /= np.abs(a).max()\n"
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
VARIANTS = {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "spin10k": {"GOMP_SPINCOUNT": "10000"},
            "spin30k": {"GOMP_SPINCOUNT": "30000"}, "threads1": {"OMP_NUM_THREADS": "1"}, "fusedet": None}


def start_competitors(n: int) -> list[subprocess.Popen]:
    env = {**os.environ, **SINGLE_THREAD_ENV}
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP], env=env) for _ in range(n)]
    time.sleep(1.0)  # running before the command starts
    return procs


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait()


def variant_env(name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if name == "fusedet":
        from fusedet.threads import openmp_environment, torch_threads, usable_cores

        env.update(openmp_environment(env))
        env["OMP_NUM_THREADS"] = str(torch_threads(env, usable_cores()))
    else:
        env.update(VARIANTS[name])
    return env


def command(kind: str, work: Path, args) -> list[str]:
    fusedet = shutil.which("fusedet") or "fusedet"
    if kind == "fuse":
        return [fusedet, "fuse", "--ir", str(args.ir_sub), "--vis", str(args.vis_sub), "--out", str(work / "fused"),
                "--device", "cpu"]
    demo = ["--dataset-option", f"n_pairs={args.demo_pairs}"] if args.demo_pairs else []
    return [fusedet, "evaluate", "--dataset", "demo", "--root", str(args.demo_root), *demo, "--device", "cpu",
            "--sources", "ir,vi,dmnet", "--out", str(work / "run"), "--cache-dir", str(work / "cache")]


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds, env.get("OMP_NUM_THREADS", "-")


def prepare_pairs(args, tmp: Path) -> None:
    ir_dir, vis_dir = Path(args.ir or MSRS / "ir"), Path(args.vis or MSRS / "vi")
    if not ir_dir.is_dir() or not vis_dir.is_dir():
        raise SystemExit(f"no pairs: {ir_dir} / {vis_dir} (give --ir and --vis)")
    stems = sorted(p.name for p in ir_dir.iterdir() if (vis_dir / p.name).is_file())[: args.pairs]
    args.ir_sub, args.vis_sub = tmp / "ir", tmp / "vi"
    for sub, src in ((args.ir_sub, ir_dir), (args.vis_sub, vis_dir)):
        sub.mkdir()
        for name in stems:
            (sub / name).symlink_to(src / name)
    print(f"fuse: {len(stems)} pairs from {ir_dir.parent}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", default="fuse,evaluate", help="fuse, evaluate or both (default)")
    parser.add_argument("--variants", default="default,fusedet", help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--competitors", type=int, default=2, help="busy processes beside the command (default 2)")
    parser.add_argument("--repeats", type=int, default=2, help="quiet + busy runs per variant (default 2)")
    parser.add_argument("--pairs", type=int, default=10, help="fuse: pairs (default 10)")
    parser.add_argument("--demo-pairs", type=int, default=None,
                        help="evaluate: demo pairs in all (default: the demo's 500, of which 100 test pairs are evaluated)")
    parser.add_argument("--ir", default=None, help="fuse: IR folder (default ../shared/data/msrs/ir)")
    parser.add_argument("--vis", default=None, help="fuse: visible folder (default ../shared/data/msrs/vi)")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    kinds = args.commands.split(",")

    with tempfile.TemporaryDirectory(prefix="fusedet-busy-") as tmp_name:
        tmp = Path(tmp_name)
        if "fuse" in kinds:
            prepare_pairs(args, tmp)
        if "evaluate" in kinds:
            args.demo_root = tmp / "demo"
            warm = tmp / "warm"  # generates the demo data once, outside the timings
            subprocess.run(command("evaluate", warm, args), check=True, capture_output=True)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(f"{cores} usable cores; {args.competitors} competing processes; load at start "
              f"{os.getloadavg()[0]:.2f}", flush=True)
        times: dict[tuple[str, str, str], list[float]] = {}
        runs = 0
        for repeat in range(args.repeats):
            for kind in kinds:
                for variant in variants:
                    for busy in (False, True):
                        procs = start_competitors(args.competitors) if busy else []
                        try:
                            seconds, threads = timed(command(kind, tmp / f"run{runs}", args), variant_env(variant))
                        finally:
                            stop(procs)
                        runs += 1
                        times.setdefault((kind, variant, "busy" if busy else "quiet"), []).append(seconds)
                        print(f"  repeat {repeat + 1} {kind:8s} {variant:8s} {'busy ' if busy else 'quiet'} "
                              f"threads {threads}: {seconds:6.1f} s (load {os.getloadavg()[0]:.2f})", flush=True)
        print(f"\n| command | variant | quiet (s) | busy (s) | busy / quiet | busy / quiet of {variants[0]} |")
        print("|---|---|---:|---:|---:|---:|")
        for kind in kinds:
            reference = statistics.median(times[(kind, variants[0], "quiet")])
            for variant in variants:
                quiet = statistics.median(times[(kind, variant, "quiet")])
                busy = statistics.median(times[(kind, variant, "busy")])
                print(f"| {kind} | {variant} | {quiet:.1f} | {busy:.1f} | {busy / quiet:.2f} | {busy / reference:.2f} |")
        print(f"load at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
