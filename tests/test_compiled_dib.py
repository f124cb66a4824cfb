"""The compiled CPU route of the DIB (dmnet/compiled_dib.py) equals the torch route and a float64
evaluation of the same weights, at odd sizes, batch sizes and thread counts, and is taken exactly where
it may be."""

from __future__ import annotations

import pytest
import torch
from compiled_routes import assert_close_to_torch_and_float64, torch_route

from dmnet import compiled, compiled_dib
from dmnet.invertible import DIB

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="numba not installed: the torch route only")
CL = torch.channels_last


def _dib(dim: int = 8, expansion: int = 2, layers: int = 3) -> DIB:
    torch.manual_seed(0)
    dib = DIB(dim, expansion, layers, psi=1 / layers).eval()
    with torch.no_grad():
        for layer in dib.layers:
            layer.mix.bias.copy_(0.1 * torch.randn_like(layer.mix.bias))
    return dib.to(memory_format=CL)



@pytest.mark.parametrize(("dim", "expansion", "shape", "threads"), [
    (8, 2, (2, 48, 64), 2),   # the lite preset's widths, one pair
    (8, 2, (1, 37, 53), 2),   # one image in two bands
    (8, 2, (3, 21, 17), 2),   # three images, two bands each
    (4, 3, (1, 9, 7), 4),     # another expansion, bands of two or three rows
    (16, 2, (2, 5, 6), 3),    # the widest block on this route
    (8, 2, (1, 2, 2), 2),     # the smallest image reflection padding allows
    (8, 2, (1, 3, 2), 8),     # fewer rows than threads
])
def test_compiled_dib_equals_torch_route_and_float64(dim, expansion, shape, threads):
    dib = _dib(dim, expansion)
    b, h, w = shape
    x = torch.randn(b, dim, h, w).contiguous(memory_format=CL)
    with torch.inference_mode():
        assert compiled_dib.supports(dib, x)
        out = compiled_dib.dib_forward(dib, x, threads=threads)
        ref = torch_route(dib, x)
        exact = torch_route(_dib(dim, expansion).double(), x.double())
    assert_close_to_torch_and_float64(out, x, ref, exact)


@pytest.mark.parametrize("layers", [1, 2])  # the last layer writes psi x the sum: also when it is the first
def test_compiled_dib_of_any_depth_equals_torch_route_and_float64(layers):
    dib = _dib(layers=layers)
    x = torch.randn(2, 8, 13, 11).contiguous(memory_format=CL)
    with torch.inference_mode():
        out = compiled_dib.dib_forward(dib, x, threads=2)
        ref = torch_route(dib, x)
        exact = torch_route(_dib(layers=layers).double(), x.double())
    assert_close_to_torch_and_float64(out, x, ref, exact)


def test_compiled_dib_gives_the_same_values_whatever_the_bands():
    dib = _dib()
    x = torch.randn(1, 8, 23, 19).contiguous(memory_format=CL)
    with torch.inference_mode():
        outs = [compiled_dib.dib_forward(dib, x, threads=t) for t in (1, 2, 3, 7)]
    for out in outs[1:]:
        assert torch.equal(out, outs[0])  # no sum across bands: every value is computed the same way


def test_dib_takes_the_compiled_route_only_where_it_may():
    dib = _dib()
    x = torch.randn(1, 8, 6, 6).contiguous(memory_format=CL)
    with torch.inference_mode():
        assert compiled_dib.supports(dib, x)
        assert not compiled_dib.supports(dib, x.contiguous())
        assert not compiled_dib.supports(dib, x.double())
        assert not compiled_dib.supports(dib, x[:, :, :1].contiguous(memory_format=CL))  # reflection needs 2 rows
        assert not compiled_dib.supports(dib, x[:, :, :, :1].contiguous(memory_format=CL))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not compiled_dib.supports(dib, x)
        with pytest.raises(RuntimeError):  # and the torch route's own error for a 1-row image
            dib(x[:, :, :1].contiguous(memory_format=CL))
    assert not compiled_dib.supports(dib, x)  # autograd on
