"""Sharding under torchrun (fusedet.distributed): the shares, the torchrun environment, collectives
between real processes, and `fusedet evaluate` / `fusedet fuse` / the evaluation engine sharded over
two CPU processes: the same outputs as one process, and an interrupted sharded run that resumes.

The torchrun launches use ``python -m torch.distributed.run`` with this interpreter (so the processes
import this checkout) and one thread each (OMP_NUM_THREADS=1), the single-process runs too.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_pipeline import synthetic_dataset

from fusedet import distributed, runtime
from fusedet.errors import InputError
from fusedet.evaluation import Evaluation
from fusedet.settings import ReportSettings, RunSettings
from fusedet.sources import FusedSource, parse_sources

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
CLI = ROOT / "cli.py"


def _env(cache: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", COLUMNS="200")
    if cache is not None:
        env["FUSEDET_CACHE"] = str(cache)
    return env


def _torchrun(*args, env: dict[str, str], cwd: Path = TESTS) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *map(str, args)]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def _single(*args, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLI), *map(str, args)], env=env, cwd=TESTS, capture_output=True, text=True, timeout=600)


# --- shares and the environment -------------------------------------------------------------------


@pytest.mark.parametrize("count,size,block", [(10, 2, 2), (7, 3, 1), (7, 2, 4), (2, 4, 1), (0, 2, 3), (13, 4, 3)])
def test_shares_cover_the_list_in_order_in_whole_blocks(count, size, block):
    items = list(range(count))
    world = [distributed.World(size, rank) for rank in range(size)]
    shares = [w.shard(items, block) for w in world]
    assert [x for share in shares for x in share] == items  # in rank order they are the list
    blocks = [-(-len(s) // block) for s in shares]
    assert max(blocks) - min(blocks) <= 1 and blocks == sorted(blocks, reverse=True)  # balanced, the first ranks the larger
    for share in shares[:-1]:
        if share and share[-1] != items[-1]:
            assert len(share) % block == 0  # only the last block of the list may be short
    assert distributed.World(size, 0).shard(items, block, rank=size - 1) == shares[-1]


def test_bad_shares_raise():
    for count, size, rank, block in [(4, 0, 0, 1), (4, 2, 2, 1), (4, 2, -1, 1), (4, 2, 0, 0)]:
        with pytest.raises(ValueError):
            distributed.shard_bounds(count, size, rank, block)


def test_one_process_world_is_a_no_op(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    world = distributed.current()
    assert (world.size, world.rank, world.main, world.sharded) == (1, 0, True, False)
    assert world.broadcast({"a": 1}) == {"a": 1} and world.gather(3) == [3] and world.shard("abc") == ["a", "b", "c"]
    world.agree(1, "anything")
    world.barrier()
    assert distributed.is_main_process()


@pytest.mark.parametrize(
    "env,message",
    [
        ({"WORLD_SIZE": "2", "RANK": "1"}, "MASTER_ADDR is not set"),
        ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "localhost"}, "do not fit WORLD_SIZE=2"),
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer"),
    ],
)
def test_bad_torchrun_environment_is_a_clear_error(monkeypatch, env, message):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InputError, match=message):
        distributed.from_env()


def test_a_process_group_is_joined_only_inside_a_session(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "localhost")
    assert not distributed.is_main_process()
    assert not runtime.active()
    with pytest.raises(RuntimeError, match="inside a fusedet.runtime.session"):
        distributed.current()


def test_sharded_evaluation_needs_a_shared_output_folder(monkeypatch, tmp_path):
    from fusedet import FusionDetector

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "localhost")
    data = synthetic_dataset(tmp_path / "data", n=2)
    with pytest.raises(InputError, match="needs an output folder"):
        FusionDetector(fuser="mean", weights="demo", device="cpu").evaluate(data)


# --- real processes -------------------------------------------------------------------------------


def _check_collectives(work: Path) -> None:
    results = [json.loads((work / f"collectives-{rank}.json").read_text()) for rank in (0, 1)]
    for rank, result in enumerate(results):
        assert (result["size"], result["rank"], result["same_object"]) == (2, rank, True)
        assert result["broadcast"] == "from rank 0" and result["gather"] == [0, 10]
        assert result["shard"] == [[0, 1, 2, 3], [4, 5, 6]][rank]
        assert "disagree on the rank (ranks [1] differ from rank 0)" in result["disagree"]
        assert not result["default_group"] and not result["joined_after"]  # left when the session ended


def test_collectives_between_two_processes(tmp_path):
    """Started without torchrun (its store is exercised by the tests below): rank 0 serves the store."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in (1, 0):  # rank 1 first: it waits for rank 0's store
        env = {**_env(), "WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen([sys.executable, "sharded_run.py", "collectives", str(tmp_path)], env=env, cwd=TESTS,
                                      stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    _check_collectives(tmp_path)


def _engine_single(data, out: Path, cache: Path):
    from test_pipeline import CountingMean, ScriptedDetector

    detector = ScriptedDetector(data)
    sources = [*parse_sources("ir,vi"), FusedSource("countmean", CountingMean())]
    run = RunSettings(split="test", cache_dir=cache, workers=1)
    return Evaluation(data, sources, detector, out, run=run, report=ReportSettings(bootstrap=20)).run()


def test_interrupted_sharded_evaluation_resumes_and_equals_one_process(tmp_path):
    data = synthetic_dataset(tmp_path / "data", n=10)  # scripted detector batch 2: shares of 6 and 4 pairs
    (tmp_path / "dataset.pkl").write_bytes(pickle.dumps(data))
    out = tmp_path / "out"

    failed = _torchrun("sharded_run.py", "evaluate-fail", tmp_path, env=_env())
    assert failed.returncode != 0 and "injected failure" in failed.stderr
    assert (out / "detections" / "ir.json").is_file() and (out / "detections" / "vi.json").is_file()  # merged before the failure
    assert not (out / "detections" / "countmean.json").exists()
    assert (out / ".shards" / "countmean" / "0-of-2.json").is_file()  # rank 0's share was finished
    assert len(list((tmp_path / "cache" / "fused").glob("countmean-*/*.png"))) == 8  # rank 0's 6 and rank 1's first batch

    done = _torchrun("sharded_run.py", "evaluate", tmp_path, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"evaluate-{rank}.json").read_text()) for rank in (0, 1)]
    assert ranks[0]["detected"] == {"ir": 0, "vi": 0, "countmean": 0} and ranks[0]["fused"] == 0  # all reused
    assert ranks[1]["detected"] == {"ir": 0, "vi": 0, "countmean": 4} and ranks[1]["fused"] == 2  # 2 fused before the failure
    assert ranks[0]["rows"] == ranks[1]["rows"]  # every rank returns the report
    assert not ranks[0]["joined_after"] and not (out / ".shards").exists()
    run = json.loads((out / "run.json").read_text())
    assert run["processes"] == 2 and run["resumed_sources"] == ["ir", "vi"] and len(run["timings_s_by_rank"]) == 2

    single = _engine_single(data, tmp_path / "single", tmp_path / "single-cache")
    assert single.rows == ranks[0]["rows"]
    for name in ("table.json", "table.csv", "ground_truth.json", "detections/ir.json", "detections/vi.json", "detections/countmean.json"):
        assert (out / name).read_bytes() == (tmp_path / "single" / name).read_bytes(), name


