"""Image filters behind the fusion metrics: separable 'valid' correlation, exact box sums, the metrics'
Gaussian windows and the zero-padded Sobel responses of Qabf. Tensors with any leading batch axes.

Two backends for the separable filters, chosen by device:

- CPU: the compiled 'valid' filter of ``fusedet.eval.metrics_kernels`` (only the outputs kept are computed,
  strided ones included: 1.6x OpenCV's ``sepFilter2D`` in float32 and 2x in float64 at 576 x 768, 17 taps),
  or OpenCV's ``sepFilter2D`` / ``boxFilter`` on each 2-D map cropped to the 'valid' region where numba is
  missing (and for the 'same' filters); either is several times faster on CPU than banded GEMMs or torch's
  single-channel conv2d.
- other devices (CUDA): banded matrix products. A 1-D 'valid' correlation with k taps is a product with a
  banded (Toeplitz) matrix; cutting the axis into blocks of b samples, output block j needs only input
  blocks j and j+1, so a filter pass is two dense GEMMs (b x b and (k-1) x b) plus one addition.

float64 is what VIF's local variances need (its thresholds sit at 1e-10).
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from fusedet.eval import metrics_kernels

BLOCK = 64  # samples per block; >= k - 1 for every window used here (17 at most)
COMPILED = True  # False: OpenCV's filters for the CPU's 'valid' filters too (the tests compare the two)


def matlab_gaussian_taps(size: int, sigma: float) -> tuple[float, ...]:
    """1-D taps whose outer product is MATLAB's ``fspecial('gaussian', size, sigma)``.

    fspecial builds exp(-(x^2 + y^2) / (2 sigma^2)) on a size x size grid, zeroes entries below
    ``eps * max`` and normalises the sum to 1. The 2-D window is then the outer product of the
    normalised 1-D Gaussian, as long as the eps cut removes nothing; that holds for every window the
    metrics use (the smallest corner entry, exp(-2 * 8^2 / (2 * 3.4^2)) ~ 4e-3 for VIF's 17 x 17 at
    sigma 3.4, is far above eps) and is checked here.
    """
    half = (size - 1) / 2.0
    g = [math.exp(-((i - half) ** 2) / (2.0 * sigma * sigma)) for i in range(size)]
    if min(g) ** 2 < 2.220446049250313e-16 * max(g) ** 2:  # pragma: no cover - not reached by the metrics
        raise ValueError(f"fspecial would truncate a {size}x{size} Gaussian of sigma {sigma}: not separable")
    total = sum(g)
    return tuple(v / total for v in g)


def msssim_gaussian_taps(size: int = 11, sigma: float = 1.5) -> tuple[float, ...]:
    """The 1-D window of pytorch_msssim (coordinates i - size // 2, normalised to sum 1)."""
    g = [math.exp(-((i - size // 2) ** 2) / (2.0 * sigma * sigma)) for i in range(size)]
    total = sum(g)
    return tuple(v / total for v in g)


@lru_cache(maxsize=64)
def _band(taps: tuple[float, ...], block: int, stride: int, dtype: torch.dtype, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(M0, M1): block x (block // stride) and (k-1) x (block // stride) pieces of the banded matrix.

    out[j*block + t*stride] = sum_s x[j*block + s] M0[s, t] + sum_s x[(j+1)*block + s] M1[s, t].
    """
    k = len(taps)
    w = torch.tensor((0.0,) + taps, dtype=torch.float64)  # index 0 = "outside the window"
    s = torch.arange(block).view(-1, 1)
    t = (torch.arange(block // stride) * stride).view(1, -1)
    d0, d1 = s - t, s + block - t
    m0 = w[torch.where((d0 >= 0) & (d0 < k), d0 + 1, 0)]
    m1 = w[torch.where((d1 >= 0) & (d1 < k), d1 + 1, 0)][: k - 1]
    return m0.to(device=device, dtype=dtype), m1.to(device=device, dtype=dtype).contiguous()


def _blocks(length: int, k: int, stride: int, block: int) -> tuple[int, int]:
    """(number of output blocks, number of valid outputs) for a 'valid' filter of k taps."""
    valid = length - k + 1
    if valid < 1:
        raise ValueError(f"signal of length {length} is shorter than the {k}-tap window")
    return -(-valid // block), -(-valid // stride)


def correlate_last(x: torch.Tensor, taps: tuple[float, ...], stride: int = 1, block: int = BLOCK) -> torch.Tensor:
    """'valid' correlation along the last axis, keeping every `stride`-th output (starting at the first)."""
    k = len(taps)
    nb, n_out = _blocks(x.shape[-1], k, stride, block)
    m0, m1 = _band(taps, block, stride, x.dtype, str(x.device))
    total = (nb + 1) * block
    xp = F.pad(x, (0, total - x.shape[-1])) if total > x.shape[-1] else x[..., :total]
    xb = xp.reshape(*x.shape[:-1], nb + 1, block)
    y = xb @ m0
    y2 = xb[..., 1:, : k - 1] @ m1
    out = y[..., :nb, :] + y2
    return out.reshape(*x.shape[:-1], nb * (block // stride))[..., :n_out]


def correlate_rows(x: torch.Tensor, taps: tuple[float, ...], stride: int = 1, block: int = BLOCK) -> torch.Tensor:
    """'valid' correlation along the second-to-last axis (image rows), keeping every `stride`-th output row."""
    k = len(taps)
    nb, n_out = _blocks(x.shape[-2], k, stride, block)
    m0, m1 = _band(taps, block, stride, x.dtype, str(x.device))
    total = (nb + 1) * block
    xp = F.pad(x, (0, 0, 0, total - x.shape[-2])) if total > x.shape[-2] else x[..., :total, :]
    xb = xp.reshape(*x.shape[:-2], nb + 1, block, x.shape[-1])
    y = m0.mT @ xb[..., :nb, :, :]
    y += m1.mT @ xb[..., 1:, : k - 1, :]
    return y.reshape(*x.shape[:-2], nb * (block // stride), x.shape[-1])[..., :n_out, :]


def filter2d_valid(x: torch.Tensor, taps: tuple[float, ...], stride: int = 1) -> torch.Tensor:
    """Separable 2-D 'valid' correlation of the last two axes with the window outer(taps, taps).

    With symmetric taps (all windows here) this equals 2-D convolution, e.g. ``scipy.signal.convolve2d(x,
    win, 'valid')``. ``stride=2`` keeps every second row and column from the first, i.e. ``[::2, ::2]``.
    CPU tensors go through the compiled kernel (float32 or float64 sums in the input's dtype; OpenCV's
    separable filter, which sums float64 input in float64, without numba); other devices through banded
    GEMMs. The result may be a strided view.
    """
    if x.device.type == "cpu":
        return _filter2d_cpu(x, taps, stride)
    return correlate_rows(correlate_last(x, taps, stride), taps, stride)


def _sep_filter_same_opencv(x: torch.Tensor, taps: tuple[float, ...]) -> torch.Tensor:
    """OpenCV's separable filter of every H x W plane of a CPU tensor with outer(taps, taps), zero border:
    N x H x W (N the product of the leading axes), the input's dtype."""
    h, w = x.shape[-2:]
    kernel = np.asarray(taps, dtype=np.float64)
    src = x.detach().reshape(-1, h, w).numpy()
    out = torch.empty((src.shape[0], h, w), dtype=x.dtype)
    dst = out.numpy()
    for i in range(src.shape[0]):
        cv2.sepFilter2D(np.ascontiguousarray(src[i]), -1, kernel, kernel, dst=dst[i], borderType=cv2.BORDER_CONSTANT)
    return out


def _filter2d_cpu(x: torch.Tensor, taps: tuple[float, ...], stride: int) -> torch.Tensor:
    k, (h, w) = len(taps), x.shape[-2:]
    if h < k or w < k:
        raise ValueError(f"{w}x{h} image is smaller than the {k}x{k} window")
    if COMPILED and metrics_kernels.AVAILABLE and x.dtype in (torch.float32, torch.float64):
        maps = np.ascontiguousarray(x.detach().reshape(-1, h, w).numpy())
        valid = torch.from_numpy(metrics_kernels.filter_valid(maps, taps, stride))
        return valid.reshape(*x.shape[:-2], *valid.shape[-2:])
    out = _sep_filter_same_opencv(x, taps)
    half = k // 2
    valid = out[:, half : h - half, half : w - half][:, ::stride, ::stride]
    return valid.reshape(*x.shape[:-2], *valid.shape[-2:])


def filter2d_same(x: torch.Tensor, taps: tuple[float, ...]) -> torch.Tensor:
    """Separable 2-D correlation of the last two axes with outer(taps, taps), zero padding outside the image,
    output the input's size (MATLAB ``filter2(h, X, 'same')``; odd-length symmetric taps).

    CPU tensors go through OpenCV's separable filter with a constant zero border; other devices pad and
    use the banded GEMMs of :func:`filter2d_valid`.
    """
    half = len(taps) // 2
    if x.device.type != "cpu":
        return filter2d_valid(F.pad(x, (half, half, half, half)), taps)
    return _sep_filter_same_opencv(x, taps).reshape(x.shape)


def box_sums_valid(x: torch.Tensor, size: int) -> torch.Tensor:
    """Sums over every size x size window that lies inside the image ('valid'), for the last two axes.

    Returns the input's dtype (int32, float32 or float64); exact for integer-valued images whose window sums
    (and every partial sum) stay below 2**24 in float32 or fit the integer type. On CPU: OpenCV's separable
    filter with a window of ones for float input (about 1.7x faster than its box filter there, and exact
    under that bound) or the compiled 'valid' filter with that window (the same bound), OpenCV's
    unnormalised box filter (running sums) for integers; float64 banded GEMMs elsewhere.
    """
    if x.device.type != "cpu":
        return filter2d_valid(x.to(torch.float64), (1.0,) * size).round_().to(x.dtype)
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"{w}x{h} image is smaller than the {size}x{size} window")
    if x.is_floating_point():
        return _filter2d_cpu(x, (1.0,) * size, 1)
    src = x.detach().reshape(-1, h, w).numpy()
    out = torch.empty((src.shape[0], h, w), dtype=x.dtype)
    dst = out.numpy()
    for i in range(src.shape[0]):
        cv2.boxFilter(np.ascontiguousarray(src[i]), -1, (size, size), dst=dst[i], normalize=False, borderType=cv2.BORDER_CONSTANT)
    half = size // 2
    return out[:, half : h - half, half : w - half].reshape(*x.shape[:-2], h - 2 * half, w - 2 * half)


def sobel_same(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel responses (gx, gy) as in ``scipy.signal.convolve2d(x, h, mode='same')`` (zero padding).

    The kernels are convolved (flipped): gx with [[-1,0,1],[-2,0,2],[-1,0,1]], gy with
    [[1,2,1],[0,0,0],[-1,-2,-1]], as Xydeas-Petrovic Qabf code does (MATLAB ``conv2(X, h, 'same')``).
    Exact for integer images (float32 or float64). CPU tensors go through OpenCV's Sobel (whose x kernel is
    the correlation [-1, 0, 1], so gx is its negation); other devices through shifted differences.
    """
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        h, w = x.shape[-2:]
        src = x.detach().reshape(-1, h, w).numpy()
        gx, gy = torch.empty((2, src.shape[0], h, w), dtype=x.dtype)
        depth = cv2.CV_32F if x.dtype == torch.float32 else cv2.CV_64F
        for i in range(src.shape[0]):
            img = np.ascontiguousarray(src[i])
            cv2.Sobel(img, depth, 1, 0, dst=gx[i].numpy(), ksize=3, borderType=cv2.BORDER_CONSTANT)
            cv2.Sobel(img, depth, 0, 1, dst=gy[i].numpy(), ksize=3, borderType=cv2.BORDER_CONSTANT)
        return gx.neg_().reshape(x.shape), gy.reshape(x.shape)
    xp = F.pad(x, (1, 1, 1, 1))
    d = xp[..., :, :-2] - xp[..., :, 2:]  # flipped [-1, 0, 1] along columns
    gx = d[..., :-2, :] + 2 * d[..., 1:-1, :] + d[..., 2:, :]
    s = xp[..., :, :-2] + 2 * xp[..., :, 1:-1] + xp[..., :, 2:]
    gy = s[..., 2:, :] - s[..., :-2, :]  # flipped [1, 0, -1] along rows
    return gx, gy
