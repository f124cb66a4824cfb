"""Fusion metrics: the golden values of all seven TNO fusions, independent references on synthetic
images (scikit-image, pytorch_msssim, numpy one-liners, transcriptions of the README definitions with
scipy), the filters, the batched path, the colour/16-bit input convention and bad inputs."""

from __future__ import annotations

import json
import math
import warnings

import cv2
import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from fusedet.errors import FusedetError, InputError
from fusedet.eval import fusion_metrics as fm
from fusedet.eval import metrics_filters as mf
from fusedet.eval.fusion_metrics import (
    METRIC_NAMES,
    MetricWarning,
    PairScorer,
    compute_metrics,
    compute_metrics_batch,
    parse_metric_names,
    to_gray255,
)
from fusedet.eval.metrics_folders import load_gray, score_folders

# the 96 x 120 synthetic images are too small for MS-SSIM: its expected warning is checked where it matters
pytestmark = pytest.mark.filterwarnings("ignore:.*MS-SSIM is NaN:fusedet.eval.fusion_metrics.MetricWarning")

FUSIONS = {
    "mean": ("golden_fused/tno_mean", "golden_fused/tno_mean.json"),
    "max": ("golden_fused/tno_max", "golden_fused/tno_max.json"),
    **{m: (f"peers_tno/{m}", f"peers_tno/golden_{m}.json") for m in ("densefuse", "didfuse", "ifcnn", "seafusion", "tardal")},
}


