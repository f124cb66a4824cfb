"""DMNet as a whole: the interface contract, presets and their parameter counts, forward on any
size, determinism, the two stages' losses, bf16 autocast, and every ablation row of Table V."""

from __future__ import annotations

import json
import time

import pytest
import torch
from torch import nn

from dmnet import ABLATIONS, PRESETS, DMNet, DMNetConfig, DMNetError, build_config
from dmnet.config import field_names
from dmnet.latent import DiffusionModule

PAPER_PARAMS = 386.358e6  # Table VIII


@pytest.fixture(scope="module")
def default_threads() -> int:
    return torch.get_num_threads()


@pytest.fixture(autouse=True)
def one_thread(default_threads):
    """Small tensors: OpenMP start-up dominates and is much worse on a shared machine."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(default_threads)


@pytest.fixture(scope="module")
def lite() -> DMNet:
    torch.manual_seed(0)
    return DMNet.from_preset("lite").eval()


def pair(b: int = 2, h: int = 16, w: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, h, w, generator=g), torch.rand(b, 1, h, w, generator=g)


# ---------------------------------------------------------------------------- parameter counts
def expected_parameters(cfg: DMNetConfig) -> int:
    """Parameter count from the architecture's description (Restormer, INN, CBAM, SR3)."""
    c = cfg.dim

    def conv(cin, cout, k, bias=True, groups=1):
        return cin * cout * k * k // groups + (cout if bias else 0)

    def transformer(d):
        hidden = int(d * cfg.ffn_expansion)
        attn = cfg.heads + conv(d, 3 * d, 1, False) + conv(3 * d, 3 * d, 3, False, 3 * d) + conv(d, d, 1, False)
        ffn = conv(d, 2 * hidden, 1, False) + conv(2 * hidden, 2 * hidden, 3, False, 2 * hidden) + conv(hidden, d, 1, False)
        return 4 * d + attn + ffn

    def inverted_residual(ch):
        hid = ch * cfg.inn_expansion
        return conv(ch, hid, 1, False) + conv(hid, hid, 3, False, hid) + conv(hid, ch, 1, False)

    n = conv(1, c, 3, False)  # embed
    n += cfg.dtb_layers * transformer(c) if cfg.use_dtb else 0
    n += cfg.dib_layers * (conv(c, c, 1) + 3 * inverted_residual(c // 2)) if cfg.use_dib else 0
    n += 2 * c * max(1, c // cfg.csab_reduction) + conv(2, 1, cfg.csab_kernel) if cfg.use_csab else 0
    n += cfg.decoder_blocks * transformer(c) + conv(c, c // 2, 3, False) + conv(c // 2, 1, 3, False)
    n += conv(2 * c, 2, 3)  # DM input conv, eq. (9)
    if not cfg.use_dm:
        return n + conv(2, c, 3)

    inner, g = cfg.unet_inner, 2  # GroupNorm has 2 parameters per channel

    def res(d, o):
        return g * d + conv(d, o, 3) + (inner * o + o) + g * o + conv(o, o, 3) + (conv(d, o, 1) if d != o else 0)

    def attn(ch):
        return g * ch + conv(ch, 3 * ch, 1, False) + conv(ch, ch, 1)

    u = inner * 4 * inner + 4 * inner + 4 * inner * inner + inner + conv(2, inner, 3)
    ch, skips = inner, [inner]
    levels = len(cfg.unet_mults)
    for lvl, m in enumerate(cfg.unet_mults):
        for _ in range(cfg.unet_res_blocks):
            u += res(ch, inner * m) + (attn(inner * m) if lvl in cfg.unet_attn_levels else 0)
            ch = inner * m
            skips.append(ch)
        if lvl < levels - 1:
            u += conv(ch, ch, 3)
            skips.append(ch)
    u += 2 * res(ch, ch) + attn(ch)
    feats = []
    for lvl in reversed(range(levels)):
        m = cfg.unet_mults[lvl]
        for _ in range(cfg.unet_res_blocks + 1):
            u += res(ch + skips.pop(), inner * m) + (attn(inner * m) if lvl in cfg.unet_attn_levels else 0)
            ch = inner * m
        feats.append(ch)
        if lvl > 0:
            u += conv(ch, ch, 3)
    u += g * ch + conv(ch, 2, 3)
    fuse = conv(len(cfg.latent_timesteps) * sum(feats), c, 1)
    return n + u + fuse


def test_paper_preset_parameter_count_matches_table_viii():
    with torch.device("meta"):
        model = DMNet.from_preset("paper")
    n = model.num_parameters()
    assert n == expected_parameters(model.config)
    assert abs(n - PAPER_PARAMS) / PAPER_PARAMS < 0.02, f"{n / 1e6:.3f}M vs {PAPER_PARAMS / 1e6:.3f}M"
    unet = sum(p.numel() for p in model.dm.unet.parameters())
    assert unet / n > 0.99  # "almost all in the U-Net"


def test_lite_preset_parameter_count(lite):
    n = lite.num_parameters()
    assert n == expected_parameters(lite.config)
    assert 1e5 <= n <= 1e6


@pytest.mark.parametrize("row", ["AE2", "AE5", "AE13", "AE14"])
def test_ablation_parameter_counts(row):
    model = DMNet.from_preset("lite", ablation=row)
    assert model.num_parameters() == expected_parameters(model.config)


def test_paper_preset_forward_128_on_cpu(default_threads):
    torch.set_num_threads(default_threads)  # big convolutions: use every core
    torch.manual_seed(0)
    start = time.perf_counter()
    model = DMNet.from_preset("paper").eval()
    ir, vis = pair(1, 128, 128)
    with torch.no_grad():
        fused = model(ir, vis)
    assert fused.shape == (1, 1, 128, 128) and fused.dtype == torch.float32
    assert torch.isfinite(fused).all() and fused.min() >= 0 and fused.max() <= 1
    print(f"paper preset: build + forward 128x128 on CPU in {time.perf_counter() - start:.1f} s")


# ---------------------------------------------------------------------------- config and presets
def test_config_round_trips_through_json():
    model = DMNet.from_preset("lite", ablation="AE5", seed=3, gamma2=4.0, grad_operator="log")
    cfg = model.config
    assert (cfg.preset, cfg.ablation, cfg.seed, cfg.gamma2, cfg.grad_operator) == ("lite", "AE5", 3, 4.0, "log")
    assert cfg.use_dm is False and cfg.use_csab is False and cfg.use_dtb and cfg.use_dib
    d = json.loads(json.dumps(cfg.to_dict()))
    assert set(d) == set(field_names())
    assert DMNetConfig.from_dict(d) == cfg
    rebuilt = DMNet(DMNetConfig.from_dict(d))
    rebuilt.load_state_dict(model.state_dict())  # strict: the same architecture
    ir, vis = pair(1, 16, 16)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(ir, vis), model.eval()(ir, vis))


def test_paper_preset_values():
    cfg = build_config("paper")
    assert (cfg.dim, cfg.heads, cfg.dtb_layers, cfg.dib_layers, cfg.omega, cfg.psi) == (64, 8, 5, 3, 0.2, 1 / 3)
    assert (cfg.diffusion_steps, cfg.beta_start, cfg.beta_end) == (2000, 1e-6, 1e-2)
    assert (cfg.unet_inner, cfg.unet_mults, cfg.unet_res_blocks, cfg.unet_dropout) == (128, (1, 2, 4, 8, 8), 2, 0.2)
    assert cfg.latent_timesteps == (5, 50, 100) and cfg.grad_operator == "sobel"
    assert set(PRESETS) == {"paper", "lite"}


@pytest.mark.parametrize("bad, message", [
    ({"nonsense": 1}, "unknown DMNet config key"),
    ({"dim": 63}, "dim must be even"),
    ({"dim": 64, "heads": 6}, "divisible by heads"),
    ({"grad_operator": "prewitt"}, "grad_operator must be one of"),
    ({"latent_timesteps": [0, 50]}, "latent_timesteps"),
    ({"beta_start": 0.1, "beta_end": 0.01}, "beta_start < beta_end"),
    ({"use_dm": 1}, "use_dm must be bool"),
    ({"dim": 64.0}, "dim must be int"),
    ({"gamma1": float("nan")}, "gamma1 must be a finite number"),
    ({"unet_mults": []}, "unet_mults must be a non-empty list"),
    ({"ablation": "AE99"}, "unknown ablation"),
    ({"unet_norm_groups": 7}, "not divisible by unet_norm_groups"),
])
def test_invalid_config_raises(bad, message):
    with pytest.raises(DMNetError, match=message):
        DMNetConfig.from_dict({**DMNetConfig().to_dict(), **bad})


def test_from_preset_errors():
    with pytest.raises(DMNetError, match="unknown DMNet preset 'huge'"):
        DMNet.from_preset("huge")
    with pytest.raises(DMNetError, match="unknown DMNet config key.*dimm"):
        DMNet.from_preset("lite", dimm=8)
    with pytest.raises(DMNetError, match="unknown ablation 'AE0'"):
        DMNet.from_preset("lite", ablation="AE0")
    with pytest.raises(DMNetError, match="lam must be >= 0"):
        DMNet.from_preset("lite", lam=-1.0)
    with pytest.raises(DMNetError, match="must be a dict"):
        DMNetConfig.from_dict([("dim", 8)])


def test_overrides_win_over_ablation_rows():
    cfg = DMNet.from_preset("lite", ablation="AE13", use_dm=True).config
    assert cfg.use_dm and cfg.use_csab and cfg.ablation == "AE13"


# ---------------------------------------------------------------------------- forward
@pytest.mark.parametrize("h, w", [(23, 37), (16, 16), (5, 9)])
def test_forward_any_size(lite, h, w):
    ir, vis = pair(2, h, w)
    with torch.no_grad():
        fused = lite(ir, vis)
    assert fused.shape == (2, 1, h, w) and fused.dtype == torch.float32
    assert fused.min() >= 0 and fused.max() <= 1


def test_forward_is_deterministic_and_batch_independent(lite):
    ir, vis = pair(3, 20, 24, seed=5)
    with torch.no_grad():
        a, b = lite(ir, vis), lite(ir, vis)
        alone = lite(ir[2:], vis[2:])
    assert torch.equal(a, b)
    torch.testing.assert_close(alone, a[2:], atol=1e-5, rtol=1e-5)
    other = DMNet(lite.config.replace(seed=1))
    other.load_state_dict(lite.state_dict())
    with torch.no_grad():
        assert not torch.equal(other.eval()(ir, vis), a)  # the seed drives the latent noise


def test_forward_depends_on_both_sources(lite):
    ir, vis = pair(1, 16, 16)
    with torch.no_grad():
        base = lite(ir, vis)
        assert not torch.allclose(lite(ir.flip(-1), vis), base)
        assert not torch.allclose(lite(ir, vis.flip(-1)), base)


@pytest.mark.parametrize("ir, vis, message", [
    (torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), "B x 1 x H x W"),
    (torch.rand(8, 8), torch.rand(8, 8), "B x 1 x H x W"),
    (torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9), "shapes differ"),
    (torch.zeros(1, 1, 8, 8, dtype=torch.uint8), torch.zeros(1, 1, 8, 8, dtype=torch.uint8), "floating-point"),
    (torch.rand(1, 1, 1, 8), torch.rand(1, 1, 1, 8), "too small"),
    (torch.rand(1, 1, 8, 8, dtype=torch.float64), torch.rand(1, 1, 8, 8, dtype=torch.float64), "torch.float64 on cpu but the model is torch.float32"),
])
def test_forward_rejects_bad_inputs(lite, ir, vis, message):
    with pytest.raises(DMNetError, match=message):
        lite(ir, vis)


def test_bf16_autocast(lite):
    ir, vis = pair(1, 24, 24)
    with torch.no_grad():
        ref = lite(ir, vis)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = lite(ir, vis)
            losses = lite.stage2_losses(ir, vis, torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32
    assert (out - ref).abs().max() < 0.05
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())


def test_lower_precision_keeps_the_unet_in_bf16_and_hands_float32_on(lite):
    """DMNet.lower_precision: the U-Net's weights in bf16, everything else float32; the output is float32
    and close to the float32 model's (random weights, so no grey-level claim here: see test_cli_fuse)."""
    low = DMNet(lite.config)
    low.load_state_dict(lite.state_dict())
    assert low.eval().lower_precision() is low
    dtypes = {name.split(".")[0] + ("." + name.split(".")[1] if name.startswith("dm.") else ""): p.dtype
              for name, p in low.named_parameters()}
    assert dtypes.pop("dm.unet") == torch.bfloat16 and set(dtypes.values()) == {torch.float32}
    ir, vis = pair(2, 40, 48)
    with torch.inference_mode():
        ref, out = lite(ir, vis), low(ir, vis)
        feats = low.dm.decoder_features(torch.rand(1, 2, 32, 32))
    assert out.dtype == torch.float32 and all(f.dtype == torch.float32 for f in feats)
    assert 0 < (out - ref).abs().max() < 0.02  # bf16 moved something, by little


def test_lower_precision_is_for_inference_and_a_lowered_model_is_not_saved(lite, tmp_path):
    from dmnet.checkpoint import save_checkpoint

    model = DMNet(lite.config)
    with pytest.raises(DMNetError, match="call model.eval"):
        model.train().lower_precision()
    with pytest.raises(DMNetError, match="no part 'nope'"):
        model.eval().lower_precision(parts=("nope",))
    model.lower_precision()
    with pytest.raises(DMNetError, match="not float32"):
        save_checkpoint(tmp_path / "low.pt", model)
    assert not (tmp_path / "low.pt").exists()


# ---------------------------------------------------------------------------- training losses
def grads(model: nn.Module) -> dict[str, bool]:
    return {name: any(p.grad is not None and p.grad.abs().sum() > 0 for p in mod.parameters())
            for name, mod in [("encoder", model.encoder), ("decoder", model.decoder),
                              ("dm_in", model.dm_in), ("unet", model.dm.unet), ("fuse", model.dm.fuse)]}


def test_stage1_losses():
    torch.manual_seed(0)
    model = DMNet.from_preset("lite").train()
    ir, vis = pair(2, 16, 16)
    losses = model.stage1_losses(ir, vis, torch.Generator().manual_seed(0))
    assert set(losses) == {"total", "au", "rec_vi", "rec_ir", "dm"}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    cfg = model.config
    torch.testing.assert_close(losses["au"], losses["rec_vi"] + cfg.gamma1 * losses["rec_ir"])
    torch.testing.assert_close(losses["total"], losses["au"] + losses["dm"])
    losses["total"].backward()
    # stage I trains the autoencoder and the U-Net; the stage-II paths get no gradient
    assert grads(model) == {"encoder": True, "decoder": True, "dm_in": False, "unet": True, "fuse": False}
    # the reconstructions are the two separate passes of equation (11)
    with torch.no_grad():
        both = model.reconstruct(torch.cat((ir, vis)))
        torch.testing.assert_close(both[2:], model.reconstruct(vis), atol=1e-5, rtol=1e-5)


def test_stage2_losses():
    torch.manual_seed(0)
    model = DMNet.from_preset("lite").train()
    ir, vis = pair(2, 16, 16)
    losses = model.stage2_losses(ir, vis, torch.Generator().manual_seed(0))
    assert set(losses) == {"total", "int", "gd", "dm"}
    torch.testing.assert_close(losses["total"], losses["int"] + losses["dm"] + model.config.gamma2 * losses["gd"])
    losses["total"].backward()
    assert all(grads(model).values())


def test_generator_drives_training_randomness():
    torch.manual_seed(0)
    model = DMNet.from_preset("lite").train()
    ir, vis = pair(2, 16, 16)
    for fn in (model.stage1_losses, model.stage2_losses):
        a = fn(ir, vis, torch.Generator().manual_seed(11))
        b = fn(ir, vis, torch.Generator().manual_seed(11))
        c = fn(ir, vis, torch.Generator().manual_seed(12))
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert not torch.equal(a["dm"], c["dm"])


def test_stage2_latent_noise_is_per_sample_in_training():
    """stage2_losses draws fresh noise per sample; forward shares one seeded draw."""
    dm = DMNet.from_preset("lite").dm
    assert isinstance(dm, DiffusionModule)
    x0 = torch.zeros(2, 2, 16, 16)  # identical images: features differ only through the noise
    with torch.no_grad():
        per_sample = dm(x0, torch.Generator().manual_seed(0), shared_noise=False)
        shared = dm(x0, torch.Generator().manual_seed(0), shared_noise=True)
    assert not torch.allclose(per_sample[0], per_sample[1])
    assert torch.equal(shared[0], shared[1])


# ---------------------------------------------------------------------------- ablations (Table V)
def test_ablation_rows_match_table_v():
    assert list(ABLATIONS) == [f"AE{i}" for i in range(1, 15)]
    marks = {  # TST, DTB, DIB, DM, CSAB as printed in Table V
        "AE1": "01111", "AE2": "10000", "AE3": "10001", "AE4": "11000", "AE5": "11100", "AE6": "11001",
        "AE7": "11010", "AE8": "10110", "AE9": "10101", "AE10": "10011", "AE11": "10111", "AE12": "11011",
        "AE13": "11101", "AE14": "11110",
    }
    keys = ("two_stage", "use_dtb", "use_dib", "use_dm", "use_csab")
    for row, bits in marks.items():
        assert ABLATIONS[row] == {k: b == "1" for k, b in zip(keys, bits)}, row


@pytest.mark.parametrize("row", list(ABLATIONS))
def test_every_ablation_row_builds_and_trains(row):
    torch.manual_seed(0)
    model = DMNet.from_preset("lite", ablation=row)
    cfg = model.config
    assert isinstance(model.encoder.dtb, nn.Identity) != cfg.use_dtb
    assert isinstance(model.encoder.dib, nn.Identity) != cfg.use_dib
    assert isinstance(model.encoder.csab, nn.Identity) != cfg.use_csab
    assert isinstance(model.dm, DiffusionModule) == cfg.use_dm
    assert isinstance(model.dm, nn.Conv2d) != cfg.use_dm
    ir, vis = pair(1, 16, 16)
    for fn in (model.stage1_losses, model.stage2_losses):
        model.zero_grad()
        losses = fn(ir, vis, torch.Generator().manual_seed(0))
        assert torch.isfinite(losses["total"])
        assert (losses["dm"].item() == 0.0) != cfg.use_dm
        losses["total"].backward()
        assert any(p.grad is not None for p in model.decoder.parameters())
    with torch.no_grad():
        assert model.eval()(ir, vis).shape == (1, 1, 16, 16)


@pytest.mark.parametrize("op", ["sobel", "canny", "log", "roberts"])
def test_gradient_operator_switch(op):
    model = DMNet.from_preset("lite", grad_operator=op)
    ir, vis = pair(1, 16, 16)
    losses = model.stage2_losses(ir, vis, torch.Generator().manual_seed(0))
    losses["total"].backward()
    assert torch.isfinite(losses["gd"]) and losses["gd"] > 0


@pytest.mark.parametrize("scale", [2, 4])
def test_dm_scale_runs_the_diffusion_module_on_the_pooled_input(scale):
    """dm_scale k: Phi^L has the input's size and depends on the input only through its k x k means
    (the U-Net sees the average-pooled image); L_dm is finite and trains the U-Net."""
    torch.manual_seed(0)
    dm = DiffusionModule(build_config("lite", unet_mults=(1, 2), unet_attn_levels=(1,), dm_scale=scale,
                                      diffusion_steps=200, latent_timesteps=(5, 50))).eval()
    h, w = 6 * scale + 1, 5 * scale + 3  # not multiples: padded, then cropped back
    x = torch.rand(1, 2, h, w) * 2 - 1
    blocks = x[..., : h - h % scale, : w - w % scale].reshape(1, 2, h // scale, scale, w // scale, scale)
    # a different image with the same k x k block means: swap pixels inside every block
    shuffled = blocks.flip(3).flip(5).reshape(1, 2, h - h % scale, w - w % scale)
    y = x.clone()
    y[..., : h - h % scale, : w - w % scale] = shuffled
    assert not torch.equal(x, y)
    with torch.no_grad():
        fx = dm(x, generator=torch.Generator().manual_seed(1), shared_noise=True)
        fy = dm(y, generator=torch.Generator().manual_seed(1), shared_noise=True)
    assert fx.shape == (1, dm.fuse.out_channels, h, w)
    torch.testing.assert_close(fx, fy, atol=1e-5, rtol=0)
    loss = dm.train().loss(x, generator=torch.Generator().manual_seed(2))
    loss.backward()
    assert torch.isfinite(loss) and dm.unet.init_conv.weight.grad is not None


def test_dm_scale_default_and_old_configs_keep_full_resolution():
    assert DMNetConfig().dm_scale == 1 and build_config("lite").dm_scale == 1
    old = build_config("lite").to_dict()
    del old["dm_scale"]  # a checkpoint written before the field existed
    assert DMNetConfig.from_dict(old).dm_scale == 1
    with pytest.raises(DMNetError, match="dm_scale"):
        build_config("lite", dm_scale=3)


def test_lower_precision_of_a_table_v_row_without_the_diffusion_module_lowers_nothing():
    """`parts` None lowers the parts this model has: a row without the DM has no U-Net (so the dmnet
    fuser's `auto` on an AMX CPU works for such checkpoints too); a named part must exist."""
    model = DMNet.from_preset("lite", use_dm=False).eval()
    assert model.lower_precision() is model
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    with pytest.raises(DMNetError, match="no part 'dm.unet'"):
        model.lower_precision(parts=("dm.unet",))
