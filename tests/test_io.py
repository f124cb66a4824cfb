"""Image I/O: formats, bit depths, channel handling, colour round trip, and errors that name files."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch

from fusedet.datasets import (
    PairFolder,
    list_images,
    read_image,
    read_ir,
    read_pair,
    read_vis,
    replace_luma,
    rgb_to_gray,
    rgb_to_ycbcr,
    write_image,
    ycbcr_to_rgb,
)
from fusedet.datasets.atomic import append_text
from fusedet.errors import InputError, WriteError


def _rng_image(shape, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    high = 256 if dtype == np.uint8 else 65536
    return rng.integers(0, high, size=shape, dtype=np.int64).astype(dtype)


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".tiff"])
def test_lossless_formats_roundtrip_8bit_gray_and_colour(tmp_path, ext):
    gray = _rng_image((7, 9))
    bgr = _rng_image((7, 9, 3), seed=1)
    cv2.imwrite(str(tmp_path / f"g{ext}"), gray)
    cv2.imwrite(str(tmp_path / f"c{ext}"), bgr)
    g = read_image(tmp_path / f"g{ext}")
    c = read_image(tmp_path / f"c{ext}")
    assert g.shape == (7, 9) and g.dtype == np.float32
    np.testing.assert_allclose(g * 255, gray, atol=1e-3)
    assert c.shape == (7, 9, 3)
    np.testing.assert_allclose(c * 255, bgr[:, :, ::-1], atol=1e-3)  # returned as RGB


def test_jpeg_reads_close_to_source(tmp_path):
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))
    cv2.imwrite(str(tmp_path / "a.jpg"), smooth, [cv2.IMWRITE_JPEG_QUALITY, 100])
    img = read_image(tmp_path / "a.jpg")
    assert img.shape == (32, 32)
    assert np.abs(img * 255 - smooth).max() <= 3


def test_16bit_scaled_to_unit_range(tmp_path):
    data = np.array([[0, 65535], [32768, 257]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "a.png"), data)
    img = read_image(tmp_path / "a.png")
    np.testing.assert_allclose(img, data / 65535.0, rtol=1e-6)


def test_ir_is_one_channel_and_vis_is_rgb(tmp_path):
    bgr = _rng_image((5, 6, 3), seed=2)
    cv2.imwrite(str(tmp_path / "c.png"), bgr)
    cv2.imwrite(str(tmp_path / "g.png"), bgr[:, :, 0])
    ir = read_ir(tmp_path / "c.png")
    rgb = bgr[:, :, ::-1].astype(np.float64) / 255
    np.testing.assert_allclose(ir, 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2], atol=1e-6)
    vis = read_vis(tmp_path / "g.png")
    assert vis.shape == (5, 6, 3)
    assert np.array_equal(vis[..., 0], vis[..., 2])


def test_alpha_channel_dropped(tmp_path):
    bgra = _rng_image((4, 4, 4), seed=3)
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    img = read_image(tmp_path / "a.png")
    np.testing.assert_allclose(img * 255, bgra[:, :, 2::-1], atol=1e-3)


def test_ycbcr_roundtrip_and_reference_values():
    rgb = np.random.default_rng(4).random((6, 5, 3)).astype(np.float32)
    ycc = rgb_to_ycbcr(rgb)
    np.testing.assert_allclose(ycbcr_to_rgb(ycc), rgb, atol=1e-6)
    # BT.601 full range: pure red -> Y 0.299, Cr = 0.5 + (1 - 0.299) / 1.402 = 1.0
    np.testing.assert_allclose(rgb_to_ycbcr(np.array([1.0, 0.0, 0.0])), [0.299, 0.5 - 0.299 / 1.772, 1.0], atol=1e-9)
    # OpenCV's float YCrCb agrees to its rounded constants
    cv_ycrcb = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    np.testing.assert_allclose(ycc[..., [0, 2, 1]], cv_ycrcb, atol=2e-3)
    assert rgb_to_gray(np.array([10.0, 20.0, 30.0])) == pytest.approx(0.299 * 10 + 0.587 * 20 + 0.114 * 30)


def test_torch_channel_first_matches_numpy():
    rgb = np.random.default_rng(5).random((2, 4, 5, 3)).astype(np.float32)
    t = torch.from_numpy(rgb).permute(0, 3, 1, 2)
    np.testing.assert_allclose(rgb_to_ycbcr(t).permute(0, 2, 3, 1).numpy(), rgb_to_ycbcr(rgb), atol=1e-6)
    own_y = rgb_to_ycbcr(t)[:, 0]
    torch.testing.assert_close(replace_luma(t, own_y), t, atol=1e-5, rtol=0)  # own luma: unchanged
    gray = t.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    y = torch.rand(2, 4, 5)
    torch.testing.assert_close(replace_luma(gray, y), y[:, None].expand(-1, 3, -1, -1), atol=1e-5, rtol=0)


def test_write_image_is_atomic_and_readable(tmp_path):
    img = np.random.default_rng(6).random((8, 8, 3)).astype(np.float32)
    path = write_image(tmp_path / "sub" / "x.png", img)
    assert [p.name for p in path.parent.iterdir()] == ["x.png"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    np.testing.assert_allclose(read_image(path), np.rint(img * 255) / 255, atol=1e-6)


def test_write_image_where_it_cannot_be_written_raises_one_write_error(tmp_path):
    img = np.zeros((4, 4), np.float32)
    (tmp_path / "x.png").mkdir()
    with pytest.raises(WriteError, match=r"x.png: could not be written \(a folder of that name is in the way\)"):
        write_image(tmp_path / "x.png", img)
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match=r"y.png: could not be written \(.*file is a file, so no folder can be made"):
        write_image(tmp_path / "file" / "y.png", img)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "x.png"]  # no temporary file left
    with pytest.raises(WriteError, match=r"j.jsonl: could not be written \(.*file is a file"):
        append_text(tmp_path / "file" / "j.jsonl", "{}\n")
    assert append_text(tmp_path / "j.jsonl", "a\n") and append_text(tmp_path / "j.jsonl", "b\n").read_text() == "a\nb\n"


def test_a_plot_that_cannot_be_saved_raises_one_write_error(tmp_path):
    import matplotlib.pyplot as plt

    from fusedet.plots import _save

    fig = plt.figure()
    try:
        (tmp_path / "ap.png").mkdir()
        with pytest.raises(WriteError, match="ap.png: could not be written"):
            _save(fig, tmp_path / "ap.png")
        assert [p.name for p in tmp_path.iterdir()] == ["ap.png"]
        assert _save(fig, tmp_path / "ok.png").stat().st_size > 0
    finally:
        plt.close(fig)


def test_real_tno_pair_is_gray(shared_data):
    pair = PairFolder(shared_data / "tno" / "ir", shared_data / "tno" / "vi").read("01")
    assert pair.ir.ndim == 2 and pair.vis.shape == pair.ir.shape + (3,)
    np.testing.assert_allclose(pair.vis_y, pair.vis[..., 0], atol=1e-6)  # gray visible: Y == channel


def test_real_msrs_folder_pairs(shared_data):
    folder = PairFolder(shared_data / "msrs" / "ir", shared_data / "msrs" / "vi")
    assert len(folder) == 271
    pair = folder.read(folder.stems[0])
    assert pair.size == (480, 640)


# --- errors name the files -------------------------------------------------------------------------


def _pair_dirs(tmp_path, ir_stems, vis_stems, size=(4, 4)):
    ir_dir, vis_dir = tmp_path / "ir", tmp_path / "vi"
    ir_dir.mkdir()
    vis_dir.mkdir()
    for s in ir_stems:
        cv2.imwrite(str(ir_dir / f"{s}.png"), np.zeros(size, np.uint8))
    for s in vis_stems:
        cv2.imwrite(str(vis_dir / f"{s}.png"), np.zeros(size + (3,), np.uint8))
    return ir_dir, vis_dir


def test_missing_partner_names_file(tmp_path):
    ir_dir, vis_dir = _pair_dirs(tmp_path, ["a", "b"], ["a"])
    with pytest.raises(InputError, match=r"b\.png"):
        PairFolder(ir_dir, vis_dir)


def test_empty_folder_and_missing_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty.*no images"):
        list_images(tmp_path / "empty")
    with pytest.raises(InputError, match="nowhere.*not a folder"):
        list_images(tmp_path / "nowhere")


def test_corrupt_and_truncated_files_name_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    (tmp_path / "zero.png").write_bytes(b"")
    for name in ("bad.png", "zero.png"):
        with pytest.raises(InputError, match=name):
            read_image(tmp_path / name)


def test_size_mismatch_names_both_files(tmp_path):
    ir_dir, vis_dir = _pair_dirs(tmp_path, ["a"], [])
    cv2.imwrite(str(vis_dir / "a.png"), np.zeros((5, 4, 3), np.uint8))
    with pytest.raises(InputError, match=r"ir/a\.png.*vi/a\.png"):
        read_pair(ir_dir / "a.png", vis_dir / "a.png")


def test_duplicate_stems_rejected(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((2, 2), np.uint8))
    cv2.imwrite(str(tmp_path / "a.bmp"), np.zeros((2, 2), np.uint8))
    with pytest.raises(InputError, match="stem 'a'"):
        list_images(tmp_path)


def test_replace_luma_equals_ycbcr_roundtrip_with_clipping():
    rng = np.random.default_rng(7)
    rgb = rng.random((9, 11, 3))
    y = rng.random((9, 11))
    ycc = rgb_to_ycbcr(rgb)
    ycc[..., 0] = y
    np.testing.assert_allclose(replace_luma(rgb, y), ycbcr_to_rgb(ycc), atol=1e-12)
    t = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    np.testing.assert_allclose(replace_luma(t, torch.from_numpy(y)[None])[0].permute(1, 2, 0).numpy(), ycbcr_to_rgb(ycc), atol=1e-12)