def _scene(h: int, w: int, seed: int) -> np.ndarray:
    """Integer gray image 0..255 with texture, noise, a saturated flat block and a dark bar."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = 128 + 60 * np.sin(x / (5.0 + seed)) * np.cos(y / 9.0) + rng.normal(0, 10, (h, w))
    img[: h // 4, : w // 3] = 255
    img[h // 2 :, w // 2 : w // 2 + 5] = 0
    return np.clip(np.round(img), 0, 255).astype(np.float32)


@pytest.fixture(scope="module")
def triplet():
    a, b = _scene(96, 120, 1), _scene(96, 120, 2)
    return a, b, np.round((a + b) / 2).astype(np.float32)


def _rel(x: float, y: float) -> float:
    return abs(x - y) / max(abs(y), 1e-12)


# --- golden values ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def golden_run(shared_data):
    run = score_folders((shared_data / "tno" / "ir", shared_data / "tno" / "vi"), {m: shared_data / d for m, (d, _) in FUSIONS.items()}, workers=2)
    result = run.result
    golden = {m: next(iter(json.loads((shared_data / j).read_text()).values())) for m, (_, j) in FUSIONS.items()}
    return result, golden


def test_golden_values_of_seven_fusions_per_image_and_metric(golden_run):
    result, golden = golden_run
    checked, bad = 0, []
    for method, ref in golden.items():
        assert set(ref["per_image"]) == set(result.per_image[method]) and len(ref["per_image"]) == 25
        for stem, values in ref["per_image"].items():
            assert list(result.per_image[method][stem]) == list(METRIC_NAMES)
            for metric, expected in values.items():
                checked += 1
                err = _rel(result.per_image[method][stem][metric], expected)
                if err > 1e-3:
                    bad.append((method, stem, metric, result.per_image[method][stem][metric], expected))
    assert checked == 7 * 25 * 11
    assert not bad, bad[:10]


def test_golden_means_and_json_shape(golden_run):
    result, golden = golden_run
    doc = result.to_json()
    for method, ref in golden.items():
        assert list(doc[method]) == ["convention", "mean", "per_image"] and doc[method]["convention"] == "cddfuse"
        assert list(doc[method]["mean"]) == list(METRIC_NAMES)
        for metric, expected in ref["mean"].items():
            assert _rel(doc[method]["mean"][metric], expected) < 1e-3, (method, metric)


def _reference_read(path) -> np.ndarray:
    """How the reference reads an image: round(cv2.cvtColor(cv2.imread(p).astype(float32), BGR2GRAY))."""
    return np.round(cv2.cvtColor(cv2.imread(str(path)).astype(np.float32), cv2.COLOR_BGR2GRAY))


def test_colour_files_read_as_the_reference_reads_them(shared_data, tmp_path):
    paths = sorted((shared_data / "peers_tno" / "seafusion").glob("*.png")) + sorted((shared_data / "m3fd_samples" / "vi").glob("*.png"))
    vis = cv2.imread(str(shared_data / "m3fd_samples" / "vi" / "00000.png"))  # a real colour visible image
    cv2.imwrite(str(tmp_path / "vis.jpg"), vis[:301, :403], [cv2.IMWRITE_JPEG_QUALITY, 85])
    cv2.imwrite(str(tmp_path / "vis.bmp"), vis[:301, :403])
    for path in [*paths, tmp_path / "vis.jpg", tmp_path / "vis.bmp"]:
        np.testing.assert_array_equal(load_gray(path), _reference_read(path), err_msg=str(path))
    rgb = np.random.default_rng(0).integers(0, 256, (50, 60, 3)).astype(np.float32)
    expected = np.round(cv2.cvtColor(np.ascontiguousarray(rgb[:, :, ::-1]), cv2.COLOR_BGR2GRAY))
    np.testing.assert_array_equal(to_gray255(rgb).numpy(), expected)
    np.testing.assert_array_equal(to_gray255(torch.from_numpy(rgb)).numpy(), expected)


def test_16bit_file_is_rounded_to_8bit_levels(tmp_path):
    data = np.array([[0, 65535, 257 * 100, 257 * 100 + 128]] * 3, dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "a.png"), data)
    np.testing.assert_array_equal(load_gray(tmp_path / "a.png")[0], [0, 255, 100, 100])


# --- independent references on synthetic images ------------------------------------------------------


def test_fused_only_metrics_against_numpy(triplet):
    _, _, f = triplet
    got = compute_metrics(f, f, f, metrics="EN,SD,SF,AG")
    p = np.bincount(f.astype(int).ravel(), minlength=256) / f.size
    assert got["EN"] == pytest.approx(-(p[p > 0] * np.log2(p[p > 0])).sum(), rel=1e-12)
    assert got["SD"] == pytest.approx(np.std(f.astype(np.float64)), rel=1e-12)
    fd = f.astype(np.float64)
    sf = np.sqrt(np.mean(np.diff(fd, axis=1) ** 2) + np.mean(np.diff(fd, axis=0) ** 2))
    assert got["SF"] == pytest.approx(sf, rel=1e-9)
    gy, gx = np.gradient(fd)
    assert got["AG"] == pytest.approx(np.mean(np.sqrt((gx**2 + gy**2) / 2)), rel=1e-6)


def test_cc_scd_mi_against_numpy(triplet):
    a, b, f = (x.astype(np.float64) for x in triplet)
    got = compute_metrics(a, b, f, metrics=["CC", "SCD", "MI"])
    r = lambda x, y: np.corrcoef(x.ravel(), y.ravel())[0, 1]  # noqa: E731
    assert got["CC"] == pytest.approx((r(a, f) + r(b, f)) / 2, rel=1e-12)
    assert got["SCD"] == pytest.approx(r(a, f - b) + r(b, f - a), rel=1e-12)

    def mi(x, y):
        joint = np.histogram2d(x.ravel(), y.ravel(), bins=256, range=[[0, 256], [0, 256]])[0] / x.size
        px, py = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
        nz = joint > 0
        return (joint[nz] * np.log(joint[nz] / (px @ py)[nz])).sum()

    assert got["MI"] == pytest.approx(mi(f, a) + mi(f, b), rel=1e-10)


def test_mi_of_an_image_with_itself_is_its_entropy_in_nats(triplet):
    a = triplet[0]
    en_bits = compute_metrics(a, a, a, metrics="EN")["EN"]
    assert compute_metrics(a, a, a, metrics="MI")["MI"] == pytest.approx(2 * en_bits * math.log(2), rel=1e-12)


@pytest.mark.parametrize("shape", [(96, 120), (67, 45)])
def test_ssim_matches_scikit_image(shape):
    from skimage.metrics import structural_similarity

    a, b = _scene(*shape, 3), _scene(*shape, 4)
    f = np.maximum(a, b)
    expected = sum(structural_similarity(f.astype(np.float64), s.astype(np.float64), data_range=255) for s in (a, b))
    assert compute_metrics(a, b, f, metrics="SSIM")["SSIM"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("shape", [(171, 199), (161, 240)])
def test_ms_ssim_matches_pytorch_msssim(shape):
    from pytorch_msssim import ms_ssim

    a, b = _scene(*shape, 5), _scene(*shape, 6)
    f = np.round(0.3 * a + 0.7 * b).astype(np.float32)
    t = lambda x: torch.from_numpy(x).double()[None, None]  # noqa: E731
    expected = sum(float(ms_ssim(t(f), t(s), data_range=255)) for s in (a, b))
    assert compute_metrics(a, b, f, metrics="MS-SSIM")["MS-SSIM"] == pytest.approx(expected, rel=1e-5)


def _vif_spec(ref: np.ndarray, dist: np.ndarray) -> float:
    """VIFp as golden_fused/README.md defines it, written directly with scipy (float64)."""
    ref, dist = ref.astype(np.float64), dist.astype(np.float64)
    eps, num, den = 1e-10, 0.0, 0.0
    for s in range(1, 5):
        n = 2 ** (5 - s) + 1
        half = (n - 1) / 2
        y, x = np.ogrid[-half : half + 1, -half : half + 1]
        h = np.exp(-(x * x + y * y) / (2 * (n / 5) ** 2))
        h[h < np.finfo(float).eps * h.max()] = 0
        win = h / h.sum()
        if s > 1:
            ref, dist = convolve2d(ref, win, "valid")[::2, ::2], convolve2d(dist, win, "valid")[::2, ::2]
        mu1, mu2 = convolve2d(ref, win, "valid"), convolve2d(dist, win, "valid")
        s1 = np.maximum(convolve2d(ref * ref, win, "valid") - mu1 * mu1, 0)
        s2 = np.maximum(convolve2d(dist * dist, win, "valid") - mu2 * mu2, 0)
        s12 = convolve2d(ref * dist, win, "valid") - mu1 * mu2
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        low1 = s1 < eps
        g[low1], sv[low1], s1[low1] = 0, s2[low1], 0
        low2 = s2 < eps
        g[low2], sv[low2] = 0, 0
        neg = g < 0
        sv[neg], g[neg] = s2[neg], 0
        sv[sv <= eps] = eps
        num += np.log10(1 + g * g * s1 / (sv + 2)).sum()
        den += np.log10(1 + s1 / 2).sum()
    return 1.0 if den == 0 else num / den


@pytest.mark.parametrize("shape", [(96, 120), (83, 101)])
@pytest.mark.parametrize("dtype", ["fast", "float64"])
def test_vif_matches_the_readme_definition(monkeypatch, shape, dtype):
    """The CPU path (float32 scale-1 statistics of the fused image) within 2e-5, and the float64 path (as
    on CUDA) to 1e-8, of the definition written with scipy; flat regions and a constant image included."""
    if dtype == "float64":
        monkeypatch.setattr(fm, "_fast_dtype", lambda device: torch.float64)
    a, b = _scene(*shape, 1), _scene(*shape, 2)
    tol = 1e-8 if dtype == "float64" else 2e-5
    for f in (np.round((a + b) / 2), np.maximum(a, b), np.round(0.9 * a + 0.1 * b), np.full_like(a, 77)):
        f = f.astype(np.float32)
        expected = _vif_spec(a, f) + _vif_spec(b, f)
        assert compute_metrics(a, b, f, metrics="VIF")["VIF"] == pytest.approx(expected, rel=tol, abs=1e-9)


def test_vif_of_an_image_with_itself_is_one_per_source_and_flat_sources_count_one(triplet):
    a, b, _ = triplet
    assert compute_metrics(a, a, a, metrics="VIF")["VIF"] == pytest.approx(2.0, rel=2e-5)  # float32 statistics
    flat = np.full_like(a, 40)
    # a flat source has no information: 0/0, counted as 1 like the reference
    assert compute_metrics(flat, b, b, metrics="VIF")["VIF"] == pytest.approx(1.0 + 1.0, rel=2e-5)


def _qabf_spec(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Qabf as golden_fused/README.md defines it, written directly with scipy (float64)."""

    def edges(x):
        x = x.astype(np.float64)
        gx = convolve2d(x, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], "same")
        gy = convolve2d(x, [[1, 2, 1], [0, 0, 0], [-1, -2, -1]], "same")
        angle = np.full_like(x, np.pi / 2)
        angle[gx != 0] = np.arctan(gy[gx != 0] / gx[gx != 0])
        return np.sqrt(gx * gx + gy * gy), angle

    g_f, a_f = edges(f)

    def q(g_s, a_s):
        with np.errstate(divide="ignore", invalid="ignore"):
            big = np.select([g_s > g_f, g_s < g_f], [g_f / g_s, g_s / g_f], g_f)
        aa = 1 - np.abs(a_s - a_f) / (np.pi / 2)
        return 0.9994 / (1 + np.exp(-15 * (big - 0.5))) * 0.9879 / (1 + np.exp(-22 * (aa - 0.8)))

    (g_a, a_a), (g_b, a_b) = edges(a), edges(b)
    return float((q(g_a, a_a) * g_a + q(g_b, a_b) * g_b).sum() / (g_a + g_b).sum())


