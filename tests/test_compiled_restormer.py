"""The compiled CPU route of the Restormer blocks (dmnet/compiled_restormer.py: the DTB and the decoder's
chain) equals the torch route and a float64
evaluation of the same weights, at odd sizes, batch sizes and thread counts; it is taken exactly where
it may be, and the rest of DMNet sees the same values."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from compiled_routes import assert_close_to_torch_and_float64, torch_route

from dmnet import DMNet, compiled, compiled_restormer
from dmnet.transformer import DTB, MDTA

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="numba not installed: the torch route only")
CL = torch.channels_last


def _dtb(dim: int = 8, expansion: float = 2.0, layers: int = 3) -> DTB:
    """A DTB with every parameter away from its initial value (LayerNorm affine, temperature)."""
    torch.manual_seed(0)
    dtb = DTB(dim, heads=1, ffn_expansion=expansion, layers=layers, omega=1 / layers).eval()
    with torch.no_grad():
        for name, p in dtb.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.3 * torch.randn_like(p) if name.endswith("weight") else 0.2 * torch.randn_like(p))
            elif name.endswith("temperature"):
                p.fill_(1.7)
    return dtb.to(memory_format=CL)



@pytest.mark.parametrize(("dim", "expansion", "shape", "threads"), [
    (8, 2.0, (2, 48, 64), 2),    # the lite preset's widths, a batch of one pair (two images)
    (8, 2.0, (1, 37, 53), 2),    # one image cut into two bands
    (8, 2.0, (3, 21, 17), 2),    # three images, two bands each
    (4, 2.66, (1, 9, 7), 3),     # Restormer's 2.66 expansion (hidden 10), three bands
    (16, 2.0, (2, 5, 6), 4),     # the widest block on this route, more threads than rows per band
    (6, 2.0, (1, 1, 1), 2),      # one pixel: every neighbour is padding
    (8, 2.0, (1, 2, 3), 8),      # fewer rows than threads
])
def test_compiled_restormer_equals_torch_route_and_float64(dim, expansion, shape, threads):
    dtb = _dtb(dim, expansion)
    b, h, w = shape
    x = torch.randn(b, dim, h, w).contiguous(memory_format=CL)
    with torch.inference_mode():
        assert compiled_restormer.supports(dtb.layers, x)
        out = compiled_restormer.restormer_forward(dtb.layers, x, dtb.omega, threads=threads)
        ref = torch_route(dtb, x)
        exact = torch_route(_dtb(dim, expansion).double(), x.double())
    assert_close_to_torch_and_float64(out, x, ref, exact)


def test_compiled_restormer_gives_the_same_values_whatever_the_bands():
    dtb = _dtb()
    x = torch.randn(1, 8, 40, 30).contiguous(memory_format=CL)
    with torch.inference_mode():
        outs = [compiled_restormer.restormer_forward(dtb.layers, x, dtb.omega, threads=t) for t in (1, 2, 3, 5)]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], atol=1e-6, rtol=0)


def test_dtb_takes_the_compiled_route_only_where_it_may():
    dtb = _dtb()
    x = torch.randn(1, 8, 6, 6).contiguous(memory_format=CL)
    with torch.inference_mode():
        assert compiled_restormer.supports(dtb.layers, x)
        assert not compiled_restormer.supports(dtb.layers, x.contiguous())  # not channels-last
        assert not compiled_restormer.supports(dtb.layers, x.to(torch.bfloat16))
        assert not compiled_restormer.supports(dtb.layers, x.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast computes in bf16: the torch route
            assert not compiled_restormer.supports(dtb.layers, x)
        assert not compiled_restormer.supports(DTB(8, heads=2, ffn_expansion=2.0, layers=1, omega=1.0).layers, x)
        wide = torch.randn(1, 32, 4, 4).contiguous(memory_format=CL)
        assert not compiled_restormer.supports(DTB(32, heads=1, ffn_expansion=2.0, layers=1, omega=1.0).layers, wide)
    assert not compiled_restormer.supports(dtb.layers, x)  # autograd on: training keeps the torch route
    # and with autograd the DTB still computes (and differentiates) through torch
    x.requires_grad_(True)
    dtb(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_mixing_from_the_gram_matrix_equals_the_per_head_path():
    torch.manual_seed(1)
    attn = MDTA(8, heads=2).double()
    with torch.no_grad():
        attn.temperature.copy_(torch.tensor([0.8, 1.9]).view(2, 1, 1))
    qk = torch.randn(3, 50, 16, dtype=torch.float64)  # B x HW x [q k]
    with torch.no_grad():
        from_gram = attn.mixing(qk.transpose(1, 2) @ qk)
        per_head = attn._mix(*attn._cosine_heads(qk, 8))
    torch.testing.assert_close(from_gram, per_head, atol=1e-12, rtol=1e-10)


def test_lite_model_with_compiled_restormer_equals_thetorch_route():
    torch.manual_seed(0)
    model = DMNet.from_preset("lite").eval()
    ir, vis = torch.rand(1, 1, 45, 61), torch.rand(1, 1, 45, 61)
    with torch.inference_mode():
        fused = model(ir, vis)
        ref = torch_route(model, ir, vis)
    assert (fused - ref).abs().max().item() < 1e-5  # far below one grey level (1/255)


def test_environment_variable_switches_the_route_off():
    code = "from dmnet import compiled; print(compiled.AVAILABLE)"
    env = dict(os.environ, DMNET_COMPILED="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
