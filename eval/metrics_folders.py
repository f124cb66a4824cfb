"""Fusion metrics over folders: IR/VIS pair folders plus one folder of fused images per method.

What ``fusedet metrics`` runs, usable from Python too::

    plan = plan_folders("tno/ir", "tno/vi", {"mean": "out/mean", "DMNet": "out/dmnet"})
    result = score_folders(plan)          # MetricsResult
    result.to_json()                      # {"mean": {"mean": {...}, "per_image": {"01": {...}}}, ...}

Everything that can be checked without decoding pixels is checked by :func:`plan_folders` before any
work starts: folders, stems, partners, missing fused stems, and image sizes from the file headers (equal
within a pair, large enough for the metrics asked for). Each pair is read once, its source statistics
are computed once, and all methods' fused images of that pair are scored in one batch
(:class:`fusedet.eval.fusion_metrics.PairScorer`). Pairs run on a few worker threads
(one torch thread each: better use of 2 cores than one pair with two threads). With a journal file, each
finished pair is appended to it, and a rerun skips the pairs whose files have not changed.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from fusedet.datasets import PairFolder, list_images, read_image
from fusedet.datasets.headers import image_size, pair_size
from fusedet.errors import InputError
from fusedet.eval.fusion_metrics import MetricWarning, PairScorer, bt601_gray, check_size, device_for, parse_metric_names


def load_gray(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as the metrics' convention wants it: H x W float32 integer gray levels 0..255.

    8-bit files give their levels exactly. Colour files (RGB; alpha dropped) become OpenCV's float32
    BT.601 gray ``0.299 R + 0.587 G + 0.114 B`` rounded to integers, as the reference does after
    ``cv2.imread``. 16-bit files are first brought to 8-bit levels by rounding ``v * 255 / 65535``
    (OpenCV's ``imread``, which the reference used, truncates PNGs to ``v >> 8`` instead: the two differ by
    at most one level). Unreadable files raise InputError naming the file.
    """
    levels = read_image(path) * np.float32(255.0)
    np.rint(levels, out=levels)
    return bt601_gray(levels) if levels.ndim == 3 else levels


@dataclass
class FusedFolder:
    """One method's fused images: name (the table row), folder, and stem -> file for every pair."""

    name: str
    folder: Path
    files: dict[str, Path]


@dataclass
class FolderPlan:
    """Checked inputs of a metrics run: pairs (by stem), fused folders and the metric names."""

    pairs: PairFolder
    fused: list[FusedFolder]
    metrics: tuple[str, ...]

    @property
    def stems(self) -> list[str]:
        return self.pairs.stems

    def files(self, stem: str) -> list[Path]:
        """IR, VIS, then each method's fused file of `stem`."""
        return [self.pairs.ir_files[stem], self.pairs.vis_files[stem], *(f.files[stem] for f in self.fused)]


def plan_folders(
    ir_dir: str | os.PathLike,
    vis_dir: str | os.PathLike,
    fused: Mapping[str, str | os.PathLike] | Iterable[tuple[str, str | os.PathLike]],
    metrics: str | Iterable[str] | None = None,
) -> FolderPlan:
    """Check the folders and match files by stem; raises InputError naming whatever is wrong.

    Fused folders may hold extra images (ignored); a fused folder missing some pair stems is an error
    that lists them. Sizes are compared from the file headers (a file without a readable header is an
    error here, before any work starts).
    """
    metric_names = parse_metric_names(metrics)
    items = list(fused.items()) if isinstance(fused, Mapping) else list(fused)
    if not items:
        raise InputError("no fused folder given (NAME=DIR)")
    names = [name for name, _ in items]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"duplicate method name(s): {', '.join(duplicates)}; give each fused folder its own NAME")
    pairs = PairFolder(ir_dir, vis_dir)
    folders = []
    for name, folder in items:
        folder = Path(folder)
        files = list_images(folder)
        missing = [s for s in pairs.stems if s not in files]
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise InputError(
                f"fused folder {folder} ({name}) has no image for {len(missing)} of {len(pairs.stems)} pairs: "
                f"missing stems {shown} (expected e.g. {folder / (missing[0] + '.png')})"
            )
        folders.append(FusedFolder(name, folder, {s: files[s] for s in pairs.stems}))
    plan = FolderPlan(pairs, folders, metric_names)
    _check_header_sizes(plan)
    return plan


def _check_header_sizes(plan: FolderPlan) -> None:
    """Same size for IR, VIS and every fused image of a pair, large enough for the metrics asked for,
    from the file headers (no decoding)."""
    for stem in plan.stems:
        ir, vis, *fused = plan.files(stem)
        size = pair_size(stem, ir, vis)
        check_size(*size, plan.metrics, f"pair {stem!r} ({ir})")
        for path in fused:
            got = image_size(path)
            if got != size:
                raise InputError(f"{path} is {got[0]}x{got[1]} but its pair {ir} is {size[0]}x{size[1]} (W x H)")


