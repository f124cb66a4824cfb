"""DMNet building blocks: shapes, the dense sums, invertibility, attention maps, the DDPM forward
process (equation 5), the U-Net and the latent-feature fusion."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from dmnet_tiny import one_torch_thread  # noqa: F401 (autouse fixture: one torch thread)

from dmnet.attention import CSAB, ChannelAttention, SpatialAttention
from dmnet.config import DMNetConfig
from dmnet.diffusion import NoiseSchedule, noise_prediction_loss, seeded_randn
from dmnet.invertible import DIB, CouplingLayer
from dmnet.latent import DiffusionModule, pad_to_multiple
from dmnet.presets import build_config
from dmnet.transformer import DTB, MDTA, ChannelLayerNorm, TransformerBlock
from dmnet.unet import SelfAttention, SR3UNet


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


# ---------------------------------------------------------------------------- transformer / DTB
def test_channel_layer_norm_matches_layer_norm_over_channels():
    norm = ChannelLayerNorm(6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(2, 6, 5, 7)
    ref = torch.nn.LayerNorm(6, eps=1e-5)
    ref.load_state_dict({"weight": norm.weight, "bias": norm.bias})
    expected = ref(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(norm(x), expected)
    # normalised over channels: per pixel, (y - bias) / weight has mean 0 and variance 1
    z = (norm(x) - norm.bias.view(1, -1, 1, 1)) / norm.weight.view(1, -1, 1, 1)
    torch.testing.assert_close(z.mean(1), torch.zeros(2, 5, 7), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.var(1, unbiased=False), torch.ones(2, 5, 7), atol=1e-3, rtol=0)


def test_mdta_is_transposed_cosine_attention():
    """Against a direct transcription of Restormer's MDTA (F.normalize then q k^T)."""
    attn = MDTA(8, heads=2)
    with torch.no_grad():
        attn.temperature.copy_(torch.tensor([0.7, 2.0]).view(2, 1, 1))
    x = torch.randn(3, 8, 6, 5)
    q, k, v = attn.qkv_dwconv(attn.qkv(x)).chunk(3, dim=1)
    q, k, v = (t.reshape(3, 2, 4, 30) for t in (q, k, v))
    a = torch.softmax(F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
                      * attn.temperature, dim=-1)
    assert a.shape == (3, 2, 4, 4)  # channels x channels per head: linear in the pixel count
    expected = attn.project_out((a @ v).reshape(3, 8, 6, 5))
    torch.testing.assert_close(attn(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(2, 16, 9, 13), (1, 16, 32, 32)])
def test_transformer_block_keeps_shape(shape):
    block = TransformerBlock(16, heads=8, ffn_expansion=2.0)
    assert block(torch.randn(shape)).shape == shape


def test_dtb_is_omega_times_sum_of_chained_layers():
    dtb = DTB(16, heads=8, ffn_expansion=2.0, layers=5, omega=0.2)
    assert len(dtb.layers) == 5
    x = torch.randn(2, 16, 8, 8)
    outs, h = [], x
    for layer in dtb.layers:  # each layer's output is the next layer's input
        h = layer(h)
        outs.append(h)
    torch.testing.assert_close(dtb(x), 0.2 * sum(outs))
    assert dtb(x).shape == x.shape


# ---------------------------------------------------------------------------- DIB
def test_coupling_layer_has_exact_inverse():
    layer = CouplingLayer(16, expansion=2).double()
    x = torch.randn(2, 16, 7, 9, dtype=torch.float64)
    y = layer(x)
    assert y.shape == x.shape
    assert (y - x).abs().max() > 0.1  # not the identity
    torch.testing.assert_close(layer.inverse(y), x, atol=1e-10, rtol=0)
    torch.testing.assert_close(layer(layer.inverse(y)), y, atol=1e-10, rtol=0)


