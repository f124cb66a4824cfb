"""Kernel choices for DMNet's small convolutions and LayerNorms: speed only, same results.

ATen runs a 1x1 convolution with its reference (THNN) kernel when torch uses one thread, and with
oneDNN when it uses more. With DMNet's 4-32 channels per pixel on channels-last tensors, oneDNN is
2-8x faster on one thread too, so ``conv1x1`` calls it directly on the "oneDNN route": float32
CPU tensors outside autocast. Everywhere else (CUDA, bf16, float64, CPU autocast, a torch built
without oneDNN) it is ``F.conv2d``. Both support autograd.

``layer_norm_conv1x1`` computes 1x1 convs of a channel LayerNorm. LayerNorm over the 8 channels of a
channels-last pixel is slow in ATen (rows of 8 values, ~3.5 ns per value on one core); on the oneDNN
route it is computed with 1x1 convs instead: centring is a C x C matrix, the variance a conv of the
squared centred values, and the LayerNorm's weight and bias are folded into the following conv.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_ONEDNN = torch.backends.mkldnn.is_available()


def onednn_route(x: torch.Tensor) -> bool:
    """Whether ``x`` takes the oneDNN route: float32 on CPU, outside autocast."""
    return (_ONEDNN and x.device.type == "cpu" and x.dtype == torch.float32
            and torch.backends.mkldnn.enabled and not torch.is_autocast_enabled("cpu"))


def conv1x1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv2d(x, weight, bias)`` for a 1 x 1 ``weight`` (stride 1, no padding, one group)."""
    if onednn_route(x) and weight.dtype == torch.float32:
        return torch.mkldnn_convolution(x, weight, bias, (0, 0), (1, 1), (1, 1), 1)
    return F.conv2d(x, weight, bias)


def layer_norm_conv1x1(x: torch.Tensor, norm_weight: torch.Tensor, norm_bias: torch.Tensor, eps: float,
                       weights: list[torch.Tensor]) -> list[torch.Tensor]:
    """``[conv1x1(LN(x), w) for w in weights]``: LN over the channels of a B x C x H x W tensor with
    ``norm_weight``, ``norm_bias``, ``eps``; the convs have no bias."""
    c = x.shape[1]
    if not onednn_route(x):
        y = F.layer_norm(x.permute(0, 2, 3, 1), (c,), norm_weight, norm_bias, eps=eps).permute(0, 3, 1, 2)
        return [conv1x1(y, w) for w in weights]
    eye = torch.eye(c, dtype=x.dtype, device=x.device)
    centred = conv1x1(x, (eye - 1.0 / c)[:, :, None, None])  # x - mean over channels
    mean_square = torch.full((1, c, 1, 1), 1.0 / c, dtype=x.dtype, device=x.device)
    inv_std = conv1x1(centred * centred, mean_square).add_(eps).rsqrt_()  # B x 1 x H x W
    standard = centred * inv_std if torch.is_grad_enabled() else centred.mul_(inv_std)
    # conv(w_ln * standard + b_ln, W) = conv(standard, W diag(w_ln)) + W b_ln
    return [conv1x1(standard, w * norm_weight.view(1, c, 1, 1), w.flatten(1) @ norm_bias) for w in weights]
