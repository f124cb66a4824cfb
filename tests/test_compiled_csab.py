"""The compiled CPU route of the CSAB (dmnet/compiled_csab.py) equals the torch route and a float64
evaluation, at sizes that are not whole tiles, several batch sizes and thread counts."""

from __future__ import annotations

import pytest
import torch
from compiled_routes import torch_route

from dmnet import compiled, compiled_csab
from dmnet.attention import CSAB

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="numba not installed: the torch route only")
CL = torch.channels_last


def _csab(dim: int, kernel: int = 7) -> CSAB:
    torch.manual_seed(0)
    csab = CSAB(dim, reduction=4, kernel=kernel).eval()
    with torch.no_grad():
        csab.spatial.conv.bias.fill_(0.3)
    return csab.to(memory_format=CL)



@pytest.mark.parametrize(("dim", "kernel", "shape", "threads"), [
    (8, 7, (3, 48, 64), 2),   # the lite preset: three maps (two details and the latent)
    (8, 7, (1, 5, 7), 3),     # smaller than the kernel; 35 pixels: a partial tile
    (16, 5, (2, 9, 4), 2),    # another kernel size
    (8, 7, (1, 1, 1), 2),     # one pixel
])
def test_compiled_csab_equals_torch_route_and_float64(dim, kernel, shape, threads):
    csab = _csab(dim, kernel)
    b, h, w = shape
    x = (torch.randn(b, dim, h, w) + 0.2).contiguous(memory_format=CL)
    with torch.inference_mode():
        assert compiled_csab.supports(csab, x)
        out = compiled_csab.csab_forward(csab, x, threads=threads)
        ref = torch_route(csab, x)
        exact = torch_route(_csab(dim, kernel).double(), x.double())
    assert out.shape == x.shape and out.is_contiguous(memory_format=CL)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert (out.double() - exact).abs().max().item() < 1e-5


def test_csab_route_conditions():
    csab = _csab(8)
    x = torch.randn(1, 8, 6, 6).contiguous(memory_format=CL)
    with torch.inference_mode():
        assert compiled_csab.supports(csab, x)
        assert not compiled_csab.supports(csab, x.contiguous())
        assert not compiled_csab.supports(csab, x.to(torch.bfloat16))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not compiled_csab.supports(csab, x)
    assert not compiled_csab.supports(csab, x)  # autograd on
