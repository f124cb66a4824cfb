"""Fusion metrics over folders: IR/VIS pair folders plus one folder of fused images per method.

The library call under ``fusedet metrics`` (also ``fusedet.score_folders``)::

    run = score_folders(("tno/ir", "tno/vi"), {"mean": "out/mean", "DMNet": "out/dmnet"},
                        convention="cddfuse,vifb", out="results")
    run.results["vifb"].means()     # {"mean": {"Avg_gradient": ...}, "DMNet": {...}}
    run.result.to_json()            # the first convention's metrics.json document

Everything that can be checked without decoding pixels is checked by :func:`plan_folders` before any work
starts: folders, stems, partners, missing fused stems, metric names, and image sizes from the file headers
(equal within a pair, large enough for the metrics asked for). Then each pair is decoded once for every
method and convention (``fusedet.eval.metrics_io``), its source statistics are computed once per
convention, and all methods' fused images of that pair are scored together. Pairs run on a few worker
threads (the cores shared out among them, largest pairs first), so one pair is decoded while another is
scored. With `out`, each finished pair is appended to a journal there and a rerun skips the pairs whose
files have not changed; the output files are written atomically at the end.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fusedet import runtime
from fusedet.datasets import PairFolder, list_images
from fusedet.datasets.atomic import append_text, check_output_folder, write_text_atomic
from fusedet.datasets.headers import image_size, pair_size
from fusedet.errors import InputError
from fusedet.eval.metric_conventions import Convention, parse_conventions, select_metrics
from fusedet.eval.metrics_io import FLAT_SPAN, LevelImage, cddfuse_gray, cddfuse_levels, nearly_flat, read_levels, vifb_array
from fusedet.events import Events, as_events

# how each convention sees a decoded file's uint8 levels: cddfuse an H x W BT.601 gray image, vifb
# the levels as they are (H x W, or H x W x 3 RGB)
VIEWS = {"cddfuse": cddfuse_levels, "vifb": vifb_array}
JOURNAL_NAME = ".metrics_journal.jsonl"
STAGE = "scoring pairs"
HEAP_STEP = 256 * 2**20  # bytes; see fusedet.runtime.keep_freed_memory
PathLike = str | os.PathLike


def load_gray(path: PathLike) -> np.ndarray:
    """Read an image file as the cddfuse convention wants it: H x W float32 integer gray levels 0..255.

    8-bit files give their levels exactly. Colour files (RGB; alpha dropped) become OpenCV's float32
    BT.601 gray ``0.299 R + 0.587 G + 0.114 B`` rounded to integers, as the reference does after
    ``cv2.imread``. 16-bit files are first brought to 8-bit levels by rounding ``v * 255 / 65535``
    (OpenCV's ``imread``, which the reference used, truncates PNGs to ``v >> 8`` instead: the two differ by
    at most one level). Unreadable files raise InputError naming the file.
    """
    return cddfuse_gray(read_levels(path).levels)


@dataclass
class FusedFolder:
    """One method's fused images: name (the table row), folder, and stem -> file for every pair."""

    name: str
    folder: Path
    files: dict[str, Path]


@dataclass
class FolderPlan:
    """Checked inputs of a metrics run: pairs (by stem), fused folders, conventions and, per convention,
    the metric names to compute."""

    pairs: PairFolder
    fused: list[FusedFolder]
    conventions: tuple[Convention, ...]
    metrics: dict[str, tuple[str, ...]]

    @property
    def stems(self) -> list[str]:
        return self.pairs.stems

    def files(self, stem: str) -> list[Path]:
        """IR, VIS, then each method's fused file of `stem`."""
        return [self.pairs.ir_files[stem], self.pairs.vis_files[stem], *(f.files[stem] for f in self.fused)]


def _pair_folder(pairs: PairFolder | tuple[PathLike, PathLike]) -> PairFolder:
    if isinstance(pairs, PairFolder):
        return pairs
    try:
        ir_dir, vis_dir = pairs
    except (TypeError, ValueError):
        raise InputError(f"pairs must be (ir_dir, vis_dir) or a PairFolder, got {pairs!r}") from None
    return PairFolder(ir_dir, vis_dir)