def test_qabf_matches_the_readme_definition(triplet):
    a, b, f = triplet
    for fused in (f, np.maximum(a, b), a):
        assert compute_metrics(a, b, fused, metrics="Qabf")["Qabf"] == pytest.approx(_qabf_spec(a, b, fused), rel=2e-6)


# --- filters ------------------------------------------------------------------------------------------


def test_matlab_gaussian_taps_are_fspecial():
    for n in (17, 9, 5, 3):
        half = (n - 1) / 2
        y, x = np.ogrid[-half : half + 1, -half : half + 1]
        h = np.exp(-(x * x + y * y) / (2 * (n / 5) ** 2))
        h[h < np.finfo(float).eps * h.max()] = 0
        taps = np.array(mf.matlab_gaussian_taps(n, n / 5))
        np.testing.assert_allclose(np.outer(taps, taps), h / h.sum(), rtol=1e-13)


@pytest.mark.parametrize("taps", [mf.matlab_gaussian_taps(17, 3.4), mf.msssim_gaussian_taps(11, 1.5), (0.2, 0.5, 0.3)])
@pytest.mark.parametrize("shape", [(2, 83, 150), (1, 30, 17)])
def test_separable_filters_match_scipy_on_every_backend(monkeypatch, taps, shape):
    """The CPU's compiled kernel and OpenCV route (float64 and float32), and the banded GEMMs of CUDA."""
    x = torch.from_numpy(np.random.default_rng(1).integers(0, 256, shape).astype(np.float64))
    window = np.outer(taps, taps)
    for stride in (1, 2):
        expected = np.stack([convolve2d(m, window[::-1, ::-1], "valid")[::stride, ::stride] for m in x.numpy()])
        for compiled in (True, False):
            monkeypatch.setattr(mf, "COMPILED", compiled)
            cpu = mf.filter2d_valid(x, taps, stride)
            np.testing.assert_allclose(cpu.numpy(), expected, rtol=1e-12, atol=1e-9)
            single = mf.filter2d_valid(x.to(torch.float32), taps, stride)
            assert single.dtype == torch.float32
            np.testing.assert_allclose(single.numpy(), expected, rtol=2e-6, atol=1e-3)
        gemm = mf.correlate_rows(mf.correlate_last(x, taps, stride), taps, stride)  # the CUDA path
        np.testing.assert_allclose(gemm.numpy(), expected, rtol=1e-12, atol=1e-9)


