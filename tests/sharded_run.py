"""Run under torchrun by tests/test_distributed.py (not a test module itself):

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/sharded_run.py MODE WORKDIR

- ``collectives``: fusedet.distributed's world, broadcast, gather and agree across the processes,
  ultralytics imported by rank 0 alone (it must not wait for the others: torch's default process
  group stays uninitialised), and the world left when the session ends; writes
  WORKDIR/collectives-RANK.json. Also run without torchrun (rank 0 then serves the store).
- ``evaluate`` / ``evaluate-fail``: the evaluation engine on the pickled dataset WORKDIR/dataset.pkl with
  the scripted detector and a counting fuser of tests/test_pipeline.py, output in WORKDIR/out and the
  fused cache in WORKDIR/cache. ``evaluate-fail``: rank 1 fails on its first batch of the fused source
  once rank 0 has finished its share of it (an interrupted sharded run). ``evaluate`` writes what each
  rank computed to WORKDIR/evaluate-RANK.json.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
from pathlib import Path

import torch.distributed as dist
from test_pipeline import CountingMean, ScriptedDetector

from fusedet import distributed, runtime
from fusedet.errors import InputError
from fusedet.evaluation import Evaluation
from fusedet.settings import ReportSettings, RunSettings
from fusedet.sources import FusedSource, parse_sources


def collectives(work: Path) -> None:
    with runtime.session():
        world = distributed.current()
        result = {
            "size": world.size,
            "rank": world.rank,
            "same_object": distributed.current() is world,
            "broadcast": world.broadcast(f"from rank {world.rank}"),
            "gather": world.gather(world.rank * 10),
            "shard": world.shard(list(range(7)), block=2),
        }
        if world.main:
            import ultralytics  # noqa: F401  (it synchronises through dist.barrier when a default group exists)
        result["default_group"] = dist.is_initialized()
        world.agree("same everywhere", "a value")
        try:
            world.agree(world.rank, "the rank")
            result["disagree"] = None
        except InputError as exc:
            result["disagree"] = str(exc)
        world.barrier()
    result["joined_after"] = distributed._world is not None
    (work / f"collectives-{result['rank']}.json").write_text(json.dumps(result))


class FailingDetector(ScriptedDetector):
    """Fails on its first batch once rank 0's share of the fused source is written."""

    def __init__(self, dataset, share: Path):
        super().__init__(dataset)
        self.share = share

    def detect(self, images, classes):
        deadline = time.monotonic() + 120
        while not self.share.is_file() and time.monotonic() < deadline:
            time.sleep(0.1)
        raise RuntimeError("injected failure: rank 1 stops midway")


def evaluate(work: Path, fail: bool) -> None:
    data = pickle.loads((work / "dataset.pkl").read_bytes())
    rank = int(os.environ["RANK"])
    fuser = CountingMean()
    detectors = {"ir": ScriptedDetector(data), "vi": ScriptedDetector(data), "countmean": ScriptedDetector(data)}
    if fail and rank == 1:
        detectors["countmean"] = FailingDetector(data, work / "out" / ".shards" / "countmean" / "0-of-2.json")
    sources = [*parse_sources("ir,vi"), FusedSource("countmean", fuser)]
    run = RunSettings(split="test", cache_dir=work / "cache", workers=1)
    engine = Evaluation(data, sources, detectors, work / "out", run=run, report=ReportSettings(bootstrap=20))
    report = engine.run()
    result = {
        "detected": {name: d.calls for name, d in detectors.items()},
        "fused": fuser.calls,
        "rows": report.rows,
        "joined_after": distributed._world is not None,
    }
    (work / f"evaluate-{rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    mode, workdir = sys.argv[1], Path(sys.argv[2])
    if mode == "collectives":
        collectives(workdir)
    else:
        evaluate(workdir, fail=mode == "evaluate-fail")
