"""A compiled CPU route for DMNet's channel and spatial attention block (CSAB) at inference: two passes.

:class:`dmnet.attention.CSAB` computes y = x * channel_map(x), then y * spatial_map(y), where the
channel map comes from global pools of x and the spatial map is a sigmoid of a 7x7 convolution of the
channel-wise max and mixed mean of y. The torch route makes about a dozen passes over full-size maps,
and oneDNN's 7x7 convolution of a 2-channel map is slow (3.5 GMAC/s). Here:

- pass 1: per image, the sum (float64) and the maximum of every channel over the pixels (the global
  pools), from which :meth:`ChannelAttention.from_pools` gives the channel map (shared with the torch
  route);
- pass 2, row by row: y = x * channel map, its channel-wise max and 0.5 mean + 0.5 max kept for the
  7 rows the convolution needs, the spatial map s = sigmoid(conv7x7 + bias) of the row, and out = y * s
  written once.

The formulas are the torch route's (CBAM, Woo et al. ECCV 2018, with the mixed pooling of the authors'
code), float32 in another order; the sigmoid uses ``dmnet.compiled.exp32``; values equal the torch
route's up to float32 rounding (tests/test_compiled_csab.py). Rows are cut into bands run on threads
(each band recomputes the maps of the 3 rows on either side it needs).

Used by :class:`dmnet.attention.CSAB` for CPU inference (no autograd, no autocast) on float32
channels-last inputs with at most :data:`MAX_CHANNELS` channels; ``DMNET_COMPILED=0`` switches it off.
"""

from __future__ import annotations

import numpy as np
import torch

from dmnet.compiled import NUMBA, TILE, cpu_inference, float32_array, helper, jit, row_bands, run_bands, tile_rows

MAX_CHANNELS = 64

if NUMBA:
    from dmnet.compiled import exp32

_HALF, _ONE = np.float32(0.5), np.float32(1.0)


@jit
def pool_tiles(x, r0, r1, sums, maxima):
    """sums[q] += sum of x[r, q] (float64) and maxima[q] = max(maxima[q], x[r, q]) over rows r0..r1-1 of
    rows of TILE pixels x C channels (a channels-last image's values)."""
    for r in range(r0, r1):
        row = x[r]
        for q in range(row.shape[0]):
            v = row[q]
            sums[q] += np.float64(v)
            maxima[q] = max(maxima[q], v)


@helper
def _maps_row(x, r, scale, yp, ring, slot, pad, cs):
    """Row r of y = x * scale (kept channel-planar in yp, C x W) and its channel-wise max and mixed mean
    (0.5 mean + 0.5 max) into ring[slot, 0 / 1, pad:pad + W]."""
    c = len(cs)
    width = x.shape[1]
    for i in range(c):
        for j in range(width):
            yp[i, j] = x[r, j, i] * scale[i]
    inv_c = np.float32(1.0) / np.float32(c)
    for j in range(width):
        m = yp[0, j]
        total = yp[0, j]
        for i in range(1, c):
            m = max(m, yp[i, j])
            total += yp[i, j]
        ring[slot, 0, pad + j] = m
        ring[slot, 1, pad + j] = _HALF * (total * inv_c) + _HALF * m


@jit
def spatial_band(x, r0, r1, scale, w, bias, out, cs, ks):
    """Rows r0..r1-1 of out = y * sigmoid(conv_k([max_c y, mixed_c y]) + bias), y = x * scale, for one
    H x W x C (channels-last) image; w: 2 x k x k (k = len(ks), zero padding k // 2)."""
    c, k = len(cs), len(ks)
    pad = k // 2
    height, width = x.shape[0], x.shape[1]
    ring = np.zeros((k, 2, width + 2 * pad), np.float32)  # the maps of k rows, zero-padded in x
    yp = np.empty((c, width), np.float32)
    s = np.empty(width, np.float32)
    for rr in range(r0 - pad, r1 + pad):
        slot = rr % k
        if 0 <= rr < height:
            _maps_row(x, rr, scale, yp, ring, slot, pad, cs)
        else:
            ring[slot] = 0.0
        r = rr - pad
        if r < r0:
            continue
        for j in range(width):
            s[j] = bias
        for dy in range(k):
            row = ring[(r - pad + dy) % k]
            for dx in range(k):
                w0, w1 = w[0, dy, dx], w[1, dy, dx]
                for j in range(width):
                    s[j] += w0 * row[0, j + dx] + w1 * row[1, j + dx]
        for j in range(width):
            s[j] = _ONE / (_ONE + exp32(-s[j]))
        for j in range(width):
            for i in range(c):
                out[r, j, i] = x[r, j, i] * scale[i] * s[j]


def supports(csab: torch.nn.Module, x: torch.Tensor) -> bool:
    """Whether :func:`csab_forward` may run `csab` on `x`: compiled route available, CPU inference (no
    autograd, no autocast), float32 channels-last 4-D input with at most MAX_CHANNELS channels."""
    return (cpu_inference(x) and 0 < x.shape[1] <= MAX_CHANNELS
            and x.shape[2] * x.shape[3] > 0 and csab.spatial.conv.weight.dtype == torch.float32)


def csab_forward(csab: torch.nn.Module, x: torch.Tensor, threads: int | None = None) -> torch.Tensor:
    """``csab(x)`` on the compiled route; `x` B x C x H x W float32 channels-last on the CPU with
    :func:`supports` true. Returns a new channels-last tensor."""
    b, c, height, width = x.shape
    threads = max(1, threads or torch.get_num_threads())
    pixels = x.detach().permute(0, 2, 3, 1).numpy()  # B x H x W x C views
    pieces = tile_rows(pixels.reshape(b, -1), c, threads)
    sums = np.zeros((len(pieces), TILE * c), np.float64)
    maxima = np.full((len(pieces), TILE * c), -np.inf, np.float32)
    run_bands(pool_tiles, [(src, r0, r1, sums[k], maxima[k]) for k, (_, src, r0, r1) in enumerate(pieces)], threads)
    total = np.zeros((b, c), np.float64)
    peak = np.full((b, c), -np.inf, np.float32)
    for k, (i, src, _, _) in enumerate(pieces):
        n = src.shape[1]
        total[i] += sums[k, :n].reshape(-1, c).sum(axis=0)
        peak[i] = np.maximum(peak[i], maxima[k, :n].reshape(-1, c).max(axis=0))
    mean = torch.from_numpy((total / (height * width)).astype(np.float32))[:, :, None, None]
    scale = csab.channel.from_pools(torch.from_numpy(peak)[:, :, None, None], mean)
    scale = float32_array(scale.reshape(b, c))
    conv = csab.spatial.conv
    w = float32_array(conv.weight[0])  # 2 x k x k
    bias = np.float32(conv.bias.detach().item() if conv.bias is not None else 0.0)
    cs, ks = (0,) * c, (0,) * w.shape[-1]
    out_t = torch.empty_like(x, memory_format=torch.channels_last)
    out = out_t.permute(0, 2, 3, 1).numpy()
    run_bands(spatial_band, [(pixels[i], r0, r1, scale[i], w, bias, out[i], cs, ks)
                             for i, r0, r1 in row_bands(b, height, threads)], threads)
    return out_t