def test_box_sums_are_exact_integers_and_sobel_is_scipy_same():
    x = np.random.default_rng(2).integers(0, 65026, (50, 61)).astype(np.int32)
    expected = convolve2d(x.astype(np.int64), np.ones((7, 7), dtype=np.int64), "valid")
    got = mf.box_sums_valid(torch.from_numpy(x), 7)
    assert got.dtype == torch.int32
    np.testing.assert_array_equal(got.numpy(), expected)
    # float32 (SSIM's centred maps): (x - 128)^2 and products up to 2**14, window sums below 2**24: exact
    centred = np.random.default_rng(3).integers(-16384, 16385, (2, 50, 61)).astype(np.float32)
    got = mf.box_sums_valid(torch.from_numpy(centred), 7)
    assert got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy(), np.stack([convolve2d(m.astype(np.int64), np.ones((7, 7), np.int64), "valid") for m in centred]))
    img = torch.from_numpy(_scene(40, 50, 0))
    gx, gy = mf.sobel_same(img)
    np.testing.assert_array_equal(gx.numpy(), convolve2d(img.numpy(), [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], "same"))
    np.testing.assert_array_equal(gy.numpy(), convolve2d(img.numpy(), [[1, 2, 1], [0, 0, 0], [-1, -2, -1]], "same"))


