"""Batches of a source's images, decoded ahead of the compute in reader threads (OpenCV releases
the GIL), with the time spent per stage kept on the stream itself."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

_END = object()


class Finisher(Protocol):
    """Turns a batch of loaded items into images (e.g. fuses the pairs not found in a cache)."""

    def __call__(self, records: list, items: list, seconds: dict[str, float]) -> list[np.ndarray]: ...

    def close(self, seconds: dict[str, float]) -> None: ...


def prefetch(load: Callable[[Any], Any], items: Sequence, workers: int, depth: int) -> Iterator:
    """load(item) for each item, in order, computed up to `depth` items ahead in `workers` threads
    (in this thread when `workers` is 0)."""
    if workers <= 0:
        yield from map(load, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fusedet-read") as pool:
        pending: deque[Future] = deque()
        queue = iter(items)
        for item in queue:
            pending.append(pool.submit(load, item))
            if len(pending) >= depth:
                break
        while pending:
            result = pending.popleft().result()
            nxt = next(queue, _END)
            if nxt is not _END:
                pending.append(pool.submit(load, nxt))
            yield result


class ImageStream:
    """Iterates ``(records, images)`` batches of at most `batch` records.

    `load(record)` is run ahead in `workers` threads (its time summed under ``seconds["read"]``,
    overlapping the compute); `finisher`, when given, turns each batch of loaded items into images
    and closes at the end (its own stages, e.g. ``"fuse"``, ``"cache write"``, also go to `seconds`).
    """

    def __init__(
        self,
        records: Sequence,
        load: Callable[[Any], Any],
        *,
        batch: int,
        workers: int,
        finisher: Finisher | None = None,
    ) -> None:
        self.records, self.load, self.finisher = list(records), load, finisher
        self.batch, self.workers = max(1, int(batch)), max(0, int(workers))
        self.seconds: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    def _timed_load(self, record):
        start = time.perf_counter()
        item = self.load(record)
        with self._lock:
            self.seconds["read"] += time.perf_counter() - start
        return item

    def _emit(self, records: list, items: list) -> tuple[list, list]:
        return records, (self.finisher(records, items, self.seconds) if self.finisher is not None else items)

    def __iter__(self) -> Iterator[tuple[list, list[np.ndarray]]]:
        chunk_records: list = []
        chunk_items: list = []
        try:
            for record, item in zip(self.records, prefetch(self._timed_load, self.records, self.workers, 2 * self.batch)):
                chunk_records.append(record)
                chunk_items.append(item)
                if len(chunk_records) == self.batch:
                    yield self._emit(chunk_records, chunk_items)
                    chunk_records, chunk_items = [], []
            if chunk_records:
                yield self._emit(chunk_records, chunk_items)
        finally:
            if self.finisher is not None:
                self.finisher.close(self.seconds)