def test_torchrun_evaluate_demo_equals_one_process(tmp_path):
    """`fusedet evaluate` with the demo detector and DMNet-free sources, 2 processes against 1."""
    args = ["evaluate", "--dataset", "demo", "--dataset-option", "n_pairs=10", "--dataset-option", "size=160x128", "--split", "all",
            "--sources", "ir,vi,mean", "--device", "cpu", "--batch", "4", "--bootstrap", "50"]
    env = _env(tmp_path / "machine-cache")
    sharded = _torchrun(CLI, *args, "--out", tmp_path / "two", env=env)
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    assert sharded.stdout.count("AP@0.5 (%) on demo all (10 pairs)") == 1  # only rank 0 prints
    assert "2 processes share the 10 pairs" in " ".join(sharded.stderr.split())
    single = _single(*args, "--out", tmp_path / "one", env=env)
    assert single.returncode == 0, single.stderr[-3000:]
    for name in ("table.json", "table.md", "table_by_size.csv", "ground_truth.json", "detections/ir.json", "detections/vi.json",
                 "detections/mean.json"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    assert json.loads((tmp_path / "two" / "run.json").read_text())["processes"] == 2


def _pairs(root: Path, n: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    (root / "ir").mkdir(parents=True)
    (root / "vis").mkdir()
    for i in range(n):
        shape = (24, 32) if i % 3 else (20, 28)  # two sizes: batches by size
        cv2.imwrite(str(root / "ir" / f"p{i}.png"), rng.integers(0, 256, shape, dtype=np.uint8))
        cv2.imwrite(str(root / "vis" / f"p{i}.png"), rng.integers(0, 256, (*shape, 3), dtype=np.uint8))
    return root / "ir", root / "vis"


def test_torchrun_fuse_shares_the_pairs_and_resumes(tmp_path):
    ir, vis = _pairs(tmp_path, 7)
    env = _env(tmp_path / "machine-cache")
    one = _single("fuse", "--ir", ir, "--vis", vis, "--out", tmp_path / "one", "--fuser", "max", "--batch", "2", env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "p3.png").write_bytes((tmp_path / "one" / "p3.png").read_bytes())  # fused by an earlier run
    two = _torchrun(CLI, "fuse", "--ir", ir, "--vis", vis, "--out", tmp_path / "two", "--fuser", "max", "--batch", "2", env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    assert len(re.findall(r"fused 6 pairs with max into \S+ \(1 already there, skipped\)", " ".join(two.stdout.split()))) == 1  # rank 0
    assert sorted(p.name for p in (tmp_path / "two").glob("*.png")) == [f"p{i}.png" for i in range(7)]
    for i in range(7):
        assert (tmp_path / "two" / f"p{i}.png").read_bytes() == (tmp_path / "one" / f"p{i}.png").read_bytes()


def test_finetune_is_one_process(monkeypatch, tmp_path):
    from fusedet.fine_tuning import finetune

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "localhost")
    data = synthetic_dataset(tmp_path / "data", n=2)
    with pytest.raises(InputError, match="not under torchrun"):
        finetune(data, parse_sources("ir"), tmp_path / "out")
