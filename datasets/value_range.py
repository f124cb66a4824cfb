"""Value ranges: how a decoded image's numbers become float32 in [0, 1], never by a silent clip.

A spec is ``auto``, ``full``, ``minmax`` or ``percentile[:LO,HI]`` (:func:`parse_value_range`):

- ``full``: 8-bit / 255, 16-bit / 65535 (the fusion literature's convention); a float image must
  already lie in [0, 1] (up to :data:`FLOAT_TOLERANCE`), else InputError naming the file and its
  range. 16-bit images whose span is below :data:`NARROW_SPAN` are read as asked but logged as
  nearly flat.
- ``minmax``: (x - min) / (max - min) per image, over all its channels.
- ``percentile[:LO,HI]``: (x - p_LO) / (p_HI - p_LO) per image, over all channels, clipped to
  [0, 1] (the stretch saturates the LO % darkest and the 100 - HI % brightest values, as asked);
  default 1,99. Percentiles are ``numpy.percentile`` with linear interpolation.
- ``auto`` (default): 8-bit as is; 16-bit at full scale unless the image's span (max - min) is below
  1/16 of 65535 (:data:`NARROW_SPAN`), as in radiometric thermal frames (FLIR Tau/Boson, most LWIR
  cores) that hold 14-bit counts in a band of a few hundred levels: those get a per-image 1st-99th
  percentile stretch and a counted warning naming the files; float images in [0, 1] as is,
  otherwise InputError naming the file and its (min, max) (a float TIFF of temperatures) unless
  ``minmax`` or ``percentile`` is chosen.

A constant image has no range to stretch: it is read at full scale (integers), as is (floats in
[0, 1]) or as zeros, and logged as flat. Every decision is counted in a :class:`RangeLog` the
caller passes in (thread-safe), which gives printable warnings and a dict for run.json. A caller
that passes no log still hears of every stretched, flat or nearly flat image: each one is issued
as a :class:`ValueRangeWarning` (Python ``warnings``, one per file).
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusedet.errors import InputError

MODES: tuple[str, ...] = ("auto", "full", "minmax", "percentile")
NARROW_SPAN: float = 65535.0 / 16.0  # 16-bit span below this (4095.94 levels) counts as narrow
FLOAT_TOLERANCE: float = 1.0 / 512.0  # a float image may overshoot [0, 1] by half an 8-bit level
DEFAULT_PERCENTILES: tuple[float, float] = (1.0, 99.0)
_SPEC = re.compile(r"^\s*(auto|full|minmax|percentile)\s*(?::\s*([^,\s]+)\s*,\s*([^,\s]+)\s*)?$", re.IGNORECASE)


class ValueRangeWarning(UserWarning):
    """An image stretched automatically, constant, or nearly flat, read without a RangeLog."""


@dataclass(frozen=True)
class ValueRange:
    """A parsed spec: `mode` in :data:`MODES`; `low`/`high` percentiles (used by ``percentile``)."""

    mode: str = "auto"
    low: float = DEFAULT_PERCENTILES[0]
    high: float = DEFAULT_PERCENTILES[1]

    def __str__(self) -> str:
        if self.mode == "percentile":
            return f"percentile:{self.low:g},{self.high:g}"
        return self.mode


def parse_value_range(spec: str | ValueRange | None, *, option: str = "value range") -> ValueRange:
    """``auto|full|minmax|percentile[:LO,HI]`` -> ValueRange (None -> auto). `option` ("--ir-range")
    names the setting in errors. Raises InputError on anything else, or on LO/HI outside
    0 <= LO < HI <= 100."""
    if spec is None:
        return ValueRange()
    if isinstance(spec, ValueRange):
        return spec
    match = _SPEC.match(str(spec))
    if match is None:
        raise InputError(f"{option} {str(spec)!r}: expected auto, full, minmax or percentile[:LO,HI] (e.g. percentile:1,99)")
    mode = match.group(1).lower()
    if match.group(2) is None:
        return ValueRange(mode)
    if mode != "percentile":
        raise InputError(f"{option} {str(spec)!r}: only percentile takes LO,HI")
    try:
        low, high = float(match.group(2)), float(match.group(3))
    except ValueError:
        raise InputError(f"{option} {str(spec)!r}: LO and HI must be numbers") from None
    if not (0.0 <= low < high <= 100.0):
        raise InputError(f"{option} {str(spec)!r}: need 0 <= LO < HI <= 100")
    return ValueRange(mode, low, high)


class RangeLog:
    """Counts how images were brought to [0, 1], per role ("ir", "vis", ...) and decision.

    Decisions: ``8-bit``, ``16-bit full scale``, ``16-bit stretched (auto)``, ``float as is``,
    ``minmax``, ``percentile LO-HI``, ``flat`` (constant image), ``16-bit narrow at full scale``
    (``full`` on a nearly flat 16-bit image). Files that were auto-stretched, flat or narrow are
    named. Safe to share between threads.
    """

    WARN = ("16-bit stretched (auto)", "flat", "16-bit narrow at full scale")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter = Counter()  # (role, decision) -> images
        self.files: dict[tuple[str, str], list[str]] = {}  # (role, decision) -> files, for WARN decisions
        self.specs: dict[str, str] = {}  # role -> spec text

    def record(self, role: str, decision: str, path: str | os.PathLike | None, spec: ValueRange) -> None:
        with self._lock:
            self.counts[(role, decision)] += 1
            self.specs.setdefault(role, str(spec))
            if decision in self.WARN and path is not None:
                self.files.setdefault((role, decision), []).append(str(path))

    def update(self, other: RangeLog) -> None:
        """Add `other`'s counts and named files to this log (another process's share of a run)."""
        with self._lock:
            self.counts.update(other.counts)
            for key, paths in other.files.items():
                self.files.setdefault(key, []).extend(paths)
            for role, spec in other.specs.items():
                self.specs.setdefault(role, spec)

    def __getstate__(self) -> dict:  # picklable (sent between the processes of a sharded run)
        with self._lock:
            return {"counts": Counter(self.counts), "files": {k: list(v) for k, v in self.files.items()}, "specs": dict(self.specs)}

    def __setstate__(self, state: dict) -> None:
        self._lock = threading.Lock()
        self.counts, self.files, self.specs = state["counts"], state["files"], state["specs"]

    def warning_count(self) -> int:
        """Images that were stretched automatically, flat, or nearly flat."""
        return sum(n for (_, d), n in self.counts.items() if d in self.WARN)

    def warnings(self, limit: int = 5) -> list[str]:
        """One printable line per (role, warned decision), naming up to `limit` files."""
        out = []
        for (role, decision), files in sorted(self.files.items()):
            n = self.counts[(role, decision)]
            shown = ", ".join(files[:limit]) + (f" and {len(files) - limit} more" if len(files) > limit else "")
            if decision == "16-bit stretched (auto)":
                what = (f"{n} {role} image(s) are 16-bit with a span below 1/16 of the range (max - min < 4096, "
                        f"radiometric counts); stretched per image from the 1st to the 99th percentile")
            elif decision == "flat":
                what = f"{n} {role} image(s) are constant (a single value): nothing to stretch"
            else:
                what = f"{n} {role} image(s) are 16-bit with a span below 4096 levels, read at full scale as asked: nearly flat"
            out.append(f"{what}: {shown}")
        return out

    def to_dict(self) -> dict:
        """For run.json: the spec per role, counts per role and decision, files named per warning."""
        counts: dict[str, dict[str, int]] = {}
        for (role, decision), n in sorted(self.counts.items()):
            counts.setdefault(role, {})[decision] = n
        files = {f"{role}: {decision}": list(paths) for (role, decision), paths in sorted(self.files.items())}
        return {"specs": dict(self.specs), "counts": counts, "warned_files": files}


def _hint(role: str) -> str:
    flag = f" (e.g. --{role}-range minmax)" if role in ("ir", "vis") else ""
    return f"choose a normalisation for the {role} image: minmax or percentile[:LO,HI]{flag}"


def _range_error(path, image: np.ndarray, kind: str, role: str) -> InputError:
    lo, hi = float(np.min(image)), float(np.max(image))
    return InputError(f"{path}: {kind} with values outside [0, 1] (min {lo:.4g}, max {hi:.4g}); {_hint(role)}")


def _flat(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255.0)
    if image.dtype == np.uint16:
        return image.astype(np.float32) / np.float32(65535.0)
    values = image.astype(np.float32)
    if values.size and 0.0 <= float(values.min()) and float(values.max()) <= 1.0:
        return values
    return np.zeros(image.shape, np.float32)


def _stretch(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    values = image.astype(np.float64)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def to_unit_range(
    image: np.ndarray,
    spec: ValueRange | str | None = None,
    *,
    path: str | os.PathLike = "<image>",
    role: str = "image",
    log: RangeLog | None = None,
) -> np.ndarray:
    """Bring decoded pixels (H x W or H x W x C; uint8, uint16, other integers or floats) to float32
    in [0, 1] by `spec` (module docstring). `path` and `role` ("ir", "vis") name the image in errors
    and in `log`. Raises InputError for non-finite values, a float image outside [0, 1] under
    auto/full, and integer types other than 8/16-bit unsigned under auto/full."""
    spec = parse_value_range(spec)
    path = Path(path) if not isinstance(path, Path) else path
    if image.size == 0:
        raise InputError(f"{path}: empty image")
    is_float = np.issubdtype(image.dtype, np.floating)
    if is_float and not np.isfinite(image).all():
        raise InputError(f"{path}: image holds non-finite values (NaN or infinity)")
    if not (is_float or np.issubdtype(image.dtype, np.integer)):
        raise InputError(f"{path}: unsupported pixel type {image.dtype}")

    def done(out: np.ndarray, decision: str) -> np.ndarray:
        if log is not None:
            log.record(role, decision, path, spec)
        elif decision in RangeLog.WARN:
            what = "image" if role == "image" else f"{role} image"
            warnings.warn(f"{path}: {what} {decision} (value range {spec})", ValueRangeWarning, stacklevel=4)
        return out

    if spec.mode in ("auto", "full") and image.dtype == np.uint8:
        return done(image.astype(np.float32) / np.float32(255.0), "8-bit")  # no statistics needed
    lo, hi = float(image.min()), float(image.max())
    if spec.mode in ("minmax", "percentile"):
        if spec.mode == "percentile":
            p_lo, p_hi = (float(v) for v in np.percentile(image, [spec.low, spec.high]))
            if p_hi > p_lo:
                return done(_stretch(image, p_lo, p_hi), f"percentile {spec.low:g}-{spec.high:g}")
        if hi > lo:
            return done(_stretch(image, lo, hi), "minmax")
        return done(_flat(image), "flat")

    # auto / full
    if image.dtype == np.uint16:
        narrow = hi - lo < NARROW_SPAN
        if spec.mode == "auto" and narrow:
            if hi == lo:
                return done(_flat(image), "flat")
            p_lo, p_hi = (float(v) for v in np.percentile(image, DEFAULT_PERCENTILES))
            if p_hi <= p_lo:
                p_lo, p_hi = lo, hi
            return done(_stretch(image, p_lo, p_hi), "16-bit stretched (auto)")
        out = image.astype(np.float32) / np.float32(65535.0)
        return done(out, "16-bit narrow at full scale" if narrow else "16-bit full scale")
    if is_float:
        if lo >= -FLOAT_TOLERANCE and hi <= 1.0 + FLOAT_TOLERANCE:
            return done(np.clip(image.astype(np.float32), 0.0, 1.0), "float as is")
        raise _range_error(path, image, "float image", role)
    raise InputError(f"{path}: {image.dtype} pixels (min {lo:.6g}, max {hi:.6g}) have no standard scale; {_hint(role)}")
