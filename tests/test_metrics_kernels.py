"""The compiled CPU kernels of the cddfuse metrics (fusedet.eval.metrics_kernels) against the torch/OpenCV
path they replace on the CPU (still the CUDA path), on real TNO fusions and on synthetic scenes, and their
building blocks against direct formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from fusedet.eval import fusion_metrics as fm
from fusedet.eval import metrics_filters as mf
from fusedet.eval import metrics_kernels as mk
from fusedet.eval.fusion_metrics import METRIC_NAMES, PairScorer
from fusedet.eval.metrics_io import cddfuse_gray, read_levels

pytestmark = pytest.mark.skipif(not mk.AVAILABLE, reason="numba is not importable")

# float32 sums in another order (VIF's scale-1 and MS-SSIM's statistics); SSIM's formula, SF's and AG's sums
# are float64 in the kernels (float32 on the torch path); Qabf's edge strength is an IEEE sqrt in the kernel
# and OpenCV's magnitude (within 1 ulp) on the torch path, and the reference's "gS == gF" case turns such ulps
# into other terms; the other metrics do not use the kernels
TOLERANCE = {"VIF": 2e-5, "MS-SSIM": 2e-5, "Qabf": 1e-5, "SSIM": 2e-5, "SF": 1e-7, "AG": 1e-6}


def _both_paths(monkeypatch, ir, vis, fused):
    kernels = PairScorer(ir, vis, device="cpu").score(fused)
    monkeypatch.setattr(fm, "KERNELS", False)
    plain = PairScorer(ir, vis, device="cpu").score(fused)
    monkeypatch.setattr(fm, "KERNELS", True)
    return kernels, plain


def _assert_close(kernels, plain, what):
    for got, expected in zip(kernels, plain, strict=True):
        for m in METRIC_NAMES:
            if math.isnan(expected[m]):  # e.g. CC of a constant image
                assert math.isnan(got[m]), (what, m)
                continue
            assert got[m] == pytest.approx(expected[m], rel=TOLERANCE.get(m, 1e-12), abs=1e-12), (what, m)


def test_kernels_equal_the_torch_path_on_tno_fusions(monkeypatch, shared_data):
    methods = [shared_data / "golden_fused" / "tno_max", shared_data / "peers_tno" / "tardal", shared_data / "peers_tno" / "densefuse"]
    for stem in ("01", "07", "19"):
        ir, vis = (cddfuse_gray(read_levels(shared_data / "tno" / side / f"{stem}.png").levels) for side in ("ir", "vi"))
        fused = [cddfuse_gray(read_levels(next(folder.glob(f"{stem}.*"))).levels) for folder in methods]
        _assert_close(*_both_paths(monkeypatch, ir, vis, fused), stem)


def _scene(h, w, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = 128 + 70 * np.sin(x / (4.0 + seed)) * np.cos(y / 7.0) + rng.normal(0, 12, (h, w))
    img[: h // 3, : w // 3] = 255  # saturated: constant windows in every source and fused image
    img[h // 2 :, w // 2 : w // 2 + 25] = 3
    return np.clip(np.round(img), 0, 255).astype(np.float32)


@pytest.mark.parametrize("shape", [(170, 201), (64, 90)])
def test_kernels_equal_the_torch_path_with_flat_regions_and_odd_sizes(monkeypatch, shape):
    a, b = _scene(*shape, 1), _scene(*shape, 2)
    fused = [np.round((a + b) / 2), np.maximum(a, b), np.full_like(a, 77), a]
    kernels, plain = _both_paths(monkeypatch, a, b, [f.astype(np.float32) for f in fused])
    assert all(math.isnan(row["MS-SSIM"]) == (min(shape) < fm.MSSSIM_MIN_SIDE) for row in kernels)
    _assert_close(kernels, plain, shape)


@pytest.mark.parametrize("k,stride", [(17, 1), (9, 2), (7, 1), (3, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_window_stats_and_strided_filter_against_convolve2d(k, stride, dtype):
    rng = np.random.default_rng(k)
    c, a, b = (rng.integers(-128, 128, (41, 57)).astype(dtype) for _ in range(3))
    taps = tuple(rng.random(k))
    window = np.outer(taps, taps)[::-1, ::-1]
    got = mk.filter_valid(np.stack([c, a]), taps, stride)
    expected = np.stack([convolve2d(m.astype(np.float64), window, "valid")[::stride, ::stride] for m in (c, a)])
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=1e-9 if dtype == np.float64 else 2e-2)
    stats = mk.window_stats(c, a, b, taps)
    expected = np.stack([convolve2d(m.astype(np.float64), window, "valid") for m in (c, c * c, a * c, b * c)])
    np.testing.assert_allclose(stats, expected, rtol=rtol, atol=1e-9 if dtype == np.float64 else 2.0)


@pytest.mark.parametrize("size", [7, 3])
def test_box_sums_of_integers_are_exact_in_float32(size):
    c, a, b = (np.random.default_rng(s).integers(-128, 128, (30, 44)).astype(np.float32) for s in range(3))
    ones = np.ones((size, size), np.int64)
    expected = np.stack([convolve2d(m.astype(np.int64), ones, "valid") for m in (c, c * c, a * c, b * c)])
    np.testing.assert_array_equal(mk.box_stats(c, a, b, size), expected)  # running sums
    np.testing.assert_array_equal(mk.window_stats(c, a, b, (1.0,) * size), expected)  # the filter with ones


def test_constant_windows_have_float32_variance_far_below_the_flat_threshold():
    """FLAT_BELOW rests on this: a constant 17 x 17 window at any level has E[F^2] - E[F]^2 under 0.1 in
    float32, so a fused image with no window below the threshold has no constant window."""
    taps = fm._VIF.TAPS[0]
    worst = 0.0
    for level in (-128.0, -127.0, -77.0, -1.0, 1.0, 99.0, 127.0):
        c = np.full((20, 23), level, np.float32)
        stats = mk.window_stats(c, c, c, taps)
        worst = max(worst, float(np.abs(stats[1] - stats[0] * stats[0]).max()))
    assert worst < 0.1 < fm._VIF.FLAT_BELOW
    # and the kernel counts such windows (twice: once per source)
    planes = [np.ones((2, *stats.shape[1:]), np.float32)] * 3
    _, suspects = mk.vif_log_sums(stats, *planes, np.zeros((0, 0), np.bool_), np.float32(2), np.float32(1e-10), np.float32(0.5))
    assert suspects == 2 * stats.shape[1] * stats.shape[2]


def test_log_sums_by_products_equal_the_sum_of_logs_and_survive_overflow():
    r = 1.0 + np.random.default_rng(0).random(1000) ** 4 * 8000.0
    assert mk._log_sum(r, r.size) == pytest.approx(np.log(r).sum(), rel=1e-13)
    huge = np.full(100, 1e30)  # 32 such factors overflow float64: the block falls back to one log each
    assert mk._log_sum(huge, huge.size) == pytest.approx(100 * math.log(1e30), rel=1e-13)


def test_qabf_edges_are_the_sobel_responses():
    f = np.random.default_rng(4).integers(0, 256, (33, 47)).astype(np.float32)
    f[10:20, 10:20] = 50  # gx == 0 inside
    strength, slope = np.empty_like(f), np.empty_like(f)
    mk.qabf_edges(f, strength, slope)
    gx, gy = (t.numpy() for t in mf.sobel_same(torch.from_numpy(f)))
    np.testing.assert_array_equal(strength, np.sqrt(gx * gx + gy * gy))
    angle = torch.from_numpy(slope).atan_().numpy()
    expected = np.where(gx == 0, np.float32(math.pi / 2), np.arctan(gy / np.where(gx == 0, 1, gx)).astype(np.float32))
    np.testing.assert_allclose(angle, expected, rtol=0, atol=2e-7)


def test_gray_plane_splits_gray_stored_as_rgb_and_refuses_colour():
    rng = np.random.default_rng(5)
    gray = rng.integers(3, 250, (20, 31)).astype(np.uint8)
    for channels in (3, 4):
        image = np.repeat(gray[:, :, None], channels, axis=2)
        if channels == 4:
            image[:, :, 3] = 255  # alpha is not looked at
        plane = np.empty_like(gray)
        assert mk.gray_plane(image, plane) == (True, gray.min(), gray.max())
        np.testing.assert_array_equal(plane, gray)
        image[7, 30, 1] += 1  # one pixel of colour
        assert mk.gray_plane(image, np.empty_like(gray))[0] is False


def test_the_warm_up_loads_every_kernel_a_real_pair_uses(shared_data):
    """metrics_folders._load_kernels scores a small synthetic pair so that the kernels are read from numba's
    cache before the first pair needs them: a real pair must need no other compiled variant."""
    from fusedet.eval import metrics_folders

    def variants():
        return {name: len(fn.signatures) for name in dir(mk) if hasattr(fn := getattr(mk, name), "signatures")}

    metrics_folders._load_kernels()
    before = variants()
    ir, vis = (cddfuse_gray(read_levels(shared_data / "tno" / side / "05.png").levels) for side in ("ir", "vi"))
    fused = cddfuse_gray(read_levels(shared_data / "peers_tno" / "ifcnn" / "05.png").levels)
    PairScorer(ir, vis, device="cpu").score([fused])
    after = variants()
    del before["gray_plane"], after["gray_plane"]  # reading the files (above) uses it, the scoring does not
    assert after == before
