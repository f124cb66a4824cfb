"""Detection sources: which image of each pair the detector sees, and the cache of fused images.

A source spec is one of
- ``ir``: the infrared image (gray, given to the detector as three equal channels);
- ``vi``: the visible image (RGB);
- a fuser spec (``dmnet``, ``mean``, ``max``, ``dmnet:PATH``): the pair fused by that fuser, its
  luma recombined with the visible chroma (see fusedet.fusers.fuse_color);
- ``folder:NAME=DIR``: images someone else fused (another method's outputs), one per stem in DIR,
  gray or RGB, the same size as the pair;
- ``NAME=FUSER_SPEC``: a fuser under a name of your choosing (needed when the spec holds a path).

The source's name is its row in the result table and the stem of its detections file, so it must
be a plain word (letters, digits, ``.``, ``_``, ``+``, ``-``). Specs are separated by commas.

Fused images are computed once, in batches, on the fuser's device, quantised to 8 bits (the
detector sees 8-bit images whatever the source), and cached as PNG under
``CACHE/fused/<fuser name>-<hash of fuser.cache_key()>/<stem>-<hash of the pair's files>.png``
(the files' paths, sizes and modification times), written atomically; a rerun, or the rerun of an
interrupted run, reads them back instead of fusing again. Images are decoded in
worker threads ahead of the batch being computed (OpenCV releases the GIL), and cache files are
written in the background.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from fusedet.datasets.io import list_images, read_image, read_ir, read_pair, read_vis, to_uint8, write_image
from fusedet.errors import InputError
from fusedet.fusers import Fuser, batches_by_size, fuse_color, get_fuser
from fusedet.tables import write_text_atomic

SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
RAW_SOURCES = ("ir", "vi")


@dataclass
class Source:
    """One row of the result table: `kind` is 'ir', 'vi', 'fuser' or 'folder'."""

    name: str
    kind: str
    spec: str
    fuser: Fuser | None = None
    folder: Path | None = None
    folder_files: dict[str, Path] | None = None

    def identity(self) -> dict:
        """What determines this source's images (part of the detections' resume key and of run.json)."""
        out: dict = {"name": self.name, "kind": self.kind, "spec": self.spec}
        if self.fuser is not None:
            out["fuser_cache_key"] = self.fuser.cache_key()
        if self.folder is not None:
            out["folder"] = str(self.folder.resolve())
        return out


def split_specs(specs: str | Iterable[str]) -> list[str]:
    """'ir,vi' or ['ir', 'vi,dmnet'] -> ['ir', 'vi', 'dmnet'] (blank items dropped)."""
    items = [specs] if isinstance(specs, str) else list(specs)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def parse_sources(
    specs: str | Iterable[str | Source],
    *,
    device: str | torch.device = "cpu",
    fusers: Mapping[str, Callable[[], Fuser]] | None = None,
) -> list[Source]:
    """Parse source specs (see the module docstring) and build their fusers on `device`.

    `fusers` maps a fuser spec to a function returning an already built Fuser (FusionDetector passes
    its own), used instead of building one from the registry.
    """
    fusers = dict(fusers or {})
    out: list[Source] = []
    for item in ([specs] if isinstance(specs, str) else list(specs)):
        if isinstance(item, Source):
            out.append(item)
            continue
        for spec in split_specs(item):
            out.append(_parse_one(spec, device, fusers))
    if not out:
        raise InputError("no sources given; use for instance --sources ir,vi,dmnet")
    seen: set[str] = set()
    for source in out:
        if source.name in seen:
            raise InputError(f"source name {source.name!r} is given twice; rename one with NAME=SPEC")
        seen.add(source.name)
    return out


def _parse_one(spec: str, device, fusers: Mapping[str, Callable[[], Fuser]]) -> Source:
    if spec in RAW_SOURCES:
        return Source(spec, spec, spec)
    if spec.startswith("folder:"):
        name, sep, folder = spec[len("folder:") :].partition("=")
        if not sep or not name or not folder:
            raise InputError(f"bad source {spec!r}: write folder:NAME=DIR")
        _check_name(name, spec)
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise InputError(f"source {name!r}: {path} is not a folder")
        return Source(name, "folder", spec, folder=path, folder_files=list_images(path))
    name, sep, fuser_spec = spec.partition("=")
    if not sep:
        name, fuser_spec = spec, spec
        if not SOURCE_NAME.match(name):
            raise InputError(f"source {spec!r} needs a name for its table row: write NAME={spec}")
    _check_name(name, spec)
    if not fuser_spec:
        raise InputError(f"bad source {spec!r}: nothing after '='")
    if fuser_spec in RAW_SOURCES:
        return Source(name, fuser_spec, spec)
    factory = fusers.get(fuser_spec)
    fuser = factory() if factory is not None else get_fuser(fuser_spec, device=device)
    return Source(name, "fuser", spec, fuser=fuser)


def _check_name(name: str, spec: str) -> None:
    if not SOURCE_NAME.match(name):
        raise InputError(f"bad source name {name!r} in {spec!r}: use letters, digits, '.', '_', '+', '-'")


def check_folder_sources(sources: Sequence[Source], stems: Sequence[str]) -> None:
    """Every folder source must hold an image for every stem evaluated; the error names the missing ones."""
    for source in sources:
        if source.kind != "folder":
            continue
        missing = [s for s in stems if s not in source.folder_files]
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise InputError(f"source {source.name!r}: {source.folder} has no image for {len(missing)} stem(s): {shown}")


def file_stamp(path: str | os.PathLike) -> str:
    """Path, size and modification time of a file: changes whenever the file is rewritten."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        raise InputError(f"{path}: no such file") from None
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def image_fingerprint(source: Source, record) -> str:
    """A short hash of the input files behind `source`'s image of `record` (see file_stamp)."""
    if source.kind == "ir":
        stamps = [file_stamp(record.ir_path)]
    elif source.kind == "vi":
        stamps = [file_stamp(record.vis_path)]
    elif source.kind == "folder":
        stamps = [file_stamp(source.folder_files[record.stem])]
    else:
        stamps = [file_stamp(record.ir_path), file_stamp(record.vis_path)]
    return hashlib.sha1("|".join(stamps).encode()).hexdigest()[:12]


