"""DMNet losses, equations (13)-(19), and the gradient operators of L_gd (Table VI).

All losses are computed in float32 (also under bf16 autocast) and return scalar tensors.

- Reconstruction (14)-(16): ``MSE + lam * (1 - SSIM)``. Equation (15) writes a squared L2 norm; we
  use its mean (MSE), as CDDFuse does, so the weight does not depend on the crop size.
  SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1,
  computed over the valid region (no padding) and averaged: the reference implementation's
  definition, the same as ``pytorch_msssim.ssim`` (our tests compare against it).
- L_int (18) = mean |F - max(I_ir, I_vis)|; L_gd (19) = mean | |grad F| - max(|grad I_ir|, |grad I_vis|) |.
- Gradient operators (all with replicate padding, so image borders produce no false edges):
  ``sobel`` |Gx| + |Gy| with the 3x3 Sobel kernels (the L1 magnitude of CDDFuse's Sobelxy);
  ``roberts`` |G1| + |G2| with the 2x2 Roberts cross kernels;
  ``log`` |LoG * x| with the common 5x5 integer Laplacian-of-Gaussian kernel;
  ``canny``: Canny is not differentiable, so we use its edge map as a mask on a differentiable
  magnitude: Gaussian smoothing (sigma 1, 7x7), Sobel, Euclidean magnitude m; non-maximum
  suppression along the gradient direction (4 quantised directions) and hysteresis (low 0.1,
  high 0.2 on m, skimage.feature.canny's defaults for float images) give a binary mask M computed
  without gradient; the operator returns m * M, so the gradient flows through m on edge pixels.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from dmnet.config import GRAD_OPERATORS
from dmnet.errors import DMNetError

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
CANNY_SIGMA = 1.0
CANNY_LOW = 0.1
CANNY_HIGH = 0.2

_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
_ROBERTS_1 = ((1.0, 0.0), (0.0, -1.0))
_ROBERTS_2 = ((0.0, 1.0), (-1.0, 0.0))
_LOG_5 = (
    (0.0, 0.0, 1.0, 0.0, 0.0),
    (0.0, 1.0, 2.0, 1.0, 0.0),
    (1.0, 2.0, -16.0, 2.0, 1.0),
    (0.0, 1.0, 2.0, 1.0, 0.0),
    (0.0, 0.0, 1.0, 0.0, 0.0),
)


# ---------------------------------------------------------------------------- helpers
def float32_losses(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a loss with autocast off, so that it is computed in float32 under bf16 autocast too."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        device = next(a.device.type for a in args if isinstance(a, torch.Tensor))
        with torch.autocast(device_type=device, enabled=False):
            return fn(*args, **kwargs)

    return wrapper


def _as_planes(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """B x C x H x W -> (B*C) x 1 x H x W float32, and the shape to restore."""
    if x.dim() != 4:
        raise DMNetError(f"expected a B x C x H x W tensor, got shape {tuple(x.shape)}")
    return x.float().reshape(-1, 1, *x.shape[-2:]), tuple(x.shape)


def _filter(x: torch.Tensor, kernel: tuple[tuple[float, ...], ...] | torch.Tensor) -> torch.Tensor:
    """Correlate (B*C) x 1 x H x W planes with a 2-D kernel, replicate padding, same size out."""
    k = torch.as_tensor(kernel, dtype=x.dtype, device=x.device)
    kh, kw = k.shape
    pad = ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2)
    return F.conv2d(F.pad(x, pad, mode="replicate"), k[None, None])


def _gaussian_1d(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


# ---------------------------------------------------------------------------- SSIM / reconstruction
@float32_losses
def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of two B x C x H x W images in [0, 1] (Gaussian 11x11, sigma 1.5, valid region)."""
    if x.shape != y.shape:
        raise DMNetError(f"ssim: shapes differ, {tuple(x.shape)} vs {tuple(y.shape)}")
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise DMNetError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(x.shape[-2:])}")
    x, _ = _as_planes(x)
    y, _ = _as_planes(y)
    g = _gaussian_1d(SSIM_WINDOW, SSIM_SIGMA, x.device)
    gx, gy = g.view(1, 1, 1, -1), g.view(1, 1, -1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable, valid
        return F.conv2d(F.conv2d(t, gx), gy)

    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.mean()


@float32_losses
def reconstruction_loss(image: torch.Tensor, recon: torch.Tensor, lam: float) -> torch.Tensor:
    """Equations (14)-(16): MSE(I, I') + lam * (1 - SSIM(I, I'))."""
    return F.mse_loss(recon.float(), image.float()) + lam * (1 - ssim(image, recon))


@float32_losses
def autoencoder_loss(vis: torch.Tensor, vis_rec: torch.Tensor, ir: torch.Tensor, ir_rec: torch.Tensor,
                     gamma1: float, lam: float) -> dict[str, torch.Tensor]:
    """Equation (13): L_au = L_vi + gamma1 * L_ir; returns au, rec_vi and rec_ir."""
    rec_vi = reconstruction_loss(vis, vis_rec, lam)
    rec_ir = reconstruction_loss(ir, ir_rec, lam)
    return {"au": rec_vi + gamma1 * rec_ir, "rec_vi": rec_vi, "rec_ir": rec_ir}


# ---------------------------------------------------------------------------- gradient operators
@float32_losses
def sobel(x: torch.Tensor) -> torch.Tensor:
    """|Gx| + |Gy| with the 3x3 Sobel kernels."""
    p, shape = _as_planes(x)
    kx = torch.tensor(_SOBEL_X)
    return (_filter(p, kx).abs() + _filter(p, kx.T).abs()).reshape(shape)


@float32_losses
def roberts(x: torch.Tensor) -> torch.Tensor:
    """|G1| + |G2| with the 2x2 Roberts cross kernels."""
    p, shape = _as_planes(x)
    return (_filter(p, _ROBERTS_1).abs() + _filter(p, _ROBERTS_2).abs()).reshape(shape)


@float32_losses
def laplacian_of_gaussian(x: torch.Tensor) -> torch.Tensor:
    """|LoG * x| with the 5x5 integer LoG kernel (zero sum: flat regions give 0)."""
    p, shape = _as_planes(x)
    return _filter(p, _LOG_5).abs().reshape(shape)


def _canny_mask(mag: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """Non-maximum suppression + hysteresis on (B*C) x 1 x H x W maps; boolean mask, no gradient."""
    angle = torch.rad2deg(torch.atan2(gy, gx)) % 180.0
    sector = torch.round(angle / 45.0).long() % 4  # 0: horizontal grad, 1: 45 deg, 2: vertical, 3: 135 deg
    padded = F.pad(mag, (1, 1, 1, 1), mode="constant", value=0.0)
    h, w = mag.shape[-2:]

    def shifted(dy: int, dx: int) -> torch.Tensor:
        return padded[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    # neighbours along the gradient direction (image y axis points down, gy = d/dy)
    offsets = {0: ((0, 1), (0, -1)), 1: ((1, 1), (-1, -1)), 2: ((1, 0), (-1, 0)), 3: ((1, -1), (-1, 1))}
    keep = torch.zeros_like(mag, dtype=torch.bool)
    for s, (a, b) in offsets.items():
        local_max = (mag >= shifted(*a)) & (mag >= shifted(*b))
        keep |= (sector == s) & local_max
    thin = keep & (mag > 0)
    weak = thin & (mag >= CANNY_LOW)
    strong = thin & (mag >= CANNY_HIGH)
    for _ in range(h * w):  # grow strong edges along 8-connected weak pixels until stable
        grown = weak & (F.max_pool2d(strong.float(), 3, stride=1, padding=1) > 0)
        if torch.equal(grown, strong):
            break
        strong = grown
    return strong


@float32_losses
def canny(x: torch.Tensor) -> torch.Tensor:
    """Differentiable Canny response: smoothed Sobel magnitude masked by Canny's edge map."""
    p, shape = _as_planes(x)
    g = _gaussian_1d(7, CANNY_SIGMA, p.device)
    smooth = _filter(_filter(p, g.view(1, -1)), g.view(-1, 1))
    kx = torch.tensor(_SOBEL_X)
    gx, gy = _filter(smooth, kx), _filter(smooth, kx.T)
    mag = torch.sqrt(gx * gx + gy * gy + 1e-12)
    with torch.no_grad():
        mask = _canny_mask(mag.detach(), gx.detach(), gy.detach())
    return (mag * mask).reshape(shape)


GRADIENTS = {"sobel": sobel, "canny": canny, "log": laplacian_of_gaussian, "roberts": roberts}
assert tuple(GRADIENTS) == GRAD_OPERATORS


@float32_losses
def gradient(x: torch.Tensor, operator: str = "sobel") -> torch.Tensor:
    """|grad x| with the named operator (sobel, canny, log, roberts); same shape as x, float32."""
    if operator not in GRADIENTS:
        raise DMNetError(f"unknown gradient operator {operator!r} (known: {', '.join(GRADIENTS)})")
    return GRADIENTS[operator](x)


# ---------------------------------------------------------------------------- stage II
@float32_losses
def intensity_loss(fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
    """L_int^II = (1 / HW) || F - max(I_ir, I_vis) ||_1, averaged over the batch."""
    return (fused.float() - torch.maximum(ir.float(), vis.float())).abs().mean()


@float32_losses
def gradient_loss(fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor,
                  operator: str = "sobel") -> torch.Tensor:
    """Equation (19): (1 / HW) || |grad F| - max(|grad I_ir|, |grad I_vis|) ||_1."""
    with torch.no_grad():
        target = torch.maximum(gradient(ir, operator), gradient(vis, operator))
    return (gradient(fused, operator) - target).abs().mean()


def to_diffusion_range(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] images -> [-1, 1], the DDPM data range."""
    return x * 2.0 - 1.0

