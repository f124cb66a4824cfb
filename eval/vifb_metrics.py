"""The VIFB convention: the thirteen fusion metrics of VIFB (Zhang, Ye and Xiao, "VIFB: A Visible and
Infrared Image Fusion Benchmark", CVPRW 2020), as its MATLAB files ``metrics/metrics*.m`` compute them,
vectorised in torch (CPU or CUDA).

VIFB's ``compute_metrics.m`` calls every metric as ``metricsX(imread(VI), imread(IR), imread(FUSED))``:
visible image first, 8-bit levels, colour kept. This module does the same, with these readings (the way
the reference values were made, see ``fusedet.eval.metric_conventions``):

- an image whose three channels are equal is gray (one channel);
- a gray fused image is scored against the gray visible image ``rgb2gray(VI)``; a colour fused image of a
  gray visible image is scored as ``rgb2gray(FUSED)`` (VIFB's per-channel code needs equal channel counts);
- a colour fused image of a colour visible image is scored per channel, as each ``metrics*.m`` does:
  ``metric(VI(:,:,k), IR, F(:,:,k))`` (or ``IR(:,:,k)`` when the IR image is colour too), then the mean of
  the three values; Avg_gradient, Edge_intensity, Entropy and Variance also take the mean over channels;
  Spatial_frequency reads the H x W x 3 image as the H x 3W matrix ``[F1 F2 F3]`` (``[m, n] = size(F)``);
- a colour IR image with a gray fused image is read as ``rgb2gray(IR)`` (VIFB's Qcb and Qcv would fail
  on it).

The metrics, with the quirks of each file kept (each one is a difference from a textbook definition that
changes the numbers):

- ``Avg_gradient`` (metricsAvg_gradient.m): mean over bands of sum(sqrt((dx^2 + dy^2) / 2)) / ((r-1)(c-1)),
  dx, dy from MATLAB ``gradient``; the sum runs over all r x c pixels but is divided by (r-1)(c-1).
- ``Cross_entropy`` (metricsCross_entropy.m): (CE(VI, F) + CE(IR, F)) / 2 with CE(S, F) = sum p_S log2(p_S / p_F)
  over the 256 levels where both histograms are non-zero (bins where only S is present are skipped).
- ``Edge_intensity`` (metricsEdge_intensity.m): mean of sqrt(gx^2 + gy^2), Sobel by ``imfilter`` with
  'replicate' borders.
- ``Entropy`` (metricsEntropy.m): Shannon entropy in bits of the 256-bin histogram of F.
- ``Mutinf`` (metricsMutinf.m): MI(VI, F) + MI(IR, F) in nats; each image is first min-max stretched to
  ``int16(255 (x - min) / (max - min))`` (a constant image becomes 0), then 256 x 256 joint histograms.
- ``Psnr`` (metricsPsnr.m): 20 log10(255 / sqrt(MES)) with MES = (e(VI, F) + e(IR, F)) / 2 and
  e(S, F) = sqrt(sum((S - F)^2)) / (m n): VIFB's "mse" is the root of the summed squares divided by the
  pixel count, not the mean squared error, so its PSNR values sit near 60 dB.
- ``Qabf`` (metricsQabf.m): Xydeas-Petrovic Q^{AB/F}: Sobel by ``conv2`` 'same' on ``255 * im2double(double(X))``
  (a 0..65025 scale: im2double leaves doubles alone), strength sqrt(SX^2 + SY^2), angle atan(SY / SX)
  (pi/2 where SX == 0); G = gF/gS where gS > gF, gS/gF where gS < gF and **gF where gS == gF** (on that
  scale, so the sigmoid saturates at Tg for equal non-zero strengths); Tg 0.9994, kg -15, Dg 0.5,
  Ta 0.9879, ka -22, Da 0.8; sum(Q_AF gA + Q_BF gB) / sum(gA + gB).
- ``Qcb`` (metricsQcb.m, Chen-Blum): each image min-max normalised to rounded 0..255 (``normalize1``),
  filtered in the frequency domain by the DoG contrast sensitivity function
  Sd(r) = exp(-(r/15.3870)^2) - 0.7622 exp(-(r/1.3456)^2) on ``freqspace`` scaled by (W/30, H/30); local
  contrast C = |G1 * X / G2 * X - 1| with unnormalised 31 x 31 Gaussians of sigma 2 and 4 (``filter2`` 'same',
  zero padding); C' = C^3 / (C^2 + 1e-4); Q_SF = min/max of (C'_S, C'_F) written as
  ``(C'_S ./ C'_F) .* mask + (C'_F ./ C'_S) .* (1 - mask)``; saliency weights C'_S^2 / (C'_VI^2 + C'_IR^2);
  the mean of the weighted map.
- ``Qcv`` (metricsQcv.m, Chen-Varshney): normalised as Qcb; saliency = sums of Sobel strength^5 over
  16 x 16 ``blkproc`` blocks (zero-padded partial blocks); the differences VI - F and IR - F filtered by
  the Mannos-Sakrison CSF 2.6 (0.0192 + 0.144 r) exp(-(0.144 r)^1.1) on ``freqspace`` scaled by (W/8, H/8);
  D = block mean of the squared filtered difference (a partial block's mean divides by 256);
  Qcv = sum(lambda_VI D_VI + lambda_IR D_IR) / sum(lambda_VI + lambda_IR). Lower is better.
- ``Rmse`` (metricsRmse.m): (e(VI, F) + e(IR, F)) / 2 with Psnr's e (so not a root mean square error).
  Lower is better.
- ``Spatial_frequency`` (metricsSpatial_frequency.m): sqrt(RF + CF), both sums of squared neighbour
  differences divided by m n (not by the number of differences).
- ``Ssim`` (metricsSsim.m): SSIM(VI, F) + SSIM(IR, F), Wang et al. with an 11 x 11 Gaussian (sigma 1.5,
  ``fspecial``), ``filter2`` 'valid', C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2, the mean of the map.
- ``Variance`` (metricsVariance.m): despite the name, the population standard deviation of F.

Values that come out NaN or infinite in the reference (Qabf of two flat sources, Qcb and Qcv of a flat
non-zero image, Psnr of a fused image equal to both sources) are NaN here; callers report them as undefined.

Precision: float64, except where float32 is exact or its rounding cannot matter: Avg_gradient, Psnr and
Rmse sum exact float32 terms in cascades, Qabf's two sigmoids are float32 (their arguments come from
float64 strengths, so the quirk's exact gS == gF test is kept), and Ssim's windowed statistics are of
values centred at 128 in float32 (rounding about 1e-3 on a variance, against C2 = 58.5). Qcb and Qcv stay
float64 (a float32 contrast of exactly 0 would turn Qcb into NaN). The frequency-domain filters use real
FFTs (the filters are even, so MATLAB's complex results are real up to rounding). Agreement with Octave
runs of the unchanged ``.m`` files: within a relative 2e-6 on the TNO, MSRS and synthetic references
(see the tests).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from functools import cached_property, lru_cache

import cv2
import numpy as np
import torch

from fusedet.errors import InputError
from fusedet.eval.matlab_compat import (
    blkproc_sums,
    centered_to_fft_order,
    filter2_same,
    freqspace_meshgrid,
    gradient,
    matlab_round,
    rgb2gray,
    sobel_replicate,
)
from fusedet.eval.metric_conventions import CONVENTIONS, check_array_type, warn_unit_scale
from fusedet.eval.metrics_filters import filter2d_valid, matlab_gaussian_taps, sobel_same

_CONVENTION = CONVENTIONS["vifb"]
VIFB_METRICS: tuple[str, ...] = _CONVENTION.metrics  # VIFB's own names, in the order of its util/configMetrics.m
LOWER_IS_BETTER: frozenset[str] = _CONVENTION.lower_is_better
MIN_SIDE: dict[str, int] = dict(_CONVENTION.min_side)  # Ssim: 11 x 11 'valid' window; AG divides by (r-1)(c-1)

Images = torch.Tensor | np.ndarray

# metricsQcb.m
_QCB_F0, _QCB_F1, _QCB_A = 15.3870, 1.3456, 0.7622
_QCB_Z = 0.0001  # k = h = 1, p = 3, q = 2
_QCB_SIGMAS = (2.0, 4.0)
_QCB_HALF = 15  # gaussian2d: meshgrid(-15:15)
# metricsQcv.m
_QCV_BLOCK, _QCV_ALPHA = 16, 5
# metricsQabf.m
_TG, _KG, _DG, _TA, _KA, _DA = 0.9994, -15.0, 0.5, 0.9879, -22.0, 0.8
# metricsSsim.m
_SSIM_TAPS = matlab_gaussian_taps(11, 1.5)
_SSIM_C1, _SSIM_C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def vifb_levels(image: Images, name: str = "image") -> torch.Tensor:
    """An image as VIFB's ``imread`` gives it: C x H x W float64 8-bit levels, C = 1 (gray) or 3 (RGB).

    Accepts numpy arrays or torch tensors, H x W, H x W x 1 or H x W x 3 (RGB, channels last), on the 0..255
    scale; values are rounded to integer levels. Three equal channels become one (a gray picture stored
    as RGB). Values outside 0..255, NaN or a boolean array raise InputError naming `name`; a float image
    whose maximum is <= 1 warns (MetricWarning: it is probably on the 0..1 scale).
    """
    is_torch = isinstance(image, torch.Tensor)
    if not is_torch and not isinstance(image, np.ndarray):
        raise InputError(f"{name}: expected a numpy array or torch tensor, got {type(image).__name__}")
    check_array_type(image, name)
    if not is_torch and image.dtype == np.uint8 and image.ndim == 2:  # 8-bit gray levels as they are
        return torch.from_numpy(image).to(torch.float64).unsqueeze(0)
    x = image.detach() if is_torch else torch.from_numpy(np.ascontiguousarray(image))
    floating = x.is_floating_point()
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[..., 0]
    if x.ndim == 2:
        x = x.unsqueeze(0)
    elif x.ndim == 3 and x.shape[2] == 3:
        x = x.permute(2, 0, 1)
    else:
        raise InputError(f"{name}: expected H x W or H x W x 3 (RGB), got shape {tuple(image.shape)}")
    x = torch.round(x.to(torch.float64))
    lo, hi = (float(v) for v in torch.aminmax(x))
    if math.isnan(lo) or math.isnan(hi):
        raise InputError(f"{name}: holds NaN values")
    if lo < 0 or hi > 255:
        raise InputError(f"{name}: values span {lo:g}..{hi:g}; VIFB's metrics expect 8-bit levels 0..255")
    warn_unit_scale(floating, hi, name)
    if x.shape[0] == 3 and bool((x[0] == x[1]).all()) and bool((x[1] == x[2]).all()):
        x = x[:1]
    return x.contiguous()


@lru_cache(maxsize=8)
def _frequency_filters(m: int, n: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Qcb's DoG CSF Sd and Qcv's Mannos-Sakrison CSF, in FFT order, cut to rfft2's m x (n//2 + 1) half."""
    u0, v0 = freqspace_meshgrid(m, n, device)
    u, v = (n / 30.0) * u0, (m / 30.0) * v0  # metricsQcb.m: HH = hang/30, LL = lie/30; u = LL*u, v = HH*v
    r = torch.sqrt(u * u + v * v)
    sd = torch.exp(-((r / _QCB_F0) ** 2)) - _QCB_A * torch.exp(-((r / _QCB_F1) ** 2))
    u, v = (n / 8.0) * u0, (m / 8.0) * v0  # metricsQcv.m: u = lie/8*u, v = hang/8*v
    r = torch.sqrt(u * u + v * v)
    theta_m = 2.6 * (0.0192 + 0.144 * r) * torch.exp(-((0.144 * r) ** 1.1))
    half = n // 2 + 1
    return centered_to_fft_order(sd)[:, :half].contiguous(), centered_to_fft_order(theta_m)[:, :half].contiguous()


