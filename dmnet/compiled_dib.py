"""A compiled CPU route for DMNet's dense invertible block (DIB) at inference: one pass per coupling layer.

Each affine coupling layer (:class:`dmnet.invertible.CouplingLayer`) is a chain of per-pixel channel
mixings and 3x3 depthwise convolutions with reflection padding, with no global statistic, so the
whole layer streams through the image once, row by row, in a three-stage pipeline:

- row r:     [z1, z2] = mix(x) (1x1 conv with bias); e = ReLU6(expand_phi(z1));
- row r - 1: z2 <- z2 + project_phi(ReLU6(depthwise_phi(e))) (needs e of rows r - 2 .. r);
             e' = ReLU6([expand_rho, expand_eta](z2));
- row r - 2: z1 <- z1 * exp(project_rho(ReLU6(dw_rho(e')))) + project_eta(ReLU6(dw_eta(e')));
             out = [z1, z2], written, and added to the block's running sum (the last layer writes
             psi x the sum instead, channels-last: the block's output, in the same pass).

The torch route makes about 30 passes over full-size maps per layer (and materialises each reflection
padding); this one reads x once and writes the output and the sum. Arithmetic is float32 in another
order, exp is ``dmnet.compiled.exp32`` (3 ulp), so values equal the torch route's up to float32
rounding (tests/test_compiled_dib.py). Images are cut into row bands run on threads, as in
:mod:`dmnet.compiled_restormer`; a band recomputes the two rows above and below it that its pipeline needs.

Used by :class:`dmnet.invertible.DIB` for CPU inference (no autograd, no autocast) on float32
channels-last inputs of at least 2 x 2 pixels (reflection padding needs two) with at most
:data:`MAX_CHANNELS` channels; ``DMNET_COMPILED=0`` switches it off.
"""

from __future__ import annotations

import numpy as np
import torch

from dmnet.compiled import NUMBA, cpu_inference, float32_array, helper, jit, row_bands, run_bands

MAX_CHANNELS = 16

if NUMBA:
    from dmnet.compiled import exp32

_ZERO, _SIX = np.float32(0.0), np.float32(6.0)


@helper
def _project(src, w, b, o, width, dst, relu6, ns):
    """dst[j] = b[o] + sum_i w[o, i] src[i, j] for j < width (ReLU6 of it when `relu6`), i < len(ns):
    the channel count as a tuple's length, a compile-time constant (as in dmnet.compiled_restormer)."""
    for j in range(width):
        acc = b[o]
        for i in range(len(ns)):
            acc += w[o, i] * src[i, j]
        dst[j] = min(max(acc, _ZERO), _SIX) if relu6 else acc


@helper
def _depthwise_relu6(ring, up, mid, down, w, k, width, out):
    """out[j] = ReLU6(3x3 depthwise conv of channel k) at the row whose neighbours are ring slots up, mid,
    down; the ring's rows are padded by one reflected column on each side."""
    a, m, z = ring[up, k], ring[mid, k], ring[down, k]
    w00, w01, w02 = w[k, 0, 0], w[k, 0, 1], w[k, 0, 2]
    w10, w11, w12 = w[k, 1, 0], w[k, 1, 1], w[k, 1, 2]
    w20, w21, w22 = w[k, 2, 0], w[k, 2, 1], w[k, 2, 2]
    for j in range(width):
        acc = (w00 * a[j] + w01 * a[j + 1] + w02 * a[j + 2] + w10 * m[j] + w11 * m[j + 1] + w12 * m[j + 2]
               + w20 * z[j] + w21 * z[j + 1] + w22 * z[j + 2])
        out[j] = min(max(acc, _ZERO), _SIX)


@helper
def _reflect_columns(row, width):
    """Pad a ring row's channels (k x (width + 2), values in 1..width) by reflection: col 0 = col 2,
    col width + 1 = col width - 1 (nn.ReflectionPad2d(1))."""
    for k in range(row.shape[0]):
        row[k, 0] = row[k, 2]
        row[k, width + 1] = row[k, width - 1]


@helper
def _reflect(i, height):
    return -i if i < 0 else (2 * (height - 1) - i if i >= height else i)


