"""Detection sources: which image of each pair the detector sees. One class per kind of table row.

A source spec is one of
- ``ir`` (`IrSource`): the infrared image (gray, given to the detector as three equal channels);
- ``vi`` (`VisSource`): the visible image (RGB);
- a fuser spec (``dmnet``, ``mean``, ``max``, ``dmnet:PATH``; `FusedSource`): the pair fused by that
  fuser, its luma recombined with the visible chroma (fusedet.fusers.fuse_color), cached on disk;
- ``folder:NAME=DIR`` (`FolderSource`): images someone else fused (another method's outputs), one per
  stem in DIR, gray or RGB, the same size as the pair;
- ``NAME=SPEC``: any of the above under a name of your choosing (needed when the spec holds a path).

The source's name is its row in the result table and the stem of its detections file, so it must be
a plain word (letters, digits, ``.``, ``_``, ``+``, ``-``). Specs are separated by commas.

A source has three steps, in this order: parsing (`parse_sources`: syntax only, instant, so a typo is
reported before anything loads), `check(records)` (loads what it needs, a fuser's weights, and
validates its inputs, before any long work) and `images(records, ...)` (the work). Adding a kind of
source is one class here, listed in SOURCE_KINDS.

Fused images are computed once, in batches of the run's `fuse_batch` pairs of one size, on the
fuser's device, quantised to 8 bits (the detector sees 8-bit images whatever the source), and cached
(fusedet.fused_cache). Images are decoded in reader threads ahead of the batch being computed, and
cache files are written in the background.
"""

from __future__ import annotations

import os
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from fusedet.datasets.io import few, list_images, read_image, read_ir, read_pair, read_vis, to_uint8
from fusedet.datasets.value_range import RangeLog
from fusedet.errors import InputError
from fusedet.fused_cache import FusedCache
from fusedet.fusers import FUSERS, Fuser, batches_by_size, check_fuser_spec, fuse_pairs_uint8, get_fuser
from fusedet.hashing import files_digest
from fusedet.image_stream import ImageStream
from fusedet.settings import RunSettings, closest

SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class Source(ABC):
    """One row of the result table (see the module docstring). `spec` is the text it was parsed from."""

    kind: ClassVar[str]  # what run.json and resume keys call this kind of source

    def __init__(self, name: str, spec: str | None = None) -> None:
        if not SOURCE_NAME.match(name):
            raise InputError(f"bad source name {name!r} in {spec or name!r}: use letters, digits, '.', '_', '+', '-'")
        self.name = name
        self.spec = spec if spec is not None else name

    def identity(self) -> dict:
        """What determines this source's images (part of the detections' resume key and of run.json)."""
        return {"name": self.name, "kind": self.kind, "spec": self.spec}

    def provenance(self) -> dict:
        """What run.json records about the source (its identity, and a fuser's weights)."""
        return self.identity()

    def check(self, records: Sequence) -> None:  # noqa: B027  (a hook: most sources have nothing to load)
        """Load what the source needs and validate its inputs for `records`, before any long work."""

    @abstractmethod
    def fingerprint(self, record) -> str:
        """A short hash of the input files behind this source's image of `record` (fusedet.hashing)."""

    @abstractmethod
    def images(self, records: Sequence, run: RunSettings, batch: int, log: RangeLog | None = None) -> ImageStream:
        """The 8-bit detector inputs of `records` (gray H x W or RGB H x W x 3 uint8), in batches of
        `batch`, sizes checked against the records; IR and visible images are brought to [0, 1] as
        ``run.ir_range`` / ``run.vis_range`` say, each decision counted in `log`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, spec={self.spec!r})"


def _check_size(record, image: np.ndarray, path) -> np.ndarray:
    if image.shape[:2] != (record.height, record.width):
        raise InputError(
            f"{path} is {image.shape[1]}x{image.shape[0]} but pair {record.stem!r} is {record.width}x{record.height} (W x H)"
        )
    return image


class _FileSource(Source):
    """A source whose image of a record is one file, read and converted by `read`."""

    @abstractmethod
    def path(self, record) -> Path:
        """The file holding this source's image of `record`."""

    @abstractmethod
    def read(self, path: Path, run: RunSettings, log: RangeLog | None) -> np.ndarray:
        """The image in `path` as float in [0, 1] (gray H x W or RGB H x W x 3)."""

    def fingerprint(self, record) -> str:
        return files_digest([self.path(record)])

    def images(self, records: Sequence, run: RunSettings, batch: int, log: RangeLog | None = None) -> ImageStream:
        def load(record) -> np.ndarray:
            path = self.path(record)
            return _check_size(record, to_uint8(self.read(path, run, log)), path)

        return ImageStream(records, load, batch=batch, workers=run.workers)


