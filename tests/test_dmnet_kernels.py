"""DMNet's fast computations equal the plain formulas they replace (dmnet/kernels.py, the Gram-matrix
MDTA, the split GDFN, the transposed-conv upsampling, the in-place U-Net block, the two-step global
max, the convs with fused activations or products, the per-image channel mixing), on the oneDNN
route (float32 CPU) and the reference route (float64), with gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from dmnet_tiny import one_torch_thread  # noqa: F401 (autouse fixture: one torch thread)

from dmnet import DMNet, kernels
from dmnet.attention import ChannelAttention
from dmnet.invertible import InvertedResidual
from dmnet.kernels import (
    ACTIVATIONS,
    conv1x1,
    conv_act,
    conv_add,
    conv_bias_per_image,
    conv_mul,
    downsample_conv,
    fused_route,
    group_norm,
    layer_norm_conv1x1,
    mix_channels_add,
    onednn_route,
)
from dmnet.transformer import GDFN, MDTA, TransformerBlock
from dmnet.unet import ResBlock, Upsample

CL = torch.channels_last


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def _x(*shape: int, dtype=torch.float32, channels_last: bool = True, grad: bool = False) -> torch.Tensor:
    x = torch.randn(*shape, dtype=dtype)
    x = x.contiguous(memory_format=CL) if channels_last else x
    return x.requires_grad_(grad)


def _tol(dtype: torch.dtype) -> dict:
    return {"atol": 1e-5, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 1e-10, "rtol": 1e-9}


def test_onednn_route_is_float32_or_bfloat16_cpu_outside_autocast():
    assert onednn_route(torch.zeros(1, 2, 3, 3))
    # bfloat16 where oneDNN may run it (AVX-512 or AMX, not under ONEDNN_MAX_CPU_ISA=AVX2)
    assert onednn_route(torch.zeros(1, 2, 3, 3, dtype=torch.bfloat16)) == kernels.ONEDNN_BF16
    assert not onednn_route(torch.zeros(1, 2, 3, 3, dtype=torch.float64))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not onednn_route(torch.zeros(1, 2, 3, 3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels_last", [True, False])
def test_conv1x1_equals_conv2d_with_gradients(dtype, channels_last):
    x = _x(2, 4, 5, 7, dtype=dtype, channels_last=channels_last, grad=True)
    w = torch.randn(6, 4, 1, 1, dtype=dtype, requires_grad=True)
    b = torch.randn(6, dtype=dtype, requires_grad=True)
    out = conv1x1(x, w, b)
    ref = F.conv2d(x, w, b)
    torch.testing.assert_close(out, ref, **_tol(dtype))
    g = torch.randn_like(ref)
    grads = torch.autograd.grad(out, (x, w, b), g)
    ref_grads = torch.autograd.grad(ref, (x, w, b), g)
    for a, r in zip(grads, ref_grads):
        torch.testing.assert_close(a, r, **_tol(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layer_norm_conv1x1_equals_layer_norm_then_convs(dtype):
    x = _x(2, 8, 6, 9, dtype=dtype, grad=True)
    x.data.mul_(3).add_(torch.linspace(-2, 5, 8, dtype=dtype).view(1, 8, 1, 1))  # off-centre, scaled
    nw = (torch.rand(8, dtype=dtype) + 0.5).requires_grad_()
    nb = torch.randn(8, dtype=dtype, requires_grad=True)
    ws = [torch.randn(24, 8, 1, 1, dtype=dtype, requires_grad=True), torch.randn(5, 8, 1, 1, dtype=dtype)]
    outs = layer_norm_conv1x1(x, nw, nb, 1e-5, ws)
    normed = F.layer_norm(x.permute(0, 2, 3, 1), (8,), nw, nb, eps=1e-5).permute(0, 3, 1, 2)
    refs = [F.conv2d(normed, w) for w in ws]
    for o, r in zip(outs, refs):
        assert o.shape == r.shape
        torch.testing.assert_close(o, r, **_tol(dtype))
    loss, ref_loss = sum((o**2).sum() for o in outs), sum((r**2).sum() for r in refs)
    grads = torch.autograd.grad(loss, (x, nw, nb, ws[0]))
    ref_grads = torch.autograd.grad(ref_loss, (x, nw, nb, ws[0]))
    for a, r in zip(grads, ref_grads):
        torch.testing.assert_close(a, r, atol=1e-3 if dtype == torch.float32 else 1e-9, rtol=1e-4)
    with torch.no_grad():  # the in-place variant used without autograd
        for o, r in zip(layer_norm_conv1x1(x, nw, nb, 1e-5, ws), refs):
            torch.testing.assert_close(o, r, **_tol(dtype))


def _restormer_mdta(attn: MDTA, x: torch.Tensor) -> torch.Tensor:
    """Restormer's MDTA as published: F.normalize the q, k rows of each head, then q k^T."""
    b, c, h, w = x.shape
    q, k, v = (t.reshape(b, attn.heads, c // attn.heads, h * w)
               for t in attn.qkv_dwconv(attn.qkv(x)).chunk(3, dim=1))
    cosine = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
    a = torch.softmax(cosine * attn.temperature, -1)
    return attn.project_out((a @ v).reshape(b, c, h, w))


@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels_last", [True, False])
def test_mdta_equals_restormer_formula_with_gradients(heads, dtype, channels_last):
    attn = MDTA(8, heads=heads).to(dtype)
    with torch.no_grad():
        attn.temperature.copy_(torch.linspace(0.7, 2.0, heads).view(heads, 1, 1))
    x = _x(3, 8, 6, 5, dtype=dtype, channels_last=channels_last, grad=True)
    out, ref = attn(x), _restormer_mdta(attn, x)
    torch.testing.assert_close(out, ref, **_tol(dtype))
    params = [x, attn.temperature, attn.qkv.weight, attn.project_out.weight]
    grads = torch.autograd.grad(out.square().sum(), params)
    ref_grads = torch.autograd.grad(ref.square().sum(), params)
    for a, r in zip(grads, ref_grads):
        torch.testing.assert_close(a, r, atol=1e-4 if dtype == torch.float32 else 1e-9, rtol=1e-4)


def test_gdfn_and_transformer_block_equal_chunked_formulas():
    block = TransformerBlock(8, heads=1, ffn_expansion=2.0).to(memory_format=CL)
    with torch.no_grad():
        for norm in (block.norm1, block.norm2):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    ffn: GDFN = block.ffn
    x = _x(2, 8, 7, 9, grad=True)

    def ref_ffn(y):
        x1, x2 = ffn.dwconv(ffn.project_in(y)).chunk(2, dim=1)
        return ffn.project_out(F.gelu(x1) * x2)

    torch.testing.assert_close(ffn(x), ref_ffn(x), atol=1e-5, rtol=1e-4)
    h = x + _restormer_mdta(block.attn, block.norm1(x))
    ref = h + ref_ffn(block.norm2(h))
    out = block(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    params = [x] + list(block.parameters())
    for a, r in zip(torch.autograd.grad(out.sum(), params), torch.autograd.grad(ref.sum(), params)):
        torch.testing.assert_close(a, r, atol=1e-3, rtol=1e-3)


def test_inverted_residual_equals_its_sequential_body():
    block = InvertedResidual(4, expansion=2).to(memory_format=CL)
    x = _x(2, 4, 6, 7, grad=True)
    x.data.mul_(4)  # both ReLU6 bounds active
    out, ref = block(x), block.body(x)
    torch.testing.assert_close(out, ref)
    for a, r in zip(torch.autograd.grad(out.sum(), [x, *block.parameters()]),
                    torch.autograd.grad(ref.sum(), [x, *block.parameters()])):
        torch.testing.assert_close(a, r)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels_last", [True, False])
def test_upsample_equals_nearest_then_conv(dtype, channels_last):
    up = Upsample(6).to(dtype)
    x = _x(2, 6, 5, 7, dtype=dtype, channels_last=channels_last, grad=True)
    out = up(x)
    ref = up.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
    assert out.shape == (2, 6, 10, 14)
    torch.testing.assert_close(out, ref, **_tol(dtype))
    params = [x, up.conv.weight, up.conv.bias]
    for a, r in zip(torch.autograd.grad(out.sum(), params), torch.autograd.grad(ref.sum(), params)):
        torch.testing.assert_close(a, r, **_tol(dtype))


def test_resblock_equals_sr3_formula_with_gradients():
    block = ResBlock(6, 8, emb_dim=5, groups=2, dropout=0.0).to(memory_format=CL)
    x = _x(3, 6, 5, 4, grad=True)
    emb = torch.randn(3, 5)
    out = block(x, emb)
    h = block.block1(x) + block.emb(emb)[:, :, None, None]
    ref = block.block2(h) + block.skip(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    params = [x, *block.parameters()]
    for a, r in zip(torch.autograd.grad(out.sum(), params), torch.autograd.grad(ref.sum(), params)):
        torch.testing.assert_close(a, r, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("size", [(8, 6), (5, 7)])  # 48 pixels (two-step max) and 35 (plain amax)
def test_channel_attention_global_max_without_autograd(size):
    ca = ChannelAttention(8, reduction=4)
    x = _x(3, 8, *size)
    with torch.no_grad():
        fast = ca(x)
    torch.testing.assert_close(fast, ca(x), atol=0, rtol=0)
    mx = x.amax(dim=(2, 3), keepdim=True)
    mixed = 0.5 * x.mean(dim=(2, 3), keepdim=True) + 0.5 * mx
    torch.testing.assert_close(fast, torch.sigmoid(ca.mlp(mx) + ca.mlp(mixed)))


def test_lite_model_fast_route_matches_float64_reference_route():
    """The whole stage-II forward: float32 (oneDNN route, every fast path) against float64
    (F.conv2d / F.layer_norm route) of the same weights, odd image size."""
    model = DMNet.from_preset("lite").eval()
    ir, vis = torch.rand(2, 1, 37, 45), torch.rand(2, 1, 37, 45)
    with torch.inference_mode():
        fast = model(ir, vis)
        exact = model.double()(ir.double(), vis.double())
    assert fast.dtype == torch.float32 and fast.shape == (2, 1, 37, 45)
    torch.testing.assert_close(fast, exact, atol=1e-6, rtol=0)  # forward returns float32 either way


def test_keep_freed_memory_only_inside_a_session_and_can_be_switched_off(monkeypatch):
    import sys

    from fusedet import runtime

    runtime._mallopt.cache_clear()
    assert runtime.keep_freed_memory() is False  # outside a session: malloc is left alone
    monkeypatch.setenv("FUSEDET_KEEP_FREED_MEMORY", "0")
    with runtime.session():
        assert runtime.keep_freed_memory() is False
    runtime._mallopt.cache_clear()
    monkeypatch.delenv("FUSEDET_KEEP_FREED_MEMORY")
    with runtime.session():
        applied = runtime.keep_freed_memory()
        assert applied is (sys.platform.startswith("linux") and _has_glibc())
        assert runtime.keep_freed_memory() is applied  # once per session
    runtime._mallopt.cache_clear()


def _has_glibc() -> bool:
    import platform

    return platform.libc_ver()[0] == "glibc"


def test_freed_memory_reuse_is_for_small_models_only():
    from fusedet.dmnet_fuser import KEEP_MEMORY_MAX_PARAMS, small_model

    assert small_model(DMNet.from_preset("lite"))  # 0.3M parameters
    big = torch.nn.Linear(4000, KEEP_MEMORY_MAX_PARAMS // 4000 + 1)  # just over the bound
    assert not small_model(big)


_PLAIN_ACT = {"relu6": F.relu6, "gelu": F.gelu, "silu": F.silu, "sigmoid": torch.sigmoid,
              "leaky_relu": F.leaky_relu}


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("kernel,groups", [(1, 1), (3, 1), (3, 6)])
def test_conv_act_equals_conv_then_activation(act, kernel, groups):
    x = _x(2, 6, 9, 11)
    x.mul_(4)  # both ReLU6 bounds and both leaky-ReLU sides active
    w = torch.randn(6, 6 // groups, kernel, kernel)
    b = torch.randn(6)
    pad = kernel // 2
    ref = _PLAIN_ACT[act](F.conv2d(x, w, b, padding=pad, groups=groups))
    with torch.inference_mode():  # the fused oneDNN route where torch has it
        assert fused_route(x) == (kernels._POINTWISE is not None)
        fast = conv_act(x, w, b, act, padding=pad, groups=groups)
    torch.testing.assert_close(fast, ref, atol=2e-5, rtol=1e-5)
    xg = x.clone().requires_grad_()  # the autograd route: plain formula, same gradients
    out = conv_act(xg, w, b, act, padding=pad, groups=groups)
    ref_g = _PLAIN_ACT[act](F.conv2d(xg, w, b, padding=pad, groups=groups))
    torch.testing.assert_close(out, ref_g, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(torch.autograd.grad(out.sum(), xg)[0], torch.autograd.grad(ref_g.sum(), xg)[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv_mul_equals_depthwise_conv_times_other(dtype):
    x, other = _x(2, 8, 7, 10, dtype=dtype), _x(2, 8, 7, 10, dtype=dtype)
    w = torch.randn(8, 1, 3, 3, dtype=dtype)
    ref = F.conv2d(x, w, padding=1, groups=8) * other
    with torch.inference_mode():
        fast = conv_mul(x, other, w, padding=1, groups=8)
    torch.testing.assert_close(fast, ref, **_tol(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_conv_add_equals_conv_plus_other(dtype):
    x, other = _x(2, 8, 7, 10, dtype=dtype), _x(2, 16, 7, 10, dtype=dtype)
    w, b = torch.randn(16, 8, 3, 3, dtype=dtype), torch.randn(16, dtype=dtype)
    ref = F.conv2d(x.double(), w.double(), b.double(), padding=1) + other.double()
    with torch.inference_mode():
        fast = conv_add(x, other, w, b, padding=1)
    assert fast.dtype == dtype
    if dtype == torch.bfloat16:  # one rounding of the float32 sum (the two-step form rounds twice)
        assert ((fast.double() - ref).abs() <= ref.abs() * 2.0**-8 + 1e-2).all()
    else:
        torch.testing.assert_close(fast.double(), ref, **_tol(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("grad", [False, True])
def test_mix_channels_add_equals_per_image_matrix(dtype, grad):
    x, residual = _x(3, 8, 5, 6, dtype=dtype, grad=grad), _x(3, 6, 5, 6, dtype=dtype, grad=grad)
    mix = torch.randn(3, 6, 8, dtype=dtype, requires_grad=grad)
    with torch.set_grad_enabled(grad):
        out = mix_channels_add(residual, x, mix)
    ref = residual + torch.einsum("bchw,boc->bohw", x, mix)
    torch.testing.assert_close(out, ref, **_tol(dtype))
    if grad:
        for a, r in zip(torch.autograd.grad(out.square().sum(), (x, residual, mix)),
                        torch.autograd.grad(ref.square().sum(), (x, residual, mix))):
            torch.testing.assert_close(a, r, **_tol(dtype))


def _bf16_close(fast: torch.Tensor, exact: torch.Tensor, rel: float = 2e-2) -> None:
    """bfloat16 results against a float64 computation of the same bfloat16 inputs: within `rel` of the
    largest value (a few bf16 roundings of the output, sums accumulated in float32)."""
    assert fast.dtype == torch.bfloat16
    err = (fast.double() - exact).abs().max().item()
    assert err <= rel * exact.abs().max().item(), err


def test_bfloat16_route_matches_float64_formulas():
    """The kernels on bfloat16 tensors with bfloat16 weights (a part kept in bf16 by DMNet.lower_precision)
    take the oneDNN route where oneDNN runs bf16, else the plain route, and give the plain formulas' values
    to bf16 precision."""
    bf = torch.bfloat16
    x, other = _x(2, 8, 9, 11, dtype=bf), _x(2, 8, 9, 11, dtype=bf)
    w1, b1 = torch.randn(6, 8, 1, 1, dtype=bf), torch.randn(6, dtype=bf)
    w3, wd = torch.randn(8, 8, 3, 3, dtype=bf), torch.randn(8, 1, 3, 3, dtype=bf)
    d = lambda t: t.double()  # noqa: E731
    with torch.inference_mode():
        assert fused_route(x) == (kernels._POINTWISE is not None and kernels.ONEDNN_BF16)
        _bf16_close(conv1x1(x, w1, b1), F.conv2d(d(x), d(w1), d(b1)))
        _bf16_close(conv_act(x, w3, None, "silu", padding=1), F.silu(F.conv2d(d(x), d(w3), padding=1)))
        _bf16_close(conv_mul(x, other, wd, padding=1, groups=8), F.conv2d(d(x), d(wd), padding=1, groups=8) * d(other))
        mix = torch.randn(2, 8, 8)  # float32, as MDTA computes it
        _bf16_close(mix_channels_add(other, x, mix), d(other) + torch.einsum("bchw,boc->bohw", d(x), d(mix.to(bf))))
        nw, nb, ws = torch.randn(8, dtype=bf), torch.randn(8, dtype=bf), [torch.randn(4, 8, 1, 1, dtype=bf)]
        ln = F.layer_norm(d(x).permute(0, 2, 3, 1), (8,), d(nw), d(nb), eps=1e-5).permute(0, 3, 1, 2)
        _bf16_close(layer_norm_conv1x1(x, nw, nb, 1e-5, ws)[0], F.conv2d(ln, d(ws[0])))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_conv_bias_per_image_equals_conv_plus_broadcast_bias(dtype):
    x = _x(3, 8, 10, 12, dtype=dtype)
    w, b, extra = torch.randn(8, 8, 3, 3, dtype=dtype), torch.randn(8, dtype=dtype), torch.randn(3, 8, dtype=dtype)
    with torch.inference_mode():
        fast = conv_bias_per_image(x, w, b, extra, padding=1)
        no_bias = conv_bias_per_image(x, w, None, extra, padding=1)
    d = lambda t: t.double()  # noqa: E731
    exact = F.conv2d(d(x), d(w), d(b), padding=1) + d(extra)[:, :, None, None]
    if dtype == torch.bfloat16:
        _bf16_close(fast, exact)
        _bf16_close(no_bias, exact - d(b)[None, :, None, None])
    else:
        torch.testing.assert_close(fast, exact.to(dtype), **_tol(dtype))
        torch.testing.assert_close(no_bias, (exact - d(b)[None, :, None, None]).to(dtype), **_tol(dtype))
    assert fast.shape == (3, 8, 10, 12) and fast.dtype == dtype


@pytest.mark.parametrize("channels,groups", [(8, 4), (16, 4), (24, 4)])
def test_group_norm_equals_the_module(channels, groups):
    norm = torch.nn.GroupNorm(groups, channels)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = _x(3, channels, 9, 13).mul_(3).add_(1)
    torch.testing.assert_close(group_norm(x, norm), norm(x), rtol=0, atol=0)  # float32: the module itself
    norm_bf = torch.nn.GroupNorm(groups, channels).to(torch.bfloat16)
    norm_bf.load_state_dict({k: v.to(torch.bfloat16) for k, v in norm.state_dict().items()})
    xb = x.to(torch.bfloat16)
    exact = F.group_norm(xb.double(), groups, norm_bf.weight.double(), norm_bf.bias.double(), norm.eps)
    _bf16_close(group_norm(xb, norm_bf), exact)


@pytest.mark.parametrize("shape", [(3, 32, 14, 2), (1, 32, 50, 1), (2, 16, 2, 30), (1, 8, 9, 3)])
def test_downsample_conv_in_bfloat16_matches_float32_on_narrow_inputs(shape):
    """oneDNN's bf16 stride-2 conv is wrong on inputs 1-2 pixels wide; downsample_conv computes those in
    float32: close to the float32 conv and the same on every call."""
    conv = torch.nn.Conv2d(shape[1], shape[1], 3, stride=2, padding=1)
    x = torch.randn(shape).to(torch.bfloat16).contiguous(memory_format=CL)
    ref = F.conv2d(x.float(), conv.weight, conv.bias, stride=2, padding=1)
    low = conv.to(torch.bfloat16)
    with torch.inference_mode():
        outs = [downsample_conv(low, x) for _ in range(4)]
    assert all(o.dtype == torch.bfloat16 and torch.equal(o, outs[0]) for o in outs)
    assert ((outs[0].float() - ref).abs() <= 0.02 * ref.abs() + 0.05).all()


def test_lowered_lite_model_on_a_narrow_image_is_finite_and_close_to_float32():
    torch.manual_seed(0)
    model = DMNet.from_preset("lite").eval()
    ir, vis = torch.rand(1, 1, 100, 7), torch.rand(1, 1, 100, 7)
    with torch.inference_mode():
        ref = model(ir, vis)
        low = model.lower_precision(torch.bfloat16)
        outs = [low(ir, vis) for _ in range(3)]
    assert all(torch.isfinite(o).all() and torch.equal(o, outs[0]) for o in outs)
    assert (outs[0] - ref).abs().max().item() < 0.02
