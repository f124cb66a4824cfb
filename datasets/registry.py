"""Detection datasets by name: ``load_dataset("m3fd" | "msrs" | "llvip" | "demo", root, seed=0, **options)``.

Every loader returns a :class:`fusedet.datasets.records.DetectionDataset`. Options per dataset:

- ``m3fd``:  none. ``root`` required.
- ``msrs``:  ``labels`` = ``labels`` (default, fusion labels) | ``labels_ir`` | ``labels_vi``
  (or ``fusion`` | ``ir`` | ``vi``). ``root`` required.
- ``llvip``: none. ``root`` required.
- ``demo``:  ``n_pairs``, ``size`` ((width, height) or "WxH"). With ``root=None`` the demo set is
  generated once into the cache (``$FUSEDET_CACHE`` or ``~/.cache/fusedet``) and reused; with a
  ``root`` it is generated there if the folder is absent or empty, else read. See
  :mod:`fusedet.datasets.demo`.

``seed`` drives the seeded split of datasets without split files, and the demo generator.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fusedet.datasets.records import DetectionDataset
from fusedet.errors import InputError


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset: its loader ``(root, *, seed, **options) -> DetectionDataset`` and a one-line summary."""

    name: str
    summary: str
    loader: Callable[..., DetectionDataset]
    needs_root: bool = True

    def options(self) -> list[str]:
        """Names of the options the loader accepts (besides root and seed)."""
        params = inspect.signature(self.loader).parameters
        return [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n not in ("seed", "progress")]


def _m3fd(root, *, seed=0):
    from fusedet.datasets.m3fd import load_m3fd

    return load_m3fd(root, seed=seed)


def _msrs(root, *, seed=0, labels="labels"):
    from fusedet.datasets.msrs import load_msrs

    return load_msrs(root, seed=seed, labels=labels)


def _llvip(root, *, seed=0):
    from fusedet.datasets.llvip import load_llvip

    return load_llvip(root, seed=seed)


def _demo(root, *, seed=0, n_pairs=None, size=None, progress=None):
    from fusedet.datasets.demo import load_demo

    return load_demo(root, seed=seed, n_pairs=n_pairs, size=size, progress=progress)


DATASETS: dict[str, DatasetInfo] = {
    "m3fd": DatasetInfo("m3fd", "M3FD: Ir/, Vis/, Annotation/*.xml (VOC), 6 classes", _m3fd),
    "msrs": DatasetInfo("msrs", "MSRS: ir/, vi/, labels/*.txt (YOLO), person/bicycle/car", _msrs),
    "llvip": DatasetInfo("llvip", "LLVIP: infrared/, visible/, Annotations/*.xml (VOC), person", _llvip),
    "demo": DatasetInfo("demo", "synthetic M3FD-layout road scenes (generated offline, cached)", _demo, needs_root=False),
}


def load_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    **options,
) -> DetectionDataset:
    """Load dataset `name` from `root` (see the module docstring for names and options).

    `progress(done, total)` is called while the demo set is being generated (other datasets ignore
    it). Unknown names or options, or a missing root, raise InputError with the accepted values.
    """
    info = DATASETS.get(str(name).lower())
    if info is None:
        raise InputError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    unknown = sorted(set(options) - set(info.options()))
    if unknown:
        accepted = ", ".join(info.options()) or "none"
        raise InputError(f"dataset {info.name!r} has no option {', '.join(unknown)}; its options: {accepted}")
    if root is None and info.needs_root:
        raise InputError(f"dataset {info.name!r} needs a root folder (--root DIR)")
    if progress is not None and "progress" in inspect.signature(info.loader).parameters:
        options["progress"] = progress
    return info.loader(None if root is None else Path(root).expanduser(), seed=seed, **options)
