"""Kernel choices for DMNet's small convolutions and LayerNorms: speed only, same results.

ATen runs a 1x1 convolution with its reference (THNN) kernel when torch uses one thread, and with
oneDNN when it uses more. With DMNet's 4-32 channels per pixel on channels-last tensors, oneDNN is
2-8x faster on one thread too, so ``conv1x1`` calls it directly on the "oneDNN route": float32
and bfloat16 CPU tensors outside autocast, with weights of the input's dtype (bfloat16 where DMNet
keeps a part in lower precision, ``DMNet.lower_precision``: oneDNN then runs on the CPU's bf16
units, AMX where there is one, and accumulates in float32; bfloat16 only where oneDNN can run it,
:data:`ONEDNN_BF16`, else ``F.conv2d``). Everywhere else (CUDA, float64, CPU
autocast, a torch built without oneDNN) it is ``F.conv2d``. Both support autograd.

``layer_norm_conv1x1`` computes 1x1 convs of a channel LayerNorm. LayerNorm over the 8 channels of a
channels-last pixel is slow in ATen (rows of 8 values, ~3.5 ns per value on one core); on the oneDNN
route it is computed with 1x1 convs instead: centring is a C x C matrix, the variance a conv of the
squared centred values, and the LayerNorm's weight and bias are folded into the following conv.

Fused element-wise work: oneDNN applies an element-wise function or a second operand to a
convolution's output while it is still in cache ("post-ops"), one memory pass fewer each. torch
exposes this as ``torch.ops.mkldnn._convolution_pointwise`` (the operator its inductor compiler uses
for the same fusions). ``conv_act`` (a conv followed by ReLU6, GELU, SiLU, sigmoid, leaky ReLU) and
``conv_mul`` / ``conv_add`` (a conv times / plus another tensor) use it without autograd on the oneDNN route, where the
operator exists; everywhere else they compute the plain two-step formula. ``mix_channels_add``
applies a different C x C channel mixing to each image of a batch and adds a residual, as one oneDNN
1x1 conv per image written into the output (a batched matrix product with 8 columns is slow in BLAS).
oneDNN's GELU is its erf form, equal to ``F.gelu`` within float32 rounding (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_ONEDNN = torch.backends.mkldnn.is_available()


def _onednn_bf16() -> bool:
    """Whether oneDNN may run bfloat16 here: the CPU has the instructions it needs (avx512bw/vl/dq or
    avx_ne_convert) and ONEDNN_MAX_CPU_ISA allows them (torch's own check)."""
    check = getattr(getattr(torch.ops, "mkldnn", None), "_is_mkldnn_bf16_supported", None)
    try:
        return bool(_ONEDNN and check is not None and check())
    except RuntimeError:
        return False


ONEDNN_BF16 = _onednn_bf16()
# bfloat16 takes the route only where oneDNN runs it (elsewhere torch.mkldnn_convolution refuses it)
_ROUTE_DTYPES = (torch.float32, torch.bfloat16) if ONEDNN_BF16 else (torch.float32,)
_POINTWISE = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None) if _ONEDNN else None


def onednn_route(x: torch.Tensor) -> bool:
    """Whether ``x`` takes the oneDNN route: float32 or bfloat16 on CPU, outside autocast."""
    return (_ONEDNN and not torch.compiler.is_compiling() and x.device.type == "cpu" and x.dtype in _ROUTE_DTYPES
            and torch.backends.mkldnn.enabled and not torch.is_autocast_enabled("cpu"))


def conv1x1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv2d(x, weight, bias)`` for a 1 x 1 ``weight`` (stride 1, no padding, one group)."""
    if onednn_route(x) and weight.dtype == x.dtype:
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
    if fused_route(x) and weight.dtype == x.dtype:
        return _POINTWISE(x, weight, bias, *_conv_args(padding, groups), attr, scalars, algorithm)
    if padding == 0 and groups == 1 and weight.shape[-2:] == (1, 1):
        return plain(conv1x1(x, weight, bias))
    return plain(F.conv2d(x, weight, bias, padding=padding, groups=groups))


def conv_mul(x: torch.Tensor, other: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
             padding: int = 0, groups: int = 1) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=padding, groups=groups) * other`` (stride 1; ``other`` of
    the conv output's shape)."""
    return _conv_binary(x, other, weight, bias, padding, groups, "mul")


