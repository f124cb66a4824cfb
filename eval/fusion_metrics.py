"""Fusion-quality metrics in torch (CPU or CUDA): the public entry points for every convention, and the
``cddfuse`` convention's eleven metrics.

:func:`compute_metrics`, :func:`compute_metrics_batch` and :class:`PairScorer` take ``convention="cddfuse"``
(the default, below) or ``"vifb"`` (VIFB's thirteen MATLAB metrics, ``fusedet.eval.vifb_metrics``); see
``fusedet.eval.metric_conventions`` for what each convention is.

The cddfuse convention: EN, SF, AG, SD, CC, SCD, MI, VIF, Qabf, SSIM and MS-SSIM, with the conventions of the field's reference
code (CDDFuse's ``utils/Evaluator.py``, scikit-image's SSIM, pytorch_msssim's MS-SSIM) as below:

- inputs are gray images on the 0..255 scale holding integers (8-bit levels); colour inputs are turned
  into BT.601 gray (``0.299 R + 0.587 G + 0.114 B``, OpenCV's float32 conversion) and rounded;
- A is the infrared image, B the visible one, F the fused one;
- CC is the mean of corr(A, F) and corr(B, F); SCD, MI (nats), VIF, SSIM and MS-SSIM are summed over
  the two sources; EN is in bits over 256 bins.

Two ways in:

- :func:`compute_metrics` (or one function per metric, e.g. :func:`vif`) scores one (IR, VIS, fused) triplet;
- :class:`PairScorer` (or :func:`compute_metrics_batch`; :class:`CddfusePairScorer` underneath) prepares everything that depends only on the
  two sources (their histograms, moments, Sobel maps, local means and variances at every scale, VIF
  denominators) once, then scores any number of fused images of that pair in batches: what
  ``fusedet metrics`` does with several methods.

Precision: exact integer arithmetic wherever the reference's quantities are integers (histograms,
moments, Sobel responses, SSIM's 7 x 7 box sums and their variance/covariance numerators), float64 for
VIF's Gaussian statistics (its 1e-10 variance thresholds need it), float32 where the reference itself
works in float32 (Qabf, AG) and for MS-SSIM's statistics of values centred at 128 (within 2e-6 of
float64). On CUDA every filter runs in float64 (float32 GEMMs may use TF32 there). MS-SSIM needs a
short side of at least 161 pixels (four halvings of an 11-tap window); smaller images get NaN for
MS-SSIM and a :class:`MetricWarning` naming the image; the other metrics need a short side of at least
41 pixels (VIF's four scales) and raise :class:`fusedet.errors.InputError` below that.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from functools import cached_property

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from fusedet.devices import device_for
from fusedet.errors import InputError
from fusedet.eval import metrics_kernels
from fusedet.eval.metric_conventions import CONVENTIONS, MetricWarning, check_array_type, get_convention, warn_unit_scale
from fusedet.eval.metrics_filters import (
    box_sums_valid,
    filter2d_valid,
    matlab_gaussian_taps,
    msssim_gaussian_taps,
    sobel_same,
)

_CONVENTION = CONVENTIONS["cddfuse"]
# Key order of the golden JSON files / `fusedet metrics --out metrics.json`.
METRIC_NAMES: tuple[str, ...] = _CONVENTION.metrics
# Column order of the DMNet paper's Tables I-IV (plus SSIM at the end).
TABLE_ORDER: tuple[str, ...] = _CONVENTION.table_order

MSSSIM_MIN_SIDE = 161  # pytorch_msssim: short side > (11 - 1) * 2**4
MIN_SIDE = dict(_CONVENTION.min_side)  # smallest short side each metric is defined for

Images = torch.Tensor | np.ndarray


def check_size(width: int, height: int, metrics: Iterable[str], name: str) -> None:
    """InputError naming `name` if a W x H image is too small for one of `metrics` (see MIN_SIDE)."""
    _CONVENTION.check_size(width, height, metrics, name)


def parse_metric_names(names: str | Iterable[str] | None) -> tuple[str, ...]:
    """Canonical metric names in METRIC_NAMES order; accepts any case and a comma-separated string.

    None means all eleven. Unknown names raise InputError listing the valid ones.
    """
    return _CONVENTION.parse_metrics(names)


def _check_range(x: torch.Tensor, name: str) -> float:
    """InputError unless every value is finite and within 0..255; returns the maximum."""
    lo, hi = (float(v) for v in torch.aminmax(x))  # NaN propagates, +-inf falls outside the range
    if math.isnan(lo) or math.isnan(hi):
        raise InputError(f"{name}: holds NaN values")
    if lo < 0 or hi > 255:
        raise InputError(f"{name}: values span {lo:g}..{hi:g}; the metrics expect the 0..255 scale")
    return hi


def bt601_gray(rgb: np.ndarray) -> np.ndarray:
    """Rounded BT.601 gray of an H x W x 3 RGB float32 array of 8-bit levels, bit for bit the reference's
    ``np.round(cv2.cvtColor(bgr.astype(np.float32), cv2.COLOR_BGR2GRAY))``.

    The channels go back to BGR order first: COLOR_RGB2GRAY adds the three products in another order,
    which rounds differently on the (rare) pixels whose gray value is within float error of k + 0.5.
    """
    bgr = np.ascontiguousarray(rgb[:, :, ::-1], dtype=np.float32)
    return np.round(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))


def to_gray255(image: Images, name: str = "image") -> torch.Tensor:
    """An image as the metrics see it: H x W float32 holding integers in 0..255 (on the input's device).

    Accepts numpy arrays or torch tensors, H x W (gray) or H x W x 3 (RGB, channels last) or H x W x 1,
    on the 0..255 scale. Values are rounded to integers (the 8-bit levels the reference reads); colour is
    converted with OpenCV's float32 BT.601 gray conversion and rounded again, as the reference does.
    Values outside 0..255 after rounding and boolean arrays raise InputError; a float image whose
    maximum is <= 1 warns (MetricWarning: it is probably on the 0..1 scale).
    """
    is_torch = isinstance(image, torch.Tensor)
    if not is_torch and not isinstance(image, np.ndarray):
        raise InputError(f"{name}: expected a numpy array or torch tensor, got {type(image).__name__}")
    check_array_type(image, name)
    if not is_torch and image.dtype == np.uint8 and image.ndim == 2:  # 8-bit levels as they are
        return torch.from_numpy(image.astype(np.float32))
    shape = tuple(image.shape)
    if len(shape) == 3 and shape[2] == 1:
        image = image[..., 0]
    elif not (len(shape) == 2 or (len(shape) == 3 and shape[2] == 3)):
        raise InputError(f"{name}: expected H x W or H x W x 3 (RGB), got shape {shape}")
    floating = image.is_floating_point() if is_torch else np.issubdtype(image.dtype, np.floating)
    if image.ndim == 3:  # colour: exact OpenCV conversion on the CPU
        rgb = np.rint((image.detach().cpu().numpy() if is_torch else image).astype(np.float32))
        _check_range(torch.from_numpy(rgb), name)
        out = torch.from_numpy(bt601_gray(rgb))
        out = out.to(image.device) if is_torch else out
    else:
        out = image.detach() if is_torch else torch.from_numpy(np.ascontiguousarray(image))
        out = torch.round(out.to(torch.float32))
    hi = _check_range(out, name)
    warn_unit_scale(floating, hi, name)
    return out.contiguous()


# --------------------------------------------------------------------------------------------------
# Implementation. _Sources holds the pair (A, B) and what several metrics derive from it; _Fused holds
# a batch of fused images F (N x H x W) and what several metrics derive from them (histograms, moments).
# One class per metric: __init__ does the work that depends only on the sources, __call__ scores a batch and returns N float64 values on the CPU.
# --------------------------------------------------------------------------------------------------

_LEVELS = torch.arange(256, dtype=torch.float64)
CENTRE = 128.0  # the level windowed statistics are taken around (the same statistics, smaller float error)


def _entropy(counts: torch.Tensor, total: int) -> torch.Tensor:
    """Shannon entropy in nats of histograms along the last axis (empty bins contribute 0)."""
    p = counts / total
    return -(p * torch.log(torch.where(p > 0, p, 1.0))).sum(dim=-1)


def _u8(x: torch.Tensor) -> np.ndarray | None:
    """uint8 levels of a CPU tensor of integer levels (for OpenCV's histograms), None on other devices."""
    return x.to(torch.uint8).numpy() if x.device.type == "cpu" else None


def _hist(levels_u8: np.ndarray | None, x: torch.Tensor) -> torch.Tensor:
    """256-bin histogram (float64 counts, exact) of one image: cv2.calcHist on CPU, bincount elsewhere."""
    if levels_u8 is not None:
        return torch.from_numpy(cv2.calcHist([levels_u8], [0], None, [256], [0, 256]).reshape(256).astype(np.float64))
    return torch.bincount(x.reshape(-1).to(torch.int64), minlength=256).cpu().to(torch.float64)


def _joint(first_u8: np.ndarray | None, second_u8: np.ndarray | None, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """256 x 256 joint histogram [first level, second level] (float64 counts, exact; float32 holds counts
    below 2**24 exactly): cv2.calcHist on CPU, bincount elsewhere."""
    if first_u8 is not None:
        h = cv2.calcHist([first_u8, second_u8], [0, 1], None, [256, 256], [0, 256, 0, 256])
        return torch.from_numpy(h.astype(np.float64))
    idx = first.reshape(-1).to(torch.int64) * 256 + second.reshape(-1).to(torch.int64)
    return torch.bincount(idx, minlength=65536).cpu().to(torch.float64).view(256, 256)


class _Sources:
    """The (A, B) pair: float32 integer images H x W on the compute device."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        self.a, self.b = a, b
        self.n = a.numel()

    @cached_property
    def stacked(self) -> torch.Tensor:
        return torch.stack([self.a, self.b])  # 2 x H x W float32

    @cached_property
    def u8(self) -> list[np.ndarray | None]:
        return [_u8(self.a), _u8(self.b)]

    @cached_property
    def centred(self) -> torch.Tensor:
        """2 x H x W: A - 128 and B - 128, exact, in the fast dtype (float32 on CPU, float64 elsewhere)."""
        return (self.stacked - CENTRE).to(_fast_dtype(self.a.device))

    @cached_property
    def centred_planes(self) -> np.ndarray:
        """A - 128 and B - 128 as a C-contiguous 2 x H x W float32 array (CPU)."""
        return np.ascontiguousarray((self.stacked - CENTRE).numpy())

    @cached_property
    def hist(self) -> torch.Tensor:
        return torch.stack([_hist(u, x) for u, x in zip(self.u8, (self.a, self.b), strict=True)])  # 2 x 256

    @cached_property
    def moments(self) -> tuple[int, int, int, int, int]:
        """Exact sums (sum A, sum B, sum A^2, sum B^2, sum AB) as Python integers."""
        joint = _joint(self.u8[0], self.u8[1], self.a, self.b)
        v = _LEVELS
        sa, sb = (self.hist @ v).tolist()
        saa, sbb = (self.hist @ (v * v)).tolist()
        sab = float(v @ joint @ v)
        return int(sa), int(sb), int(saa), int(sbb), int(sab)


class _Fused:
    """A batch of fused images F (N x H x W float32 integers) and the quantities metrics share."""

    def __init__(self, f: torch.Tensor, sources: _Sources) -> None:
        self.f, self.src = f, sources
        self.count = f.shape[0]

    @cached_property
    def u8(self) -> list[np.ndarray | None]:
        return [_u8(x) for x in self.f]

    @cached_property
    def centred_maps(self) -> torch.Tensor:
        """4 x N x H x W: c = F - 128, c^2, (A - 128) c, (B - 128) c, exact (integers below 2**24), in the
        fast dtype; what VIF (scale 1), SSIM and MS-SSIM (scale 1) filter."""
        centred = self.src.centred
        maps = torch.empty((4, *self.f.shape), dtype=centred.dtype, device=self.f.device)
        c = torch.sub(self.f, CENTRE, out=maps[0])
        torch.mul(c, c, out=maps[1])
        torch.mul(centred[0], c, out=maps[2])
        torch.mul(centred[1], c, out=maps[3])
        return maps

    def centred_array(self, n: int, dtype: type = np.float32) -> np.ndarray:
        """Image `n` of a CPU batch as an H x W array F - 128 of `dtype` (float32 computed once and shared by
        the metrics that filter it: VIF, SSIM, MS-SSIM)."""
        if dtype is not np.float32:
            return self.f[n].numpy().astype(dtype) - dtype(CENTRE)
        if self._centred[n] is None:
            self._centred[n] = self.f[n].numpy() - np.float32(CENTRE)
        return self._centred[n]

    @cached_property
    def _centred(self) -> list[np.ndarray | None]:
        return [None] * self.count

    def product_maps(self, n: int) -> np.ndarray:
        """Image `n` of a CPU batch as the 4 x H x W float32 maps c, c^2, (A - 128) c, (B - 128) c with
        c = F - 128 (exact integers), formed once and filtered by VIF's scale 1 and MS-SSIM's first scale."""
        if self._products[n] is None:
            a, b = self.src.centred_planes
            c = self.centred_array(n)
            self._products[n] = metrics_kernels.products(c, a, b, np.empty((4, *c.shape), np.float32))
        return self._products[n]

    @cached_property
    def _products(self) -> list[np.ndarray | None]:
        return [None] * self.count

    @cached_property
    def hist(self) -> torch.Tensor:
        if self.counts is not None:
            return self.counts[0]
        return torch.stack([_hist(u, x) for u, x in zip(self.u8, self.f, strict=True)])  # N x 256

    @cached_property
    def counts(self) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int, int, int]]] | None:
        """Through the compiled kernels (None where they do not serve the device): the histograms of F
        (N x 256, float64 counts), the joint entropies H(F, A) and H(F, B) in nats (2 x N) and the exact
        moments (as :attr:`moments`), from one pass over each image."""
        kern = _kernels(self.f.device)
        if kern is None:
            return None
        n = self.f[0].numel()
        hist = np.zeros((self.count, 256), np.int64)
        joint_entropy = torch.empty(2, self.count, dtype=torch.float64)
        moments = []
        for i, f in enumerate(self.f.numpy()):
            joint = np.zeros((2, 256, 256), np.int32)
            moments.append(tuple(int(x) for x in kern.histograms(f, *self.src.u8, hist[i], joint)))
            for s in range(2):
                c = joint[s][joint[s] > 0].astype(np.float64)
                # -sum p log p with p = c / n; not np.dot: its BLAS threads would spin beside the worker threads
                joint_entropy[s, i] = math.log(n) - float((c * np.log(c)).sum()) / n
        return torch.from_numpy(hist.astype(np.float64)), joint_entropy, moments

    @cached_property
    def joint_entropy(self) -> torch.Tensor:
        """H(F, A) and H(F, B) in nats, 2 x N."""
        if self.counts is not None:
            return self.counts[1]
        return _entropy(self.joint.view(2, self.count, -1), self.src.n)

    @cached_property
    def gradient_sums(self) -> list[tuple[float, float, float]] | None:
        """Per image, SF's and AG's sums from one compiled pass (``metrics_kernels.gradient_sums``); None
        where the kernels do not serve the device."""
        kern = _kernels(self.f.device)
        return None if kern is None else [kern.gradient_sums(f) for f in self.f.numpy()]

    @cached_property
    def joint(self) -> torch.Tensor:
        """Joint histograms of (F, A) and (F, B): 2 x N x 256 x 256 counts (float64), first index F."""
        out = torch.empty(2, self.count, 256, 256, dtype=torch.float64)
        for s, (src_u8, src) in enumerate(zip(self.src.u8, (self.src.a, self.src.b), strict=True)):
            for i, (f_u8, f) in enumerate(zip(self.u8, self.f, strict=True)):
                out[s, i] = _joint(f_u8, src_u8, f, src)
        return out

    @cached_property
    def moments(self) -> list[tuple[int, int, int, int]]:
        """Per image, exact (sum F, sum F^2, sum AF, sum BF) as Python integers (from the histograms)."""
        if self.counts is not None:
            return self.counts[2]
        v = _LEVELS
        h = self.hist
        cross = (self.joint @ v) @ v  # 2 x N: sum over (f, s) of f * s * count
        rows = zip((h @ v).tolist(), (h @ (v * v)).tolist(), cross[0].tolist(), cross[1].tolist())
        return [tuple(int(x) for x in row) for row in rows]


def _total(x: torch.Tensor) -> torch.Tensor:
    """Sums over the last two axes as float64. float32 input is summed in float32 first: torch's CPU
    reduction sums in cascades (relative error about 1e-8 here), far cheaper than converting to float64."""
    return x.sum(dim=(-2, -1)).to(torch.float64)


def _sum_log1p(x: torch.Tensor) -> torch.Tensor:
    """Sums of log(1 + x) over the last two axes, float64, for finite x >= 0 (float32 or float64); x is
    left alone.

    On the CPU through numpy's log1p in x's own precision (SIMD on x86: 2.2x faster than torch's float32
    log1p, which is not vectorised there, and 3.4x faster in float64), each map summed in float64: float64
    input gives the float64 log1p exactly; float32 input is within 1 ulp per value (about 1e-7 relative,
    2.5e-9 on the sums of VIF's maps). Elsewhere torch's float64 log1p.
    """
    if x.device.type != "cpu":
        return x.to(torch.float64).log1p().sum(dim=(-2, -1))
    values = x.detach().reshape(*x.shape[:-2], -1).numpy()
    return torch.from_numpy(np.log1p(values).sum(axis=-1, dtype=np.float64))


def _fast_dtype(device: torch.device) -> torch.dtype:
    """float32 on CPU (OpenCV filters in IEEE single precision), float64 elsewhere: float32 GEMMs on CUDA
    may run in TF32 (10-bit mantissa), far too coarse for the metrics."""
    return torch.float32 if device.type == "cpu" else torch.float64


KERNELS = True  # False: the torch/OpenCV path on the CPU too (the tests compare the two)


def _kernels(device: torch.device):
    """``fusedet.eval.metrics_kernels`` when its compiled kernels serve `device` (the CPU, numba importable),
    else None: the torch/OpenCV path."""
    return metrics_kernels if KERNELS and device.type == "cpu" and metrics_kernels.AVAILABLE else None


def _planes(x: torch.Tensor) -> np.ndarray:
    """A 2 x 1 x h x w (or 2 x h x w) CPU tensor as a C-contiguous 2 x h x w array."""
    return np.ascontiguousarray(x.reshape(2, *x.shape[-2:]).numpy())


class _Metric:
    def __init__(self, src: _Sources) -> None:
        self.src = src

    def __call__(self, fused: _Fused) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class _EN(_Metric):
    """Entropy (bits) of the 256-bin histogram of F."""

    def __call__(self, fused):
        return _entropy(fused.hist, self.src.n) / math.log(2.0)


class _SD(_Metric):
    """Population standard deviation of F (exact moments)."""

    def __call__(self, fused):
        n = self.src.n
        return torch.tensor([math.sqrt(max(n * s2 - s1 * s1, 0)) / n for s1, s2, _, _ in fused.moments], dtype=torch.float64)


class _SF(_Metric):
    """sqrt(RF^2 + CF^2): mean squared differences of horizontal and of vertical neighbours."""

    def __call__(self, fused):
        if fused.gradient_sums is not None:
            h, w = fused.f.shape[-2:]
            values = [math.sqrt(rows / (h * (w - 1)) + cols / ((h - 1) * w)) for rows, cols, _ in fused.gradient_sums]
            return torch.tensor(values, dtype=torch.float64)
        f = fused.f
        dx = f[:, :, 1:] - f[:, :, :-1]
        dy = f[:, 1:, :] - f[:, :-1, :]
        rf = _total(dx.square_()) / dx[0].numel()
        cf = _total(dy.square_()) / dy[0].numel()
        return torch.sqrt(rf + cf).cpu()


class _AG(_Metric):
    """Mean of sqrt((Gx^2 + Gy^2) / 2), gradients as numpy.gradient: central differences inside,
    one-sided on the borders. Inside, sqrt(((dx/2)^2 + (dy/2)^2) / 2) = sqrt(dx^2 + dy^2) / sqrt(8)."""

    @staticmethod
    def _axis_gradient(f: torch.Tensor, dim: int) -> torch.Tensor:
        n = f.shape[dim]
        inner = (f.narrow(dim, 2, n - 2) - f.narrow(dim, 0, n - 2)) / 2
        first = f.narrow(dim, 1, 1) - f.narrow(dim, 0, 1)
        last = f.narrow(dim, n - 1, 1) - f.narrow(dim, n - 2, 1)
        return torch.cat([first, inner, last], dim=dim)

    def __call__(self, fused):
        if fused.gradient_sums is not None:
            return torch.tensor([ag / fused.f[0].numel() for _, _, ag in fused.gradient_sums], dtype=torch.float64)
        f = fused.f
        # inside: rows 1..H-2 and columns 1..W-2, both differences central
        dx = f[:, 1:-1, 2:] - f[:, 1:-1, :-2]
        dy = f[:, 2:, 1:-1] - f[:, :-2, 1:-1]
        total = _total(dx.square_().addcmul_(dy, dy).sqrt_()) / math.sqrt(8.0)
        # borders: first and last rows (full width) and columns (without the corners)
        rows = f[:, [0, -1], :]
        gx = self._axis_gradient(rows, -1)
        gy = torch.stack([f[:, 1] - f[:, 0], f[:, -1] - f[:, -2]], dim=1)
        gy_c = (f[:, 2:, [0, -1]] - f[:, :-2, [0, -1]]) / 2
        gx_c = torch.stack([f[:, 1:-1, 1] - f[:, 1:-1, 0], f[:, 1:-1, -1] - f[:, 1:-1, -2]], dim=-1)
        edge = _total(torch.sqrt((gx * gx + gy * gy) / 2))
        edge += _total(torch.sqrt((gx_c * gx_c + gy_c * gy_c) / 2))
        return ((total + edge) / f[0].numel()).cpu()


def _corr(cov: int, var1: int, var2: int) -> float:
    den = var1 * var2
    return cov / math.sqrt(den) if den > 0 else math.nan


class _Covariances(_Metric):
    """n^2 times the (co)variances of A, B and F, as exact integers."""

    def __init__(self, src):
        super().__init__(src)
        n = src.n
        sa, sb, saa, sbb, sab = src.moments
        self.va, self.vb, self.cab = n * saa - sa * sa, n * sbb - sb * sb, n * sab - sa * sb
        self.sa, self.sb = sa, sb

    def fused(self, fused):
        """Per image: (n^2 var F, n^2 cov(A, F), n^2 cov(B, F))."""
        n = self.src.n
        return [(n * sff - sf * sf, n * saf - self.sa * sf, n * sbf - self.sb * sf) for sf, sff, saf, sbf in fused.moments]


class _CC(_Covariances):
    """(corr(A, F) + corr(B, F)) / 2, Pearson."""

    def __call__(self, fused):
        out = [(_corr(caf, self.va, vf) + _corr(cbf, self.vb, vf)) / 2 for vf, caf, cbf in self.fused(fused)]
        return torch.tensor(out, dtype=torch.float64)


class _SCD(_Covariances):
    """corr(A, F - B) + corr(B, F - A), Pearson (sum of the correlations of differences)."""

    def __call__(self, fused):
        out = []
        for vf, caf, cbf in self.fused(fused):
            r1 = _corr(caf - self.cab, self.va, vf + self.vb - 2 * cbf)  # cov(A, F - B), var(F - B)
            r2 = _corr(cbf - self.cab, self.vb, vf + self.va - 2 * caf)
            out.append(r1 + r2)
        return torch.tensor(out, dtype=torch.float64)


class _MI(_Metric):
    """MI(F, A) + MI(F, B) in nats: H(F) + H(S) - H(F, S) from 256 x 256 joint histograms, each clipped
    at 0 as scikit-learn's mutual_info_score (the reference) does."""

    def __call__(self, fused):
        n = self.src.n
        h_f = _entropy(fused.hist, n)  # N
        h_s = _entropy(self.src.hist, n).view(2, 1)  # 2 x 1
        h_fs = fused.joint_entropy  # 2 x N
        return torch.clamp(h_f + h_s - h_fs, min=0.0).sum(dim=0)


class _VIF(_Metric):
    """Pixel-domain VIF (Sheikh & Bovik) of A -> F plus that of B -> F; four scales, sigma_n^2 = 2.

    Scale s uses the MATLAB Gaussian window of size N = 2**(5-s) + 1 and sigma N/5; for s > 1 the images
    are first filtered with it ('valid') and subsampled by 2.
    Per pixel, the reference's case analysis (g = sigma12 / (sigma1^2 + eps), sv^2 = sigma2^2 - g sigma12,
    zeroing of g below eps / for g < 0, sv^2 >= eps) reduces to
    ratio = max(sigma12, 0)^2 * sigma1^2 / (sigma1^2 + eps)^2 / (max(sigma2^2 - max(sigma12, 0)^2 / (sigma1^2 + eps), eps) + sigma_n^2)
    with sigma1^2 zeroed below eps. Where sigma2^2 < eps (a flat fused window) the reference's term is 0.

    Precision: the sources' statistics are float64 (computed once per pair). On the CPU the fused image's
    scale-1 statistics (four 17-tap filters at full resolution, the bulk of the work) are float32, of
    values centred at 128 whose squares and products are exact; their rounding (about 1e-3 on E[F^2]) is
    small against sigma_n^2 = 2 in every term. Windows where F is constant, whose statistics the
    reference's float64 arithmetic puts below its 1e-10 thresholds, are found exactly (17 x 17 minimum ==
    maximum) and contribute 0, as there. Within 4e-5 of the float64 computation on the TNO fusions; images far
    from mid-grey with almost no contrast lose more, since E[F^2] about 128^2 then dwarfs a variance of a few
    levels (5e-4 for levels 0..10 or 245..255, 1e-2 for levels 0..4; the compiled kernels and the torch
    path alike).
    Scales 2 to 4 (not integers any more, where float32 sums would be amplified by 1 / sigma1^2 in nearly
    flat source windows) and other devices are float64.
    """

    EPS = 1e-10
    SIGMA_N2 = 2.0
    FLAT_BELOW = 0.5  # float32 E[F^2] - E[F]^2 of a constant window is rounding, under 0.1 (the kernels' test)
    SIZES = tuple(2 ** (5 - s) + 1 for s in range(1, 5))
    TAPS = tuple(matlab_gaussian_taps(n, n / 5.0) for n in SIZES)

    def __init__(self, src):
        super().__init__(src)
        self.fast = _fast_dtype(src.a.device) == torch.float32
        self.kernels = _kernels(src.a.device)
        if self.kernels is not None:
            self._init_kernels(src)
            return
        x = src.stacked  # 2 x H x W; float32 integers at scale 1, float64 after
        den = torch.zeros(2, dtype=torch.float64, device=x.device)
        self.scales = []  # per scale: (A and B at that scale, local means, sigma1^2 + eps, sigma1^2 / (sigma1^2 + eps)^2)
        for s, taps in enumerate(self.TAPS):
            if s > 0:
                x = filter2d_valid(x, taps, stride=2)
            maps = torch.cat([x, x * x]).to(torch.float64)
            stats = filter2d_valid(maps, taps)
            mu = stats[:2]
            var = torch.addcmul(stats[2:], mu, mu, value=-1).clamp_(min=0.0)
            var.masked_fill_(var < self.EPS, 0.0)
            den += _sum_log1p(var / self.SIGMA_N2)
            var_eps = var + self.EPS
            weight = var / var_eps.square()
            if s == 0:  # centred, in the fast dtype: the fused image's scale-1 statistics are of centred values
                entry = (x - CENTRE, (mu - CENTRE).unsqueeze(1), var_eps.unsqueeze(1), weight.unsqueeze(1))
                self.scales.append(tuple(t.to(_fast_dtype(x.device)) for t in entry))
            else:
                self.scales.append((x, mu.unsqueeze(1), var_eps.unsqueeze(1), weight.unsqueeze(1)))
            x = maps[:2]  # float64 for the next scale's filter
        self.den = (den / math.log(10.0)).tolist()

    def _init_kernels(self, src) -> None:
        """The sources' terms of every scale through the compiled kernels, as the torch path computes them:
        self.planes[s] = (A and B at that scale, their local means, 1 / (variances + eps), weights), 2 x h x w
        arrays; scale 1 in the fast dtype and centred at 128, the others float64."""
        kern = self.kernels
        x = src.stacked.numpy().astype(np.float64)  # 2 x H x W integers
        den = np.zeros(2)
        self.planes = []
        for s, taps in enumerate(self.TAPS):
            if s > 0:
                x = kern.filter_valid(x, taps, stride=2)
            stats = kern.filter_valid(np.concatenate([x, x * x]), taps)
            dtype = (np.float32 if self.fast else np.float64) if s == 0 else np.float64
            mu, inv_var_eps, weight = (np.empty((2, *stats.shape[1:]), dtype) for _ in range(3))
            centre = CENTRE if s == 0 else 0.0
            den += kern.vif_source_terms(stats, self.EPS, self.SIGMA_N2, centre, mu, inv_var_eps, weight)
            self.planes.append(((x - centre).astype(dtype), mu, inv_var_eps, weight))
        self.den = (den / math.log(10.0)).tolist()

    def _terms(self, stats, mu1, var1_eps, weight, flat=None) -> torch.Tensor:
        """Sum over pixels of log1p(ratio) (see the class docstring); stats = E[F], E[F^2], E[AF], E[BF]
        (centred or not, as mu1 is); `flat`: N x h x w windows where F is constant (statistics 0)."""
        mu2 = stats[0]
        # sigma2^2 is not clipped at 0 here: below 0 it only lowers sv^2 + sigma_n^2, which is clipped at sigma_n^2 + eps
        var2 = torch.addcmul(stats[1], mu2, mu2, value=-1)
        cov = torch.addcmul(stats[2:], mu1, mu2, value=-1).clamp_(min=0.0)  # 2 x N x h x w
        if flat is not None:
            var2.masked_fill_(flat, 0.0)
            cov.masked_fill_(flat, 0.0)
        cov_sq = cov.square_()
        sv_n = torch.addcdiv(var2.add_(self.SIGMA_N2), cov_sq, var1_eps, value=-1).clamp_(min=self.SIGMA_N2 + self.EPS)
        return _sum_log1p(cov_sq.mul_(weight).div_(sv_n))

    @staticmethod
    def _flat(f: torch.Tensor, size: int) -> torch.Tensor | None:
        """N x h x w: True where F (integer levels) is constant over a size x size window ('valid'
        positions), exactly (window maximum == window minimum); None when there is no such window."""
        kernel = np.ones((size, size), np.uint8)
        half = size // 2
        out = []
        for img in f.to(torch.uint8).numpy():
            hi, lo = cv2.dilate(img, kernel), cv2.erode(img, kernel)
            out.append(torch.from_numpy(hi[half:-half, half:-half] == lo[half:-half, half:-half]))
        flat = torch.stack(out)
        return flat if bool(flat.any()) else None

    def _numerator_kernels(self, fused) -> torch.Tensor:
        """The numerator sums (natural log), 2 x N, through the compiled kernels, as on the torch path: scale 1
        in float32 of centred values, the first downsampling in float32, scales 2 to 4 in float64."""
        kern = self.kernels
        num = torch.zeros(2, fused.count, dtype=torch.float64)
        no_flat = np.zeros((0, 0), np.bool_)
        for n, f in enumerate(fused.f.numpy()):
            x, mu1, inv_var1_eps, weight = self.planes[0]
            dtype = x.dtype.type  # float32 (the fast dtype), float64 where the tests ask for it
            constants = dtype(self.SIGMA_N2), dtype(self.EPS), dtype(self.FLAT_BELOW)
            if dtype is np.float32:  # the product maps MS-SSIM filters too
                stats = kern.filter_valid(fused.product_maps(n), self.TAPS[0])
            else:
                stats = kern.window_stats(fused.centred_array(n, dtype), x[0], x[1], self.TAPS[0])
            total, suspects = kern.vif_log_sums(stats, mu1, inv_var1_eps, weight, no_flat, *constants)
            flat = self._flat(fused.f[n : n + 1], self.SIZES[0]) if self.fast and suspects else None
            if flat is not None:  # some windows of F are constant: their terms are 0 exactly
                total, _ = kern.vif_log_sums(stats, mu1, inv_var1_eps, weight, flat[0].numpy(), *constants)
            g = f[None]  # the first downsampling in float32 (of integers), as on the torch path; float64 after
            for s in range(1, len(self.TAPS)):
                g = kern.filter_valid(g, self.TAPS[s], stride=2).astype(np.float64, copy=False)
                x, mu1, inv_var1_eps, weight = self.planes[s]
                stats = kern.window_stats(g[0], x[0], x[1], self.TAPS[s])
                total += kern.vif_log_sums(stats, mu1, inv_var1_eps, weight, no_flat, self.SIGMA_N2, self.EPS, 0.0)[0]
            num[:, n] = torch.from_numpy(total)
        return num

    def __call__(self, fused):
        if self.kernels is not None:
            return self._ratio(self._numerator_kernels(fused))
        f = fused.f  # float32 integers
        num = torch.zeros(2, fused.count, dtype=torch.float64, device=f.device)
        for s, taps in enumerate(self.TAPS):
            x, mu1, var1_eps, weight = self.scales[s]
            if s > 0:
                f = filter2d_valid(f, taps, stride=2)
            if s == 0:
                flat = self._flat(f, self.SIZES[0]) if self.fast else None
                num += self._terms(filter2d_valid(fused.centred_maps, taps), mu1, var1_eps, weight, flat)
                continue
            f = f.to(torch.float64)
            maps = torch.empty((4, *f.shape), dtype=torch.float64, device=f.device)
            maps[0] = f
            torch.mul(f, f, out=maps[1])
            torch.mul(x[0], f, out=maps[2])
            torch.mul(x[1], f, out=maps[3])
            f = maps[0]
            num += self._terms(filter2d_valid(maps, taps), mu1, var1_eps, weight)
        return self._ratio(num)

    def _ratio(self, num: torch.Tensor) -> torch.Tensor:
        """VIF(A, F) + VIF(B, F) from the 2 x N numerator sums (natural log)."""
        num = (num / math.log(10.0)).cpu()
        vif_a, vif_b = (num[i] / d if d != 0 else torch.ones_like(num[i]) for i, d in enumerate(self.den))
        return vif_a + vif_b  # a 0/0 ratio (a flat source) counts as 1, as in the reference


class _Qabf(_Metric):
    """Xydeas-Petrovic edge preservation Q^{AB/F} with the reference's Sobel maps and sigmoid constants."""

    TG, KG, DG = 0.9994, -15.0, 0.5
    TA, KA, DA = 0.9879, -22.0, 0.8

    @staticmethod
    def _edges(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Edge strength sqrt(gx^2 + gy^2) and angle arctan(gy / gx) (pi/2 where gx == 0), float32."""
        gx, gy = sobel_same(x)
        if gx.device.type == "cpu":  # one pass: OpenCV's magnitude, per 2-D map
            h, w = gx.shape[-2:]
            strength = torch.empty_like(gx)
            for sx, sy, out in zip(gx.reshape(-1, h, w).numpy(), gy.reshape(-1, h, w).numpy(), strength.view(-1, h, w).numpy(), strict=True):
                cv2.magnitude(sx, sy, magnitude=out)
        else:
            strength = torch.mul(gx, gx).addcmul_(gy, gy).sqrt_()
        angle = torch.div(gy, gx).atan_()
        angle.masked_fill_(gx == 0, math.pi / 2)
        return strength, angle

    def __init__(self, src):
        super().__init__(src)
        # Q_a = TA sigmoid(-KA (1 - |aS - aF| / (pi/2) - DA)) = TA sigmoid(k_a |aS - aF| + c_a)
        self.k_a, self.c_a = self.KA / (math.pi / 2), -self.KA * (1 - self.DA)
        self.kernels = _kernels(src.a.device)
        if self.kernels is not None:  # the sources' edges as the kernels compute the fused image's (IEEE sqrt)
            self.planes = tuple(np.stack(maps) for maps in zip(*(self._edges_kernels(x) for x in src.stacked.numpy())))
            self.den = float(self.planes[0].sum(dtype=np.float64))
            return
        g, angle = self._edges(src.stacked)
        self.g, self.angle = g.unsqueeze(1), angle.unsqueeze(1)  # 2 x 1 x H x W
        self.den = float(_total(g).sum())

    def _edges_kernels(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Edge strength and angle of an H x W float32 image through the compiled kernel (arctan by torch)."""
        strength, slope = np.empty_like(x), np.empty_like(x)
        self.kernels.qabf_edges(x, strength, slope)
        return strength, torch.from_numpy(slope).atan_().numpy()

    def _call_kernels(self, fused) -> torch.Tensor:
        """Edges, sigmoid arguments and sums through the compiled kernels; arctan and the sigmoids by torch
        (vectorised there), in place on the kernels' buffers."""
        kern, (g_s, a_s) = self.kernels, self.planes
        num = torch.empty(fused.count, dtype=torch.float64)
        for n, f in enumerate(fused.f.numpy()):
            g_f, a_f = self._edges_kernels(f)
            args = np.empty((4, *f.shape), np.float32)
            kern.qabf_arguments(g_f, a_f, g_s, a_s, *(np.float32(v) for v in (self.KG, self.DG, self.k_a, self.c_a)), args)
            q = torch.from_numpy(args).sigmoid_().numpy()
            num[n] = float(kern.qabf_sums(q, g_s).sum())
        return num

    def __call__(self, fused):
        if self.kernels is not None:
            if self.den == 0:
                return torch.full((fused.count,), math.nan, dtype=torch.float64)
            return self._call_kernels(fused) * (self.TG * self.TA) / self.den
        g_f, a_f = self._edges(fused.f)  # N x H x W
        g_s = self.g
        ratio = torch.minimum(g_s, g_f).div_(torch.maximum(g_s, g_f))
        ratio = torch.where(g_s == g_f, g_f, ratio)  # reference quirk: G = gF where gS == gF
        q = ratio.mul_(-self.KG).add_(self.KG * self.DG).sigmoid_()  # sigmoid(-KG (G - DG))
        q_a = torch.sub(self.angle, a_f).abs_().mul_(self.k_a).add_(self.c_a).sigmoid_()
        q.mul_(q_a).mul_(g_s)
        num = _total(q).sum(dim=0) * (self.TG * self.TA)
        if self.den == 0:
            return torch.full((fused.count,), math.nan, dtype=torch.float64)
        return (num / self.den).cpu()


class _SSIM(_Metric):
    """skimage structural_similarity(F, S, data_range=255): 7 x 7 box, K1 0.01, K2 0.03, sample
    covariance, mean over the window-valid interior; summed over S = A, B.

    Written on box sums over the p = 49 pixels of a window: s = sum x, and of values centred at 128,
    sc = sum (x - 128), ssc = sum (x - 128)^2, sxyc = sum (x - 128)(y - 128), all exact (integers below
    2**24 in float32, or int32):
    SSIM = (2 s_x s_y + C1 p^2) / (s_x^2 + s_y^2 + C1 p^2) * (2 (p sxyc - sc_x sc_y) + C2 p (p - 1))
    / (p ssc_x - sc_x^2 + p ssc_y - sc_y^2 + C2 p (p - 1)) (the covariance terms do not change with the
    centring). On the CPU the products are float32 (relative error about 1e-7 on the luminance term, 2e-5
    at worst on the structure term); elsewhere float64.
    """

    WIN = 7
    P = WIN * WIN
    C1, C2 = (0.01 * 255) ** 2 * P * P, (0.03 * 255) ** 2 * P * (P - 1)

    def __init__(self, src):
        super().__init__(src)
        xc = src.centred  # exact
        sums = box_sums_valid(torch.cat([xc, xc * xc]), self.WIN)
        sc, ssc = sums[:2], sums[2:]
        self.kernels = _kernels(xc.device)
        if self.kernels is not None:  # the exact box sums; the kernel computes the formula in float64
            self.planes = [_planes(t) for t in (xc, sc, ssc)]
            return
        s = sc + CENTRE * self.P
        self.s = s.unsqueeze(1)  # 2 x 1 x h x w
        self.sc = sc.unsqueeze(1)
        self.s_sq_c1 = (s * s).add_(self.C1).unsqueeze(1)
        self.var_c2 = (ssc * self.P - sc * sc).add_(self.C2).unsqueeze(1)
        self.c1 = torch.tensor(self.C1, dtype=xc.dtype, device=xc.device)

    def _call_kernels(self, fused) -> torch.Tensor:
        """The fused image's box sums (exact, in the fast dtype) and the formula in float64, per image."""
        kern, (xc, sc, ssc) = self.kernels, self.planes
        dtype = xc.dtype.type
        out = torch.empty(fused.count, dtype=torch.float64)
        for n in range(fused.count):
            sums = kern.box_stats(fused.centred_array(n, dtype), xc[0], xc[1], self.WIN)
            total = kern.ssim_sums(sums, sc, ssc, CENTRE * self.P, self.C1, self.C2, float(self.P))
            out[n] = float(total.sum()) / (sums.shape[1] * sums.shape[2])
        return out

    def __call__(self, fused):
        if self.kernels is not None:
            return self._call_kernels(fused)
        sums = box_sums_valid(fused.centred_maps, self.WIN)
        sc_f, ssc_f, sxc = sums[0], sums[1], sums[2:]
        s_f = sc_f + CENTRE * self.P
        lum = torch.addcmul(self.c1, self.s, s_f, value=2).div_(torch.addcmul(self.s_sq_c1, s_f, s_f))
        den = torch.addcmul(self.var_c2, sc_f, sc_f, value=-1).add_(ssc_f, alpha=self.P)
        cs = torch.mul(sxc, 2 * self.P).add_(self.C2).addcmul_(self.sc, sc_f, value=-2).div_(den)
        return (_total(lum.mul_(cs)) / lum[0, 0].numel()).sum(dim=0).cpu()


class _MSSSIM(_Metric):
    """pytorch_msssim.ms_ssim(F, S, data_range=255), summed over S = A, B: 11-tap Gaussian (sigma 1.5),
    'valid' filtering, five scales with weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 2 x 2 average
    pooling with zero padding of odd sizes (count_include_pad), relu of the per-scale means.

    Local statistics are taken of values centred at 128 (the same statistics, smaller float error), in
    float32 on CPU (within 2e-6 of float64 on the TNO images) and float64 elsewhere.
    """

    WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    TAPS = msssim_gaussian_taps(11, 1.5)

    @staticmethod
    def _pool(x):
        """``F.avg_pool2d(x, 2, padding=[H % 2, W % 2])`` (pytorch_msssim's pooling: an odd side gets a zero
        row or column in front, count_include_pad) of an N x H x W tensor, as four strided slices: several
        times faster than avg_pool2d on the CPU, and equal to it (every pooled value here is a multiple of
        4**-4 below 256, exact in float32 whatever the order of the sums)."""
        h, w = x.shape[-2:]
        if h % 2 or w % 2:
            x = F.pad(x, (w % 2, w % 2, h % 2, h % 2))
        return (x[..., 0:-1:2, 0:-1:2] + x[..., 1::2, 0:-1:2]).add_(x[..., 0:-1:2, 1::2]).add_(x[..., 1::2, 1::2]).mul_(0.25)

    def __init__(self, src):
        super().__init__(src)
        self.dtype = _fast_dtype(src.a.device)
        x = src.stacked.to(self.dtype)  # 2 x H x W
        self.scales = []  # per scale: (centred A and B, their local means, variances + C2)
        for level in range(len(self.WEIGHTS)):
            if level > 0:
                x = self._pool(x)
            c = x - CENTRE
            stats = filter2d_valid(torch.cat([c, c * c]), self.TAPS)
            mu = stats[:2]
            var_c2 = torch.addcmul(stats[2:], mu, mu, value=-1).add_(self.C2)
            self.scales.append((c, mu.unsqueeze(1), var_c2.unsqueeze(1)))
        self.kernels = _kernels(x.device)
        if self.kernels is not None:
            self.planes = [tuple(_planes(t) for t in entry) for entry in self.scales]

    def _call_kernels(self, fused) -> torch.Tensor:
        kern = self.kernels
        dtype = np.dtype(str(self.dtype).removeprefix("torch.")).type
        result = torch.ones(2, fused.count, dtype=torch.float64)
        last = len(self.WEIGHTS) - 1
        for n, f in enumerate(fused.f.numpy().astype(dtype, copy=False)):
            for level, weight in enumerate(self.WEIGHTS):
                if level > 0:
                    f = kern.average_pool2(f, np.empty(((f.shape[0] + 1) // 2, (f.shape[1] + 1) // 2), f.dtype))
                c_s, mu_s, var_s_c2 = self.planes[level]
                if level == 0 and dtype is np.float32:  # the product maps VIF filters too
                    stats = kern.filter_valid(fused.product_maps(n), self.TAPS)
                else:
                    c = fused.centred_array(n, dtype) if level == 0 else f - dtype(CENTRE)
                    stats = kern.window_stats(c, c_s[0], c_s[1], self.TAPS)
                total = kern.msssim_sums(stats, mu_s, var_s_c2, dtype(self.C1), dtype(self.C2), dtype(CENTRE), level == last)
                value = torch.from_numpy(total / (stats.shape[1] * stats.shape[2]))
                result[:, n] *= value.clamp_(min=0.0) ** weight
        return result.sum(dim=0)

    def __call__(self, fused):
        if self.kernels is not None:
            return self._call_kernels(fused)
        f = fused.f.to(self.dtype)
        result = torch.ones(2, fused.count, dtype=torch.float64, device=f.device)
        last = len(self.WEIGHTS) - 1
        for level, weight in enumerate(self.WEIGHTS):
            if level > 0:
                f = self._pool(f)
            c_s, mu_s, var_s_c2 = self.scales[level]
            if level == 0:
                maps = fused.centred_maps
            else:
                maps = torch.empty((4, *f.shape), dtype=self.dtype, device=f.device)
                c = torch.sub(f, CENTRE, out=maps[0])
                torch.mul(c, c, out=maps[1])
                torch.mul(c_s[0], c, out=maps[2])
                torch.mul(c_s[1], c, out=maps[3])
            stats = filter2d_valid(maps, self.TAPS)  # 4 x N x h x w
            mu_f = stats[0]
            var_f = torch.addcmul(stats[1], mu_f, mu_f, value=-1)
            cs_map = torch.addcmul(stats[2:], mu_s, mu_f, value=-1).mul_(2).add_(self.C2).div_(var_s_c2 + var_f)
            if level == last:
                m_f, m_s = mu_f + CENTRE, mu_s + CENTRE
                cs_map.mul_((2 * m_f * m_s + self.C1) / (m_f * m_f + m_s * m_s + self.C1))
            value = _total(cs_map) / cs_map[0, 0].numel()
            result *= value.clamp_(min=0.0) ** weight
        return result.sum(dim=0).cpu()


_IMPLEMENTATIONS: dict[str, type[_Metric]] = {
    "EN": _EN,
    "SF": _SF,
    "AG": _AG,
    "SD": _SD,
    "CC": _CC,
    "SCD": _SCD,
    "MI": _MI,
    "VIF": _VIF,
    "Qabf": _Qabf,
    "SSIM": _SSIM,
    "MS-SSIM": _MSSSIM,
}


class CddfusePairScorer:
    """Scores any number of fused images of one (IR, VIS) pair under the cddfuse convention, reusing the
    work on the sources.

    ``CddfusePairScorer(ir, vis, metrics=None, device=None, name="01").score([fused1, fused2, ...])`` returns one
    ``{metric: value}`` dict per fused image (keys in METRIC_NAMES order). Images as in :func:`to_gray255`.
    Fused images are scored `batch` at a time (default: one at a time on the CPU, which keeps the
    intermediate maps in cache; about 3 Mpixel at a time elsewhere).
    """

    def __init__(
        self,
        ir: Images,
        vis: Images,
        metrics: str | Iterable[str] | None = None,
        device: str | torch.device | None = None,
        name: str = "pair",
        batch: int | None = None,
    ) -> None:
        self.metrics = parse_metric_names(metrics)
        self.device = device_for(device, ir)
        self.name = name
        a = to_gray255(ir, f"{name} (infrared)").to(self.device)
        b = to_gray255(vis, f"{name} (visible)").to(self.device)
        if a.shape != b.shape:
            raise InputError(f"{name}: infrared is {a.shape[1]}x{a.shape[0]} but visible is {b.shape[1]}x{b.shape[0]} (W x H)")
        self.shape = tuple(a.shape)
        check_size(self.shape[1], self.shape[0], self.metrics, name)
        short = min(self.shape)
        self.skip_msssim = "MS-SSIM" in self.metrics and short < MSSSIM_MIN_SIDE
        self.notes: list[str] = []  # what could not be computed, one line each (also issued as MetricWarning)
        if self.skip_msssim:
            note = (
                f"{name}: MS-SSIM needs a short side of at least {MSSSIM_MIN_SIDE} pixels for its five scales; "
                f"the image is {self.shape[1]}x{self.shape[0]}: MS-SSIM is NaN"
            )
            self.notes.append(note)
            warnings.warn(note, MetricWarning, stacklevel=2)
        self.batch = batch or (1 if self.device.type == "cpu" else max(1, int(3_000_000 // max(1, a.numel()))))
        self._sources = _Sources(a, b)
        self._impl = {
            m: _IMPLEMENTATIONS[m](self._sources) for m in self.metrics if not (m == "MS-SSIM" and self.skip_msssim)
        }

    def _fused(self, images: Images | Sequence[Images]) -> list[torch.Tensor]:
        """Each fused image as H x W float32 levels on the device, its size checked against the pair's."""
        if isinstance(images, (torch.Tensor, np.ndarray)) and images.ndim == 3 and images.shape[2] not in (1, 3):
            images = list(images)  # N x H x W
        if isinstance(images, (torch.Tensor, np.ndarray)):
            images = [images]
        out = []
        for i, img in enumerate(images):
            g = to_gray255(img, f"{self.name} (fused #{i + 1})").to(self.device)
            if tuple(g.shape) != self.shape:
                raise InputError(
                    f"{self.name}: fused image #{i + 1} is {g.shape[1]}x{g.shape[0]} but the pair is "
                    f"{self.shape[1]}x{self.shape[0]} (W x H)"
                )
            out.append(g)
        return out

    @torch.no_grad()
    def score(self, fused: Images | Sequence[Images]) -> list[dict[str, float]]:
        """Metrics of each fused image: a list of dicts (NaN for MS-SSIM on too small images)."""
        images = self._fused(fused)
        columns: dict[str, list[float]] = {}
        for start in range(0, len(images), self.batch):
            chunk = images[start : start + self.batch]
            batch = _Fused(chunk[0].unsqueeze(0) if len(chunk) == 1 else torch.stack(chunk), self._sources)  # one: no copy
            for m, impl in self._impl.items():
                columns.setdefault(m, []).extend(impl(batch).tolist())
        if self.skip_msssim:
            columns["MS-SSIM"] = [math.nan] * len(images)
        return [{m: float(columns[m][i]) for m in self.metrics} for i in range(len(images))]


def pair_scorer(convention: str, ir, vis, metrics=None, device=None, name: str = "pair"):
    """The pair scorer of convention `convention` (``cddfuse``: CddfusePairScorer; ``vifb``:
    fusedet.eval.vifb_metrics.VifbPairScorer): ``.score([fused, ...]) -> [{metric: value}]`` and
    ``.notes``. Images: numpy or torch, H x W or H x W x 3 RGB, 0..255; `device` None keeps a torch
    input's device."""
    from fusedet.eval.vifb_metrics import VifbPairScorer

    scorers = {"cddfuse": CddfusePairScorer, "vifb": VifbPairScorer}
    return scorers[get_convention(convention).name](ir, vis, metrics=metrics, device=device, name=name)


class PairScorer:
    """Scores any number of fused images of one (IR, VIS) pair under a metric convention.

    ``PairScorer(ir, vis, convention="vifb").score([fused1, fused2, ...])`` returns one ``{metric: value}``
    dict per fused image, keys in the convention's order (``cddfuse``: METRIC_NAMES; ``vifb``: VIFB's
    thirteen names), NaN where a metric is undefined for that image. The work that depends only on the two
    sources is done once. Images: numpy or torch, H x W gray or H x W x 3 RGB, 0..255 (integer levels).
    `device`: None keeps a torch input's device (the CPU for numpy), else "cpu", "cuda", "cuda:N", "auto".
    `notes` lists what could not be computed (one line each).
    """

    def __init__(
        self,
        ir: Images,
        vis: Images,
        metrics: str | Iterable[str] | None = None,
        device: str | torch.device | None = None,
        name: str = "pair",
        convention: str = "cddfuse",
    ) -> None:
        self.convention = get_convention(convention)
        self._scorer = pair_scorer(self.convention.name, ir, vis, metrics=metrics, device=device, name=name)
        self.metrics: tuple[str, ...] = self._scorer.metrics
        self.device: torch.device = self._scorer.device

    @property
    def notes(self) -> list[str]:
        return self._scorer.notes

    def score(self, fused: Images | Sequence[Images]) -> list[dict[str, float]]:
        """Metrics of each fused image (one image, a list of them, or an N x H x W stack of gray ones)."""
        return self._scorer.score(fused)


def compute_metrics(
    ir: Images,
    vis: Images,
    fused: Images,
    metrics: str | Iterable[str] | None = None,
    device: str | torch.device | None = None,
    convention: str = "cddfuse",
) -> dict[str, float]:
    """The fusion metrics of one (IR, VIS, fused) triplet under `convention` (``"cddfuse"``, the default, or
    ``"vifb"``): ``{"EN": ..., ...}`` in the convention's key order.

    Images: numpy or torch, H x W gray or H x W x 3 RGB, on the 0..255 scale (see :func:`to_gray255` and
    ``fusedet.eval.vifb_metrics.vifb_levels``). `metrics`: names or a comma-separated string (default all);
    `device`: None keeps a torch input's device, else "cpu", "cuda", ...
    """
    return PairScorer(ir, vis, metrics=metrics, device=device, name="triplet", convention=convention).score([fused])[0]


def compute_metrics_batch(
    ir: Images,
    vis: Images,
    fused: Sequence[Images],
    metrics: str | Iterable[str] | None = None,
    device: str | torch.device | None = None,
    convention: str = "cddfuse",
) -> list[dict[str, float]]:
    """The metrics of several fused images of one pair (e.g. one per method), sharing the source work."""
    return PairScorer(ir, vis, metrics=metrics, device=device, name="pair", convention=convention).score(fused)


def _one(metric: str, ir: Images | None, vis: Images | None, fused: Images) -> float:
    if ir is None:  # metrics of F alone: the sources play no part
        ir = vis = fused
    return compute_metrics(ir, vis, fused, metrics=[metric])[metric]


def entropy(fused: Images) -> float:
    """EN: Shannon entropy (bits) of the 256-bin histogram of the fused image."""
    return _one("EN", None, None, fused)


def spatial_frequency(fused: Images) -> float:
    """SF: sqrt(RF^2 + CF^2) of the fused image."""
    return _one("SF", None, None, fused)


def average_gradient(fused: Images) -> float:
    """AG: mean of sqrt((Gx^2 + Gy^2) / 2) of the fused image (numpy.gradient differences)."""
    return _one("AG", None, None, fused)


def standard_deviation(fused: Images) -> float:
    """SD: population standard deviation of the fused image."""
    return _one("SD", None, None, fused)


def correlation_coefficient(ir: Images, vis: Images, fused: Images) -> float:
    """CC: mean of the Pearson correlations corr(IR, F) and corr(VIS, F)."""
    return _one("CC", ir, vis, fused)


def scd(ir: Images, vis: Images, fused: Images) -> float:
    """SCD: corr(IR, F - VIS) + corr(VIS, F - IR)."""
    return _one("SCD", ir, vis, fused)


def mutual_information(ir: Images, vis: Images, fused: Images) -> float:
    """MI: MI(F, IR) + MI(F, VIS) in nats from 256 x 256 joint histograms."""
    return _one("MI", ir, vis, fused)


def vif(ir: Images, vis: Images, fused: Images) -> float:
    """VIF: pixel-domain VIF of IR -> F plus that of VIS -> F."""
    return _one("VIF", ir, vis, fused)


def qabf(ir: Images, vis: Images, fused: Images) -> float:
    """Qabf: Xydeas-Petrovic edge-information preservation."""
    return _one("Qabf", ir, vis, fused)


def ssim(ir: Images, vis: Images, fused: Images) -> float:
    """SSIM(F, IR) + SSIM(F, VIS), scikit-image's definition with data_range 255."""
    return _one("SSIM", ir, vis, fused)


def ms_ssim(ir: Images, vis: Images, fused: Images) -> float:
    """MS-SSIM(F, IR) + MS-SSIM(F, VIS), pytorch_msssim's definition (NaN below 161 px, with a warning)."""
    return _one("MS-SSIM", ir, vis, fused)