def plan_folders(
    pairs: PairFolder | tuple[PathLike, PathLike],
    fused: Mapping[str, PathLike] | Iterable[tuple[str, PathLike]],
    metrics: str | Iterable[str] | None = None,
    convention: str | Iterable[str] = "cddfuse",
) -> FolderPlan:
    """Check the folders, metric names and sizes, and match files by stem; raises InputError naming whatever
    is wrong.

    `pairs`: (ir_dir, vis_dir) or a PairFolder. `fused`: {name: folder} or (name, folder) pairs; a fused
    folder may hold extra images (ignored), but one missing some pair stems is an error that lists them.
    `metrics`: names under any of the conventions (None: all). `convention`: "cddfuse", "vifb" or both
    ("cddfuse,vifb" or a list). Sizes are compared from the file headers (a file without a readable header
    is an error here, before any work starts).
    """
    conventions = parse_conventions(convention)
    metric_names = select_metrics(conventions, metrics)
    if isinstance(fused, Mapping):
        items = list(fused.items())
    elif isinstance(fused, (str, os.PathLike)):
        raise InputError(f"fused must be {{name: folder}} (or (name, folder) pairs), got the path {str(fused)!r}")
    else:
        items = list(fused)
        if not all(isinstance(item, tuple | list) and len(item) == 2 for item in items):
            raise InputError(f"fused must be {{name: folder}} (or (name, folder) pairs), got {fused!r}")
    if not items:
        raise InputError("no fused folder given (NAME=DIR)")
    names = [name for name, _ in items]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"duplicate method name(s): {', '.join(duplicates)}; give each fused folder its own NAME")
    pair_folder = _pair_folder(pairs)
    folders = []
    for name, folder in items:
        folder = Path(folder)
        files = list_images(folder)
        missing = [s for s in pair_folder.stems if s not in files]
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise InputError(
                f"fused folder {folder} ({name}) has no image for {len(missing)} of {len(pair_folder.stems)} pairs: "
                f"missing stems {shown} (expected e.g. {folder / (missing[0] + '.png')})"
            )
        folders.append(FusedFolder(name, folder, {s: files[s] for s in pair_folder.stems}))
    plan = FolderPlan(pair_folder, folders, conventions, metric_names)
    _check_header_sizes(plan)
    return plan


def _check_header_sizes(plan: FolderPlan) -> None:
    """Same size for IR, VIS and every fused image of a pair, large enough for the metrics asked for,
    from the file headers (no decoding)."""
    for stem in plan.stems:
        ir, vis, *fused = plan.files(stem)
        size = pair_size(stem, ir, vis)
        for conv in plan.conventions:
            conv.check_size(*size, plan.metrics[conv.name], f"pair {stem!r} ({ir})")
        for path in fused:
            got = image_size(path)
            if got != size:
                raise InputError(f"{path} is {got[0]}x{got[1]} but its pair {ir} is {size[0]}x{size[1]} (W x H)")


@dataclass
class MetricsResult:
    """One convention's per-image values {method: {stem: {metric: value}}}, NaN where a metric is undefined."""

    convention: str
    metrics: tuple[str, ...]
    per_image: dict[str, dict[str, dict[str, float]]]

    def means(self) -> dict[str, dict[str, float]]:
        """Mean over images per method and metric; undefined (NaN) values are left out of the mean."""
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

    def notes(self) -> list[str]:
        """One line per method and metric that is undefined for some images, naming them."""
        lines = []
        total = len(next(iter(self.per_image.values()), {}))
        for name, metrics in self.undefined().items():
            for metric, stems in metrics.items():
                shown = ", ".join(stems[:8]) + (" ..." if len(stems) > 8 else "")
                lines.append(
                    f"{name}: {metric} is undefined for {len(stems)} of {total} images ({shown}); "
                    f"its mean is over the other {total - len(stems)} (null in metrics.json; {self.convention} convention)"
                )
        return lines

    def to_json(self) -> dict:
        """``{"NAME": {"convention": ..., "mean": {...}, "per_image": {"STEM": {METRIC: value}}}}``; NaN -> null."""
        means = self.means()
        clean = lambda d: {m: (None if math.isnan(d[m]) else d[m]) for m in self.metrics}  # noqa: E731
        return {
            name: {"convention": self.convention, "mean": clean(means[name]), "per_image": {s: clean(v) for s, v in images.items()}}
            for name, images in self.per_image.items()
        }

    def table(self, title: str = ""):
        """The means as a ``fusedet.tables.ResultTable`` in the convention's column order (best bold)."""
        from fusedet.eval.metric_conventions import get_convention
        from fusedet.tables import ResultTable

        conv = get_convention(self.convention)
        columns = [m for m in conv.table_order if m in self.metrics]
        return ResultTable(columns=columns, rows=self.means(), title=title, digits=4, lower_is_better=set(conv.lower_is_better))