class IrSource(_FileSource):
    """``ir``: the infrared image, gray."""

    kind = "ir"

    def path(self, record) -> Path:
        return Path(record.ir_path)

    def read(self, path: Path, run: RunSettings, log: RangeLog | None) -> np.ndarray:
        return read_ir(path, ir_range=run.ir_range, log=log)


class VisSource(_FileSource):
    """``vi``: the visible image, RGB."""

    kind = "vi"

    def path(self, record) -> Path:
        return Path(record.vis_path)

    def read(self, path: Path, run: RunSettings, log: RangeLog | None) -> np.ndarray:
        return read_vis(path, vis_range=run.vis_range, log=log)


class FolderSource(_FileSource):
    """``folder:NAME=DIR``: another method's fused images, ``DIR/STEM.*`` (any image type, gray or RGB)."""

    kind = "folder"

    def __init__(self, name: str, folder: str | os.PathLike, spec: str | None = None) -> None:
        super().__init__(name, spec)
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise InputError(f"source {name!r}: {self.folder} is not a folder")
        self.files = list_images(self.folder)

    def identity(self) -> dict:
        return {**super().identity(), "folder": str(self.folder.resolve())}

    def check(self, records: Sequence) -> None:
        """Every stem evaluated must have an image in the folder; the error names the missing ones."""
        missing = [r.stem for r in records if r.stem not in self.files]
        if missing:
            raise InputError(f"source {self.name!r}: {self.folder} has no image for {len(missing)} stem(s): {few(missing, 10)}")

    def path(self, record) -> Path:
        return self.files[record.stem]

    def read(self, path: Path, run: RunSettings, log: RangeLog | None) -> np.ndarray:
        """Another method's output: 8/16-bit at full scale, floats in [0, 1] (as fusion results are written)."""
        return read_image(path, "full", role="fused", log=log)


class FusedSource(Source):
    """A fuser's output (``dmnet``, ``mean``, ``max``, ``dmnet:PATH``), cached as PNG under the run's
    ``cache_dir`` (the source owns its cache, fusedet.fused_cache).

    `fuser` is a spec, built on `device` by `check()` (or on first use), a Fuser object, or a
    function returning one."""

    kind = "fuser"

    def __init__(
        self,
        name: str,
        fuser: str | Fuser | Callable[[], Fuser],
        *,
        device: str | torch.device = "cpu",
        spec: str | None = None,
    ) -> None:
        if isinstance(fuser, str):
            check_fuser_spec(fuser)
        super().__init__(name, spec if spec is not None else (fuser if isinstance(fuser, str) else name))
        self._fuser = fuser
        self.device = device
        self._caches: dict[tuple[Path, str], FusedCache] = {}

    @property
    def fuser(self) -> Fuser:
        """The fuser, built on first use."""
        if not isinstance(self._fuser, Fuser):
            spec = self._fuser
            self._fuser = get_fuser(spec, device=self.device) if isinstance(spec, str) else spec()
        return self._fuser

    def cache(self, run: RunSettings) -> FusedCache:
        """This source's fused-image cache for a run (its ``cache_dir`` and value ranges)."""
        if run.cache_dir is None:
            raise InputError(f"source {self.name!r}: the run settings give no cache_dir for its fused images")
        key = (Path(run.cache_dir), f"{run.ir_range},{run.vis_range}")
        if key not in self._caches:
            self._caches[key] = FusedCache(key[0], self.fuser, key[1])
        return self._caches[key]

    def identity(self) -> dict:
        return {**super().identity(), "fuser_cache_key": self.fuser.cache_key()}

    def provenance(self) -> dict:
        fuser = {k if k.startswith("fuser") else f"fuser_{k}": v for k, v in self.fuser.provenance().items()}
        return {**self.identity(), **fuser}

    def check(self, records: Sequence) -> None:
        self.fuser  # noqa: B018  (loads the weights now: a bad checkpoint fails before any work)

    def fingerprint(self, record) -> str:
        return files_digest([record.ir_path, record.vis_path])

    def images(self, records: Sequence, run: RunSettings, batch: int, log: RangeLog | None = None) -> ImageStream:
        cache = self.cache(run)

        def load(record):
            """The cached fused image, or the decoded pair to fuse."""
            image = cache.load(record)
            if image is not None and image.shape[:2] == (record.height, record.width):
                return image
            pair = read_pair(record.ir_path, record.vis_path, record.stem, ir_range=run.ir_range, vis_range=run.vis_range, log=log)
            _check_size(record, pair.ir, record.ir_path)
            return pair

        return ImageStream(records, load, batch=batch, workers=run.workers, finisher=_FuseAndCache(self.fuser, cache, run.fuse_batch))


