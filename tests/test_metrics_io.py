"""Reading files for the fusion metrics (fusedet.eval.metrics_io): one decode per file, gray pictures stored
as RGB read as one channel, colour kept, what each convention's view makes of them."""

from __future__ import annotations

import cv2
import numpy as np

from fusedet.eval.metrics_io import cddfuse_levels, read_levels, vifb_array


def _write(path, array):
    assert cv2.imwrite(str(path), array)
    return path


def test_equal_channels_decode_to_one_gray_channel(tmp_path):
    gray = np.random.default_rng(0).integers(0, 256, (30, 40), dtype=np.uint8)
    image = read_levels(_write(tmp_path / "g.png", np.stack([gray] * 3, axis=-1)))
    assert image.levels.shape == (30, 40) and image.bits == 8
    np.testing.assert_array_equal(image.levels, gray)
    with_alpha = np.dstack([gray, gray, gray, np.full_like(gray, 7)])
    np.testing.assert_array_equal(read_levels(_write(tmp_path / "ga.png", with_alpha)).levels, gray)
    wide = (gray.astype(np.uint16) * 257)  # 16-bit gray stored as RGB: levels rint(v / 65535 * 255)
    np.testing.assert_array_equal(read_levels(_write(tmp_path / "g16.png", np.stack([wide] * 3, axis=-1))).levels, gray)


def test_colour_is_rgb_and_each_view_reads_it_as_its_reference(tmp_path):
    rng = np.random.default_rng(1)
    bgr = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    bgr[0, 0] = (1, 2, 3)  # at least one pixel whose channels differ
    image = read_levels(_write(tmp_path / "c.png", bgr))
    np.testing.assert_array_equal(image.levels, bgr[:, :, ::-1])  # RGB order
    np.testing.assert_array_equal(vifb_array(image.levels), bgr[:, :, ::-1])
    expected = np.round(cv2.cvtColor(bgr.astype(np.float32), cv2.COLOR_BGR2GRAY)).astype(np.uint8)  # CDDFuse's reading
    np.testing.assert_array_equal(cddfuse_levels(image.levels), expected)
    one_off = np.stack([bgr[:, :, 0]] * 3, axis=-1)
    one_off[5, 5, 2] ^= 1  # one level in one channel makes it colour
    assert read_levels(_write(tmp_path / "o.png", one_off)).levels.shape == (30, 40, 3)
