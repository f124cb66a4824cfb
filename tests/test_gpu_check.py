"""bench/gpu_check.sh: what can be checked without a GPU. It stops at once without CUDA, rejects bad
arguments, finds the largest batch that fits, and its --dry-run (CPU, lite preset, tiny sizes) writes
the JSON with every part's figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import gpu_check  # noqa: E402  (bench/ is not a package)


def _env(**extra) -> dict[str, str]:
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **extra}


def test_without_cuda_it_stops_at_once_and_says_why(tmp_path):
    for command in ([str(BENCH / "gpu_check.sh"), "--out", str(tmp_path / "x.json")],
                    [sys.executable, str(BENCH / "gpu_check.py"), "--out", str(tmp_path / "x.json")]):
        done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert "no CUDA GPU" in done.stderr and "--dry-run" in done.stderr
        assert not (tmp_path / "x.json").exists()


def test_bad_arguments_are_rejected():
    with pytest.raises(SystemExit) as exc:
        gpu_check.parse_args(["--parts", "fuse,speed"])
    assert exc.value.code == 2
    args = gpu_check.parse_args(["--parts", "metrics, fuse", "--dry-run"])
    assert args.parts == ["metrics", "fuse"] and args.dry_run


def test_largest_fitting_batch_doubles_then_bisects():
    calls = []

    def fits_up_to(limit):
        def attempt(batch):
            calls.append(batch)
            return 0.01 if batch <= limit else None
        return attempt

    ok, bound, tried = gpu_check.largest_fitting_batch(fits_up_to(13), 0.01, 64, 1e6)
    assert (ok, bound) == (13, "out of memory") and calls == [2, 4, 8, 16, 12, 14, 13]
    assert tried[16] is None and tried[13] == 0.01
    calls.clear()
    assert gpu_check.largest_fitting_batch(fits_up_to(100), 0.01, 6, 1e6)[:2] == (6, "cap") and calls == [2, 4, 6]
    calls.clear()
    assert gpu_check.largest_fitting_batch(fits_up_to(1), 0.01, 64, 1e6)[:2] == (1, "out of memory") and calls == [2]

    now = [0.0]

    def slow(batch):  # every pass takes 10 s per pair on a fake clock
        now[0] += 10.0 * batch
        return 10.0

    ok, bound, _ = gpu_check.largest_fitting_batch(slow, 10.0, 64, 100.0, clock=lambda: now[0])
    assert (ok, bound) == (4, "time")  # 2 and 4 fit in 100 s; 8 more pairs would not


def test_dry_run_writes_every_part(tmp_path):
    out, work = tmp_path / "dry.json", tmp_path / "work"
    done = subprocess.run([str(BENCH / "gpu_check.sh"), "--dry-run", "--out", str(out), "--work", str(work)], env=_env(),
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    result = json.loads(out.read_text())
    assert result["schema"] == gpu_check.SCHEMA and result["dry_run"] is True and result["errors"] == {}
    assert result["machine"]["device"] == "cpu" and result["settings"]["preset"] == "lite"
    assert result["verdicts"] == {}  # targets are for a real GPU run
    assert set(result["part_seconds"]) == set(gpu_check.PARTS)
    fuse = result["fuse"]
    assert [(r["size"], r["precision"]) for r in fuse] == [("32x32", "fp32"), ("32x32", "bf16"), ("64x48", "fp32"), ("64x48", "bf16")]
    for row in fuse:
        assert row["s_per_pair"] > 0 and row["peak_gb"] is None and row["weights_gb"] > 0
        assert (row["max_fuse_batch"], row["max_fuse_batch_bound"]) == (4, "cap")
        assert set(row["s_per_pair_by_batch"]) == {"1", "2", "4"} and all(v > 0 for v in row["s_per_pair_by_batch"].values())
    train = result["train_step"]
    assert (train["preset"], train["crop"], train["batch"]) == ("lite", 32, 2) and train["stage1_s"] > 0 and train["stage2_s"] > 0
    evaluate = result["evaluate"]
    assert evaluate["pairs"] == 4 and evaluate["size"] == "64x64" and "--dataset-option n_pairs=4" in evaluate["command"]
    assert {"ir: detect", "vi: detect", "lite: fuse", "lite: detect", "evaluation total"} <= set(evaluate["pairs_per_s"])
    assert result["metrics"]["triplets"] == 4 and result["metrics"]["s_per_triplet"] > 0
    # the random checkpoint the evaluate part used is a readable DMNet checkpoint
    from fusedet.dmnet_fuser import DMNetFuser

    fuser = DMNetFuser(work / "dmnet_random.pt")
    assert fuser.checkpoint.preset == "lite" and "random" in fuser.summary["note"]
    assert "fuse lite 64x48 bf16" in done.stdout and "evaluate 4 pairs 64x64" in done.stdout
