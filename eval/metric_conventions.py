"""Metric conventions: the two lineages of fusion-metric code that published tables come from.

Papers print the same metric names computed by different code: Python or MATLAB, gray or per channel,
summed or averaged over the two sources, one window or another. A convention fixes all of it: how image
files are read and converted, which metric definitions and constants apply, and the names they go by.

- ``cddfuse`` (the default): CDDFuse's ``utils/Evaluator.py`` (Zhao et al., CVPR 2023) with scikit-image's
  SSIM and pytorch_msssim's MS-SSIM, the Python lineage most deep-fusion papers since 2022 print (CDDFuse,
  DDFM, SeAFusion-style tables, the DMNet paper's EN/SF/AG/SD/CC/SCD/VIF/Qabf columns). Eleven metrics,
  every image read as its rounded BT.601 gray (``fusedet.eval.fusion_metrics``).
- ``vifb``: the MATLAB files ``metrics/metrics*.m`` of VIFB (Zhang, Ye and Xiao, CVPRW 2020), the
  benchmark behind most MATLAB-scored tables (VIFB itself, and papers that reuse its code). Thirteen
  metrics with VIFB's names, 8-bit levels, colour scored per channel (``fusedet.eval.vifb_metrics``).

:func:`get_convention` returns one; :func:`parse_conventions` reads ``"cddfuse,vifb"``;
:data:`SHARED_METRICS` pairs the names both conventions have, with the reason their values differ.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fusedet.errors import InputError

DEFAULT_CONVENTION = "cddfuse"

_CDDFUSE_METRICS = ("EN", "SF", "AG", "SD", "CC", "SCD", "MI", "VIF", "Qabf", "SSIM", "MS-SSIM")
_CDDFUSE_TABLE = ("EN", "SF", "AG", "SD", "CC", "SCD", "MI", "VIF", "Qabf", "MS-SSIM", "SSIM")
_VIFB_METRICS = (
    "Avg_gradient",
    "Cross_entropy",
    "Edge_intensity",
    "Entropy",
    "Mutinf",
    "Psnr",
    "Qabf",
    "Qcb",
    "Qcv",
    "Rmse",
    "Spatial_frequency",
    "Ssim",
    "Variance",
)


class MetricWarning(UserWarning):
    """A metric could not be computed for an image (its value is NaN), or an input looks like it is on
    the wrong scale; the message names the image."""


def check_array_type(image, name: str) -> None:
    """InputError for a boolean array or tensor: a mask is not an image of 8-bit levels (both
    conventions read levels 0..255; multiply a mask by 255 first)."""
    if str(getattr(image, "dtype", "")) in ("bool", "torch.bool"):
        raise InputError(f"{name}: a boolean array; the metrics read 8-bit levels 0..255 (multiply a mask by 255)")


def warn_unit_scale(floating: bool, hi: float, name: str) -> None:
    """A MetricWarning when a float image's maximum is in (0, 1]: it is probably on the 0..1 scale, which
    every convention reads as nearly black 8-bit levels."""
    if floating and 0 < hi <= 1.0:
        warnings.warn(f"{name}: float values all <= 1: the metrics expect the 0..255 scale, not 0..1", MetricWarning, stacklevel=3)


@dataclass(frozen=True)
class Convention:
    """One metric convention (see the module docstring).

    `metrics` is the key order of ``metrics.json``; `table_order` the column order of the tables;
    `min_side` the smallest short side (pixels) each metric is defined for (smaller images are refused).
    """

    name: str
    title: str
    reference: str
    metrics: tuple[str, ...]
    table_order: tuple[str, ...]
    lower_is_better: frozenset[str] = frozenset()
    min_side: Mapping[str, int] = field(default_factory=dict)

    def parse_metrics(self, names: str | Iterable[str] | None) -> tuple[str, ...]:
        """Canonical names of this convention in `metrics` order, from names in any case or a comma-separated
        string; None means all. A name of the other convention selects its counterpart here (EN -> Entropy).
        Unknown names raise InputError listing the valid ones."""
        if names is None:
            return self.metrics
        if isinstance(names, str):
            names = names.split(",")
        wanted, unknown = set(), []
        for raw in names:
            name = raw.strip()
            if not name:
                continue
            found = self.lookup(name)
            if found is None:
                unknown.append(name)
            else:
                wanted.add(found)
        if unknown:
            raise InputError(f"unknown metric name(s) for the {self.name} convention: {', '.join(unknown)}; choose from {', '.join(self.metrics)}")
        if not wanted:
            raise InputError(f"no metric named; choose from {', '.join(self.metrics)}")
        return tuple(m for m in self.metrics if m in wanted)

    def lookup(self, name: str) -> str | None:
        """This convention's name for `name` (any case; the other convention's name of a shared metric), or None."""
        own = {m.lower(): m for m in self.metrics}
        if name.lower() in own:
            return own[name.lower()]
        for shared in SHARED_METRICS:
            if name.lower() in (shared.cddfuse.lower(), shared.vifb.lower()):
                return shared.cddfuse if self.name == "cddfuse" else shared.vifb
        return None

    def check_size(self, width: int, height: int, metrics: Iterable[str], name: str) -> None:
        """InputError naming `name` if a W x H image is too small for one of `metrics`."""
        too_small = [m for m in metrics if min(width, height) < self.min_side.get(m, 1)]
        if too_small:
            need = max(self.min_side[m] for m in too_small)
            raise InputError(
                f"{name}: {width}x{height} is too small for {', '.join(too_small)} under the {self.name} convention "
                f"(short side must be at least {need} pixels)"
            )


@dataclass(frozen=True)
class SharedMetric:
    """A metric both conventions compute under their own names, and why their values differ."""

    cddfuse: str
    vifb: str
    reason: str


SHARED_METRICS: tuple[SharedMetric, ...] = (
    SharedMetric(
        "EN", "Entropy", "same definition (bits, 256 bins of F); a colour F is one BT.601 gray image for cddfuse, three channels averaged for vifb"
    ),
    SharedMetric(
        "SF", "Spatial_frequency", "vifb divides both sums of squared differences by m*n, not by their counts (and reads a colour F as m x 3n)"
    ),
    SharedMetric("AG", "Avg_gradient", "vifb divides the sum over all r*c pixels by (r-1)(c-1), not r*c: larger by rc/((r-1)(c-1))"),
    SharedMetric("SD", "Variance", "the same population standard deviation (VIFB calls it Variance); vifb averages a colour F over channels"),
    SharedMetric("MI", "Mutinf", "both in nats, summed over IR and VIS; vifb min-max stretches each image before binning (one-to-one on 8 bits)"),
    SharedMetric("Qabf", "Qabf", "same Xydeas-Petrovic constants; vifb's 0..65025 scale changes only pixels where gS == gF (G = gF there)"),
    SharedMetric(
        "SSIM", "Ssim", "both summed over IR and VIS; cddfuse: 7x7 uniform window, sample covariance; vifb: 11x11 Gaussian (sigma 1.5), population"
    ),
)

CONVENTIONS: dict[str, Convention] = {
    "cddfuse": Convention(
        name="cddfuse",
        title="CDDFuse's Evaluator.py (Python): gray 0..255, EN bits, MI nats, SCD/MI/VIF/SSIM/MS-SSIM summed over IR and VIS",
        reference="Zhaozixiang1228/MMIF-CDDFuse utils/Evaluator.py, scikit-image structural_similarity, pytorch_msssim ms_ssim",
        metrics=_CDDFUSE_METRICS,
        table_order=_CDDFUSE_TABLE,
        min_side={"SF": 2, "AG": 2, "SSIM": 7, "VIF": 41},
    ),
    "vifb": Convention(
        name="vifb",
        title="VIFB's metrics*.m (MATLAB): 8-bit levels, colour per channel, VIFB's names and quirks",
        reference="xingchenzhang/VIFB metrics/metrics*.m, called as compute_metrics.m calls them",
        metrics=_VIFB_METRICS,
        table_order=_VIFB_METRICS,
        lower_is_better=frozenset({"Cross_entropy", "Qcv", "Rmse"}),
        min_side={"Ssim": 11, "Avg_gradient": 2},
    ),
}


def get_convention(name: str | Convention) -> Convention:
    """The convention called `name` (any case); InputError naming the closest valid one otherwise."""
    if isinstance(name, Convention):
        return name
    key = str(name).strip().lower()
    if key in CONVENTIONS:
        return CONVENTIONS[key]
    close = difflib.get_close_matches(key, list(CONVENTIONS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise InputError(f"unknown metric convention {name!r}{hint}; choose from {', '.join(CONVENTIONS)}")


def parse_conventions(spec: str | Convention | Iterable[str | Convention] | None) -> tuple[Convention, ...]:
    """Conventions from ``"cddfuse"``, ``"cddfuse,vifb"``, a list, or None (the default, cddfuse).

    Repeats are dropped; the order given is kept. Unknown names raise InputError."""
    if spec is None:
        return (CONVENTIONS[DEFAULT_CONVENTION],)
    if isinstance(spec, (str, Convention)):
        spec = str(spec).split(",") if isinstance(spec, str) else [spec]
    out: list[Convention] = []
    for item in spec:
        if isinstance(item, str) and not item.strip():
            continue
        conv = get_convention(item)
        if conv not in out:
            out.append(conv)
    if not out:
        raise InputError(f"no metric convention named; choose from {', '.join(CONVENTIONS)}")
    return tuple(out)


def select_metrics(conventions: Iterable[Convention], names: str | Iterable[str] | None) -> dict[str, tuple[str, ...]]:
    """{convention name: its metric names} for a `--metrics` list that may mix both conventions' names.

    Each convention gets the names it knows (a shared metric's name under either convention selects it in
    both); a name no convention knows, or a convention left with no metric, raises InputError."""
    conventions = list(conventions)
    if names is None:
        return {c.name: c.metrics for c in conventions}
    items = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    if not items:
        raise InputError("no metric named in --metrics")
    unknown = [n for n in items if all(c.lookup(n) is None for c in conventions)]
    if unknown:
        valid = "; ".join(f"{c.name}: {', '.join(c.metrics)}" for c in conventions)
        raise InputError(f"unknown metric name(s): {', '.join(unknown)}; choose from {valid}")
    out = {}
    for c in conventions:
        known = [n for n in items if c.lookup(n) is not None]
        if not known:
            raise InputError(
                f"none of the metrics asked for ({', '.join(items)}) exists under the {c.name} convention; its names are {', '.join(c.metrics)}"
            )
        out[c.name] = c.parse_metrics(known)
    return out
