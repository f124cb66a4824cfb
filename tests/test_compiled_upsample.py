"""The upsampled sum of DMNet's latent features (dmnet/compiled_upsample.py): the compiled route against
the torch route (F.interpolate and additions) and a float64 evaluation, for integer and fractional
scales, crops, with and without a full-size map, in batches, on any number of threads; and where the
route is taken."""

from __future__ import annotations

import pytest
import torch
from compiled_routes import assert_close_to_torch_and_float64, torch_route

from dmnet import compiled
from dmnet.compiled_upsample import supports, upsample_sum

pytestmark = pytest.mark.skipif(not compiled.NUMBA, reason="numba not installed: the torch route only")
CL = torch.channels_last


def _maps(b: int, c: int, sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
    return [torch.randn(b, c, h, w).contiguous(memory_format=CL) for h, w in sizes]


@pytest.mark.parametrize(("b", "c", "sizes", "padded", "size", "with_base", "threads"), [
    (1, 8, [(2, 3), (4, 5), (8, 10), (16, 20)], (32, 40), (32, 40), True, 2),  # the lite levels, x2 ... x16
    (1, 8, [(2, 3), (4, 5), (8, 10), (16, 20)], (32, 40), (29, 37), True, 2),  # cropped to the input size
    (2, 4, [(3, 7), (5, 5)], (12, 13), (11, 13), False, 3),  # fractional scales, no full-size level
    (3, 16, [(1, 1), (6, 9)], (18, 27), (18, 27), True, 1),  # a 1 x 1 level: a constant
    (1, 8, [(7, 6)], (7, 6), (5, 6), True, 4),                # the same size: a copy of the map
])
def test_upsampled_sum_equals_torch_route_and_float64(b, c, sizes, padded, size, with_base, threads):
    torch.manual_seed(0)
    maps = _maps(b, c, sizes)
    base = _maps(b, c, [padded])[0] if with_base else None
    bias = torch.randn(c)
    with torch.inference_mode():
        assert supports(maps, base)
        out = upsample_sum(maps, base, bias, padded, size, threads=threads)
        ref = torch_route(upsample_sum, maps, base, bias, padded, size)
        exact = torch_route(upsample_sum, [m.double() for m in maps], base.double() if with_base else None,
                            bias.double(), padded, size)
    assert_close_to_torch_and_float64(out, ref, ref, exact)
    assert out.shape == (b, c, *size)


def test_upsampled_sum_route_conditions():
    maps, base = _maps(1, 8, [(4, 5)]), _maps(1, 8, [(8, 10)])[0]
    with torch.inference_mode():
        assert supports(maps, base) and supports(maps, None)
        assert not supports([], base)  # nothing to upsample: the torch route adds the bias
        assert not supports([maps[0].contiguous()], base)
        assert not supports(maps, base.double())
        assert not supports(maps, _maps(2, 8, [(8, 10)])[0])  # batch sizes differ
        assert not torch_route(supports, maps, base)  # DMNET_COMPILED=0's switch
    assert not supports(maps, base)  # autograd on