def test_coupling_layer_inverse_float32_after_weights_change():
    layer = CouplingLayer(8, expansion=2)
    with torch.no_grad():  # as after training: mixing conv no longer orthogonal
        layer.mix.weight.add_(0.3 * torch.randn_like(layer.mix.weight))
        layer.mix.bias.uniform_(-0.5, 0.5)
    x = torch.randn(3, 8, 6, 6)
    torch.testing.assert_close(layer.inverse(layer(x)), x, atol=1e-4, rtol=1e-4)


def test_coupling_layer_equations():
    """z2 += phi(z1); z1 = z1 * exp(rho(z2)) + eta(z2), after the 1x1 mixing conv."""
    layer = CouplingLayer(8, expansion=2)
    x = torch.randn(1, 8, 5, 5)
    z1, z2 = layer.mix(x).chunk(2, dim=1)
    z2 = z2 + layer.phi(z1)
    z1 = z1 * torch.exp(layer.rho(z2)) + layer.eta(z2)
    torch.testing.assert_close(layer(x), torch.cat((z1, z2), dim=1))
    hidden = layer.phi.body[0].out_channels
    assert hidden == 4 * 2  # inverted residual on 4 channels, expansion 2


def test_dib_is_psi_times_sum_of_chained_layers():
    dib = DIB(16, expansion=2, layers=3, psi=1 / 3)
    x = torch.randn(2, 16, 6, 10)
    outs, h = [], x
    for layer in dib.layers:
        h = layer(h)
        outs.append(h)
    torch.testing.assert_close(dib(x), sum(outs) / 3)


# ---------------------------------------------------------------------------- CSAB
def test_attention_maps_in_unit_interval_and_shapes():
    csab = CSAB(16, reduction=4, kernel=7)
    x = 10 * torch.randn(3, 16, 11, 13)  # large values: sigmoid saturates but stays in [0, 1]
    ca = csab.channel(x)
    sa = csab.spatial(x * ca)
    assert ca.shape == (3, 16, 1, 1) and sa.shape == (3, 1, 11, 13)
    for m in (ca, sa):
        assert m.min() >= 0 and m.max() <= 1
    torch.testing.assert_close(csab(x), x * ca * sa)


def test_channel_attention_max_and_mixed_pooling():
    ca = ChannelAttention(8, reduction=4)
    x = torch.randn(2, 8, 5, 6)
    w1 = ca.mlp[0].weight[:, :, 0, 0]  # 2 x 8
    w2 = ca.mlp[2].weight[:, :, 0, 0]  # 8 x 2
    mx = x.flatten(2).max(-1).values
    mixed = 0.5 * x.flatten(2).mean(-1) + 0.5 * mx

    def mlp(v):
        return torch.relu(v @ w1.T) @ w2.T

    expected = torch.sigmoid(mlp(mx) + mlp(mixed))
    torch.testing.assert_close(ca(x)[:, :, 0, 0], expected)


def test_spatial_attention_on_max_and_mixed_maps():
    sa = SpatialAttention(7)
    x = torch.randn(2, 5, 9, 9)
    with torch.no_grad():  # centre taps only: 1 * max map + 2 * mixed map - 0.5
        sa.conv.weight.zero_()
        sa.conv.weight[0, 0, 3, 3] = 1.0
        sa.conv.weight[0, 1, 3, 3] = 2.0
        sa.conv.bias.fill_(-0.5)
    mx = x.max(dim=1, keepdim=True).values
    mixed = 0.5 * x.mean(dim=1, keepdim=True) + 0.5 * mx
    torch.testing.assert_close(sa(x), torch.sigmoid(mx + 2 * mixed - 0.5))


