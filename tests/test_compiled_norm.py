"""The compiled GroupNorm + SiLU (dmnet/compiled_norm.py) against a float64 evaluation, in float32 and
bfloat16, with and without the per-image term, at sizes that are not whole tiles; when it is taken; and
the SR3 residual block that uses it against its torch route."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from compiled_routes import torch_route

from dmnet import compiled, compiled_norm
from dmnet.unet import ResBlock

pytestmark = pytest.mark.skipif(not compiled.NUMBA, reason="numba not installed: the torch route only")
CL = torch.channels_last
BIG = (1, 256, 512)  # batch, height, width: MIN_PIXELS per image, the least the route is taken for


def _norm(channels: int, groups: int) -> torch.nn.GroupNorm:
    norm = torch.nn.GroupNorm(groups, channels)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.3 * torch.randn(channels))
        norm.bias.copy_(0.2 * torch.randn(channels))
    return norm


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("shape", "groups", "threads"), [
    ((3, 8, 48, 64), 4, 2),    # the lite U-Net's full-resolution width, three time steps
    ((2, 24, 5, 7), 4, 3),     # 35 pixels: two tiles of 16 and a tail of 3
    ((1, 16, 1, 3), 8, 2),     # fewer pixels than a tile
    ((2, 12, 9, 11), 3, 1),
    ((1, 8, 300, 301), 4, 2),  # more rows than one float32 flush per band, and a tail
])
@pytest.mark.parametrize("with_extra", [False, True])
def test_group_norm_silu_matches_float64(dtype, shape, groups, threads, with_extra):
    torch.manual_seed(0)
    b, c, h, w = shape
    norm = _norm(c, groups)
    x = (torch.randn(shape) * 3 + 1).to(dtype).contiguous(memory_format=CL)
    extra = torch.randn(b, c) if with_extra else None
    with torch.inference_mode():
        out = compiled_norm.group_norm_silu(x, norm, extra, threads=threads)
    xe = x.double() + (extra.double()[:, :, None, None] if with_extra else 0)
    exact = F.silu(F.group_norm(xe, groups, norm.weight.double(), norm.bias.double(), norm.eps))
    assert out.dtype == dtype and out.shape == x.shape and out.is_contiguous(memory_format=CL)
    err = (out.double() - exact).abs()
    if dtype == torch.float32:
        assert err.max().item() < 5e-6 * max(1.0, exact.abs().max().item())
    else:  # one bfloat16 rounding of a float32 value: half an ulp (2^-9 relative), plus float32's error
        assert (err <= exact.abs() * 2.0**-8 + 1e-5).all()


def test_group_norm_silu_route_conditions():
    norm = _norm(8, 4)
    b, h, w = BIG
    x = torch.randn(b, 8, h, w).contiguous(memory_format=CL)
    with torch.inference_mode():
        assert compiled_norm.supports(x, norm) and compiled_norm.supports(x.bfloat16(), norm)
        assert not compiled_norm.supports(x[:, :, :-1], norm)  # fewer pixels than MIN_PIXELS
        assert not compiled_norm.supports(x.contiguous(), norm)
        assert not compiled_norm.supports(x.double(), norm)
        assert not compiled_norm.supports(x, torch.nn.GroupNorm(4, 8, affine=False))
        assert not torch_route(compiled_norm.supports, x, norm)  # DMNET_COMPILED=0's switch
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not compiled_norm.supports(x, norm)
    assert not compiled_norm.supports(x, norm)  # autograd on


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_resblock_compiled_route_equals_torch_route(dtype):
    torch.manual_seed(0)
    block = ResBlock(8, 16, emb_dim=12, groups=4, dropout=0.0).eval().to(dtype).to(memory_format=CL)
    b, h, w = BIG
    x = torch.randn(b, 8, h, w).to(dtype).contiguous(memory_format=CL)
    emb = torch.randn(b, 12).to(dtype)
    with torch.inference_mode():
        assert compiled_norm.supports(x, block.block1[0][0])
        out = block(x, emb)
        ref = torch_route(block, x, emb)
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 0.1, "rtol": 0.05}
    torch.testing.assert_close(out.float(), ref.float(), **tol)
    if dtype == torch.bfloat16:  # bf16 rounding differs in a few places only
        assert ((out.float() - ref.float()).abs() > 0.02 * ref.float().abs() + 0.02).float().mean() < 0.01