@dataclass
class MetricsRun:
    """What :func:`score_folders` returns: one MetricsResult per convention (in the order asked for), the
    difference report when both conventions ran, notes (undefined values, nearly flat inputs), the pairs
    taken from the journal, and the files written."""

    results: dict[str, MetricsResult]
    pairs: int
    resumed: int = 0
    notes: list[str] = field(default_factory=list)
    differences: dict | None = None
    paths: list[Path] = field(default_factory=list)

    @property
    def result(self) -> MetricsResult:
        """The first convention's result (the only one when a single convention ran)."""
        return next(iter(self.results.values()))


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
        self.done: dict[str, dict[str, list[dict[str, float]]]] = {}
        self._head = [[c.name, list(plan.metrics[c.name])] for c in plan.conventions] + [[f.name for f in plan.fused]]
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    stem = entry["stem"]
                    if stem in plan.pairs.ir_files and entry["key"] == self._key(stem):
                        values = entry["values"]
                        self.done[stem] = {c: [{m: (math.nan if v is None else v) for m, v in d.items()} for d in values[c]] for c in values}
                except (ValueError, KeyError, TypeError, AttributeError, OSError):
                    continue  # a torn last line or an entry for other inputs: recompute

    def _key(self, stem: str) -> list:
        return [self._head, _signature(self.plan.files(stem))]

    def add(self, stem: str, values: dict[str, list[dict[str, float]]]) -> None:
        clean = {c: [{m: (None if math.isnan(v) else v) for m, v in d.items()} for d in rows] for c, rows in values.items()}
        # a torn last line is skipped on resume; a failed write is one WriteError naming the journal
        append_text(self.path, json.dumps({"stem": stem, "key": self._key(stem), "values": clean}) + "\n")


@contextmanager
def _threads_per_op(n: int | None):
    """Run torch and OpenCV ops with `n` threads each (None: leave as is), restored afterwards."""
    if n is None:
        yield
        return
    import cv2
    import torch

    before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(n)
    cv2.setNumThreads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


def _decode_pair(plan: FolderPlan, stem: str) -> list[LevelImage]:
    """IR, VIS and every fused image of `stem`, decoded once; InputError names a size mismatch."""
    ir_path, vis_path, *fused_paths = plan.files(stem)
    images = [read_levels(ir_path), read_levels(vis_path)]
    if images[0].levels.shape[:2] != images[1].levels.shape[:2]:
        (w1, h1), (w2, h2) = images[0].size, images[1].size
        raise InputError(f"pair {stem!r} has different sizes: {ir_path} is {w1}x{h1}, {vis_path} is {w2}x{h2} (W x H)")
    for path in fused_paths:
        image = read_levels(path)
        if image.levels.shape[:2] != images[0].levels.shape[:2]:
            (w1, h1), (w2, h2) = image.size, images[0].size
            raise InputError(f"{path} is {w1}x{h1} but its pair {ir_path} is {w2}x{h2} (W x H)")
        images.append(image)
    return images


