"""Detection datasets by name: ``load_dataset(NAME, root, seed=0, split_file=None, **options)``,
NAME one of m3fd, msrs, llvip, flir, kaist, demo.

Every loader returns a :class:`fusedet.datasets.records.DetectionDataset` (with ``layout``,
``split_info`` and ``options`` recorded). ``split_file`` (every dataset) replaces the dataset's own
split with a published list (:func:`fusedet.datasets.splits.read_split_file`). Options per dataset:

- ``m3fd``:  ``annotations`` = ``auto`` (default: VOC ``Annotation/`` if present, else YOLO
  ``labels/``, TarDAL's layout) | ``voc`` | ``yolo``. ``root`` required.
- ``msrs``:  ``labels`` = ``labels`` (default, fusion labels) | ``labels_ir`` | ``labels_vi``
  (or ``fusion`` | ``ir`` | ``vi``). ``root`` required.
- ``llvip``: none. ``root`` required.
- ``flir``:  none (FLIR-aligned). ``root`` required.
- ``kaist``: ``subset`` = ``all`` (default) | ``reasonable``; ``annotations`` (another annotation
  folder); ``train_list``, ``test_list`` (lists of ``imageSets/``). ``root`` required.
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
from fusedet.events import Events


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
        return [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n not in ("seed", "events", "split_file")]


def _m3fd(root, *, seed=0, split_file=None, annotations="auto"):
    from fusedet.datasets.m3fd import load_m3fd

    return load_m3fd(root, seed=seed, annotations=annotations, split_file=split_file)


def _msrs(root, *, seed=0, split_file=None, labels="labels"):
    from fusedet.datasets.msrs import load_msrs

    return load_msrs(root, seed=seed, labels=labels, split_file=split_file)


def _llvip(root, *, seed=0, split_file=None):
    from fusedet.datasets.llvip import load_llvip

    return load_llvip(root, seed=seed, split_file=split_file)


def _flir(root, *, seed=0, split_file=None):
    from fusedet.datasets.flir import load_flir

    return load_flir(root, seed=seed, split_file=split_file)


def _kaist(root, *, seed=0, split_file=None, subset="all", annotations=None, train_list=None, test_list=None):
    from fusedet.datasets.kaist import load_kaist

    return load_kaist(
        root, seed=seed, subset=subset, annotations=annotations, train_list=train_list, test_list=test_list, split_file=split_file
    )


def _demo(root, *, seed=0, split_file=None, n_pairs=None, size=None, events=None):
    from fusedet.datasets.demo import load_demo

    return load_demo(root, seed=seed, n_pairs=n_pairs, size=size, events=events, split_file=split_file)


DATASETS: dict[str, DatasetInfo] = {
    "m3fd": DatasetInfo("m3fd", "M3FD: Ir/, Vis/, Annotation/*.xml (VOC) or ir/, vi/, labels/*.txt (YOLO, TarDAL), 6 classes", _m3fd),
    "msrs": DatasetInfo("msrs", "MSRS: ir/, vi/, labels/*.txt (YOLO), person/bicycle/car", _msrs),
    "llvip": DatasetInfo("llvip", "LLVIP: infrared/, visible/, Annotations/*.xml (VOC), person", _llvip),
    "flir": DatasetInfo("flir", "FLIR-aligned: JPEGImages/*_PreviewData.jpeg + *_RGB.jpg, Annotations/*.xml, person/bicycle/car", _flir),
    "kaist": DatasetInfo("kaist", "KAIST: setXX/VXXX/{visible,lwir}/IXXXXX.jpg, annotations/*.txt (bbGt), person", _kaist),
    "demo": DatasetInfo("demo", "synthetic M3FD-layout road scenes (generated offline, cached)", _demo, needs_root=False),
}


def load_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    seed: int = 0,
    events: Events | None = None,
    split_file: str | Path | None = None,
    **options,
) -> DetectionDataset:
    """Load dataset `name` from `root` (see the module docstring for names and options).

    `split_file` replaces the dataset's own split (``STEM SPLIT`` lines or a plain stem list; see
    :func:`fusedet.datasets.splits.read_split_file`). Progress of the demo set's generation goes to
    `events` (fusedet.events; other datasets ignore it). Unknown names or options, or a missing
    root, raise InputError with the accepted values.
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
    if events is not None and "events" in inspect.signature(info.loader).parameters:
        options["events"] = events
    if split_file is not None:
        options["split_file"] = Path(split_file).expanduser()
    return info.loader(None if root is None else Path(root).expanduser(), seed=seed, **options)