def _qcb_taps(sigma: float) -> tuple[tuple[float, ...], float]:
    """gaussian2d(.., sigma) of metricsQcb.m, exp(-(x^2 + y^2) / (2 sigma^2)) / (2 pi sigma^2) on -15..15,
    unnormalised, as separable taps and a scale."""
    taps = tuple(math.exp(-(k * k) / (2.0 * sigma * sigma)) for k in range(-_QCB_HALF, _QCB_HALF + 1))
    return taps, 1.0 / (2.0 * math.pi * sigma * sigma)


_QCB_G = tuple(_qcb_taps(s) for s in _QCB_SIGMAS)


def _entropy_bits(p: torch.Tensor) -> torch.Tensor:
    nz = p[p > 0]
    return -(nz * torch.log2(nz)).sum()


def _entropy_nats(counts: torch.Tensor) -> float:
    counts = counts.reshape(-1).to(torch.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * torch.log(p)).sum())


class _Channel:
    """One 2-D image (a channel) as the VIFB functions see it, with what several metrics derive from it."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x  # H x W float64 integer levels
        self.m, self.n = x.shape
        self.count = x.numel()

    @cached_property
    def levels(self) -> torch.Tensor:
        return self.x.reshape(-1).to(torch.int64)

    @cached_property
    def hist(self) -> torch.Tensor:
        """256 counts; the probabilities p(k) = X(k) / (m n) of metricsEntropy.m and metricsCross_entropy.m."""
        return torch.bincount(self.levels, minlength=256)

    @cached_property
    def prob(self) -> torch.Tensor:
        return self.hist.to(torch.float64) / self.count

    @cached_property
    def mutinf_index(self) -> torch.Tensor:
        """metricsMutinf.m: ``int16(255 * (x - min) / (max - min))`` (0 for a constant image), as 0-based bins
        (H x W uint8): the same arithmetic on the 256 possible levels, then a table look-up."""
        lo, hi = float(self.x.min()), float(self.x.max())
        if hi == lo:
            return torch.zeros(self.x.shape, dtype=torch.uint8, device=self.x.device)
        levels = torch.arange(256, dtype=torch.float64, device=self.x.device)
        table = matlab_round(((levels - lo) / (hi - lo)) * 255.0).clamp_(0, 255).to(torch.uint8)
        return table[self.x.to(torch.int64)]

    @cached_property
    def mutinf_entropy(self) -> float:
        return _entropy_nats(torch.bincount(self.mutinf_index.reshape(-1).to(torch.int64), minlength=256))

    @cached_property
    def normalized(self) -> torch.Tensor:
        """normalize1 of metricsQcb.m / metricsQcv.m: round(255 (x - min) / (max - min)); an all-zero image
        stays zero, any other constant image becomes NaN (0 / 0), as in MATLAB. The same arithmetic on the
        256 possible levels, then a table look-up."""
        lo, hi = float(self.x.min()), float(self.x.max())
        if hi == 0 and lo == 0:
            return self.x
        if hi == lo:
            return torch.full_like(self.x, math.nan)
        levels = torch.arange(256, dtype=torch.float64, device=self.x.device)
        table = matlab_round(((levels - lo) / (hi - lo)) * 255.0)
        return table[self.x.to(torch.int64)]

    @cached_property
    def spectrum(self) -> torch.Tensor:
        return torch.fft.rfft2(self.normalized)

    @cached_property
    def qcb_contrast(self) -> torch.Tensor:
        """C' = C^3 / (C^2 + Z) of the CSF-filtered normalised image (metricsQcb.m)."""
        sd, _ = _frequency_filters(self.m, self.n, str(self.x.device))
        filtered = torch.fft.irfft2(self.spectrum * sd, s=(self.m, self.n))
        (t1, s1), (t2, s2) = _QCB_G
        c = (filter2_same(filtered, t1, s1) / filter2_same(filtered, t2, s2) - 1.0).abs_()
        return c**3 / (c**2 + _QCB_Z)

    @cached_property
    def qcv_saliency(self) -> torch.Tensor:
        """blkproc(G, [16 16], sum(sum(x.^5))) of the Sobel strength of the normalised image (metricsQcv.m)."""
        sx, sy = sobel_same(self.normalized)
        g = torch.sqrt(sx * sx + sy * sy)
        return blkproc_sums(g**_QCV_ALPHA, _QCV_BLOCK)

    @cached_property
    def qabf_edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(strength, angle) of metricsQabf.m on the 255 * im2double(double(x)) scale: the strength in float64
        (exact comparisons gS == gF), the angle atan(SY / SX) (pi/2 where SX == 0) in float32."""
        sx, sy = sobel_same(255.0 * self.x)  # SAx = conv2(pA, h3, 'same'), SAy = conv2(pA, h1, 'same')
        g = torch.sqrt(sx * sx + sy * sy)
        angle = torch.div(sy, sx).to(torch.float32).atan_()
        angle[sx == 0] = math.pi / 2
        return g, angle

    @cached_property
    def centred32(self) -> torch.Tensor:
        """x - 128 in float32 (exact): the values Ssim's windowed statistics are taken of."""
        return (self.x - 128.0).to(torch.float32)

    @cached_property
    def ssim_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu - 128, sigma^2) of metricsSsim.m (filter2(w, x, 'valid'), filter2(w, x.*x, 'valid') - mu^2), of
        the centred values, in float32 (the same statistics; rounding about 1e-3 on sigma^2, against
        C2 = 58.5 in every term)."""
        c = self.centred32
        stats = filter2d_valid(torch.stack([c, c * c]), _SSIM_TAPS)
        mu = stats[0]
        return mu, stats[1] - mu * mu


# --- the thirteen metrics, each on one channel triplet (vi, ir, f) -----------------------------------------


def _avg_gradient(vi: _Channel, ir: _Channel, f: _Channel) -> float:
    """sum(sqrt((dx^2 + dy^2) / 2)) / ((r-1)(c-1)) with MATLAB gradient's differences, in float32 (the
    differences of 8-bit levels and their halves are exact there; the root and the cascade sum round at 1e-7)."""
    dx, dy = gradient(f.x.to(torch.float32))
    s = dx.mul_(dx).addcmul_(dy, dy).mul_(0.5).sqrt_()
    return float(s.sum()) / ((f.m - 1) * (f.n - 1))


def _cross_entropy(vi: _Channel, ir: _Channel, f: _Channel) -> float:
    def ce(src: _Channel) -> float:
        p1, p2 = src.prob, f.prob
        both = (p1 != 0) & (p2 != 0)
        return float((p1[both] * torch.log2(p1[both] / p2[both])).sum())

    return (ce(vi) + ce(ir)) / 2.0


def _edge_intensity(vi: _Channel, ir: _Channel, f: _Channel) -> float:
    if f.x.device.type == "cpu":  # the same responses up to sign: OpenCV's Sobel with replicated borders
        img = f.x.numpy()
        gx = cv2.Sobel(img, cv2.CV_64F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
        gy = cv2.Sobel(img, cv2.CV_64F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
        return float(cv2.magnitude(gx, gy).mean())
    gx, gy = sobel_replicate(f.x)
    return float(torch.sqrt(gx * gx + gy * gy).mean())


def _entropy(vi: _Channel, ir: _Channel, f: _Channel) -> float:
    return float(_entropy_bits(f.prob))


def _mutinf(vi: _Channel, ir: _Channel, f: _Channel) -> float:
    def mi(src: _Channel) -> float:
        a, b = src.mutinf_index, f.mutinf_index
        if a.device.type == "cpu":  # exact counts (below 2**24) from OpenCV's 2-D histogram
            joint = torch.from_numpy(cv2.calcHist([a.numpy(), b.numpy()], [0, 1], None, [256, 256], [0, 256, 0, 256]).astype(np.float64))
        else:
            joint = torch.bincount(a.reshape(-1).to(torch.int64) * 256 + b.reshape(-1).to(torch.int64), minlength=65536)
        return src.mutinf_entropy + f.mutinf_entropy - _entropy_nats(joint)

    return mi(vi) + mi(ir)


def _vifb_mse(src: _Channel, f: _Channel) -> float:
    """``mse`` of metricsPsnr.m / metricsRmse.m: sqrt(sum((a - b)^2)) / (m n)."""
    d = (src.x - f.x).to(torch.float32)  # integers: exact
    return math.sqrt(float(d.mul_(d).sum())) / src.count


def _rmse(vi: _Channel, ir: _Channel, f: _Channel) -> float:
    return (_vifb_mse(vi, f) + _vifb_mse(ir, f)) / 2.0


def _psnr(vi: _Channel, ir: _Channel, f: _Channel) -> float:
    mes = _rmse(vi, ir, f)
    with np.errstate(divide="ignore"):
        return float(20.0 * np.log10(255.0 / np.sqrt(np.float64(mes))))


def _qabf(vi: _Channel, ir: _Channel, f: _Channel) -> float:
    g_f, a_f = f.qabf_edges
    num, den = 0.0, 0.0
    for src in (vi, ir):
        g_s, a_s = src.qabf_edges
        ratio = torch.where(g_s > g_f, g_f / g_s, torch.where(g_s == g_f, g_f, g_s / g_f)).to(torch.float32)
        # Tg / (1 + exp(kg (G - Dg))) = Tg sigmoid(-kg (G - Dg)), and the same for the angle term (float32)
        q = ratio.sub_(_DG).mul_(-_KG).sigmoid_()
        q_a = torch.sub(a_s, a_f).abs_().mul_(-1.0 / (math.pi / 2)).add_(1.0 - _DA).mul_(-_KA).sigmoid_()
        num += float((q.mul_(q_a) * g_s.to(torch.float32)).sum()) * (_TG * _TA)
        den += float(g_s.sum())
    return num / den if den != 0 else math.nan


def _qcb(vi: _Channel, ir: _Channel, f: _Channel) -> float:
    c1, c2, cf = vi.qcb_contrast, ir.qcb_contrast, f.qcb_contrast

    def preservation(cs: torch.Tensor) -> torch.Tensor:
        mask = (cs < cf).to(torch.float64)
        return (cs / cf) * mask + (cf / cs) * (1.0 - mask)

    total = c1 * c1 + c2 * c2
    q = (c1 * c1 / total) * preservation(c1) + (c2 * c2 / total) * preservation(c2)
    return float(q.mean())


def _qcv(vi: _Channel, ir: _Channel, f: _Channel) -> float:
    _, theta = _frequency_filters(f.m, f.n, str(f.x.device))
    num = torch.zeros((), dtype=torch.float64, device=f.x.device)
    weights = torch.zeros((), dtype=torch.float64, device=f.x.device)
    for src in (vi, ir):
        diff = torch.fft.irfft2((src.spectrum - f.spectrum) * theta, s=(f.m, f.n))  # filter of normalize1(S) - normalize1(F)
        d = blkproc_sums(diff * diff, _QCV_BLOCK) / (_QCV_BLOCK * _QCV_BLOCK)  # mean2 of each zero-padded block
        num = num + (src.qcv_saliency * d).sum()
        weights = weights + src.qcv_saliency.sum()
    return float(num / weights)


def _ssim(vi: _Channel, ir: _Channel, f: _Channel) -> float:
    mu_f, var_f = f.ssim_stats  # centred means
    total = 0.0
    for src in (vi, ir):
        mu_s, var_s = src.ssim_stats
        cov = filter2d_valid(src.centred32 * f.centred32, _SSIM_TAPS) - mu_s * mu_f  # covariance: centring changes nothing
        ua, ub = mu_s + 128.0, mu_f + 128.0
        ssim_map = ((2 * ua * ub + _SSIM_C1) * (2 * cov + _SSIM_C2)) / ((ua * ua + ub * ub + _SSIM_C1) * (var_s + var_f + _SSIM_C2))
        total += float(ssim_map.sum()) / ssim_map.numel()
    return total


def _variance(vi: _Channel, ir: _Channel, f: _Channel) -> float:
    d = f.x - f.x.mean()
    return math.sqrt(float((d * d).sum()) / f.count)


_PER_CHANNEL = {
    "Avg_gradient": _avg_gradient,
    "Cross_entropy": _cross_entropy,
    "Edge_intensity": _edge_intensity,
    "Entropy": _entropy,
    "Mutinf": _mutinf,
    "Psnr": _psnr,
    "Qabf": _qabf,
    "Qcb": _qcb,
    "Qcv": _qcv,
    "Rmse": _rmse,
    "Ssim": _ssim,
    "Variance": _variance,
}


def _spatial_frequency(channels: Sequence[torch.Tensor]) -> float:
    """metricsSpatial_frequency.m on the m x (n * bands) matrix ``[F1 F2 F3]`` that ``fused(fi, fj)`` indexes."""
    z = torch.cat(list(channels), dim=-1)
    m, n = z.shape
    rf = float(((z[:, 1:] - z[:, :-1]) ** 2).sum()) / (m * n)
    cf = float(((z[1:, :] - z[:-1, :]) ** 2).sum()) / (m * n)
    return math.sqrt(rf + cf)


def parse_vifb_metrics(names: str | Iterable[str] | None) -> tuple[str, ...]:
    """VIFB metric names in VIFB_METRICS order from names in any case (or a comma-separated string; a
    cddfuse name of a shared metric selects its VIFB counterpart, EN -> Entropy); None means all thirteen.
    Unknown names raise InputError listing the valid ones."""
    return _CONVENTION.parse_metrics(names)


class VifbPairScorer:
    """Scores any number of fused images of one (IR, VIS) pair under the VIFB convention.

    ``VifbPairScorer(ir, vis).score([fused, ...])`` returns one ``{metric: value}`` dict per fused image
    (keys in VIFB_METRICS order; NaN where the reference gives NaN or an infinity). Images as in
    :func:`vifb_levels`. Source quantities (histograms, spectra, contrast and saliency maps, SSIM statistics)
    are computed once per pair and channel and reused for every fused image. `device`: None keeps a torch
    input's device (CPU for numpy); `batch` is accepted for the common scorer interface and unused.
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
        from fusedet.devices import device_for

        self.metrics = parse_vifb_metrics(metrics)
        self.device = device_for(device, ir)
        self.name = name
        self.notes: list[str] = []
        self.ir = vifb_levels(ir, f"{name} (infrared)").to(self.device)
        self.vis = vifb_levels(vis, f"{name} (visible)").to(self.device)
        if self.ir.shape[1:] != self.vis.shape[1:]:
            raise InputError(
                f"{name}: infrared is {self.ir.shape[2]}x{self.ir.shape[1]} but visible is {self.vis.shape[2]}x{self.vis.shape[1]} (W x H)"
            )
        self.shape = tuple(self.ir.shape[1:])
        _CONVENTION.check_size(self.shape[1], self.shape[0], self.metrics, name)
        self._channels: dict[tuple[str, object], _Channel] = {}

    def _source(self, which: str, key: object) -> _Channel:
        """A source channel: which in ("vi", "ir"), key "gray" (rgb2gray of a colour image) or a channel index."""
        if (which, key) not in self._channels:
            img = self.vis if which == "vi" else self.ir
            if key == "gray":
                x = img[0] if img.shape[0] == 1 else rgb2gray(img)
            else:
                x = img[0] if img.shape[0] == 1 else img[key]
            self._channels[(which, key)] = _Channel(x)
        return self._channels[(which, key)]

    def _triplets(self, fused: torch.Tensor) -> tuple[list[tuple[_Channel, _Channel, _Channel]], list[torch.Tensor]]:
        """Channel triplets (vi, ir, f) as VIFB's metrics*.m split them, and the fused channels."""
        if fused.shape[0] == 3 and self.vis.shape[0] == 1:
            fused = rgb2gray(fused).unsqueeze(0)  # colour fused image of a gray visible image
        if fused.shape[0] == 1:
            chans = [fused[0]]
            return [(self._source("vi", "gray"), self._source("ir", "gray"), _Channel(chans[0]))], chans
        chans = list(fused.unbind(0))
        return [(self._source("vi", k), self._source("ir", k), _Channel(chans[k])) for k in range(3)], chans

    def _fused(self, images: Images | Sequence[Images]) -> list[torch.Tensor]:
        if isinstance(images, (torch.Tensor, np.ndarray)) and images.ndim == 3 and images.shape[2] not in (1, 3):
            images = list(images)  # N x H x W
        if isinstance(images, (torch.Tensor, np.ndarray)):
            images = [images]
        out = []
        for i, img in enumerate(images):
            x = vifb_levels(img, f"{self.name} (fused #{i + 1})").to(self.device)
            if tuple(x.shape[1:]) != self.shape:
                raise InputError(
                    f"{self.name}: fused image #{i + 1} is {x.shape[2]}x{x.shape[1]} but the pair is {self.shape[1]}x{self.shape[0]} (W x H)"
                )
            out.append(x)
        return out

    @torch.no_grad()
    def score(self, fused: Images | Sequence[Images]) -> list[dict[str, float]]:
        """The metrics of each fused image: a list of dicts, NaN where a value is undefined."""
        results = []
        for img in self._fused(fused):
            triplets, chans = self._triplets(img)
            row = {}
            for metric in self.metrics:
                if metric == "Spatial_frequency":
                    value = _spatial_frequency(chans)
                else:
                    fn = _PER_CHANNEL[metric]
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        value = float(np.mean([fn(*t) for t in triplets]))
                row[metric] = value if math.isfinite(value) else math.nan
            results.append(row)
        return results