def conv_add(x: torch.Tensor, other: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
             padding: int = 0, groups: int = 1) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=padding, groups=groups) + other`` (stride 1; ``other`` of the
    conv output's shape): a residual added by oneDNN as the convolution writes its output (bf16 U-Net
    blocks at 3 x 8 x 480 x 640: 11 ms against 19 ms for the conv and a separate addition)."""
    return _conv_binary(x, other, weight, bias, padding, groups, "add")


def _conv_binary(x: torch.Tensor, other: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 padding: int, groups: int, op: str) -> torch.Tensor:
    """The conv's output combined with ``other`` by `op` ("mul" or "add"): oneDNN's binary post-op on the
    fused route for channels-last operands of one dtype, else the conv and then the operation."""
    if fused_route(x) and weight.dtype == x.dtype == other.dtype and other.is_contiguous(memory_format=torch.channels_last) \
            and x.is_contiguous(memory_format=torch.channels_last):
        return _POINTWISE.binary(x, other, weight, bias, *_conv_args(padding, groups), op, None, None, [], None)
    out = F.conv2d(x, weight, bias, padding=padding, groups=groups)
    return out * other if op == "mul" else out + other


def mix_channels_add(residual: torch.Tensor, x: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """``residual + einsum("bchw,boc->bohw", x, mix)``: image b's channels mixed by its own
    ``mix[b]`` (B x C_out x C_in), plus ``residual`` (B x C_out x H x W)."""
    b = x.shape[0]
    if onednn_route(x) and not torch.is_grad_enabled() and mix.dtype in _ROUTE_DTYPES \
            and residual.is_contiguous(memory_format=torch.channels_last):
        out = torch.empty_like(residual, memory_format=torch.channels_last)
        for i in range(b):  # a batch slice of a channels-last tensor is itself channels-last
            torch.add(residual[i:i + 1], conv1x1(x[i:i + 1], mix[i, :, :, None, None].to(x.dtype).contiguous()), out=out[i:i + 1])
        return out
    mixed = x.permute(0, 2, 3, 1).flatten(1, 2) @ mix.transpose(1, 2).to(x.dtype)  # B x HW x C_out
    return residual + mixed.unflatten(1, x.shape[-2:]).permute(0, 3, 1, 2)


def conv_bias_per_image(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, extra: torch.Tensor,
                        padding: int = 0) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=padding) + extra[:, :, None, None]``: a bias of its own for each
    image of the batch (`extra`: B x C_out, e.g. a time embedding).

    On the oneDNN route in bfloat16, without autograd, each image's convolution takes its bias inside
    oneDNN (added to the float32 accumulator: one rounding fewer) and the images are concatenated:
    ATen's broadcast addition in bfloat16 alone takes 3-4x the time of the convolution (3 x 8 x 480 x 640,
    3x3: 12.0 ms against 3.4 ms for the per-image form, 2 threads). Elsewhere the plain formula.
    """
    if onednn_route(x) and x.dtype == torch.bfloat16 == weight.dtype and not torch.is_grad_enabled():
        base = bias if bias is not None else torch.zeros(weight.shape[0], dtype=x.dtype, device=x.device)
        args = (padding, padding), (1, 1), (1, 1), 1
        return torch.cat([torch.mkldnn_convolution(x[i:i + 1], weight, (base + extra[i]).to(x.dtype), *args)
                          for i in range(x.shape[0])])
    return F.conv2d(x, weight, bias, padding=padding).add_(extra[:, :, None, None])


def group_norm(x: torch.Tensor, norm: torch.nn.GroupNorm) -> torch.Tensor:
    """``norm(x)``. ATen's channels-last GroupNorm in bfloat16 is slow with fewer than 4 channels per
    group (3 x 8 x 480 x 640 in 4 groups: 14.4 ms, against 8.1 ms for casting to float32, normalising
    and casting back; with 4 or more channels per group it is as fast as float32): on the CPU such a
    bfloat16 input is normalised in float32 (the statistics are float32 either way)."""
    if x.dtype == torch.bfloat16 and x.device.type == "cpu" and x.shape[1] // norm.num_groups < 4:
        weight, bias = (p.float() if p is not None else None for p in (norm.weight, norm.bias))
        return F.group_norm(x.float(), norm.num_groups, weight, bias, norm.eps).to(x.dtype)
    return norm(x)


def downsample_conv(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a stride-2 convolution (the SR3 U-Net's downsampling).

    oneDNN, as torch 2.14.1 ships it, computes a bfloat16 channels-last stride-2 convolution wrongly when
    the input is 1 or 2 pixels wide and 9 or more tall: values off by 1-2, NaN or 1e38, changing from call
    to call (found with 3 x 32 x 14 x 2 inputs; widths 3 and more and all stride-1 convolutions are
    right). DMNet's U-Net meets such inputs at its deeper levels for images up to 16 pixels wide in
    ``mixed`` precision. Inputs with a side of 2 pixels or less are therefore convolved in float32 on the
    CPU and cast back (they are tiny); everything else is ``conv(x)`` (tests/test_dmnet_kernels.py)."""
    if x.dtype == torch.bfloat16 and x.device.type == "cpu" and min(x.shape[-2:]) <= 2:
        bias = conv.bias.float() if conv.bias is not None else None
        return F.conv2d(x.float(), conv.weight.float(), bias, conv.stride, conv.padding).to(x.dtype)
    return conv(x)
