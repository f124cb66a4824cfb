"""Value ranges: auto/full/minmax/percentile on 8-bit, 16-bit (wide and radiometric-narrow), float
and signed images; counted warnings naming files; errors naming the file and its range; never a
silent clip. Expected values are computed here from the formulas, independently of the reader."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fusedet.datasets import PairFolder, read_image, read_ir, read_pair, read_vis
from fusedet.datasets.headers import image_size
from fusedet.datasets.value_range import NARROW_SPAN, RangeLog, ValueRange, ValueRangeWarning, parse_value_range, to_unit_range
from fusedet.errors import InputError


def _write(path, array):
    assert cv2.imwrite(str(path), array), path
    return path


def _radiometric(seed=0, shape=(48, 64)):
    """A 14-bit-count thermal frame: counts in a band of ~600 levels around 7400, one hot spot."""
    rng = np.random.default_rng(seed)
    frame = 7300 + rng.normal(0, 40, shape)
    frame[10:20, 30:40] += 500
    return np.clip(frame, 0, 65535).astype(np.uint16)


@pytest.mark.parametrize("text, expected", [
    ("auto", ValueRange("auto")), ("FULL", ValueRange("full")), (" minmax ", ValueRange("minmax")),
    ("percentile", ValueRange("percentile", 1, 99)), ("percentile:0.5,99.5", ValueRange("percentile", 0.5, 99.5)),
    ("percentile: 2 , 98", ValueRange("percentile", 2, 98)), (None, ValueRange("auto")),
])
def test_parse_value_range(text, expected):
    assert parse_value_range(text) == expected
    assert parse_value_range(str(expected)) == expected  # str() round trips


@pytest.mark.parametrize("text", ["", "max", "percentile:99,1", "percentile:1", "minmax:1,2", "percentile:a,b", "percentile:0,101"])
def test_bad_value_range_text_is_an_input_error(text):
    with pytest.raises(InputError, match=r"--ir-range"):
        parse_value_range(text, option="--ir-range")


def test_auto_8bit_as_is_and_16bit_wide_at_full_scale(tmp_path):
    eight = np.arange(48 * 64, dtype=np.int64).reshape(48, 64) % 256
    wide = (np.linspace(0, 65535, 48 * 64).reshape(48, 64)).astype(np.uint16)
    log = RangeLog()
    np.testing.assert_array_equal(read_ir(_write(tmp_path / "a.png", eight.astype(np.uint8)), log=log), eight.astype(np.float32) / np.float32(255))
    np.testing.assert_allclose(read_ir(_write(tmp_path / "b.png", wide), log=log), wide / 65535.0, rtol=1e-6)
    assert log.counts == {("ir", "8-bit"): 1, ("ir", "16-bit full scale"): 1} and log.warnings() == []


def test_auto_stretches_narrow_16bit_per_image_with_a_counted_warning_naming_the_files(tmp_path):
    frames = [_radiometric(seed) for seed in range(3)]
    assert all(int(f.max()) - int(f.min()) < NARROW_SPAN for f in frames)
    log = RangeLog()
    for i, frame in enumerate(frames):
        out = read_ir(_write(tmp_path / f"t{i}.png", frame), log=log)
        lo, hi = np.percentile(frame.astype(np.float64), [1, 99])
        np.testing.assert_allclose(out, np.clip((frame - lo) / (hi - lo), 0, 1), atol=1e-6)
        assert out.std() > 0.1  # at full scale it would be ~0.001: a flat image
    assert log.counts[("ir", "16-bit stretched (auto)")] == 3 and log.warning_count() == 3
    [line] = log.warnings()
    assert line.startswith("3 ir image(s) are 16-bit with a span below 1/16") and "t0.png" in line and "t2.png" in line
    assert log.to_dict()["warned_files"]["ir: 16-bit stretched (auto)"][0].endswith("t0.png")
    # full keeps the convention but still says the image is nearly flat
    log = RangeLog()
    np.testing.assert_allclose(read_ir(tmp_path / "t0.png", ir_range="full", log=log), frames[0] / 65535.0, rtol=1e-6)
    assert log.counts == {("ir", "16-bit narrow at full scale"): 1} and "nearly flat" in log.warnings()[0]


def test_float_tiff_outside_unit_range_is_an_error_naming_file_and_range(tmp_path):
    temps = (22.04 + np.linspace(0, 14.59, 128 * 160)).reshape(128, 160).astype(np.float32)
    path = _write(tmp_path / "p1.tif", temps)
    with pytest.raises(InputError, match=r"p1\.tif: float image with values outside \[0, 1\] \(min 22\.04, max 36\.63\).*--ir-range minmax"):
        read_ir(path)
    with pytest.raises(InputError, match=r"p1\.tif: float image .*--vis-range minmax"):
        read_vis(path, vis_range="full")
    log = RangeLog()
    out = read_ir(path, ir_range="minmax", log=log)
    np.testing.assert_allclose(out, (temps - temps.min()) / (temps.max() - temps.min()), atol=1e-6)
    out = read_ir(path, ir_range="percentile:5,95", log=log)
    lo, hi = np.percentile(temps.astype(np.float64), [5, 95])
    np.testing.assert_allclose(out, np.clip((temps - lo) / (hi - lo), 0, 1), atol=1e-6)
    assert log.counts == {("ir", "minmax"): 1, ("ir", "percentile 5-95"): 1}
    unit = np.linspace(0, 1, 20 * 30).reshape(20, 30).astype(np.float32)
    np.testing.assert_array_equal(read_ir(_write(tmp_path / "u.tif", unit)), unit)  # [0, 1] floats as is


def test_shared_case_float_tiff_is_refused_then_read_with_minmax(shared_data):
    path = shared_data.parent / "cases" / "01-float-tiff-ir-clipped" / "case" / "ir" / "p1.tif"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with pytest.raises(InputError, match=r"p1\.tif: float image with values outside \[0, 1\] \(min 22\.04, max 36\.63\)"):
        read_ir(path)
    ir = read_ir(path, ir_range="minmax")
    assert ir.min() == 0.0 and ir.max() == 1.0 and ir.std() > 0.05  # the IR content survives


def test_signed_and_colour_float_images(tmp_path):
    signed = (np.arange(20 * 30).reshape(20, 30) - 300).astype(np.int16)
    path = _write(tmp_path / "s.tif", signed)
    with pytest.raises(InputError, match=r"s\.tif: int16 pixels \(min -300, max 299\) have no standard scale"):
        read_ir(path)
    np.testing.assert_allclose(read_ir(path, ir_range="minmax"), (signed + 300) / 599.0, atol=1e-6)
    colour = np.dstack([np.full((20, 30), v, np.float32) for v in (10.0, 20.0, 30.0)])  # BGR on disk
    path = _write(tmp_path / "c.tif", colour)
    assert image_size(path) == (30, 20)  # Pillow cannot identify this TIFF; OpenCV sizes it
    vis = read_vis(path, vis_range="minmax")  # one range over all channels keeps the colour balance
    np.testing.assert_allclose(vis[0, 0], [1.0, 0.5, 0.0], atol=1e-6)


def test_constant_images_are_flat_not_divided_by_zero(tmp_path):
    log = RangeLog()
    flat16 = np.full((10, 10), 7000, np.uint16)
    np.testing.assert_allclose(read_ir(_write(tmp_path / "f.png", flat16), log=log), 7000 / 65535.0, rtol=1e-6)
    np.testing.assert_array_equal(read_ir(_write(tmp_path / "z.tif", np.full((10, 10), 30.0, np.float32)), ir_range="minmax", log=log), 0.0)
    assert log.counts == {("ir", "flat"): 2} and "constant" in log.warnings()[0]


def test_non_finite_values_are_an_error():
    with pytest.raises(InputError, match=r"x\.tif: image holds non-finite values"):
        to_unit_range(np.array([[0.5, np.nan]], np.float32), "minmax", path="x.tif")


def test_pair_readers_take_ir_and_vis_ranges_and_one_log(tmp_path):
    (tmp_path / "ir").mkdir()
    (tmp_path / "vi").mkdir()
    frame = _radiometric(1)
    _write(tmp_path / "ir" / "a.png", frame)
    vis16 = np.dstack([np.linspace(0, 65535, 48 * 64).reshape(48, 64).astype(np.uint16)] * 3)
    _write(tmp_path / "vi" / "a.png", vis16)
    log = RangeLog()
    pair = read_pair(tmp_path / "ir" / "a.png", tmp_path / "vi" / "a.png", log=log)
    assert pair.ir.std() > 0.1 and log.counts == {("ir", "16-bit stretched (auto)"): 1, ("vis", "16-bit full scale"): 1}
    folder = PairFolder(tmp_path / "ir", tmp_path / "vi", ir_range="full", log=log)
    np.testing.assert_allclose(folder.read("a").ir, frame / 65535.0, rtol=1e-6)
    np.testing.assert_allclose(folder.read("a", ir_range="minmax").ir, (frame - frame.min()) / float(frame.max() - frame.min()), atol=1e-6)
    assert log.counts[("ir", "minmax")] == 1 and log.specs == {"ir": "auto", "vis": "auto"}
    with pytest.raises(InputError, match="ir range 'sqrt'"):
        PairFolder(tmp_path / "ir", tmp_path / "vi", ir_range="sqrt")


def test_read_image_default_is_the_full_scale_convention_and_warns_without_a_log(tmp_path):
    frame = _radiometric(2)
    with pytest.warns(ValueRangeWarning, match=r"a\.png: image 16-bit narrow at full scale"):
        np.testing.assert_allclose(read_image(_write(tmp_path / "a.png", frame)), frame / 65535.0, rtol=1e-6)
    with pytest.warns(ValueRangeWarning, match=r"a\.png: ir image 16-bit stretched \(auto\)"):
        read_ir(tmp_path / "a.png")
