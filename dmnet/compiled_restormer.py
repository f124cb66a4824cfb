"""A compiled CPU route for DMNet's Restormer blocks at inference (the DTB and the decoder's blocks): same
results, fewer passes.

On the CPU the DTB of the ``lite`` preset (8 channels at full resolution, five Restormer layers) is
bound by memory traffic and per-call overheads, not by arithmetic: the torch route makes about 20
passes over full-size maps per layer (LayerNorm, 1x1 and depthwise 3x3 convolutions, GELU gate, adds).
Here each Restormer layer is two passes of numba-compiled code that stream the image row by row,
keeping the intermediate rows in the cache:

- pass 1 (MDTA's inputs): LayerNorm -> 1x1 conv to [q, k, v] -> depthwise 3x3 conv; it accumulates the
  Gram matrix of [q, k] over the pixels (float32 per row, float64 across rows) and stores v;
- between the passes, per image: the cosine attention from the Gram matrix (q.k over |q| |k|, the
  temperature, softmax), with MDTA's output projection folded in (:meth:`MDTA.mixing`, shared with
  the torch route);
- pass 2: y = x + mix(v) (MDTA's output and the residual), then the GDFN on LayerNorm(y): 1x1 conv ->
  depthwise 3x3 -> GELU(x1) * x2 -> 1x1 conv, + y; the layer's output is written (every layer's is kept),
  and the DTB's last layer also writes omega x the sum of them all, channels-last, in the same pass.

The formulas are those of :mod:`dmnet.transformer` (Restormer, Zamir et al. CVPR 2022; the DTB of the
DMNet paper, Fig. 3), with the LayerNorm weight and bias folded into the following 1x1 convolution as
the torch route does. Arithmetic is float32 with a different order of summation, and GELU's erf is a
rational approximation (absolute error below 5e-7 on the whole line: ``compiled.erf32``), so outputs differ
from the torch route by float32 rounding (tested against it and against a float64 evaluation).

Each image is cut into row bands, one per thread (the GIL is released), so a batch of one pair uses both
cores; the depthwise convolutions of a band recompute the one row on either side they need. The
kernels are compiled once per (channels, hidden channels) on first use and cached on disk by numba.

Used by :class:`dmnet.transformer.DTB` (the layers' outputs summed, times omega) and by the decoder's
chain of blocks (:class:`dmnet.decoder.Decoder`: the last block's output) at inference on the CPU, for
float32 channels-last inputs, one attention head and at most :data:`MAX_CHANNELS` channels (the
``lite`` preset), when numba is installed; everything else keeps the torch route. ``DMNET_COMPILED=0`` switches it off
(:mod:`dmnet.compiled`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dmnet.compiled import NUMBA, cpu_inference, float32_array, helper, jit, row_bands, run_bands

MAX_CHANNELS = 16  # wider blocks (the paper preset: 64) keep oneDNN; the unrolled code grows as C x 3C

if NUMBA:
    from dmnet.compiled import gelu32

# The kernels take the channel counts as tuples of that length (`cs`: C, `hs`: the GDFN's hidden
# channels): numba compiles one version per length, in which the channel loops have constant trip
# counts, so they unroll and the pixel loops vectorise (about 10x a loop over a run-time count).


@helper
def norm_project(x, r, w, b, eps, n, out, cs):
    """out[o, 1 + j] = b[o] + sum_i w[o, i] LN(x[:, r, j])[i] for the pixels j of row `r` of the
    C x H x W map `x`: LayerNorm over the channels (no affine: folded into w and b), then a 1x1
    conv; `n` is a C x W scratch."""
    c = len(cs)
    inv_c = np.float32(1.0) / np.float32(c)
    width = x.shape[2]
    for j in range(width):
        m = np.float32(0.0)
        for i in range(c):
            m += x[i, r, j]
        m *= inv_c
        v = np.float32(0.0)
        for i in range(c):
            d = x[i, r, j] - m
            n[i, j] = d
            v += d * d
        s = np.float32(1.0) / np.sqrt(v * inv_c + eps)
        for i in range(c):
            n[i, j] *= s
    for o in range(out.shape[0]):
        for j in range(width):
            acc = b[o]
            for i in range(c):
                acc += w[o, i] * n[i, j]
            out[o, 1 + j] = acc

@helper
def depthwise(ring, rows, w, o, width, out):
    """out[:width] = 3x3 depthwise conv of channel `o` at the row whose neighbours are rings rows[0..2]."""
    a, m, z = ring[rows[0], o], ring[rows[1], o], ring[rows[2], o]
    w00, w01, w02 = w[o, 0, 0], w[o, 0, 1], w[o, 0, 2]
    w10, w11, w12 = w[o, 1, 0], w[o, 1, 1], w[o, 1, 2]
    w20, w21, w22 = w[o, 2, 0], w[o, 2, 1], w[o, 2, 2]
    for j in range(width):
        out[j] = (w00 * a[j] + w01 * a[j + 1] + w02 * a[j + 2] + w10 * m[j] + w11 * m[j + 1] + w12 * m[j + 2]
                  + w20 * z[j] + w21 * z[j + 1] + w22 * z[j + 2])

@jit
def mdta_band(x, r0, r1, w_in, b_in, w_dw, eps, v_out, gram, cs):
    """Rows r0..r1-1 of one C x H x W map: v_out (C x H x W) and the band's Gram matrix of [q, k]
    (2C x 2C, float64)."""
    c = len(cs)
    height, width = x.shape[1], x.shape[2]
    ring = np.zeros((3, 3 * c, width + 2), np.float32)  # 1x1 conv outputs of 3 rows, zero-padded in x
    n = np.empty((c, width), np.float32)
    qk = np.empty((2 * c, width), np.float32)
    rows = np.empty(3, np.int64)
    for r in range(r0 - 1, r1 + 1):
        slot = (r + 3) % 3
        if 0 <= r < height:
            norm_project(x, r, w_in, b_in, eps, n, ring[slot], cs)
        else:
            ring[slot] = 0.0
        out_row = r - 1
        if out_row < r0:
            continue
        rows[0], rows[1], rows[2] = (out_row + 2) % 3, (out_row + 3) % 3, (out_row + 4) % 3
        for o in range(2 * c):
            depthwise(ring, rows, w_dw, o, width, qk[o])
        for o in range(c):
            depthwise(ring, rows, w_dw, 2 * c + o, width, v_out[o, out_row])
        for i in range(2 * c):
            for k in range(i, 2 * c):
                s = np.float32(0.0)
                for j in range(width):
                    s += qk[i, j] * qk[k, j]
                gram[i, k] += s
    for i in range(2 * c):
        for k in range(i):
            gram[i, k] = gram[k, i]

@jit
def gdfn_band(x, v, mix, r0, r1, w_in, b_in, w_dw, w_out, eps, y_out, earlier, total, scale, cs, hs):
    """Rows r0..r1-1 of C x H x W maps: y = x + mix v, y_out = y + GDFN(LN(y)). When `total` has rows
    (H x W x C, channels-last: the DTB's last layer), also total = scale (sum of the maps of `earlier`,
    L x C x H x W, in order, + y_out): the block's sum, written once."""
    c, hidden = len(cs), len(hs)
    height, width = x.shape[1], x.shape[2]
    ring = np.zeros((3, 2 * hidden, width + 2), np.float32)
    ys = np.empty((3, c, 1, width), np.float32)  # y of the 3 rows in the ring
    n = np.empty((c, width), np.float32)
    a = np.empty(width, np.float32)
    g = np.empty((hidden, width), np.float32)
    s = np.empty(width, np.float32)
    rows = np.empty(3, np.int64)
    for r in range(r0 - 1, r1 + 1):
        slot = (r + 3) % 3
        if 0 <= r < height:
            y = ys[slot]
            for o in range(c):
                for j in range(width):
                    acc = x[o, r, j]
                    for i in range(c):
                        acc += mix[o, i] * v[i, r, j]
                    y[o, 0, j] = acc
            norm_project(y, 0, w_in, b_in, eps, n, ring[slot], cs)
        else:
            ring[slot] = 0.0
        out_row = r - 1
        if out_row < r0:
            continue
        rows[0], rows[1], rows[2] = (out_row + 2) % 3, (out_row + 3) % 3, (out_row + 4) % 3
        for k in range(hidden):
            depthwise(ring, rows, w_dw, k, width, a)
            depthwise(ring, rows, w_dw, hidden + k, width, g[k])
            for j in range(width):
                g[k, j] *= gelu32(a[j])
        y = ys[(out_row + 3) % 3]
        for o in range(c):
            for j in range(width):
                acc = y[o, 0, j]
                for k in range(hidden):
                    acc += w_out[o, k] * g[k, j]
                y_out[o, out_row, j] = acc
        if total.shape[0] == 0:
            continue
        for o in range(c):
            if earlier.shape[0] == 0:
                for j in range(width):
                    s[j] = y_out[o, out_row, j]
            else:
                for j in range(width):
                    s[j] = earlier[0, o, out_row, j]
                for m in range(1, earlier.shape[0]):
                    for j in range(width):
                        s[j] += earlier[m, o, out_row, j]
                for j in range(width):
                    s[j] += y_out[o, out_row, j]
            for j in range(width):
                total[out_row, j, o] = scale * s[j]


