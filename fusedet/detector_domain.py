"""What a detector's weights were trained on, and whether that fits the data it is evaluated on.

A detector trained on other data than the evaluated set (the synthetic demo detector on real pairs,
COCO weights on thermal images, the MSRS detector on M3FD) gives a table that measures transfer to
unseen data, not the data; such a table must never be read as a result. :func:`training_domain`
works out what the weights saw, from (in this order):

1. the table of weights fusedet ships (:data:`SHIPPED`, matched by SHA-256; each has a model card);
2. a model yaml (``yolov8n.yaml``): random weights, trained on nothing;
3. the checkpoint's own ``train_args['data']`` (ultralytics keeps it in every checkpoint): a fusedet
   export folder ``.../yolo/DATASET-<hash>/data-NAME.yaml`` names the dataset (and, while the
   yaml is still on disk, the sources it held: ``ir`` infrared, ``vi`` visible, others fused); a
   data yaml named after a known dataset (``coco.yaml``, ``coco128.yaml``, ``VOC.yaml``,
   ``m3fd.yaml``, ...) names that dataset;
4. COCO's 80 class names in COCO order: COCO (visible photographs);
5. otherwise unknown: nothing is claimed and nothing is warned.

:meth:`TrainingDomain.warning` gives one line when the evaluation does not fit: the evaluated dataset
is not one the weights were trained on (COCO counts as general visible-image pretraining, so COCO
weights on real visible pairs are the usual baseline, not a mismatch), thermal rows for weights that
saw no infrared images, random weights, or evaluated pairs the weights were trained on (known for
the shipped MSRS detector through its split file).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

VISIBLE, INFRARED, FUSED = "visible", "infrared", "fused"
# Dataset names recognised in a data yaml's file name -> the dataset fusedet calls it.
_KNOWN_DATA = {"coco": "coco", "voc": "voc", "m3fd": "m3fd", "msrs": "msrs", "llvip": "llvip", "flir": "flir",
               "kaist": "kaist", "demo": "demo"}
# What each known dataset's images are, for the weights trained on it (None: depends on the sources).
_DATA_MODALITIES: dict[str, tuple[str, ...]] = {"coco": (VISIBLE,), "voc": (VISIBLE,)}
# Large visible-photograph datasets: pretraining for any real visible images, not a mismatch there.
GENERAL_VISIBLE = ("coco", "voc")
_EXPORT_FOLDER = re.compile(r"^(?P<name>.+)-[0-9a-f]{12}$")
_SOURCE_FOLDER = re.compile(r"^(?P<name>.+)-[0-9a-f]{8}$")


@dataclass(frozen=True)
class ShippedWeights:
    """A detector fusedet ships in ``fusedet/weights``: its file, SHA-256, what it was trained on
    (one line for the console), the dataset names and image kinds it saw, its model card, and for
    held-out checks the split file listing its pairs (``STEM SPLIT`` lines; train and val were seen)."""

    file: str
    sha256: str
    trained_on: str
    datasets: tuple[str, ...]
    modalities: tuple[str, ...]
    card: str
    split_file: str | None = None


SHIPPED: dict[str, ShippedWeights] = {
    "demo": ShippedWeights(
        "demo_yolo.pt",
        "161afa3847b77e46e0d7900abf9d50c036af1197651f3c8d9d2b67733231c194",
        "fusedet's synthetic demo scenes (drawn road scenes, not real images)",
        ("demo",),
        (INFRARED, VISIBLE, FUSED),
        "demo_yolo.md",
    ),
    "msrs": ShippedWeights(
        "msrs_yolo.pt",
        "611e00e60ab3473a848c674dd96d95c110fc3b0a4a33341f7bfd88b815d1eaf3",
        "MSRS (217 real pairs of 640x480, 189 train + 28 val, IR, visible and DMNet-fused images; person, bicycle, car)",
        ("msrs",),
        (INFRARED, VISIBLE, FUSED),
        "msrs_yolo.md",
        "msrs_split.txt",
    ),
}


@dataclass(frozen=True)
class TrainingDomain:
    """What a detector was trained on.

    `trained_on`: one line for people; `datasets`: fusedet dataset names (``msrs``, ``m3fd``,
    ``demo``, ``coco``, ...), empty when unknown; `modalities`: of ``visible``, ``infrared``,
    ``fused``, empty when unknown; `basis`: how that is known; `seen_stems`: pair stems the weights
    were trained or validated on (only where known, e.g. the shipped MSRS detector); `random`: a model
    built from a yaml (untrained)."""

    trained_on: str
    datasets: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()
    basis: str = "unknown"
    seen_stems: frozenset[str] = field(default_factory=frozenset)
    random: bool = False

    def warning(self, dataset: str, thermal_sources: Sequence[str] = (), stems: Sequence[str] = ()) -> str | None:
        """One line saying why a table of this detector on `dataset` (its name, e.g. ``msrs``) is not
        a result there, or None when nothing is known against it. `thermal_sources`: names of the
        evaluated rows whose images are infrared only; `stems`: the evaluated pairs' stems."""
        if self.random:
            return f"it was trained on {self.trained_on}: its AP is no result"
        problems = []
        name = str(dataset).lower()
        if self.datasets and name not in self.datasets and not set(self.datasets) & set(GENERAL_VISIBLE):
            problems.append(f"it was trained on {self.trained_on}, not on {dataset}: its AP measures transfer to other data, "
                            f"not a result on {dataset}")
        if thermal_sources and self.modalities and INFRARED not in self.modalities:
            rows = ", ".join(thermal_sources)
            problems.append(f"it was trained on {self.trained_on} without infrared images: row{'s' if len(thermal_sources) > 1 else ''} "
                            f"{rows} measure{'' if len(thermal_sources) > 1 else 's'} cross-modality transfer, not the thermal camera")
        seen = self.seen_stems.intersection(stems) if name in self.datasets else set()
        if seen:
            problems.append(f"{len(seen)} of the {len(set(stems))} evaluated pairs were among its training or validation pairs: "
                            "evaluate on its held-out pairs")
        return "; ".join(problems) if problems else None

    def to_dict(self) -> dict:
        """Plain values for run.json (seen stems counted, not listed)."""
        return {"trained_on": self.trained_on, "datasets": list(self.datasets), "modalities": list(self.modalities),
                "basis": self.basis, "seen_pairs": len(self.seen_stems), "random_weights": self.random}


