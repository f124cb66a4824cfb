"""Speed of the fusion metrics on the 25 TNO pairs of shared/data, three ways.

    python bench/metrics_speed.py                     # library call, cddfuse, 50 triplets (pixel-mean, pixel-max)
    python bench/metrics_speed.py --end-to-end --reference-repo PATH/TO/MMIF-CDDFuse
    python bench/metrics_speed.py --convention vifb   # `fusedet metrics --convention vifb`, end to end

Default: whole ``score_folders`` runs (decoding included) over the two golden fusions, seconds per triplet
(wall time / 50, best and median of --repeats runs after a warm-up), each run's values checked against
golden_fused (largest relative error printed), against the stored reference time
(golden_fused/reference_timing.json).

``--end-to-end``: the `fusedet metrics` command itself, as a user runs it (console script, --out, all
eleven cddfuse metrics) on 175 triplets (7 methods: pixel-mean, pixel-max and the five of peers_tno),
per triplet = (wall time - the import time of torch and fusedet's metrics modules) / 175, the import time
measured in its own process (which, like the command, ends without the interpreter's teardown). In the
same run, side by side, the reference scorer (CDDFuse's ``utils/Evaluator.py`` from the checkout given by
--reference-repo, plus scikit-image's SSIM and pytorch_msssim's MS-SSIM, as golden_fused/README.md
describes) scores a sample of the same triplets
(every pair once, the methods in turn; --reference-triplets 175 for all), reading included and imports
left out. Prints both and the speed-up; the goal is >= 100x. Without --reference-repo the stored
reference time is used and the line says so. The reference needs scikit-learn, scikit-image and
pytorch_msssim in this interpreter: install them into its environment, not through PYTHONPATH, which the
timed `fusedet metrics` runs inherit (they would then load that path's numpy, OpenCV and torch).

``--convention vifb``: the same end-to-end measure with ``--convention vifb`` (all 13 VIFB metrics), the
values checked against golden_vifb; the goal is <= 0.2 s per triplet on 2 cores.

``--baseline DIR`` (with --end-to-end) also runs the command from another fusedet checkout (its code first on
PYTHONPATH), alternating with this one run by run, and prints the ratio of the two per repeat, imports
subtracted: how much a change gained, measured side by side.

Run on a quiet machine or read the ratio: both sides slow down together on a busy one.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEEDUP_TARGET = 20.0  # library call against the stored reference time
END_TO_END_TARGET = 100.0
VIFB_TARGET_S = 0.2
PEERS = ("densefuse", "didfuse", "ifcnn", "seafusion", "tardal")


def _shared(arg: str | None) -> Path:
    data = Path(arg) if arg else Path(os.environ.get("FUSEDET_SHARED", ROOT.parent / "shared")) / "data"
    if not (data / "golden_fused").is_dir():
        sys.exit(f"golden_fused not found under {data} (pass --data DIR or set FUSEDET_SHARED)")
    return data


def _methods(data: Path, which: str) -> dict[str, Path]:
    methods = {"pixel-mean": data / "golden_fused" / "tno_mean", "pixel-max": data / "golden_fused" / "tno_max"}
    if which == "all":
        methods.update({m: data / "peers_tno" / m for m in PEERS})
    return methods


def _golden_cddfuse(data: Path) -> dict[str, dict]:
    files = {"pixel-mean": data / "golden_fused" / "tno_mean.json", "pixel-max": data / "golden_fused" / "tno_max.json"}
    files.update({m: data / "peers_tno" / f"golden_{m}.json" for m in PEERS})
    return {name: next(iter(json.loads(p.read_text()).values()))["per_image"] for name, p in files.items() if p.is_file()}


def _golden_vifb(data: Path) -> dict[str, dict]:
    files = {"pixel-mean": "golden_mean.json", "pixel-max": "golden_max.json", "seafusion": "golden_seafusion.json"}
    return {name: next(iter(json.loads((data / "golden_vifb" / f).read_text()).values()))["per_image"] for name, f in files.items()}


def _worst_error(per_image: dict, golden: dict) -> tuple[float, int]:
    worst, n = 0.0, 0
    for name, images in per_image.items():
        for stem, values in images.items():
            ref_row = golden.get(name, {}).get(stem)
            if ref_row is None:
                continue
            for metric, value in values.items():
                ref = ref_row.get(metric)
                if ref is None or value is None:
                    continue
                worst = max(worst, abs(value - ref) / max(abs(ref), 1e-9))
                n += 1
    return worst, n


def bench_library(data: Path, device: str, workers: int | None, repeats: int) -> dict:
    """Time whole score_folders runs (decode + metrics) over the two golden fusions."""
    from fusedet.eval.metrics_folders import plan_folders, score_plan

    golden = _golden_cddfuse(data)
    plan = plan_folders((data / "tno" / "ir", data / "tno" / "vi"), _methods(data, "golden"))
    triplets = len(plan.stems) * len(plan.fused)
    walls, cpus, worst = [], [], 0.0
    for _ in range(repeats + 1):  # the first run warms up (lazy imports, allocator, CUDA context)
        start, cpu_start = time.perf_counter(), time.process_time()
        run = score_plan(plan, device=device, workers=workers)
        if device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        walls.append((time.perf_counter() - start) / triplets)
        cpus.append((time.process_time() - cpu_start) / triplets)
        worst = max(worst, _worst_error(run.result.per_image, golden)[0])
    walls, cpus = walls[1:], cpus[1:]
    return {"best": min(walls), "median": statistics.median(walls), "cpu": statistics.median(cpus), "worst": worst}


def _wall(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def import_seconds(repeats: int = 3) -> float:
    """Wall time to import torch and fusedet's metrics modules in a fresh interpreter, minus a bare start.

    Both processes end with os._exit, as the fusedet command does (fusedet.runtime.exit_process): the
    interpreter's teardown after import torch (0.4-0.9 s) is not import time, and subtracting it from a
    command that does not pay it would flatter the command."""
    quit_now = "; import os; os._exit(0)"
    code = "import torch, cv2, numpy; import fusedet.eval.fusion_metrics, fusedet.eval.vifb_metrics, fusedet.eval.metrics_folders"
    with_imports = [_wall([sys.executable, "-c", code + quit_now]) for _ in range(repeats)]
    bare = [_wall([sys.executable, "-c", "pass" + quit_now]) for _ in range(repeats)]
    return statistics.median(with_imports) - statistics.median(bare)


def time_cli(data: Path, methods: dict[str, Path], convention: str, workers: int | None, out: Path,
             checkout: Path | None = None) -> tuple[float, dict]:
    """Wall seconds of one `fusedet metrics` run (console script) and its metrics.json; with `checkout`,
    the code of that fusedet checkout (first on PYTHONPATH) instead of the installed one."""
    exe = shutil.which("fusedet") or str(Path(sys.executable).with_name("fusedet"))
    cmd = [exe, "metrics", "--ir", str(data / "tno" / "ir"), "--vis", str(data / "tno" / "vi"), "--convention", convention, "--out", str(out)]
    for name, folder in methods.items():
        cmd += ["--fused", f"{name}={folder}"]
    if workers:
        cmd += ["--workers", str(workers)]
    shutil.rmtree(out, ignore_errors=True)
    env = None
    if checkout is not None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(checkout)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    seconds = _wall(cmd, env)
    doc = json.loads((out / "metrics.json").read_text())
    return seconds, {name: d["per_image"] for name, d in doc.items()}


class ReferenceScorer:
    """The reference the golden values come from: CDDFuse's utils/Evaluator.py (read from a checkout), with
    skimage's structural_similarity(data_range=255) and pytorch_msssim's ms_ssim(data_range=255)."""

    def __init__(self, repo: Path) -> None:
        path = repo / "utils" / "Evaluator.py"
        if not path.is_file():
            sys.exit(f"{path} not found: --reference-repo must be a checkout of Zhaozixiang1228/MMIF-CDDFuse")
        spec = importlib.util.spec_from_file_location("cddfuse_evaluator", path)
        self.module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.module)
        import pytorch_msssim
        import torch
        from skimage.metrics import structural_similarity

        self.ssim, self.ms_ssim, self.torch = structural_similarity, pytorch_msssim.ms_ssim, torch

    def score(self, ir: Path, vis: Path, fused: Path) -> dict[str, float]:
        read, ev = self.module.image_read_cv2, self.module.Evaluator
        a, b, f = read(str(ir), "GRAY"), read(str(vis), "GRAY"), read(str(fused), "GRAY")
        out = {
            "EN": ev.EN(f), "SF": ev.SF(f), "AG": ev.AG(f), "SD": ev.SD(f), "CC": ev.CC(f, a, b), "SCD": ev.SCD(f, a, b),
            "MI": ev.MI(f, a, b), "VIF": ev.VIFF(f, a, b), "Qabf": ev.Qabf(f, a, b),
            "SSIM": self.ssim(f, a, data_range=255) + self.ssim(f, b, data_range=255),
        }
        if min(f.shape) > 160:
            t = lambda x: self.torch.from_numpy(x)[None, None]  # noqa: E731
            out["MS-SSIM"] = float(self.ms_ssim(t(f), t(a), data_range=255) + self.ms_ssim(t(f), t(b), data_range=255))
        return {k: float(v) for k, v in out.items()}


def time_reference(data: Path, methods: dict[str, Path], repo: Path, count: int) -> tuple[float, int, float]:
    """Seconds per triplet of the reference scorer on `count` triplets (each pair once, methods in turn),
    reading included, and the largest relative difference from our golden values."""
    from fusedet.datasets import list_images

    scorer = ReferenceScorer(repo)
    golden = _golden_cddfuse(data)
    stems = list(list_images(data / "tno" / "ir"))
    names = list(methods)
    plan = [(stems[i % len(stems)], names[(i + i // len(stems)) % len(names)]) for i in range(count)]
    ir_files, vis_files = list_images(data / "tno" / "ir"), list_images(data / "tno" / "vi")
    worst, start = 0.0, time.perf_counter()
    for stem, name in plan:
        values = scorer.score(ir_files[stem], vis_files[stem], list_images(methods[name])[stem])
        worst = max(worst, _worst_error({name: {stem: values}}, golden)[0])
    return (time.perf_counter() - start) / len(plan), len(plan), worst


def end_to_end(args, data: Path) -> None:
    methods = _methods(data, "all")
    convention = args.convention
    triplets = 25 * len(methods)
    imports = import_seconds()
    baseline = Path(args.baseline).resolve() if args.baseline else None
    with tempfile.TemporaryDirectory() as tmp:
        runs, baseline_runs = [], []
        for _ in range(args.repeats):
            seconds, per_image = time_cli(data, methods, convention, args.workers, Path(tmp) / "out")
            runs.append(seconds)
            if baseline is not None:  # alternating with this checkout, so that both see the same machine
                baseline_runs.append(time_cli(data, methods, convention, args.workers, Path(tmp) / "base", baseline)[0])
        golden = _golden_vifb(data) if convention == "vifb" else _golden_cddfuse(data)
        worst, checked = _worst_error(per_image, golden)
    ours = (min(runs) - imports) / triplets
    print(f"fusedet metrics --convention {convention}: {triplets} triplets, wall {min(runs):.2f} s (best of {len(runs)}: "
          f"{', '.join(f'{r:.2f}' for r in runs)}), imports {imports:.2f} s -> {ours * 1e3:.1f} ms per triplet; "
          f"{checked} values against the golden ones, worst rel. err {worst:.1e}")
    if baseline is not None:
        ratios = [(a - imports) / (b - imports) for a, b in zip(runs, baseline_runs, strict=True)]
        print(f"baseline {baseline}: wall {', '.join(f'{r:.2f}' for r in baseline_runs)} s; this checkout / baseline "
              f"(imports subtracted), per repeat: {', '.join(f'{r:.2f}' for r in ratios)}, median {statistics.median(ratios):.2f}")
    if convention == "vifb":
        verdict = "ok" if ours <= VIFB_TARGET_S and worst <= 1e-3 else "MISSED"
        print(f"goal <= {VIFB_TARGET_S} s per triplet: {ours:.3f} s  {verdict}")
        return
    if args.reference_repo:
        ref, n, ref_worst = time_reference(data, methods, Path(args.reference_repo), args.reference_triplets)
        source = f"measured now on {n} of the triplets (largest difference from the golden values {ref_worst:.1e})"
        again, _ = time_cli(data, methods, convention, args.workers, Path(tempfile.mkdtemp()) / "out")
        ours = (min(min(runs), again) - imports) / triplets
        print(f"fusedet again after the reference: wall {again:.2f} s; best per triplet {ours * 1e3:.1f} ms")
    else:
        timing = json.loads((data / "golden_fused" / "reference_timing.json").read_text())
        ref, source = float(timing["seconds_per_triplet_mean"]), "STORED (reference_timing.json), not side by side: pass --reference-repo"
    verdict = "ok" if ref / ours >= END_TO_END_TARGET and worst <= 1e-3 else "MISSED"
    print(f"reference scorer: {ref:.3f} s per triplet, {source}")
    print(f"speed-up {ref / ours:.0f}x (goal >= {END_TO_END_TARGET:.0f}x)  {verdict}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="shared/data folder (default: ../shared/data or $FUSEDET_SHARED/data)")
    parser.add_argument("--devices", default="auto", help="library mode: cpu, cuda, or auto (cpu, plus cuda when present)")
    parser.add_argument("--workers", type=int, default=None, help="pairs scored at a time (default: as fusedet metrics)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (library mode: after one warm-up)")
    parser.add_argument("--end-to-end", action="store_true", help="time the fusedet metrics command against the reference scorer")
    parser.add_argument("--convention", default="cddfuse", choices=("cddfuse", "vifb"), help="vifb: time all 13 VIFB metrics end to end")
    parser.add_argument("--reference-repo", default=os.environ.get("CDDFUSE_REPO"), help="a checkout of MMIF-CDDFuse (or $CDDFUSE_REPO)")
    parser.add_argument("--baseline", default=None, help="--end-to-end: another fusedet checkout, run alternately with this one")
    parser.add_argument("--reference-triplets", type=int, default=25, help="triplets the reference scores (default 25: each pair once)")
    args = parser.parse_args(argv)
    data = _shared(args.data)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"this machine: {cores} usable CPU cores, load average {os.getloadavg()[0]:.1f}")
    if args.end_to_end or args.convention == "vifb":
        end_to_end(args, data)
        return

    import torch

    timing = json.loads((data / "golden_fused" / "reference_timing.json").read_text())
    reference = float(timing["seconds_per_triplet_mean"])
    devices = ["cpu", "cuda"] if args.devices == "auto" else args.devices.split(",")
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    print(f"stored reference: {reference:.3f} s/triplet on a {timing.get('cpus', '?')}-core machine; target <= {reference / SPEEDUP_TARGET:.4f} s")
    print(f"{'device':<8}{'s/triplet best':>15}{'median':>10}{'cpu-s/trip':>12}{'speedup':>9}{'max rel err':>13}")
    for device in devices:
        label = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
        r = bench_library(data, device, args.workers, args.repeats)
        verdict = "ok" if reference / r["best"] >= SPEEDUP_TARGET and r["worst"] <= 1e-3 else "MISSED"
        speedup = reference / r["best"]
        print(f"{device:<8}{r['best']:>15.4f}{r['median']:>10.4f}{r['cpu']:>12.4f}{speedup:>8.1f}x{r['worst']:>13.1e}  {verdict}  [{label}]")


if __name__ == "__main__":
    main()
