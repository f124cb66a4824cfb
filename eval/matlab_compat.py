"""The MATLAB functions VIFB's metrics call, reproduced from their documented behaviour in torch (CPU or CUDA).

VIFB (Zhang et al., CVPRW 2020, ``metrics/metrics*.m``) is MATLAB code; its numbers depend on how these
functions treat borders, rounding and frequencies. Each function here names the MATLAB function it
stands for and the rule it follows. Images are float64 tensors (H x W, or any leading axes) holding the
values MATLAB would hold after ``double(...)``.

- :func:`matlab_round`: ``round`` and the integer conversions ``uint8(...)``/``int16(...)`` round halves
  away from zero (torch.round rounds them to even).
- :func:`rgb2gray`: ``rgb2gray`` of a uint8 RGB image, as GNU Octave 7 computes it (the program that made
  the reference values): ``uint8(255 * (R/255 * 0.298936 + G/255 * 0.587043 + B/255 * 0.114021))``.
  MATLAB documents the weights 0.298936021293775, 0.587043074451121, 0.114020904255103; the two agree
  except on pixels whose weighted sum lies within about 1e-6 of a half level (one level apart there).
- :func:`gradient`: ``gradient(F)``: central differences inside, one-sided differences on the borders.
- :func:`freqspace_meshgrid`: ``[u, v] = freqspace([m n], 'meshgrid')``: frequencies
  ``((0:n-1) - floor(n/2)) * (2/n)`` along x (columns) and the same with m along y (rows).
- :func:`filter2_same`: ``filter2(h, X, 'same')`` / ``conv2(X, rot90(h, 2), 'same')`` for a separable
  symmetric window: correlation, zero padding outside the image, output the size of X (the window's
  centre is element ``floor((size + 1) / 2)``, which for odd sizes is the middle).
- ``conv2(X, h, 'same')`` with the 3 x 3 Sobel kernels (zero padding) is
  ``fusedet.eval.metrics_filters.sobel_same``; ``filter2(h, X, 'same')`` is the same with the kernel turned
  (so at most a sign changes); :func:`sobel_replicate`: ``imfilter(X, fspecial('sobel'), 'replicate')``,
  i.e. correlation with the border pixels repeated outwards.
- :func:`blkproc_sums`: ``blkproc(X, [b b], [0 0], fun)`` for block sums: X is zero-padded at the bottom
  and right to a multiple of b, and ``fun`` sees every b x b block (a partial block with its zeros).
- ``im2double`` of a double array returns it unchanged (only integer classes are divided by their
  maximum): VIFB's ``255 * im2double(double(img))`` therefore puts Qabf's images on a 0..65025 scale;
  see ``fusedet.eval.vifb_metrics``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fusedet.eval.metrics_filters import filter2d_same

# rgb2gray's weights in GNU Octave 7 (scripts/image/rgb2gray.m); MATLAB's differ after the 6th decimal.
RGB2GRAY_WEIGHTS: tuple[float, float, float] = (0.298936, 0.587043, 0.114021)


def matlab_round(x: torch.Tensor) -> torch.Tensor:
    """MATLAB ``round``: to the nearest integer, halves away from zero (NaN stays NaN)."""
    t = torch.trunc(x)
    return t + torch.where((x - t).abs() >= 0.5, torch.sign(x), torch.zeros_like(x))


def rgb2gray(rgb: torch.Tensor) -> torch.Tensor:
    """``rgb2gray`` of a uint8 RGB image given as float64 levels, 3 x H x W -> H x W float64 levels.

    Octave converts to double in [0, 1] (``im2double``: divide by 255), takes the weighted sum
    ``(r w1 + g w2) + b w3`` (one matrix-vector product per pixel), multiplies by 255 and converts back to
    uint8 (round halves away from zero, saturate to 0..255).
    """
    r, g, b = (c / 255.0 for c in rgb.unbind(0))
    w1, w2, w3 = RGB2GRAY_WEIGHTS
    gray = (r * w1 + g * w2 + b * w3) * 255.0
    return matlab_round(gray).clamp_(0.0, 255.0)


def gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MATLAB ``[dx, dy] = gradient(X)`` with unit spacing: dx along columns, dy along rows, H x W each (the
    input's dtype; exact for integer images in float32 or float64).

    Inside: (x[j+1] - x[j-1]) / 2; first and last column (row): the one-sided difference. Needs H, W >= 2.
    """
    dx, dy = torch.empty_like(x), torch.empty_like(x)
    torch.sub(x[..., :, 2:], x[..., :, :-2], out=dx[..., :, 1:-1]).mul_(0.5)
    torch.sub(x[..., :, 1], x[..., :, 0], out=dx[..., :, 0])
    torch.sub(x[..., :, -1], x[..., :, -2], out=dx[..., :, -1])
    torch.sub(x[..., 2:, :], x[..., :-2, :], out=dy[..., 1:-1, :]).mul_(0.5)
    torch.sub(x[..., 1, :], x[..., 0, :], out=dy[..., 0, :])
    torch.sub(x[..., -1, :], x[..., -2, :], out=dy[..., -1, :])
    return dx, dy