def shipped_by_sha256(sha256: str | None) -> ShippedWeights | None:
    """The shipped detector with this SHA-256, if any."""
    return next((s for s in SHIPPED.values() if sha256 and s.sha256 == sha256), None)


def split_file_stems(path: Path, splits: Sequence[str] = ("train", "val")) -> frozenset[str]:
    """Stems of a ``STEM SPLIT`` file whose split is one of `splits` (empty when the file is missing)."""
    if not path.is_file():
        return frozenset()
    stems = set()
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) == 2 and parts[1].lower() in splits:
            stems.add(parts[0])
    return frozenset(stems)


def training_domain(weights: Path | str, sha256: str | None, train_args: Mapping | None, coco_names: bool) -> TrainingDomain:
    """What `weights` were trained on (see the module docstring). `weights`: the resolved weights (a
    path, or a model yaml name); `sha256`: the file's hash (None for a yaml); `train_args`: the
    checkpoint's ``train_args`` (or the model's overrides; may be empty); `coco_names`: the
    detector's classes are COCO's 80."""
    shipped = shipped_by_sha256(sha256)
    if shipped is not None:
        seen = split_file_stems(WEIGHTS_DIR / shipped.split_file) if shipped.split_file else frozenset()
        return TrainingDomain(shipped.trained_on, shipped.datasets, shipped.modalities,
                              f"shipped weights (model card fusedet/weights/{shipped.card})", seen)
    if not isinstance(weights, Path) and Path(str(weights)).suffix in (".yaml", ".yml"):
        return TrainingDomain(f"nothing (random weights built from {weights})", basis="model yaml", random=True)
    data = str((train_args or {}).get("data") or "")
    if data:
        found = _from_data_yaml(data)
        if found is not None:
            return found
    if coco_names:
        return TrainingDomain("COCO (visible photographs, 80 classes)", ("coco",), (VISIBLE,), "COCO class list")
    if data:
        return TrainingDomain(f"the data of {data} (not a dataset fusedet knows)", basis=f"checkpoint train_args (data: {data})")
    return TrainingDomain("unknown (the checkpoint names no training data)")


def _from_data_yaml(data: str) -> TrainingDomain | None:
    """The domain a checkpoint's ``train_args['data']`` names, or None when it names no known dataset."""
    path = Path(data)
    basis = f"checkpoint train_args (data: {data})"
    match = _EXPORT_FOLDER.match(path.parent.name)
    if match and path.parent.parent.name == "yolo" and path.name.startswith("data-"):
        name = match["name"].lower()
        sources = _export_sources(path)
        modalities = tuple(sorted({_source_modality(s) for s in sources}))
        shown = f"{name} ({', '.join(sources)} images, fusedet finetune)" if sources else f"{name} (fusedet finetune)"
        return TrainingDomain(shown, (name,), modalities, basis)
    tokens = [t for t in re.split(r"[^a-z0-9]+", path.stem.lower()) if t]
    for token in tokens:
        for key, name in _KNOWN_DATA.items():
            if token.startswith(key):
                label = "COCO (visible photographs)" if name == "coco" else f"{name} ({path.name})"
                return TrainingDomain(label, (name,), _DATA_MODALITIES.get(name, ()), basis)
    return None


def _export_sources(data_yaml: Path) -> list[str]:
    """Source names of a fusedet export's data yaml (its train folders ``SOURCE-<hash>/images/train``),
    while the yaml is on disk; [] otherwise."""
    import yaml

    try:
        listed = yaml.safe_load(data_yaml.read_text()).get("train", [])
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        return []
    names = []
    for folder in [listed] if isinstance(listed, str) else listed:
        match = _SOURCE_FOLDER.match(Path(str(folder)).parent.parent.name)
        if match:
            names.append(match["name"])
    return names


def _source_modality(source: str) -> str:
    return {"ir": INFRARED, "vi": VISIBLE}.get(source, FUSED)
