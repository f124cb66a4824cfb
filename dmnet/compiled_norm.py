"""A compiled CPU route for GroupNorm followed by SiLU, the head of every SR3 residual block, at inference.

ATen makes four passes over a full-size map for ``silu(group_norm(x))`` in bfloat16 (the U-Net's
precision under ``DMNet.lower_precision``): cast to float32, normalise, cast back, SiLU; and the time
embedding that SR3 adds after the block's first convolution costs one more pass (or one convolution
per image, ``kernels.conv_bias_per_image``). Here it is two passes: the per-channel sums of
x + extra (float64), then y = SiLU((x + extra - mean_g) / sqrt(var_g + eps) * gamma + beta), read and
written in the input's dtype (bfloat16 values stored as uint16, or float32), computed in float32.
``extra`` (B x C, optional) is a per-image, per-channel term added before the normalisation: the time
embedding of :class:`dmnet.unet.ResBlock`, which then enters its second GroupNorm here instead of the
first convolution's output (the same sum).

GroupNorm as torch.nn.GroupNorm: biased variance over the channels of a group and every pixel, eps
inside the square root, per-channel affine (Wu and He, ECCV 2018); SiLU x sigmoid(x) with
:func:`dmnet.compiled.silu32` (exp to 3 ulp). Outputs equal the torch route up to float32 rounding and,
in bfloat16, one bfloat16 rounding step where the two round differently (tests/test_compiled_norm.py).

Taken for CPU inference (no autograd, no autocast) on float32 or bfloat16 channels-last 4-D tensors with
at most :data:`MAX_CHANNELS` channels; ``DMNET_COMPILED=0`` switches it off.
"""

from __future__ import annotations

import numpy as np
import torch

from dmnet.compiled import AVAILABLE, NUMBA, jit, row_bands, run_bands

MAX_CHANNELS = 64
TILE = 16  # pixels per row of the kernels' loops

if NUMBA:
    from numba import types
    from numba.extending import overload

    from dmnet.compiled import bf16_to_f32, f32_to_bf16, silu32

    def _load(v):  # float32 value of a stored element (pure Python stand-in; numba uses the overload)
        raise NotImplementedError

    def _store(v, like):
        raise NotImplementedError

    @overload(_load)
    def _load_impl(v):
        if v == types.uint16:
            return lambda v: bf16_to_f32(v)
        return lambda v: np.float32(v)

    @overload(_store)
    def _store_impl(v, like):
        if like == types.uint16:
            return lambda v, like: f32_to_bf16(v)
        return lambda v, like: np.float32(v)

    # The values of a channels-last image are one flat run of (H W) x C values; the kernels take it as
    # rows of TILE pixels (TILE C values, the per-channel coefficients repeated TILE times), so that the
    # inner loop has unit stride and vectorises (a loop over channels inside a loop over pixels does not).

    @jit
    def tile_sums(x, r0, r1, extra, s1, s2):
        """s1[q] += sum over rows r0..r1-1 of (x[r, q] + extra[q]), s2[q] += the sum of its squares (float64)."""
        for r in range(r0, r1):
            row = x[r]
            for q in range(row.shape[0]):
                v = np.float64(_load(row[q]) + extra[q])
                s1[q] += v
                s2[q] += v * v

    @jit
    def scale_shift_silu(x, r0, r1, scale, shift, out):
        """out[r, q] = SiLU(x[r, q] scale[q] + shift[q]) for rows r0..r1-1, in out's storage type."""
        like = out[0, 0]
        for r in range(r0, r1):
            row, dst = x[r], out[r]
            for q in range(row.shape[0]):
                dst[q] = _store(silu32(_load(row[q]) * scale[q] + shift[q]), like)


def supports(x: torch.Tensor, norm: torch.nn.GroupNorm) -> bool:
    """Whether :func:`group_norm_silu` may compute ``silu(norm(x))``: the compiled route available, CPU
    inference (no autograd, no autocast), float32 or bfloat16 channels-last 4-D input, an affine
    GroupNorm over at most MAX_CHANNELS channels."""
    return (AVAILABLE and not torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
            and x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16) and x.dim() == 4
            and x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] <= MAX_CHANNELS
            and norm.affine and x.shape[1] == norm.num_channels and x.shape[2] * x.shape[3] > 0)


def group_norm_silu(x: torch.Tensor, norm: torch.nn.GroupNorm, extra: torch.Tensor | None = None,
                    threads: int | None = None) -> torch.Tensor:
    """``F.silu(norm(x + extra[:, :, None, None]))`` (``extra``: B x C, or None for none), for `x` B x C x
    H x W channels-last with :func:`supports` true; a new channels-last tensor of x's dtype."""
    b, c, height, width = x.shape
    groups, size = norm.num_groups, c // norm.num_groups
    threads = max(1, threads or torch.get_num_threads())
    stored = (lambda t: t.view(torch.int16).numpy().view(np.uint16)) if x.dtype == torch.bfloat16 else (lambda t: t.numpy())
    out_t = torch.empty_like(x, memory_format=torch.channels_last)
    values = stored(x.detach().permute(0, 2, 3, 1)).reshape(b, -1)  # each image's values, flat (views)
    results = stored(out_t.permute(0, 2, 3, 1)).reshape(b, -1)
    full, tail = divmod(height * width, TILE)
    span = TILE * c
    # jobs: (image, 2-D rows of TILE pixels, first row, end row); the last pixels as a one-row array
    pieces = [(i, values[i, :full * span].reshape(full, span), results[i, :full * span].reshape(full, span), r0, r1)
              for i, r0, r1 in row_bands(b, full, threads)] if full else []
    pieces += [(i, values[i, full * span:].reshape(1, -1), results[i, full * span:].reshape(1, -1), 0, 1)
               for i in range(b)] if tail else []
    add = np.zeros((b, c), np.float32) if extra is None else np.ascontiguousarray(extra.detach().float().numpy())
    add_tiled = np.tile(add, (1, TILE))  # b x span
    s1, s2 = np.zeros((len(pieces), span), np.float64), np.zeros((len(pieces), span), np.float64)
    run_bands(tile_sums, [(src, r0, r1, add_tiled[i, :src.shape[1]], s1[k], s2[k])
                          for k, (i, src, _, r0, r1) in enumerate(pieces)], threads)
    sums = np.zeros((b, 2, c), np.float64)
    for k, (i, *_) in enumerate(pieces):
        sums[i, 0] += s1[k].reshape(TILE, c).sum(axis=0)
        sums[i, 1] += s2[k].reshape(TILE, c).sum(axis=0)
    count = size * height * width
    group_sums = sums.reshape(b, 2, groups, size).sum(axis=3)  # b x 2 x groups
    mean = group_sums[:, 0] / count
    var = np.maximum(group_sums[:, 1] / count - mean * mean, 0.0)
    rstd = 1.0 / np.sqrt(var + norm.eps)
    gamma, beta = (p.detach().double().numpy() for p in (norm.weight, norm.bias))
    scale = np.repeat(rstd, size, axis=1) * gamma  # b x c: y = (x + add) scale + beta - mean scale
    shift = beta - np.repeat(mean, size, axis=1) * scale + add * scale
    scale, shift = (np.tile(t.astype(np.float32), (1, TILE)) for t in (scale, shift))
    run_bands(scale_shift_silu, [(src, r0, r1, scale[i, :src.shape[1]], shift[i, :src.shape[1]], dst)
                                 for i, src, dst, r0, r1 in pieces], threads)
    return out_t