# ---------------------------------------------------------------------------- diffusion
def test_linear_schedule_and_q_sample_match_equation_5():
    sched = NoiseSchedule(2000, 1e-6, 1e-2)
    betas = [1e-6 + i * (1e-2 - 1e-6) / 1999 for i in range(2000)]  # beta_1 .. beta_T
    assert sched.betas[0].item() == pytest.approx(1e-6) and sched.betas[-1].item() == pytest.approx(1e-2)
    assert sched.alphas_cumprod[0].item() == 1.0
    x0 = torch.rand(3, 2, 4, 4) * 2 - 1
    eps = torch.randn(3, 2, 4, 4)
    t = torch.tensor([1, 50, 2000])
    out = sched.q_sample(x0, t, eps)
    for i, step in enumerate(t.tolist()):
        abar = math.prod(1 - b for b in betas[:step])
        expected = math.sqrt(1 - abar) * eps[i] + math.sqrt(abar) * x0[i]
        torch.testing.assert_close(out[i], expected, atol=1e-6, rtol=1e-5)
    # equation (4): the first step is sqrt(1 - alpha_1) eps + sqrt(alpha_1) I_0
    torch.testing.assert_close(out[0], math.sqrt(betas[0]) * eps[0] + math.sqrt(1 - betas[0]) * x0[0])
    # the end of the chain is almost pure noise
    assert sched.alphas_cumprod[-1].item() == pytest.approx(math.prod(1 - b for b in betas), rel=1e-4)
    assert sched.alphas_cumprod[-1].item() < 1e-4


