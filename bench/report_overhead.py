"""What paired bootstrap intervals and group tables add to a fresh `fusedet evaluate --dataset demo`.

    python bench/report_overhead.py                  # 3 pairs of runs, warm fused-image cache
    python bench/report_overhead.py --repeats 5 --cold
    python bench/report_overhead.py --cache-dir /tmp/democache   # keep the warm cache between calls

Runs the CLI (``python cli.py evaluate --dataset demo``, its default sources ir, vi, dmnet, mean,
max on the 100 test pairs) as a separate process, alternately

- A: ``--bootstrap 0`` (points only), and
- B: ``--bootstrap 1000 --group-by scene`` (1000 paired resamples, one table per scene type),

each into a fresh output folder (no detections to reuse: a fresh evaluate), both with the same cache
state: by default one shared fused-image cache warmed by a first run that is not timed (so the
fusion of the dmnet source is not in either time and the ratio is the strictest), with ``--cold``
a new empty cache for every run. Prints per pair of runs the wall time of each process (start to
exit, Python start-up included), their CPU time, the AP and table stages' own times from run.json,
and the ratio B / A; then what B's AP and table stages add, as a share of A's wall time, and the
median ratio against the goal (at most 1.10). Side by side, so the machine's load touches both
alike; the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_RATIO = 1.10
VARIANTS = {"A": ["--bootstrap", "0"], "B": ["--bootstrap", "1000", "--group-by", "scene"]}


def run_once(out: Path, cache: Path, extra: list[str], device: str) -> dict:
    """One `fusedet evaluate --dataset demo` process: wall and CPU seconds, and run.json's AP time."""
    cmd = [sys.executable, str(ROOT / "cli.py"), "evaluate", "--dataset", "demo", "--device", device, "--out", str(out),
           "--cache-dir", str(cache), *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    timings = json.loads((out / "run.json").read_text())["timings_s"]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "ap": timings.get("ap", 0.0), "write": timings.get("write tables", 0.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="pairs of runs (A then B, alternating which goes first)")
    parser.add_argument("--cold", action="store_true", help="a new empty fused-image cache for every run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache-dir", type=Path, default=None, help="the shared fused-image cache (default: a new one, warmed first)")
    args = parser.parse_args()

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; cache {'cold' if args.cold else 'warm'}")
    ratios, cpu_ratios, stage_shares = [], [], []
    with tempfile.TemporaryDirectory(prefix="fusedet-overhead-") as tmp:
        tmp = Path(tmp)
        shared = args.cache_dir or tmp / "cache"
        if not args.cold:
            run_once(tmp / "warm-up", shared, VARIANTS["A"], args.device)
        for i in range(args.repeats):
            order = ["A", "B"] if i % 2 == 0 else ["B", "A"]
            got = {}
            for name in order:
                cache = tmp / f"cache-{i}-{name}" if args.cold else shared
                got[name] = run_once(tmp / f"out-{i}-{name}", cache, VARIANTS[name], args.device)
            ratio, cpu_ratio = got["B"]["wall"] / got["A"]["wall"], got["B"]["cpu"] / got["A"]["cpu"]
            ratios.append(ratio)
            cpu_ratios.append(cpu_ratio)
            added = (got["B"]["ap"] + got["B"]["write"]) - (got["A"]["ap"] + got["A"]["write"])
            stage_shares.append(added / got["A"]["wall"])
            print(f"pair {i + 1} ({' then '.join(order)}): "
                  + "; ".join(f"{n} {g['wall']:.1f} s wall, {g['cpu']:.1f} s CPU, AP stage {g['ap']:.2f} s, tables {g['write']:.2f} s"
                              for n, g in sorted(got.items()))
                  + f"; ratio B/A wall {ratio:.3f}, CPU {cpu_ratio:.3f}")
    median, cpu_median = statistics.median(ratios), statistics.median(cpu_ratios)
    print(f"A: {' '.join(VARIANTS['A'])}; B: {' '.join(VARIANTS['B'])}; load average now {os.getloadavg()[0]:.2f}")
    print(f"the AP and table stages of B take {100 * statistics.median(stage_shares):.1f} % of A's wall time more than A's "
          "(median; run.json timings: less noisy than whole processes on a shared machine)")
    print(f"median ratio B/A: wall {median:.3f}, CPU {cpu_median:.3f} (goal <= {GOAL_RATIO:.2f}): "
          f"{'met' if median <= GOAL_RATIO else 'NOT met'}")


if __name__ == "__main__":
    main()