class FusedCache:
    """PNG cache of one fuser's 8-bit fused images.

    Keyed by the fuser's cache_key() (its folder) and by the pair: the file is STEM-HASH.png, HASH
    covering the IR and VIS files' paths, sizes and modification times, so pairs of two datasets
    with the same stems, or a dataset regenerated in place, never share an entry.
    """

    def __init__(self, root: str | Path, fuser: Fuser) -> None:
        key = fuser.cache_key()
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        safe = re.sub(r"[^A-Za-z0-9._+-]", "_", fuser.name)
        self.dir = Path(root) / "fused" / f"{safe}-{digest}"
        self.key = key
        self.source = Source(fuser.name, "fuser", fuser.name, fuser=fuser)
        key_file = self.dir / "cache_key.txt"
        if not key_file.is_file():
            write_text_atomic(key_file, key + "\n")

    def path(self, record) -> Path:
        return self.dir / f"{record.stem}-{image_fingerprint(self.source, record)}.png"

    def load(self, record) -> np.ndarray | None:
        """The cached RGB uint8 image, or None (absent or unreadable: it is then recomputed)."""
        path = self.path(record)
        if not path.is_file():
            return None
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        return None if image is None else np.ascontiguousarray(image[:, :, ::-1])

    def save(self, record, image: np.ndarray) -> None:
        write_image(self.path(record), image)


Timings = dict[str, float]


def _check_size(record, image: np.ndarray, path: Path) -> None:
    if image.shape[:2] != (record.height, record.width):
        raise InputError(
            f"{path} is {image.shape[1]}x{image.shape[0]} but pair {record.stem!r} is {record.width}x{record.height} (W x H)"
        )


def _prefetch(load: Callable, items: Sequence, workers: int, depth: int) -> Iterator:
    """load(item) for each item, in order, computed up to `depth` items ahead in `workers` threads."""
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


_END = object()