class _FuseAndCache:
    """ImageStream finisher of a FusedSource: fuses the pairs of a batch that the cache did not hold,
    at most `fuse_batch` pairs of one size per pass, and writes them to the cache in the background."""

    def __init__(self, fuser: Fuser, cache: FusedCache, fuse_batch: int) -> None:
        self.fuser, self.cache, self.fuse_batch = fuser, cache, fuse_batch
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fusedet-cache")
        self.writes: list[Future] = []

    def __call__(self, records: list, items: list, seconds: dict[str, float]) -> list[np.ndarray]:
        todo = [i for i, item in enumerate(items) if not isinstance(item, np.ndarray)]
        if not todo:
            return items
        start = time.perf_counter()
        for indices in batches_by_size(todo, lambda i: items[i].size, self.fuse_batch):
            fused = fuse_pairs_uint8(self.fuser, [items[i] for i in indices])
            for i, image in zip(indices, fused):
                items[i] = image
                self.writes.append(self.writer.submit(self.cache.save, records[i], image))
        seconds["fuse"] += time.perf_counter() - start
        return items

    def close(self, seconds: dict[str, float]) -> None:
        start = time.perf_counter()
        try:
            for future in self.writes:
                future.result()
        finally:
            self.writer.shutdown(wait=True)
        seconds["cache write"] += time.perf_counter() - start


# --- parsing -------------------------------------------------------------------------------------

RAW_SOURCES: dict[str, type[_FileSource]] = {"ir": IrSource, "vi": VisSource}
FOLDER_PREFIX = "folder:"


def split_specs(specs: str | Iterable[str]) -> list[str]:
    """'ir,vi' or ['ir', 'vi,dmnet'] -> ['ir', 'vi', 'dmnet'] (blank items dropped)."""
    items = [specs] if isinstance(specs, str) else list(specs)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def valid_specs() -> list[str]:
    """Every source spec word (for messages): ir, vi, the registered fusers."""
    return [*RAW_SOURCES, *sorted(FUSERS)]


def parse_sources(
    specs: str | Iterable[str | Source],
    *,
    device: str | torch.device = "cpu",
    fusers: Mapping[str, Callable[[], Fuser]] | None = None,
) -> list[Source]:
    """Parse source specs (see the module docstring) into Source objects; nothing is loaded yet.

    `device` is where fusers will compute. `fusers` maps a
    fuser spec to a function returning an already built Fuser (FusionDetector passes its own), used
    instead of building one from the registry. Source objects in `specs` are passed through. Raises
    InputError for a bad spec (naming the closest valid one), a bad name, or a name given twice."""
    fusers = dict(fusers or {})
    out: list[Source] = []
    for item in [specs] if isinstance(specs, str) else list(specs):
        if isinstance(item, Source):
            out.append(item)
            continue
        out.extend(_parse_one(spec, device, fusers) for spec in split_specs(item))
    if not out:
        raise InputError("no sources given; use for instance --sources ir,vi,dmnet")
    seen: set[str] = set()
    for source in out:
        if source.name in seen:
            raise InputError(f"source name {source.name!r} is given twice; rename one with NAME=SPEC")
        seen.add(source.name)
    return out


def _parse_one(spec: str, device, fusers: Mapping[str, Callable[[], Fuser]]) -> Source:
    if spec.startswith(FOLDER_PREFIX):
        name, sep, folder = spec[len(FOLDER_PREFIX) :].partition("=")
        if not sep or not name or not folder:
            raise InputError(f"bad source {spec!r}: write folder:NAME=DIR")
        return FolderSource(name, folder, spec)
    name, sep, body = spec.partition("=")
    if not sep:
        name, body = spec, spec
        if not SOURCE_NAME.match(spec.partition(":")[0]):
            raise InputError(f"bad source {spec!r}{closest(spec, valid_specs())}; use ir, vi, a fuser ({', '.join(sorted(FUSERS))}) "
                             "or folder:NAME=DIR")
        if not SOURCE_NAME.match(name):
            raise InputError(f"source {spec!r} needs a name for its table row: write NAME={spec}")
    if not body:
        raise InputError(f"bad source {spec!r}: nothing after '='")
    if body in RAW_SOURCES:
        return RAW_SOURCES[body](name, spec)
    if body in fusers:
        return FusedSource(name, fusers[body], device=device, spec=spec)
    if body.partition(":")[0] not in FUSERS:
        raise InputError(
            f"unknown fuser {body!r}{closest(body.partition(':')[0], valid_specs())}; "
            f"a source is ir, vi, a fuser ({', '.join(sorted(FUSERS))}) or folder:NAME=DIR"
        )
    return FusedSource(name, body, device=device, spec=spec)