@dataclass
class MetricsResult:
    """Per-image values {method: {stem: {metric: value}}}, NaN where a metric is undefined."""

    metrics: tuple[str, ...]
    per_image: dict[str, dict[str, dict[str, float]]]

    def means(self) -> dict[str, dict[str, float]]:
        """Mean over images per method and metric; NaN values (MS-SSIM of small images) are left out."""
        out = {}
        for name, images in self.per_image.items():
            row = {}
            for m in self.metrics:
                values = [v[m] for v in images.values() if not math.isnan(v[m])]
                row[m] = sum(values) / len(values) if values else math.nan
            out[name] = row
        return out

    def undefined(self) -> dict[str, dict[str, list[str]]]:
        """{method: {metric: [stems where the value is NaN]}} for the metrics that have any."""
        out: dict[str, dict[str, list[str]]] = {}
        for name, images in self.per_image.items():
            for m in self.metrics:
                stems = [s for s, v in images.items() if math.isnan(v[m])]
                if stems:
                    out.setdefault(name, {})[m] = stems
        return out

    def to_json(self) -> dict:
        """The golden-file shape; NaN becomes null (JSON has no NaN)."""
        means = self.means()
        clean = lambda d: {m: (None if math.isnan(d[m]) else d[m]) for m in self.metrics}  # noqa: E731
        return {
            name: {"mean": clean(means[name]), "per_image": {s: clean(v) for s, v in images.items()}}
            for name, images in self.per_image.items()
        }


def _signature(paths: Iterable[Path]) -> list:
    out = []
    for p in paths:
        st = p.stat()
        out.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
    return out


class _Journal:
    """Append-only JSON-lines record of finished pairs, so an interrupted run resumes where it stopped."""

    def __init__(self, path: Path, plan: FolderPlan) -> None:
        self.path, self.plan = path, plan
        self.done: dict[str, list[dict[str, float]]] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    stem = entry["stem"]
                    if stem in plan.pairs.ir_files and entry["key"] == self._key(stem):
                        self.done[stem] = entry["values"]
                except (ValueError, KeyError, TypeError, OSError):
                    continue  # a torn last line or an entry for other inputs: recompute

    def _key(self, stem: str) -> list:
        return [list(self.plan.metrics), [f.name for f in self.plan.fused], _signature(self.plan.files(stem))]

    def add(self, stem: str, values: list[dict[str, float]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"stem": stem, "key": self._key(stem), "values": values}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


@contextmanager
def _threads_per_op(n: int | None):
    """Run torch and OpenCV ops with `n` threads each (None: leave as is), restored afterwards."""
    if n is None:
        yield
        return
    before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(n)
    cv2.setNumThreads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


def _score_stem(plan: FolderPlan, stem: str, device: torch.device) -> list[dict[str, float]]:
    ir, vis, *fused = plan.files(stem)
    a, b = load_gray(ir), load_gray(vis)
    if a.shape != b.shape:
        raise InputError(f"pair {stem!r} has different sizes: {ir} is {a.shape[1]}x{a.shape[0]}, {vis} is {b.shape[1]}x{b.shape[0]} (W x H)")
    images = []
    for path in fused:
        f = load_gray(path)
        if f.shape != a.shape:
            raise InputError(f"{path} is {f.shape[1]}x{f.shape[0]} but its pair {ir} is {a.shape[1]}x{a.shape[0]} (W x H)")
        images.append(f)
    return PairScorer(a, b, metrics=plan.metrics, device=device, name=stem).score(images)


def score_folders(
    plan: FolderPlan,
    device: str | torch.device | None = None,
    workers: int | None = None,
    journal: str | os.PathLike | None = None,
    on_pair: Callable[[str, bool], None] | None = None,
) -> MetricsResult:
    """Score every method's fused image of every pair of `plan`.

    `workers` pairs are scored at a time (default: the CPU count, at most 4), each with one torch thread.
    `journal`: a JSON-lines file of finished pairs, read first to skip them and appended after each.
    `on_pair(stem, resumed)` is called after each pair (for progress bars). The first error stops the run.
    """
    dev = device_for(device)
    workers = max(1, workers or min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
    log = _Journal(Path(journal), plan) if journal is not None else None
    results: dict[str, list[dict[str, float]]] = {}
    todo = []
    for stem in plan.stems:
        if log is not None and stem in log.done:
            results[stem] = log.done[stem]
            if on_pair:
                on_pair(stem, True)
        else:
            todo.append(stem)

    with warnings.catch_warnings(), _threads_per_op(1 if workers > 1 else None):
        warnings.simplefilter("ignore", MetricWarning)  # NaN values; MetricsResult.undefined() lists them
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="metrics") as pool:
            pending: dict[Future, str] = {}
            queue = iter(todo)
            try:
                while True:
                    while len(pending) < 2 * workers:  # a bounded number of pairs in memory
                        stem = next(queue, None)
                        if stem is None:
                            break
                        pending[pool.submit(_score_stem, plan, stem, dev)] = stem
                    if not pending:
                        break
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        stem = pending.pop(future)
                        values = future.result()
                        results[stem] = values
                        if log is not None:
                            log.add(stem, values)
                        if on_pair:
                            on_pair(stem, False)
            except BaseException:
                for future in pending:
                    future.cancel()
                raise

    per_image = {
        f.name: {stem: results[stem][i] for stem in plan.stems} for i, f in enumerate(plan.fused)
    }
    return MetricsResult(plan.metrics, per_image)
