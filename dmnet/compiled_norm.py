"""A compiled CPU route for GroupNorm followed by SiLU, the head of the SR3 residual blocks at full
resolution, at inference.

ATen computes ``silu(group_norm(x))`` of a channels-last map in three to five passes, and its
GroupNorm is slow for the lite U-Net's full-resolution maps: 3 x 8 x 480 x 640 in bfloat16 takes
14 ms (cast to float32, normalise, cast back: dmnet.kernels.group_norm), 3 x 24 x 480 x 640 27 ms,
on 2 threads. Here it is two passes, on the row bands of dmnet.compiled: the per-channel sums of x
and x^2, then y = SiLU(x scale + shift) with the scale and shift of each image and channel, read and
written in the input's dtype (bfloat16 values stored as uint16, or float32) and computed in float32
(3 x 8 x 480 x 640 bf16: 4 ms; 3 x 24: 11 ms).
``extra`` (B x C, optional) is a per-image, per-channel term added before the normalisation: the time
embedding of :class:`dmnet.unet.ResBlock`, which enters the block's second GroupNorm here instead of
its first convolution's output (the same sum, and the convolution then runs on the whole batch). Its
sums follow from those of x: sum(x + e) = sum x + n e, sum (x + e)^2 = sum x^2 + 2 e sum x + n e^2.

GroupNorm as torch.nn.GroupNorm: biased variance over the channels of a group and every pixel, eps
inside the square root, per-channel affine (Wu and He, ECCV 2018). Sums are float32 over at most
FLUSH rows of TILE pixels, then float64; the variance is E[x^2] - E[x]^2 in float64. SiLU is
x sigmoid(x) with :func:`dmnet.compiled.silu32`. Outputs equal the torch route up to float32 rounding
and, in bfloat16, one bfloat16 rounding step where the two round differently
(tests/test_compiled_norm.py).

Taken for CPU inference (no autograd, no autocast) on float32 or bfloat16 channels-last 4-D maps of
at most :data:`MAX_CHANNELS` channels and at least :data:`MIN_PIXELS` pixels per image. Below that
ATen's GroupNorm is as fast, and handing the work to the row bands' threads and back costs more than
it saves: with the route taken at every level of the lite U-Net, ``fusedet fuse`` was slower (5.29
against 4.83 s of U-Net for 19 pairs); at the full-resolution level only, 0.504 against 0.534 s per
pair. ``DMNET_COMPILED=0`` switches it off.
"""

from __future__ import annotations

import numpy as np
import torch

from dmnet.compiled import NUMBA, TILE, cpu_inference, jit, run_bands, tile_rows

MAX_CHANNELS = 64
MIN_PIXELS = 2**17  # per image: the lite U-Net's full-resolution level of a 480 x 640 pair, not its second
FLUSH = 64  # rows summed in float32 before they are added to the float64 totals

if NUMBA:
    from numba import types
    from numba.extending import overload

    from dmnet.compiled import bf16_to_f32, f32_to_bf16, silu32

    def _load(v):  # float32 value of a stored element (pure Python stand-in; numba uses the overload)
        raise NotImplementedError

    def _store(v, like):  # float32 `v` as an element of `like`'s storage type (ditto)
        raise NotImplementedError

    @overload(_load, inline="always")
    def _load_impl(v):
        if v == types.uint16:
            return lambda v: bf16_to_f32(v)
        return lambda v: np.float32(v)

    @overload(_store, inline="always")
    def _store_impl(v, like):
        if like == types.uint16:
            return lambda v, like: f32_to_bf16(v)
        return lambda v, like: np.float32(v)

    # The values of a channels-last image are one flat run of (H W) x C values; the kernels take it as
    # rows of TILE pixels (TILE C values, the per-channel coefficients repeated TILE times), so that the
    # inner loop has unit stride and vectorises (a loop over channels inside a loop over pixels does not).

    @jit
    def tile_sums(x, r0, r1, out):
        """out[0, q] += the sum over rows r0..r1-1 of x[r, q], out[1, q] += the sum of its squares
        (float32 over FLUSH rows at a time, then into out's float64)."""
        span = x.shape[1]
        s1 = np.zeros(span, np.float32)
        s2 = np.zeros(span, np.float32)
        r = r0
        while r < r1:
            stop = min(r1, r + FLUSH)
            for i in range(r, stop):
                row = x[i]
                for q in range(span):
                    v = _load(row[q])
                    s1[q] += v
                    s2[q] += v * v
            for q in range(span):
                out[0, q] += s1[q]
                out[1, q] += s2[q]
                s1[q] = 0.0
                s2[q] = 0.0
            r = stop

    @jit
    def scale_shift_silu(x, r0, r1, scale, shift, out):
        """out[r, q] = SiLU(x[r, q] scale[q] + shift[q]) for rows r0..r1-1, in out's storage type."""
        like = out[0, 0]
        span = x.shape[1]
        for r in range(r0, r1):
            row, dst = x[r], out[r]
            for q in range(span):
                dst[q] = _store(silu32(_load(row[q]) * scale[q] + shift[q]), like)