def freqspace_meshgrid(m: int, n: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """MATLAB ``[u, v] = freqspace([m n], 'meshgrid')``: two m x n float64 grids.

    u varies along columns: ``u[:, j] = (j - floor(n/2)) * (2/n)``; v along rows with m. The zero frequency
    sits at column floor(n/2) and row floor(m/2) (MATLAB's ``fftshift`` centre).
    """
    fx = (torch.arange(n, dtype=torch.float64, device=device) - (n // 2)) * (2.0 / n)
    fy = (torch.arange(m, dtype=torch.float64, device=device) - (m // 2)) * (2.0 / m)
    return fx.expand(m, n), fy.view(m, 1).expand(m, n)


def centered_to_fft_order(grid: torch.Tensor) -> torch.Tensor:
    """``ifftshift`` of a frequency-domain filter built on freqspace's centred grid (last two axes).

    ``ifft2(ifftshift(fftshift(fft2(X)) .* H))`` equals ``ifft2(fft2(X) .* ifftshift(H))`` element for
    element, which is how the VIFB filters are applied here.
    """
    return torch.fft.ifftshift(grid, dim=(-2, -1))


def filter2_same(x: torch.Tensor, taps: tuple[float, ...], scale: float = 1.0) -> torch.Tensor:
    """``filter2(scale * (taps' * taps), X, 'same')``: separable correlation with zero padding, same size.

    `taps` has odd length and is symmetric (so correlation equals convolution).
    """
    out = filter2d_same(x, taps)
    return out * scale if scale != 1.0 else out


def sobel_replicate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``imfilter(X, w, 'replicate')`` and ``imfilter(X, w', 'replicate')`` with ``w = fspecial('sobel')``.

    ``fspecial('sobel')`` is ``[1 2 1; 0 0 0; -1 -2 -1]``; imfilter correlates (no kernel turn) and, with
    'replicate', repeats the border pixels outwards. Returns (gx, gy) as VIFB names them: gx = above minus
    below (w), gy = left minus right (w').
    """
    xp = F.pad(x.reshape(1, -1, *x.shape[-2:]), (1, 1, 1, 1), mode="replicate").reshape(*x.shape[:-2], x.shape[-2] + 2, x.shape[-1] + 2)
    s = xp[..., :, :-2] + 2.0 * xp[..., :, 1:-1] + xp[..., :, 2:]
    gx = s[..., :-2, :] - s[..., 2:, :]
    d = xp[..., :, :-2] - xp[..., :, 2:]
    gy = d[..., :-2, :] + 2.0 * d[..., 1:-1, :] + d[..., 2:, :]
    return gx, gy


def blkproc_sums(x: torch.Tensor, block: int) -> torch.Tensor:
    """Sums over MATLAB ``blkproc``'s distinct block x block blocks: ceil(H/b) x ceil(W/b) values.

    Partial blocks at the bottom and right are zero-padded, so their sum covers the pixels they hold
    (and a ``mean2`` over such a block divides by block * block, zeros included).
    """
    h, w = x.shape[-2:]
    rows, cols = math.ceil(h / block), math.ceil(w / block)
    xp = F.pad(x, (0, cols * block - w, 0, rows * block - h))
    return xp.reshape(*x.shape[:-2], rows, block, cols, block).sum(dim=(-3, -1))