def test_sum_log1p_equals_the_sum_of_log1p_and_leaves_its_input_alone():
    rng = np.random.default_rng(4)
    for shape in ((2, 1, 50, 61), (3, 16, 16), (2, 1, 7, 9)):
        for dtype, rtol in ((torch.float32, 3e-7), (torch.float64, 1e-14)):  # float32: log1p within 1 ulp per value
            x = torch.from_numpy(rng.exponential(3.0, shape)).to(dtype)
            x.view(-1)[:5] = torch.tensor([0.0, 1e-12, 1e-6, 8192.0, 0.5], dtype=dtype)
            before = x.clone()
            got = fm._sum_log1p(x)
            expected = np.log1p(x.double().numpy()).sum(axis=(-2, -1))
            assert got.dtype == torch.float64 and got.shape == shape[:-2] and torch.equal(x, before)
            np.testing.assert_allclose(got.numpy(), expected, rtol=rtol)
    huge = torch.full((2, 4, 4), 1e30, dtype=torch.float64)
    np.testing.assert_allclose(fm._sum_log1p(huge).numpy(), np.log1p(huge.numpy()).sum(axis=(-2, -1)), rtol=1e-15)


def test_msssim_pooling_is_avg_pool2d_with_padding_of_odd_sides():
    import torch.nn.functional as F

    rng = np.random.default_rng(5)
    for h, w in ((64, 80), (63, 81), (64, 81), (63, 80), (5, 7)):
        x = torch.from_numpy(rng.integers(0, 256, (2, h, w)).astype(np.float32))
        for _ in range(4):  # levels 1..4 of MS-SSIM: every value a multiple of 4**-4, exact
            expected = F.avg_pool2d(x, kernel_size=2, padding=[x.shape[-2] % 2, x.shape[-1] % 2])
            x = fm._MSSSIM._pool(x)
            assert torch.equal(x, expected), (h, w)
            if min(x.shape[-2:]) < 2:
                break


def test_gemm_backend_gives_the_same_metrics(monkeypatch, triplet):
    """The non-CPU filter path (banded GEMMs, as on CUDA) run on CPU tensors through the whole metric set."""
    a, b, _ = (np.pad(x, ((40, 40), (40, 40)), mode="reflect") for x in triplet)  # 176 x 200: MS-SSIM defined
    f = np.round(0.4 * a + 0.6 * b).astype(np.float32)
    expected = compute_metrics(a, b, f)

    def gemm_filter(x, taps, stride=1):
        return mf.correlate_rows(mf.correlate_last(x, taps, stride), taps, stride)

    def gemm_box(x, size):
        return gemm_filter(x.to(torch.float64), (1.0,) * size).round_().to(x.dtype)

    monkeypatch.setattr(fm, "filter2d_valid", gemm_filter)
    monkeypatch.setattr(fm, "box_sums_valid", gemm_box)
    monkeypatch.setattr(fm, "KERNELS", False)  # the compiled kernels would bypass the filters
    got = compute_metrics(a, b, f)
    for m in METRIC_NAMES:  # float32 sums in another order: VIF's and MS-SSIM's float32 statistics differ most
        assert got[m] == pytest.approx(expected[m], rel=2e-5 if m in ("VIF", "MS-SSIM") else 1e-6), m