def supports(x: torch.Tensor, norm: torch.nn.GroupNorm) -> bool:
    """Whether :func:`group_norm_silu` computes ``silu(norm(x))``: the compiled routes available, CPU
    inference (no autograd, no autocast), a float32 or bfloat16 channels-last 4-D input of at most
    MAX_CHANNELS channels and at least MIN_PIXELS pixels per image, an affine GroupNorm of its channels."""
    return (cpu_inference(x, dtypes=(torch.float32, torch.bfloat16)) and x.shape[1] <= MAX_CHANNELS
            and x.shape[2] * x.shape[3] >= MIN_PIXELS and norm.affine and x.shape[1] == norm.num_channels)


def _stored(t: torch.Tensor) -> np.ndarray:
    """The storage of a float32 or bfloat16 CPU tensor as a numpy array (bfloat16 as uint16): a view."""
    return t.view(torch.int16).numpy().view(np.uint16) if t.dtype == torch.bfloat16 else t.numpy()


def group_norm_silu(x: torch.Tensor, norm: torch.nn.GroupNorm, extra: torch.Tensor | None = None,
                    threads: int | None = None) -> torch.Tensor:
    """``F.silu(norm(x + extra[:, :, None, None]))`` for `x` B x C x H x W channels-last (float32 or
    bfloat16) and `extra` B x C (or None: no term); a new channels-last tensor of x's dtype and shape.
    `threads`: row-band threads (default ``torch.get_num_threads()``). The caller checks :func:`supports`."""
    b, c, height, width = x.shape
    groups, size = norm.num_groups, c // norm.num_groups
    threads = max(1, threads or torch.get_num_threads())
    out_t = torch.empty_like(x, memory_format=torch.channels_last)
    values = _stored(x.detach().permute(0, 2, 3, 1)).reshape(b, -1)  # each image's values, flat (views)
    results = _stored(out_t.permute(0, 2, 3, 1)).reshape(b, -1)
    n = height * width
    span = TILE * c
    # (image, its rows of TILE pixels, first row, end row); the output's rows in the same items
    sources, targets = tile_rows(values, c, threads), tile_rows(results, c, threads)
    partial = np.zeros((len(sources), 2, span), np.float64)
    run_bands(tile_sums, [(src, r0, r1, partial[k]) for k, (_, src, r0, r1) in enumerate(sources)], threads)
    sums = np.zeros((b, 2, span), np.float64)
    for k, (i, *_) in enumerate(sources):
        sums[i] += partial[k]
    sums = sums.reshape(b, 2, TILE, c).sum(axis=2)  # b x (sum x, sum x^2) x c
    add = np.zeros((b, c)) if extra is None else extra.detach().double().numpy()
    s1 = sums[:, 0] + n * add
    s2 = sums[:, 1] + 2.0 * add * sums[:, 0] + n * add * add
    count = size * n
    mean = s1.reshape(b, groups, size).sum(axis=2) / count
    var = np.maximum(s2.reshape(b, groups, size).sum(axis=2) / count - mean * mean, 0.0)
    rstd = 1.0 / np.sqrt(var + norm.eps)
    gamma, beta = (p.detach().double().numpy() for p in (norm.weight, norm.bias))
    scale = np.repeat(rstd, size, axis=1) * gamma  # b x c: y = (x + add) scale + beta - mean scale
    shift = beta + (add - np.repeat(mean, size, axis=1)) * scale
    scale, shift = (np.tile(t.astype(np.float32), (1, TILE)) for t in (scale, shift))
    run_bands(scale_shift_silu, [(src, r0, r1, scale[i, :src.shape[1]], shift[i, :src.shape[1]], dst)
                                 for (i, src, r0, r1), (_, dst, _, _) in zip(sources, targets)], threads)
    return out_t