def test_noise_prediction_loss_is_mean_square_of_noise_error():
    sched = NoiseSchedule(100, 1e-4, 2e-2)
    x0 = torch.rand(4, 2, 8, 8)
    seen = {}

    def zero_model(x_t, t):
        seen["t"], seen["x_t"] = t, x_t
        return torch.zeros_like(x_t)

    loss = noise_prediction_loss(zero_model, sched, x0, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)  # the same draws, in the same order: t then noise
    t = torch.randint(1, 101, (4,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    assert torch.equal(seen["t"], t)
    torch.testing.assert_close(seen["x_t"], sched.q_sample(x0, t, noise))
    torch.testing.assert_close(loss, (noise**2).mean())
    # a perfect denoiser has zero loss
    perfect = noise_prediction_loss(lambda x_t, t: noise, sched, x0, torch.Generator().manual_seed(3))
    assert perfect.item() == 0.0


# ---------------------------------------------------------------------------- U-Net and latent features
def test_unet_shapes_and_decoder_features():
    unet = SR3UNet(2, 2, inner=8, mults=(1, 2, 2, 4, 4), res_blocks=1, attn_levels=(3,), dropout=0.0, groups=4)
    x = torch.randn(2, 2, 32, 48)
    t = torch.tensor([5, 100])
    assert unet(x, t).shape == x.shape
    feats = unet.decoder_features(x, t)
    assert [f.shape for f in feats] == [
        (2, 32, 2, 3), (2, 32, 4, 6), (2, 16, 8, 12), (2, 16, 16, 24), (2, 8, 32, 48)
    ]
    assert unet.feature_channels == [32, 32, 16, 16, 8]
    # attention where the side is 16 for a 128 input (level 3), and in the middle
    attn_levels = [i for i, blocks in enumerate(unet.down_blocks) if blocks[0].attn is not None]
    assert attn_levels == [3]
    assert unet.mid[0].attn is not None and unet.mid[1].attn is None
    # the time step conditions the output
    assert not torch.allclose(unet(x, torch.tensor([5, 5])), unet(x, torch.tensor([100, 100])))


@pytest.mark.parametrize("channels_last", [False, True])
def test_unet_self_attention_is_sr3_single_head_attention(channels_last):
    attn = SelfAttention(8, groups=4)
    x = torch.randn(2, 8, 5, 6)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    q, k, v = attn.qkv(attn.norm(x)).reshape(2, 3, 8, 30).unbind(1)  # SR3: q, k, v channel blocks
    weights = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / math.sqrt(8), dim=-1)
    expected = x + attn.out(torch.einsum("bij,bcj->bci", weights, v).reshape(2, 8, 5, 6))
    torch.testing.assert_close(attn(x), expected, atol=1e-5, rtol=1e-5)


def test_pad_to_multiple():
    x = torch.arange(15.0).reshape(1, 1, 3, 5)
    p = pad_to_multiple(x, 4)
    assert p.shape == (1, 1, 4, 8)
    assert torch.equal(p[..., :3, :5], x)
    assert torch.equal(p[..., 3, :5], x[..., 2, :])  # replicate
    assert pad_to_multiple(torch.zeros(1, 1, 8, 16), 8).shape == (1, 1, 8, 16)


def _lite_dm() -> tuple[DiffusionModule, DMNetConfig]:
    cfg = build_config("lite")
    return DiffusionModule(cfg).eval(), cfg


@pytest.mark.parametrize("inference", [False, True])  # at inference, channels-last: dmnet.compiled_upsample's route
def test_latent_features_equal_one_conv_over_upsampled_concatenation(inference):
    dm, cfg = _lite_dm()
    x0 = torch.rand(2, 2, 19, 27) * 2 - 1  # odd size: padded to 32 x 32 inside, cropped back
    with torch.inference_mode(inference):
        if inference:
            dm, x0 = dm.to(memory_format=torch.channels_last), x0.contiguous(memory_format=torch.channels_last)
        feats = dm.decoder_features(x0, torch.Generator().manual_seed(0))
    n_t = len(cfg.latent_timesteps)
    # reference: upsample every (time step, level) feature to the padded size, concatenate
    # level-major then time step, apply the one 1x1 conv, crop
    ups = []
    for f in feats:
        per_t = f.reshape(n_t, 2, *f.shape[1:])
        for k in range(n_t):
            ups.append(F.interpolate(per_t[k], size=(32, 32), mode="bilinear", align_corners=False))
    with torch.inference_mode(inference):
        expected = dm.fuse(torch.cat(ups, dim=1))[..., :19, :27]
        out = dm.fuse_features(feats, (19, 27))
    assert out.shape == (2, cfg.dim, 19, 27)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


def test_latent_noise_is_seeded_and_shared_noise_is_batch_independent():
    dm, _ = _lite_dm()
    x0 = torch.rand(3, 2, 16, 16) * 2 - 1
    a = dm(x0, torch.Generator().manual_seed(7), shared_noise=True)
    b = dm(x0, torch.Generator().manual_seed(7), shared_noise=True)
    assert torch.equal(a, b)
    alone = dm(x0[1:2], torch.Generator().manual_seed(7), shared_noise=True)
    torch.testing.assert_close(alone, a[1:2], atol=1e-5, rtol=1e-5)
    c = dm(x0, torch.Generator().manual_seed(8), shared_noise=True)
    assert not torch.allclose(a, c)


def test_seeded_randn_draws_what_torch_draws_and_leaves_the_generator_as_torch_would():
    shape = (3, 1, 2, 8, 12)

    def drawn_by_torch(seed: int, draws: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        values = [torch.randn(shape, generator=g) for _ in range(draws)][-1]
        return values, torch.randn(4, generator=g)  # and what the generator gives next

    for seed in (5, 5, 6, 5):  # repeated seeds take the remembered draw
        g = torch.Generator().manual_seed(seed)
        first = seeded_randn(shape, g)
        second = seeded_randn(shape, g)  # a generator that has drawn: drawn again, not remembered
        expected_first, _ = drawn_by_torch(seed, 1)
        expected_second, expected_next = drawn_by_torch(seed, 2)
        assert torch.equal(first, expected_first) and torch.equal(second, expected_second)
        assert torch.equal(torch.randn(4, generator=g), expected_next)
    assert not torch.equal(seeded_randn(shape, torch.Generator().manual_seed(5)), seeded_randn(shape, torch.Generator().manual_seed(6)))
    other = seeded_randn((3, 1, 2, 8, 13), torch.Generator().manual_seed(5))  # another shape: its own draw
    assert torch.equal(other, torch.randn((3, 1, 2, 8, 13), generator=torch.Generator().manual_seed(5)))
    with torch.inference_mode():
        inside = seeded_randn(shape, torch.Generator().manual_seed(5))
    assert inside.is_inference() and not seeded_randn(shape, torch.Generator().manual_seed(5)).is_inference()
    try:
        torch.set_default_dtype(torch.float64)
        assert seeded_randn(shape, torch.Generator().manual_seed(5)).dtype == torch.float64
    finally:
        torch.set_default_dtype(torch.float32)