def supports(layers: Sequence[torch.nn.Module], x: torch.Tensor) -> bool:
    """Whether :func:`restormer_forward` may run the TransformerBlocks `layers` on `x`: compiled route
    available, inference on the CPU (no autograd, no autocast), float32 channels-last 4-D input, one head,
    at most MAX_CHANNELS channels."""
    if not cpu_inference(x) or len(layers) == 0:
        return False
    layer = layers[0]
    c = x.shape[1]
    return (c <= MAX_CHANNELS and layer.attn.heads == 1 and layer.norm1.weight.dtype == torch.float32
            and x.shape[2] >= 1 and x.shape[3] >= 1)


def _folded(norm, weight: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """A 1x1 conv of LayerNorm(x): the conv's weight times diag(LN weight), and W @ LN bias as its bias."""
    w = weight.detach().flatten(1)
    return float32_array(w * norm.weight.detach()[None, :]), float32_array(w @ norm.bias.detach())


def restormer_forward(layers: Sequence[torch.nn.Module], x: torch.Tensor, omega: float | None = None,
                      threads: int | None = None) -> torch.Tensor:
    """The TransformerBlocks `layers` run in a chain on `x` (B x C x H x W float32 channels-last on the
    CPU, :func:`supports` true): with `omega`, omega times the sum of every layer's output (the DTB);
    without, the last layer's output. A new channels-last tensor."""
    b, c, height, width = x.shape
    hidden = layers[0].ffn.project_out.in_channels
    cs, hs = (0,) * c, (0,) * hidden  # the channel counts as tuple lengths (see the kernels)
    threads = max(1, threads or torch.get_num_threads())
    items = row_bands(b, height, threads)
    # every layer's output kept (B x L x C x H x W): the DTB's last layer sums them as it writes its own
    outputs = np.empty((b, len(layers), c, height, width), np.float32)
    v = np.empty((b, c, height, width), np.float32)
    out_t = torch.empty_like(x, memory_format=torch.channels_last)
    none_total = np.empty((0, width, c), np.float32)
    cur = float32_array(x.contiguous())  # B x C x H x W, each channel's rows contiguous
    for index, layer in enumerate(layers):
        attn, ffn = layer.attn, layer.ffn
        w_in, b_in = _folded(layer.norm1, attn.qkv.weight)
        w_dw, eps = float32_array(attn.qkv_dwconv.weight[:, 0]), np.float32(layer.norm1.eps)
        grams = np.zeros((len(items), 2 * c, 2 * c), np.float64)
        run_bands(mdta_band, [(cur[i], r0, r1, w_in, b_in, w_dw, eps, v[i], grams[k], cs) for k, (i, r0, r1) in enumerate(items)], threads)
        gram = np.zeros((b, 2 * c, 2 * c), np.float64)
        for k, (i, _, _) in enumerate(items):
            gram[i] += grams[k]
        mix = float32_array(attn.mixing(torch.from_numpy(gram)))  # B x C x C
        w_in, b_in = _folded(layer.norm2, ffn.project_in.weight)
        w_dw, eps = float32_array(ffn.dwconv.weight[:, 0]), np.float32(layer.norm2.eps)
        w_out = float32_array(ffn.project_out.weight.flatten(1))
        summing = omega is not None and index == len(layers) - 1
        total = out_t.permute(0, 2, 3, 1).numpy() if summing else None  # B x H x W x C views
        scale = np.float32(omega if summing else 1.0)
        run_bands(gdfn_band, [(cur[i], v[i], mix[i], r0, r1, w_in, b_in, w_dw, w_out, eps, outputs[i, index],
                               outputs[i, :index], total[i] if summing else none_total, scale, cs, hs)
                              for i, r0, r1 in items], threads)
        cur = outputs[:, index]
    if omega is not None:
        return out_t
    return torch.from_numpy(cur).contiguous(memory_format=torch.channels_last)