@jit
def coupling_band(x, r0, r1, w_mix, b_mix, e_phi, d_phi, p_phi, e_re, d_re, p_rho, p_eta, zero_h, zero_k,
                  y_out, total, first, final, scale, cs, hs, ks):
    """Rows r0..r1-1 of one coupling layer on a C x H x W map `x` (C = len(cs) = 2 h, h = len(hs); k =
    len(ks) expanded channels): y_out = layer(x), total += y_out (or = when `first`); when `final` has rows
    (H x W x C, channels-last: the block's last layer), final = scale (total + layer(x)) instead, the
    block's output written once. Weights as 2-D arrays
    (w_mix C x C, b_mix C; e_phi k x h, d_phi k x 3 x 3, p_phi h x k; e_re 2k x h and d_re 2k x 3 x 3 for
    rho then eta; p_rho, p_eta h x k); zero_h, zero_k: zeros (h and 2 k of them), the biases of the
    convolutions that have none."""
    h, k = len(hs), len(ks)
    height, width = x.shape[1], x.shape[2]
    z1 = np.empty((3, h, width), np.float32)
    z2 = np.empty((3, h, width), np.float32)  # phi added in stage B
    ea = np.empty((3, k, width + 2), np.float32)
    eb = np.empty((3, 2 * k, width + 2), np.float32)
    d = np.empty((2 * k, width), np.float32)
    t = np.empty(width, np.float32)
    u = np.empty(width, np.float32)
    xa = np.empty((2 * h, width), np.float32)  # the row of x (a contiguous copy: the loops then vectorise)
    for r in range(r0 - 2, r1 + 2):
        a = r  # stage A
        if 0 <= a < height:
            s = a % 3
            for i in range(2 * h):
                xa[i] = x[i, a]
            for o in range(h):
                _project(xa, w_mix, b_mix, o, width, z1[s, o], False, cs)
                _project(xa, w_mix, b_mix, h + o, width, z2[s, o], False, cs)
            for o in range(k):
                _project(z1[s], e_phi, zero_k, o, width, ea[s, o, 1:], True, hs)
            _reflect_columns(ea[s], width)
        b = r - 1  # stage B
        if 0 <= b < height and b >= r0 - 1:
            s = b % 3
            up, down = _reflect(b - 1, height) % 3, _reflect(b + 1, height) % 3
            for o in range(k):
                _depthwise_relu6(ea, up, s, down, d_phi, o, width, d[o])
            for o in range(h):
                _project(d, p_phi, zero_h, o, width, t, False, ks)
                for j in range(width):
                    z2[s, o, j] += t[j]
            for o in range(2 * k):
                _project(z2[s], e_re, zero_k, o, width, eb[s, o, 1:], True, hs)
            _reflect_columns(eb[s], width)
        c = r - 2  # stage C
        if r0 <= c < r1:
            s = c % 3
            up, down = _reflect(c - 1, height) % 3, _reflect(c + 1, height) % 3
            for o in range(2 * k):
                _depthwise_relu6(eb, up, s, down, d_re, o, width, d[o])
            for o in range(h):
                _project(d[:k], p_rho, zero_h, o, width, t, False, ks)
                _project(d[k:], p_eta, zero_h, o, width, u, False, ks)
                for j in range(width):  # z1 * exp(rho) + eta
                    t[j] = z1[s, o, j] * exp32(t[j]) + u[j]
                if final.shape[0] == 0:
                    _write_row(t, y_out[o, c], total[o, c], first, width)
                    _write_row(z2[s, o], y_out[h + o, c], total[h + o, c], first, width)
                else:
                    _write_final(t, total[o, c], first, scale, final[c], o, width)
                    _write_final(z2[s, o], total[h + o, c], first, scale, final[c], h + o, width)


@helper
def _write_row(values, out, total, first, width):
    """out[:width] = values; total[:width] += values (= values when `first`)."""
    for j in range(width):
        out[j] = values[j]
    if first:
        for j in range(width):
            total[j] = values[j]
    else:
        for j in range(width):
            total[j] += values[j]


@helper
def _write_final(values, total, first, scale, final, o, width):
    """final[j, o] = scale (total[j] + values[j]) (scale values[j] when `first`: a one-layer block)."""
    if first:
        for j in range(width):
            final[j, o] = scale * values[j]
    else:
        for j in range(width):
            final[j, o] = scale * (total[j] + values[j])


def supports(dib: torch.nn.Module, x: torch.Tensor) -> bool:
    """Whether :func:`dib_forward` may run `dib` on `x`: compiled route available, CPU inference (no
    autograd, no autocast), float32 channels-last 4-D input of at least 2 x 2 pixels, at most
    MAX_CHANNELS (even) channels."""
    return (cpu_inference(x) and len(dib.layers) > 0
            and x.shape[1] <= MAX_CHANNELS and x.shape[1] % 2 == 0 and x.shape[2] >= 2 and x.shape[3] >= 2
            and dib.layers[0].mix.weight.dtype == torch.float32)


def dib_forward(dib: torch.nn.Module, x: torch.Tensor, threads: int | None = None) -> torch.Tensor:
    """``dib(x)`` on the compiled route; `x` B x C x H x W float32 channels-last on the CPU with
    :func:`supports` true. Returns a new channels-last tensor."""
    b, c, height, width = x.shape
    half = c // 2
    hidden = dib.layers[0].phi.body[0].out_channels
    cs, hs, ks = (0,) * c, (0,) * half, (0,) * hidden  # channel counts as tuple lengths
    zero_h, zero_k = np.zeros(half, np.float32), np.zeros(2 * hidden, np.float32)
    threads = max(1, threads or torch.get_num_threads())
    items = row_bands(b, height, threads)
    cur = float32_array(x.contiguous())
    total = np.empty(cur.shape, np.float32)  # the layers' running sum, B x C x H x W
    out_t = torch.empty_like(x, memory_format=torch.channels_last)
    final, none_final = out_t.permute(0, 2, 3, 1).numpy(), np.empty((0, width, c), np.float32)  # B x H x W x C views
    scale = np.float32(dib.psi)
    for index, layer in enumerate(dib.layers):
        parts = {}
        for name in ("phi", "rho", "eta"):
            expand, _, _, depthwise, _, project = getattr(layer, name).body
            parts[name] = (expand.weight.flatten(1), depthwise.weight[:, 0], project.weight.flatten(1))
        weights = (float32_array(layer.mix.weight.flatten(1)), float32_array(layer.mix.bias),
                   float32_array(parts["phi"][0]), float32_array(parts["phi"][1]), float32_array(parts["phi"][2]),
                   float32_array(torch.cat([parts["rho"][0], parts["eta"][0]])),
                   float32_array(torch.cat([parts["rho"][1], parts["eta"][1]])),
                   float32_array(parts["rho"][2]), float32_array(parts["eta"][2]))
        last = index == len(dib.layers) - 1
        nxt = cur if last else np.empty_like(cur)  # the last layer writes `final` only
        run_bands(coupling_band, [(cur[i], r0, r1, *weights, zero_h, zero_k, nxt[i], total[i], index == 0,
                                   final[i] if last else none_final, scale, cs, hs, ks)
                                  for i, r0, r1 in items], threads)
        cur = nxt
    return out_t
