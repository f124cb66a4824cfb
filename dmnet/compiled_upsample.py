"""The sum of DMNet's latent features brought to input resolution: bilinear upsampling of each level and
their sum in one pass, with a compiled CPU route at inference.

:meth:`dmnet.latent.DiffusionModule.fuse_features` fuses the U-Net's decoder levels by one 1x1 conv per
level at the level's own resolution, then needs bias + (the full-resolution levels) + the sum of the
others, each upsampled bilinearly to the (padded) input size, cropped to the input size. On the torch
route that is an ``F.interpolate`` and an addition per level, each a pass over a full-size map (the lite
preset at 480 x 640: four upsamplings and five additions, 13 ms on 2 threads). The compiled route writes
the cropped sum once, row by row: for each output row and level, the level's two source rows are
blended into a row buffer (vertical step) and the buffer is sampled for every output pixel (horizontal
step), on the row bands of :mod:`dmnet.compiled`.

Bilinear as ``F.interpolate(mode="bilinear", align_corners=False)`` computes it on the CPU: scale =
in / out in float32, source coordinate max(scale (i + 0.5) - 0.5, 0), its integer part i0, i1 = i0 + 1
but at most in - 1, weight min(coordinate - i0, 1) (ATen's UpSample.h, ``area_pixel_compute_source_index``
and ``compute_indices_weights_linear``). The index tables are computed that way in float32, so the
samples are the same and only the order of the float32 sums differs (tests/test_compiled_upsample.py).

The compiled route is taken for float32 channels-last maps on the CPU at inference (no autograd) with at
most :data:`MAX_CHANNELS` channels; ``DMNET_COMPILED=0`` switches it off.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dmnet.compiled import cpu_inference, float32_array, jit, row_bands, run_bands

MAX_CHANNELS = 64


@jit
def upsample_sum_band(levels, y0, y1, wy, x0, x1, wx, base, bias, out, r0, r1, cs):
    """out[r, j, :] = bias + base[r, j, :] (when base has rows) + sum over levels l of the bilinear sample
    of levels[l] (h_l x w_l x C) at output row r and column j, for rows r0..r1-1 of out (H x W x C).
    y0, y1, wy (L x H) and x0, x1, wx (L x W): each level's source indices and the second one's weight."""
    c = len(cs)
    width = out.shape[1]
    widest = 1
    for lv in range(len(levels)):
        widest = max(widest, levels[lv].shape[1])
    row = np.empty((widest, c), np.float32)
    for r in range(r0, r1):
        o = out[r]
        if base.shape[0] > 0:
            b = base[r]
            for j in range(width):
                for k in range(c):
                    o[j, k] = bias[k] + b[j, k]
        else:
            for j in range(width):
                for k in range(c):
                    o[j, k] = bias[k]
        for lv in range(len(levels)):
            src = levels[lv]
            top, bottom = src[y0[lv, r]], src[y1[lv, r]]
            lb = wy[lv, r]
            lt = np.float32(1.0) - lb
            for j in range(src.shape[1]):
                for k in range(c):
                    row[j, k] = lt * top[j, k] + lb * bottom[j, k]
            for j in range(width):
                i, i1, lr = x0[lv, j], x1[lv, j], wx[lv, j]
                ll = np.float32(1.0) - lr
                for k in range(c):
                    o[j, k] += ll * row[i, k] + lr * row[i1, k]


def _linear_table(size_in: int, size_out: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ATen's source indices i0, i1 and the weight of i1 for `count` output positions (align_corners=False)."""
    scale = np.float32(size_in) / np.float32(size_out)
    real = scale * (np.arange(count, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    real = np.maximum(real, np.float32(0.0))
    i0 = real.astype(np.int64)
    i1 = i0 + (i0 < size_in - 1)
    return i0, i1, np.minimum(real - i0.astype(np.float32), np.float32(1.0))


def supports(maps: Sequence[torch.Tensor], base: torch.Tensor | None) -> bool:
    """Whether :func:`upsample_sum` takes the compiled route: compiled routes on, CPU inference (no
    autograd, no autocast), at least one map to upsample, float32 channels-last B x C x h x w maps (and base) of one
    batch size and at most MAX_CHANNELS channels."""
    tensors = [*maps, *([base] if base is not None else [])]
    return (len(maps) > 0 and cpu_inference(*tensors)
            and len({t.shape[:2] for t in tensors}) == 1 and tensors[0].shape[1] <= MAX_CHANNELS)


def upsample_sum(maps: Sequence[torch.Tensor], base: torch.Tensor | None, bias: torch.Tensor | None,
                 padded: tuple[int, int], size: tuple[int, int], threads: int | None = None) -> torch.Tensor:
    """``bias + base + sum(F.interpolate(m, padded, mode="bilinear", align_corners=False) for m in maps)``
    cropped to the top-left `size`: maps B x C x h x w, base B x C x padded (or None: none), bias C (or
    None). Returns a B x C x size tensor (channels-last on the compiled route, :func:`supports`; on the
    torch route a view of the padded sum)."""
    if not supports(maps, base):
        out = base
        for m in maps:
            up = F.interpolate(m, size=padded, mode="bilinear", align_corners=False)
            out = up if out is None else out + up
        if bias is not None:
            out = out + bias.view(1, -1, 1, 1)
        return out[..., : size[0], : size[1]]
    b, c = maps[0].shape[:2]
    height, width = size
    y0, y1, wy = (np.stack(v) for v in zip(*(_linear_table(m.shape[2], padded[0], height) for m in maps)))
    x0, x1, wx = (np.stack(v) for v in zip(*(_linear_table(m.shape[3], padded[1], width) for m in maps)))
    levels = [m.detach().permute(0, 2, 3, 1).numpy() for m in maps]  # B x h x w x C views
    bases = base.detach().permute(0, 2, 3, 1).numpy() if base is not None else None
    none_base = np.empty((0, width, c), np.float32)
    bias_values = float32_array(bias) if bias is not None else np.zeros(c, np.float32)
    out_t = torch.empty((b, c, height, width), dtype=torch.float32, memory_format=torch.channels_last)
    out = out_t.permute(0, 2, 3, 1).numpy()
    threads = max(1, threads or torch.get_num_threads())
    cs = (0,) * c
    run_bands(upsample_sum_band, [(tuple(level[i] for level in levels), y0, y1, wy, x0, x1, wx,
                                   bases[i] if bases is not None else none_base, bias_values, out[i], r0, r1, cs)
                                  for i, r0, r1 in row_bands(b, height, threads)], threads)
    return out_t