def _score_pair(plan: FolderPlan, stem: str, device) -> tuple[dict[str, list[dict[str, float]]], list[Path]]:
    """Every convention's values for every method's fused image of `stem`, and the nearly flat inputs."""
    import warnings

    from fusedet.eval.fusion_metrics import MetricWarning, pair_scorer

    images = _decode_pair(plan, stem)
    flat = [img.path for img in images if nearly_flat(img)]
    values = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)  # NaN values; MetricsResult.notes() lists them
        for conv in plan.conventions:
            ir, vis, *fused = (VIEWS[conv.name](img.levels) for img in images)
            scorer = pair_scorer(conv.name, ir, vis, metrics=plan.metrics[conv.name], device=device, name=stem)
            values[conv.name] = scorer.score(fused)
    return values, flat


def _load_kernels() -> None:
    """Score a small synthetic pair, so that the compiled metric kernels are read from numba's cache (about
    0.1 s for all of them) while the worker threads decode the first pairs, not after."""
    from fusedet.eval.fusion_metrics import MSSSIM_MIN_SIDE, PairScorer

    rng = np.random.default_rng(0)
    ir, vis, fused = (rng.integers(0, 256, (MSSSIM_MIN_SIDE, MSSSIM_MIN_SIDE)).astype(np.float32) for _ in range(3))
    PairScorer(ir, vis, device="cpu").score([fused])


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _default_workers() -> int:
    return min(4, _cores())