def iter_source_images(
    source: Source,
    records: Sequence,
    *,
    batch: int = 8,
    fuse_batch: int = 1,
    workers: int = 2,
    cache: FusedCache | None = None,
    timings: Timings | None = None,
) -> Iterator[tuple[list, list[np.ndarray]]]:
    """Yield (records, images) batches of `source`'s 8-bit detector inputs (gray H x W or RGB H x W x 3).

    For a fuser source, cached images are read back and the rest are fused, at most `fuse_batch`
    pairs of one size per forward pass (a DMNet pass needs GBs per 1024x768 pair), and cached. Sizes are checked against the records. `timings`
    accumulates seconds under 'read' (summed over reader threads, which overlap the compute),
    'fuse' and 'cache write' (waiting for the background writes at the end).
    """
    timings = timings if timings is not None else {}
    for key in ("read", "fuse", "cache write"):
        timings.setdefault(key, 0.0)
    lock = threading.Lock()

    def load(record):
        start = time.perf_counter()
        if source.kind == "ir":
            image = to_uint8(read_ir(record.ir_path))
            _check_size(record, image, record.ir_path)
        elif source.kind == "vi":
            image = to_uint8(read_vis(record.vis_path))
            _check_size(record, image, record.vis_path)
        elif source.kind == "folder":
            path = source.folder_files[record.stem]
            image = to_uint8(read_image(path))
            _check_size(record, image, path)
        else:
            image = cache.load(record) if cache is not None else None
            if image is None or image.shape[:2] != (record.height, record.width):
                pair = read_pair(record.ir_path, record.vis_path, record.stem)
                _check_size(record, pair.ir, record.ir_path)
                image = pair
        with lock:
            timings["read"] += time.perf_counter() - start
        return image

    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fusedet-cache") if cache is not None else None
    writes: list[Future] = []
    try:
        chunk_records: list = []
        chunk_images: list = []
        for record, item in zip(records, _prefetch(load, records, workers, depth=2 * batch)):
            chunk_records.append(record)
            chunk_images.append(item)
            if len(chunk_records) == batch:
                yield chunk_records, _finish(source, chunk_records, chunk_images, fuse_batch, cache, writer, writes, timings)
                chunk_records, chunk_images = [], []
        if chunk_records:
            yield chunk_records, _finish(source, chunk_records, chunk_images, fuse_batch, cache, writer, writes, timings)
        if writes:
            start = time.perf_counter()
            for future in writes:
                future.result()
            timings["cache write"] += time.perf_counter() - start
    finally:
        if writer is not None:
            writer.shutdown(wait=True)


def _finish(source, records, items, fuse_batch, cache, writer, writes, timings) -> list[np.ndarray]:
    """Fuse the pairs among `items` (those not read from the cache), `fuse_batch` at a time, and
    queue their cache writes."""
    todo = [i for i, item in enumerate(items) if not isinstance(item, np.ndarray)]
    if not todo:
        return items
    start = time.perf_counter()
    for indices in batches_by_size(todo, lambda i: items[i].size, fuse_batch):
        fused = fuse_pairs_uint8(source.fuser, [items[i] for i in indices])
        for i, image in zip(indices, fused):
            items[i] = image
            if cache is not None:
                writes.append(writer.submit(cache.save, records[i], image))
    timings["fuse"] += time.perf_counter() - start
    return items


@torch.inference_mode()
def fuse_pairs_uint8(fuser: Fuser, pairs: Sequence) -> list[np.ndarray]:
    """Fuse same-size pairs (objects with .ir H x W and .vis H x W x 3 in [0, 1]) as one batch on the
    fuser's device; returns RGB uint8 images (rounded like fusedet.datasets.to_uint8)."""
    device = getattr(fuser, "device", torch.device("cpu"))
    ir = torch.from_numpy(np.stack([p.ir for p in pairs]))[:, None].to(device)
    vis = torch.from_numpy(np.stack([p.vis for p in pairs])).permute(0, 3, 1, 2).to(device)
    fused = fuse_color(fuser, ir, vis)
    pixels = (fused.float() * 255.0).round().clamp(0, 255).to(torch.uint8)
    return list(pixels.permute(0, 2, 3, 1).cpu().numpy())
