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

Fused element-wise work: oneDNN applies an element-wise function or a second operand to a
convolution's output while it is still in cache ("post-ops"), one memory pass fewer each. torch
exposes this as ``torch.ops.mkldnn._convolution_pointwise`` (the operator its inductor compiler uses
for the same fusions). ``conv_act`` (a conv followed by ReLU6, GELU, SiLU, sigmoid, leaky ReLU) and
``conv_mul`` (a conv times another tensor) use it without autograd on the oneDNN route, where the
operator exists; everywhere else they compute the plain two-step formula. ``mix_channels_add``
applies a different C x C channel mixing to each image of a batch and adds a residual, as one oneDNN
1x1 conv per image written into the output (a batched matrix product with 8 columns is slow in BLAS).
oneDNN's GELU is its erf form, equal to ``F.gelu`` within float32 rounding (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_ONEDNN = torch.backends.mkldnn.is_available()
_POINTWISE = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None) if _ONEDNN else None


def onednn_route(x: torch.Tensor) -> bool:
    """Whether ``x`` takes the oneDNN route: float32 on CPU, outside autocast."""
    return (_ONEDNN and not torch.compiler.is_compiling() and x.device.type == "cpu" and x.dtype == torch.float32
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


# name -> (oneDNN post-op attribute, its scalars, its algorithm, the plain function)
ACTIVATIONS = {
    "relu6": ("hardtanh", [0.0, 6.0], None, lambda y: F.relu6(y, inplace=True)),
    "gelu": ("gelu", [], "none", F.gelu),  # algorithm "none": the erf form, as F.gelu
    "silu": ("swish", [], None, lambda y: F.silu(y, inplace=True)),
    "sigmoid": ("sigmoid", [], None, torch.sigmoid),
    "leaky_relu": ("leaky_relu", [0.01], None, lambda y: F.leaky_relu(y, inplace=True)),
}


def fused_route(x: torch.Tensor) -> bool:
    """Whether ``x`` takes oneDNN's fused conv + element-wise route: the oneDNN route, without
    autograd, where torch has the fused operator."""
    return _POINTWISE is not None and not torch.is_grad_enabled() and onednn_route(x)


def _conv_args(padding: int, groups: int) -> tuple:
    return [padding, padding], [1, 1], [1, 1], groups


def conv_act(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, act: str, padding: int = 0,
             groups: int = 1) -> torch.Tensor:
    """``act(F.conv2d(x, weight, bias, padding=padding, groups=groups))`` (stride 1), ``act`` one of
    ``ACTIVATIONS`` (leaky ReLU with slope 0.01, nn.LeakyReLU's default)."""
    attr, scalars, algorithm, plain = ACTIVATIONS[act]
    if fused_route(x) and weight.dtype == torch.float32:
        return _POINTWISE(x, weight, bias, *_conv_args(padding, groups), attr, scalars, algorithm)
    if padding == 0 and groups == 1 and weight.shape[-2:] == (1, 1):
        return plain(conv1x1(x, weight, bias))
    return plain(F.conv2d(x, weight, bias, padding=padding, groups=groups))


def conv_mul(x: torch.Tensor, other: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
             padding: int = 0, groups: int = 1) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=padding, groups=groups) * other`` (stride 1; ``other`` of
    the conv output's shape)."""
    if fused_route(x) and weight.dtype == torch.float32 and other.is_contiguous(memory_format=torch.channels_last) \
            and x.is_contiguous(memory_format=torch.channels_last):
        return _POINTWISE.binary(x, other, weight, bias, *_conv_args(padding, groups), "mul", None, None, [], None)
    return F.conv2d(x, weight, bias, padding=padding, groups=groups) * other


def mix_channels_add(residual: torch.Tensor, x: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """``residual + einsum("bchw,boc->bohw", x, mix)``: image b's channels mixed by its own
    ``mix[b]`` (B x C_out x C_in), plus ``residual`` (B x C_out x H x W)."""
    b = x.shape[0]
    if onednn_route(x) and not torch.is_grad_enabled() and mix.dtype == torch.float32 \
            and residual.is_contiguous(memory_format=torch.channels_last):
        out = torch.empty_like(residual, memory_format=torch.channels_last)
        for i in range(b):  # a batch slice of a channels-last tensor is itself channels-last
            torch.add(residual[i:i + 1], conv1x1(x[i:i + 1], mix[i, :, :, None, None].contiguous()), out=out[i:i + 1])
        return out
    mixed = x.permute(0, 2, 3, 1).flatten(1, 2) @ mix.transpose(1, 2).to(x.dtype)  # B x HW x C_out
    return residual + mixed.unflatten(1, x.shape[-2:]).permute(0, 3, 1, 2)