def score_plan(
    plan: FolderPlan,
    *,
    device=None,
    workers: int | None = None,
    out: PathLike | None = None,
    events: Events | None = None,
) -> MetricsRun:
    """Score a checked plan (see :func:`score_folders`, which plans and then calls this)."""
    from fusedet.devices import resolve_device

    events = as_events(events)
    dev = resolve_device(device)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InputError(f"workers must be a whole number >= 1 (or None: the default), got {workers!r}")
    workers = workers or _default_workers()
    out = Path(out) if out is not None else None
    check_output_folder(out, "out")
    journal = _Journal(out / JOURNAL_NAME, plan) if out is not None else None
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    flat: dict[Path, None] = {}
    events.start(STAGE, total=len(plan.stems))
    todo = []
    for stem in plan.stems:
        if journal is not None and stem in journal.done:
            results[stem] = journal.done[stem]
            events.advance(STAGE, 1, f"{stem} (resumed)")
        else:
            todo.append(stem)
    resumed = len(plan.stems) - len(todo)
    if resumed:
        events.note(f"resumed {resumed} of {len(plan.stems)} pairs from {journal.path}")

    # the largest pairs first, so that no big pair is left running alone at the end
    todo.sort(key=lambda stem: -math.prod(image_size(plan.pairs.ir_files[stem])))
    if dev.type == "cpu" and todo:
        # every pair allocates the same few dozen full-size maps: reused, they are not page-faulted in afresh
        runtime.keep_freed_memory(heap_step=HEAP_STEP)
    with _threads_per_op(max(1, _cores() // workers) if dev.type == "cpu" else None):
        if dev.type == "cpu" and todo and "cddfuse" in {c.name for c in plan.conventions}:
            threading.Thread(target=_load_kernels, name="metrics-kernels", daemon=True).start()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="metrics") as pool:
            pending: dict[Future, str] = {}
            order: dict[Future, int] = {}
            queue = iter(todo)
            try:
                while True:
                    while len(pending) < 2 * workers:  # a bounded number of pairs in memory
                        stem = next(queue, None)
                        if stem is None:
                            break
                        future = pool.submit(_score_pair, plan, stem, dev)
                        pending[future] = stem
                        order[future] = len(order)
                    if not pending:
                        break
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    errors = []
                    for future in sorted(finished, key=order.__getitem__):  # every finished pair is kept before an error stops the run
                        stem = pending.pop(future)
                        if future.exception() is not None:
                            errors.append(future.exception())
                            continue
                        values, flat_paths = future.result()
                        results[stem] = values
                        flat.update(dict.fromkeys(flat_paths))
                        if journal is not None:
                            journal.add(stem, values)
                        events.advance(STAGE, 1, stem)
                    if errors:
                        raise errors[0]
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
    events.finish(STAGE)

    per_conv = {
        c.name: MetricsResult(
            c.name, plan.metrics[c.name], {f.name: {stem: results[stem][c.name][i] for stem in plan.stems} for i, f in enumerate(plan.fused)}
        )
        for c in plan.conventions
    }
    notes = [line for r in per_conv.values() for line in r.notes()]
    if flat:
        names = [str(p) for p in flat]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        notes.append(
            f"{len(names)} input image(s) nearly flat (max - min under 1/{round(1 / FLAT_SPAN)} of the file's range, e.g. 14-bit "
            f"thermal counts in a 16-bit file): {shown}; the metrics read them as their reference does, so they score as nearly flat images"
        )
    for line in notes:
        events.note(line)
    run = MetricsRun(per_conv, len(plan.stems), resumed, notes)
    if {"cddfuse", "vifb"} <= set(per_conv):
        from fusedet.eval.convention_report import convention_differences

        run.differences = convention_differences(per_conv["cddfuse"].means(), per_conv["vifb"].means(), len(plan.stems))
    if out is not None:
        run.paths = write_outputs(run, out, title_suffix=f"mean over {len(plan.stems)} pairs of {plan.pairs.ir_dir}")
        journal.path.unlink(missing_ok=True)
    return run


def write_outputs(run: MetricsRun, out: PathLike, title_suffix: str = "") -> list[Path]:
    """Write each convention's metrics.csv/.md/.tex/.json (into `out`, or `out`/CONVENTION/ when several ran)
    and, with both conventions, conventions.md/.json into `out`; atomically. Returns the paths."""
    from fusedet.eval.convention_report import render_markdown

    out = Path(out)
    paths: list[Path] = []
    several = len(run.results) > 1
    for name, result in run.results.items():
        folder = out / name if several else out
        paths += result.table(metrics_title(name, title_suffix)).write(folder, "metrics")
        paths.append(write_text_atomic(folder / "metrics.json", json.dumps(result.to_json(), indent=2) + "\n"))
    if run.differences is not None:
        paths.append(write_text_atomic(out / "conventions.json", json.dumps(run.differences, indent=2) + "\n"))
        paths.append(write_text_atomic(out / "conventions.md", render_markdown(run.differences)))
    return paths


def metrics_title(convention: str, suffix: str = "") -> str:
    """The table title: ``Fusion metrics (CONVENTION convention), SUFFIX``."""
    return f"Fusion metrics ({convention} convention)" + (f", {suffix}" if suffix else "")


def score_folders(
    pairs: PairFolder | tuple[PathLike, PathLike],
    fused: Mapping[str, PathLike] | Iterable[tuple[str, PathLike]],
    *,
    metrics: str | Iterable[str] | None = None,
    convention: str | Iterable[str] = "cddfuse",
    device=None,
    workers: int | None = None,
    out: PathLike | None = None,
    events: Events | None = None,
) -> MetricsRun:
    """Score every method's fused image of every IR/VIS pair under one or more metric conventions.

    - `pairs`: (ir_dir, vis_dir), images matched by file stem (or a ``fusedet.datasets.PairFolder``);
    - `fused`: {method name: folder of its fused images, matched by stem in any image format};
    - `metrics`: a subset by name under either convention, e.g. "EN,Qabf" (None: all of each convention);
    - `convention`: "cddfuse" (default), "vifb", or both ("cddfuse,vifb" or a list);
    - `device`: None/"auto" (CUDA when available), "cpu", "cuda", "cuda:N";
    - `workers`: pairs scored at a time (default: the usable CPU count, at most 4), the cores shared out among them (one thread each by default);
    - `out`: a folder for the results (None: nothing written): metrics.csv/.md/.tex/.json, in
      `out`/CONVENTION/ when several conventions run, plus conventions.md/.json with both; a journal of
      finished pairs there lets an interrupted run resume (unchanged files are not scored again);
    - `events`: a ``fusedet.events.Events`` receiving stage "scoring pairs" (one advance per pair) and notes.

    Returns a :class:`MetricsRun`. Bad input raises InputError before scoring starts where it can (folders,
    stems, names, sizes); the first error while scoring stops the run (finished pairs stay in the journal).
    """
    plan = plan_folders(pairs, fused, metrics=metrics, convention=convention)
    return score_plan(plan, device=device, workers=workers, out=out, events=events)