# --- API: batching, inputs, errors --------------------------------------------------------------------


def test_batch_equals_single_and_torch_equals_numpy(triplet):
    a, b, f = triplet
    fused = [f, np.maximum(a, b), np.minimum(a, b)]
    batch = compute_metrics_batch(a, b, fused)
    scorer = fm.CddfusePairScorer(torch.from_numpy(a), torch.from_numpy(b), batch=2)  # two chunks
    chunked = scorer.score(torch.from_numpy(np.stack(fused)))
    for i, img in enumerate(fused):
        single = compute_metrics(a, b, img)
        assert list(single) == list(METRIC_NAMES)
        for m in METRIC_NAMES:
            assert batch[i][m] == pytest.approx(single[m], rel=1e-12, nan_ok=True)
            assert chunked[i][m] == pytest.approx(single[m], rel=1e-12, nan_ok=True)
    assert fm.vif(a, b, f) == pytest.approx(batch[0]["VIF"], rel=1e-12)
    assert fm.entropy(f) == pytest.approx(batch[0]["EN"], rel=1e-12)


def test_ms_ssim_is_nan_with_a_warning_on_small_images(triplet):
    a, b, f = triplet  # 96 x 120 < 161
    with pytest.warns(MetricWarning, match=r"small.*MS-SSIM|MS-SSIM.*161"):
        scorer = PairScorer(a, b, name="stem42")
    assert "stem42" in scorer.notes[0]
    values = scorer.score([f])[0]
    assert math.isnan(values["MS-SSIM"])
    assert all(not math.isnan(values[m]) for m in METRIC_NAMES if m != "MS-SSIM")


def test_degenerate_images_give_the_reference_values(triplet):
    a, b, _ = triplet
    flat = np.full_like(a, 100)
    values = compute_metrics(a, b, flat, metrics="EN,SD,SF,AG,CC,VIF")
    assert values["EN"] == 0 and values["SD"] == 0 and values["SF"] == 0 and values["AG"] == 0
    assert math.isnan(values["CC"])  # correlation with a constant image is undefined (reference: nan)
    assert values["VIF"] == pytest.approx(0.0, abs=1e-9)


def test_bad_inputs_raise_clear_errors(triplet):
    a, b, f = triplet
    with pytest.raises(InputError, match="infrared is 120x96 but visible is 119x96"):
        compute_metrics(a, b[:, :-1], f)
    with pytest.raises(InputError, match="fused image #1 is 119x96"):
        compute_metrics(a, b, f[:, :-1])
    with pytest.raises(InputError, match="too small for VIF"):
        compute_metrics(a[:30], b[:30], f[:30])
    assert compute_metrics(a[:30], b[:30], f[:30], metrics="EN,SSIM")["EN"] > 0
    with pytest.raises(InputError, match="values span .*0..255"):
        compute_metrics(a * 2, b, f)
    with pytest.raises(InputError, match="NaN"):
        compute_metrics(a, b, np.where(f > 100, np.nan, f))
    with pytest.raises(InputError, match="H x W or H x W x 3"):
        compute_metrics(a, b, np.stack([f, f], axis=-1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compute_metrics(a, b, f / 255.0, metrics="EN")
    assert any("0..1" in str(w.message) for w in caught)


def test_metric_names_are_parsed_case_insensitively():
    assert parse_metric_names("ms-ssim, qabf,EN") == ("EN", "Qabf", "MS-SSIM")
    assert parse_metric_names(None) == METRIC_NAMES
    with pytest.raises(InputError, match="unknown metric name.*PSNR.*choose from"):
        parse_metric_names("EN,PSNR")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_requested_without_cuda(triplet):
    with pytest.raises(FusedetError, match="no CUDA GPU"):
        compute_metrics(*triplet, device="cuda")
