"""The fused-image cache: the machine's folder by default, --cache-dir over it, and entries that two
processes write at once (as concurrent runs and the processes of a sharded run do) read back whole."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
from test_pipeline import synthetic_dataset

from fusedet.fused_cache import FusedCache, default_cache_dir
from fusedet.fusers import MeanFuser
from fusedet.settings import RunSettings

ROUNDS = 6


def test_default_cache_is_the_machines_and_cache_dir_overrides_it(monkeypatch, tmp_path):
    monkeypatch.setenv("FUSEDET_CACHE", str(tmp_path / "machine"))
    assert default_cache_dir(RunSettings()) == tmp_path / "machine"
    assert default_cache_dir(RunSettings(cache_dir=tmp_path / "mine")) == tmp_path / "mine"
    monkeypatch.delenv("FUSEDET_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir(RunSettings()) == tmp_path / "home" / ".cache" / "fusedet"


def _image(i: int) -> np.ndarray:
    """A distinct RGB uint8 image per record, large enough that a write takes a while."""
    rng = np.random.default_rng(i)
    return rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)


def _writer(root: str, records: list, start, failures) -> None:
    cache = FusedCache(root, MeanFuser())
    start.wait()
    try:
        for _ in range(ROUNDS):
            for i, record in enumerate(records):
                cache.save(record, _image(i))
                seen = cache.load(records[(i + 1) % len(records)])  # an entry the other process may be writing
                if seen is not None and not np.array_equal(seen, _image((i + 1) % len(records))):
                    failures.put(f"read a wrong or partial entry for {records[(i + 1) % len(records)].stem}")
    except Exception as exc:  # reported to the test, which fails
        failures.put(repr(exc))


@pytest.mark.parametrize("method", ["fork"] if "fork" in mp.get_all_start_methods() else ["spawn"])
def test_two_processes_writing_the_same_entries(tmp_path, method):
    records = synthetic_dataset(tmp_path / "data", n=6).records
    root = tmp_path / "shared-cache"
    ctx = mp.get_context(method)
    start, failures = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_writer, args=(str(root), records, start, failures)) for _ in range(2)]
    for w in workers:
        w.start()
    start.set()
    for w in workers:
        w.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    problems = []
    while not failures.empty():
        problems.append(failures.get())
    assert problems == []
    cache = FusedCache(root, MeanFuser())
    for i, record in enumerate(records):
        np.testing.assert_array_equal(cache.load(record), _image(i))
    files = sorted(p.name for p in cache.dir.iterdir())
    assert files == sorted(["cache_key.txt", *(cache.path(r).name for r in records)])  # no temporary file left
    assert (cache.dir / "cache_key.txt").read_text() == cache.key + "\n"


def test_cache_entries_are_keyed_by_fuser_and_value_ranges(tmp_path):
    record = synthetic_dataset(tmp_path / "data", n=1).records[0]
    plain, ranged = FusedCache(tmp_path, MeanFuser()), FusedCache(tmp_path, MeanFuser(), "minmax,auto")
    assert plain.dir != ranged.dir and plain.dir.parent == ranged.dir.parent == Path(tmp_path) / "fused"
    plain.save(record, _image(0))
    assert ranged.load(record) is None and plain.load(record) is not None
