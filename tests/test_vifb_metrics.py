"""The vifb convention: VIFB's 13 MATLAB metrics against Octave runs of VIFB's unchanged .m files (TNO from
shared/data/golden_vifb; MSRS colour pairs and small synthetic edge cases from tests/data/vifb, made as
its README says), the MATLAB functions against independent definitions, the GEMM (CUDA) filter path, and
the reading rules (gray stored as RGB, colour per channel, rgb2gray of the visible image)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.ndimage import correlate
from scipy.signal import correlate2d
from typer.testing import CliRunner

from fusedet.cli import app
from fusedet.errors import InputError
from fusedet.eval import matlab_compat as mc
from fusedet.eval import metrics_filters as mf
from fusedet.eval import vifb_metrics as vm
from fusedet.eval.fusion_metrics import PairScorer, compute_metrics
from fusedet.eval.metrics_folders import score_folders

DATA = Path(__file__).resolve().parent / "data" / "vifb"
TOL = 1e-3  # the agreement required per image and metric (the values agree to about 1e-9)


def _load_make_references():
    spec = importlib.util.spec_from_file_location("make_references", DATA / "make_references.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compare(ours: dict[str, dict[str, float]], reference: dict[str, dict[str, float | None]]) -> int:
    """Every reference value within TOL (relative); a null reference (NaN or Inf in Octave) is NaN here."""
    checked, bad = 0, []
    for stem, values in reference.items():
        assert list(ours[stem]) == list(vm.VIFB_METRICS)
        for metric, expected in values.items():
            got = ours[stem][metric]
            checked += 1
            if expected is None:
                if not math.isnan(got):
                    bad.append((stem, metric, got, expected))
            elif abs(got - expected) > TOL * max(abs(expected), 1e-9):
                bad.append((stem, metric, got, expected))
    assert not bad, bad[:10]
    return checked


def _links(tmp: Path, src: Path, stems, name: str) -> Path:
    folder = tmp / name
    folder.mkdir()
    for stem in stems:
        path = next(src.glob(f"{stem}.*"))
        os.symlink(path, folder / path.name)
    return folder


# --- agreement with Octave runs of VIFB's code ----------------------------------------------------------


def test_tno_golden_values_of_three_fusions(shared_data, tmp_path):
    """Gray pairs: pixel-mean, pixel-max and SeAFusion (a colour file of a gray scene: rgb2gray of it)."""
    sources = {"mean": "golden_fused/tno_mean", "max": "golden_fused/tno_max", "seafusion": "peers_tno/seafusion"}
    golden = {m: json.loads((shared_data / "golden_vifb" / f"golden_{m}.json").read_text())[m] for m in sources}
    stems = sorted(golden["max"]["per_image"])
    ir, vi = _links(tmp_path, shared_data / "tno" / "ir", stems, "ir"), _links(tmp_path, shared_data / "tno" / "vi", stems, "vi")
    fused = {m: _links(tmp_path, shared_data / d, stems, m) for m, d in sources.items()}
    run = score_folders((ir, vi), fused, convention="vifb", workers=2)
    result = run.result
    assert result.convention == "vifb" and result.metrics == vm.VIFB_METRICS
    checked = sum(_compare(result.per_image[m], golden[m]["per_image"]) for m in sources)
    assert checked == 3 * len(stems) * 13
    means = result.means()
    for m in sources:
        for metric, expected in golden[m]["mean"].items():
            assert means[m][metric] == pytest.approx(expected, rel=TOL)


def test_msrs_colour_pairs_per_channel_and_rgb2gray(shared_data, tmp_path):
    """Colour visible images: a gray fused image (scored against rgb2gray(VI)) and a colour one (per channel)."""
    refs = json.loads((DATA / "msrs_reference.json").read_text())
    make = _load_make_references()
    for sub in ("ir", "vi", "gray", "colour"):
        (tmp_path / sub).mkdir()
    for stem in make.MSRS_STEMS:
        ir = cv2.imread(str(shared_data / "msrs" / "ir" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        vi = cv2.cvtColor(cv2.imread(str(shared_data / "msrs" / "vi" / f"{stem}.png")), cv2.COLOR_BGR2RGB)
        os.symlink(shared_data / "msrs" / "ir" / f"{stem}.png", tmp_path / "ir" / f"{stem}.png")
        os.symlink(shared_data / "msrs" / "vi" / f"{stem}.png", tmp_path / "vi" / f"{stem}.png")
        for name, img in make.msrs_fusions(ir, vi).items():
            cv2.imwrite(str(tmp_path / name / f"{stem}.png"), img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    run = score_folders((tmp_path / "ir", tmp_path / "vi"), {n: tmp_path / n for n in ("gray", "colour")}, convention="vifb")
    for name in ("gray", "colour"):
        assert _compare(run.result.per_image[name], refs[name]["per_image"]) == 6 * 13


def test_synthetic_edge_cases_through_the_cli(tmp_path):
    """Odd sizes, colour IR, gray/colour mixes, flat images (NaN and infinite reference values -> null + note)."""
    refs = json.loads((DATA / "synthetic_reference.json").read_text())["synthetic"]["per_image"]
    out = tmp_path / "out"
    args = ["metrics", "--ir", DATA / "synthetic" / "ir", "--vis", DATA / "synthetic" / "vi", "--fused", f"syn={DATA / 'synthetic' / 'fused'}"]
    result = CliRunner().invoke(app, [*map(str, args), "--convention", "vifb", "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "metrics.json").read_text())
    assert list(doc["syn"]) == ["convention", "mean", "per_image"] and doc["syn"]["convention"] == "vifb"
    per_image = {s: {m: (math.nan if v is None else v) for m, v in d.items()} for s, d in doc["syn"]["per_image"].items()}
    assert _compare(per_image, refs) == 8 * 13
    assert doc["syn"]["per_image"]["s7"]["Psnr"] is None and doc["syn"]["per_image"]["s5"]["Qcb"] is None
    text = " ".join(result.output.split())
    assert "Qcb is undefined for 3 of 8 images (s5, s6, s8)" in text and "Psnr is undefined for 1 of 8 images (s7)" in text
    assert doc["syn"]["mean"]["Qcb"] == pytest.approx(np.mean([refs[s]["Qcb"] for s in refs if refs[s]["Qcb"] is not None]), rel=1e-9)
    assert (out / "metrics.csv").read_text().splitlines()[0] == "Method," + ",".join(vm.VIFB_METRICS)


# --- the MATLAB functions against independent definitions -----------------------------------------------


def test_matlab_round_and_rgb2gray():
    x = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.4999, 7.0, math.nan], dtype=torch.float64)
    out = mc.matlab_round(x)
    assert out[:8].tolist() == [-3, -2, -1, 1, 2, 3, 2, 7] and math.isnan(out[8])
    rgb = np.random.default_rng(3).integers(0, 256, (3, 40, 50)).astype(np.float64)
    expected = np.floor(255 * (rgb[0] / 255 * 0.298936 + rgb[1] / 255 * 0.587043 + rgb[2] / 255 * 0.114021) + 0.5)
    np.testing.assert_array_equal(mc.rgb2gray(torch.from_numpy(rgb)).numpy(), expected)
    assert mc.rgb2gray(torch.full((3, 1, 1), 255.0)).item() == 255 and mc.rgb2gray(torch.zeros(3, 1, 1)).item() == 0


def test_freqspace_gradient_blkproc_and_borders():
    u, v = mc.freqspace_meshgrid(5, 4)  # MATLAB: freqspace([5 4], 'meshgrid')
    np.testing.assert_allclose(u[0].numpy(), [-1.0, -0.5, 0.0, 0.5])
    np.testing.assert_allclose(v[:, 0].numpy(), [-0.8, -0.4, 0.0, 0.4, 0.8])
    assert u.shape == v.shape == (5, 4)
    x = np.random.default_rng(1).integers(0, 256, (19, 23)).astype(np.float64)
    dx, dy = mc.gradient(torch.from_numpy(x))
    gy, gx = np.gradient(x)
    np.testing.assert_array_equal(dx.numpy(), gx)
    np.testing.assert_array_equal(dy.numpy(), gy)
    sums = mc.blkproc_sums(torch.from_numpy(x), 8).numpy()  # partial blocks at the bottom and right
    assert sums.shape == (3, 3)
    for i in range(3):
        for j in range(3):
            assert sums[i, j] == x[8 * i : 8 * i + 8, 8 * j : 8 * j + 8].sum()
    sobel = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)  # fspecial('sobel')
    gx_r, gy_r = mc.sobel_replicate(torch.from_numpy(x))
    np.testing.assert_array_equal(gx_r.numpy(), correlate(x, sobel, mode="nearest"))
    np.testing.assert_array_equal(gy_r.numpy(), correlate(x, sobel.T, mode="nearest"))
    taps, scale = vm._qcb_taps(2.0)
    window = scale * np.outer(taps, taps)
    np.testing.assert_allclose(mc.filter2_same(torch.from_numpy(x), taps, scale).numpy(), correlate2d(x, window, mode="same"), rtol=1e-12, atol=1e-9)


# --- paths and reading rules -----------------------------------------------------------------------------


def _triplet(colour: bool):
    make = _load_make_references()
    return make.synthetic_images()["s1" if colour else "s2"]


def test_gemm_filter_path_gives_the_same_values(monkeypatch):
    """The non-CPU filter path (banded GEMMs, as on CUDA) run on CPU tensors through all thirteen metrics."""
    ir, vi, f = _triplet(colour=True)
    expected = compute_metrics(ir, vi, f, convention="vifb")

    def gemm_valid(x, taps, stride=1):
        return mf.correlate_rows(mf.correlate_last(x, taps, stride), taps, stride)

    def gemm_same(x, taps):
        half = len(taps) // 2
        return gemm_valid(torch.nn.functional.pad(x, (half, half, half, half)), taps)

    monkeypatch.setattr(vm, "filter2d_valid", gemm_valid)
    monkeypatch.setattr(mc, "filter2d_same", gemm_same)
    got = compute_metrics(ir, vi, f, convention="vifb")
    for m in vm.VIFB_METRICS:  # Ssim's statistics are float32: summed in another order there
        assert got[m] == pytest.approx(expected[m], rel=1e-6 if m == "Ssim" else 1e-9), m


def test_gray_stored_as_rgb_is_gray_and_colour_is_per_channel():
    ir, vi, f = _triplet(colour=False)  # colour VI, gray IR and F
    gray_vi = mc.rgb2gray(torch.from_numpy(vi).permute(2, 0, 1).double()).numpy()
    direct = compute_metrics(ir, gray_vi, f, convention="vifb")
    as_rgb = compute_metrics(np.stack([ir] * 3, -1), np.stack([gray_vi] * 3, -1), np.stack([f] * 3, -1), convention="vifb")
    assert direct == as_rgb  # three equal channels are one gray channel
    assert compute_metrics(ir, vi, f, convention="vifb") == direct  # a gray F is scored against rgb2gray(VI)
    ir_g, vi_c, f_c = _load_make_references().synthetic_images()["s4"]  # colour VI and F, gray IR
    whole = compute_metrics(ir_g, vi_c, f_c, convention="vifb")
    per = [compute_metrics(ir_g, vi_c[..., k], f_c[..., k], convention="vifb") for k in range(3)]
    for m in ("Entropy", "Qabf", "Mutinf", "Ssim", "Variance", "Psnr", "Qcb", "Qcv", "Avg_gradient", "Edge_intensity", "Cross_entropy"):
        assert whole[m] == pytest.approx(np.mean([p[m] for p in per]), rel=1e-12), m
    z = np.concatenate([f_c[..., k].astype(np.float64) for k in range(3)], axis=1)  # SF reads F as m x 3n
    rf = ((z[:, 1:] - z[:, :-1]) ** 2).sum() / z.size
    cf = ((z[1:] - z[:-1]) ** 2).sum() / z.size
    assert whole["Spatial_frequency"] == pytest.approx(math.sqrt(rf + cf), rel=1e-12)


def test_pair_scorer_reuses_sources_and_equals_single_calls():
    ir, vi, f = _triplet(colour=True)
    others = [f, np.minimum(vi, ir), vi[..., 0]]
    scorer = PairScorer(ir, vi, convention="vifb", name="s1")
    assert scorer.metrics == vm.VIFB_METRICS and scorer.convention.name == "vifb"
    batch = scorer.score(others)
    for img, row in zip(others, batch, strict=True):
        single = compute_metrics(ir, vi, img, convention="vifb")
        for m in vm.VIFB_METRICS:
            assert row[m] == pytest.approx(single[m], rel=1e-12, nan_ok=True), m
    torch_row = PairScorer(torch.from_numpy(ir), torch.from_numpy(vi), convention="vifb").score(torch.from_numpy(f))[0]
    assert torch_row == pytest.approx(batch[0], rel=1e-12)
    subset = compute_metrics(ir, vi, f, metrics="ssim,EN,Qcv", convention="vifb")  # EN selects VIFB's Entropy
    assert list(subset) == ["Entropy", "Qcv", "Ssim"] and subset["Qcv"] == pytest.approx(batch[0]["Qcv"], rel=1e-12)


def test_bad_inputs_raise_clear_errors():
    ir, vi, f = _triplet(colour=True)
    with pytest.raises(InputError, match="infrared is 61x45 but visible is 60x45"):
        compute_metrics(ir, vi[:, :-1], f, convention="vifb")
    with pytest.raises(InputError, match="fused image #1 is 60x45"):
        compute_metrics(ir, vi, f[:, :-1], convention="vifb")
    with pytest.raises(InputError, match="too small for Ssim"):
        compute_metrics(ir[:10], vi[:10], f[:10], convention="vifb")
    assert compute_metrics(ir[:10], vi[:10], f[:10], metrics="Entropy,Qcv", convention="vifb")["Entropy"] > 0
    with pytest.raises(InputError, match="8-bit levels"):
        compute_metrics(ir.astype(np.float64) * 2, vi, f, convention="vifb")
    with pytest.raises(InputError, match="unknown metric name.*vifb.*: CC"):
        compute_metrics(ir, vi, f, metrics="CC", convention="vifb")
    with pytest.raises(InputError, match="unknown metric convention 'vifbb'.*did you mean 'vifb'"):
        compute_metrics(ir, vi, f, convention="vifbb")


@pytest.mark.parametrize("convention", ["cddfuse", "vifb"])
def test_both_conventions_warn_on_the_unit_scale_and_refuse_masks(convention):
    from fusedet.eval.fusion_metrics import MetricWarning

    ir, vi, f = _triplet(colour=False)
    with pytest.warns(MetricWarning, match=r"fused #1\): float values all <= 1"):
        compute_metrics(ir, vi, f.astype(np.float64) / 255.0, metrics="SF" if convention == "cddfuse" else "Spatial_frequency", convention=convention)
    metric = "EN" if convention == "cddfuse" else "Entropy"
    with pytest.raises(InputError, match=r"fused #1\): a boolean array"):
        compute_metrics(ir, vi, f > 128, metrics=metric, convention=convention)
    with pytest.raises(InputError, match=r"a boolean array"):
        compute_metrics(ir, vi, torch.from_numpy(f > 128), metrics=metric, convention=convention)
