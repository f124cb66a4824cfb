"""Texture-favouring training crops (CropDataset(texture_candidates=K)): measured on a half-flat pair."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from fusedet.errors import InputError
from fusedet.train_data import CropDataset, crop_texture


def _half_flat_pair(root, width=96, height=32):
    """IR and VIS 32 x 96: columns < 48 flat grey, columns >= 48 random noise (both sources)."""
    rng = np.random.default_rng(0)
    for sub in ("ir", "vi"):
        (root / sub).mkdir(parents=True)
        image = np.full((height, width), 128, np.uint8)
        image[:, width // 2 :] = rng.integers(0, 256, (height, width - width // 2), dtype=np.uint8)
        cv2.imwrite(str(root / sub / "a.png"), image)
    return root


def test_crop_texture_of_known_patches():
    ramp = torch.arange(16, dtype=torch.float32).mul(0.01).expand(2, 16, 16)  # dx = 0.01, dy = 0 in both channels
    assert crop_texture(ramp) == pytest.approx(0.02, abs=1e-6)
    assert crop_texture(ramp.transpose(1, 2)) == pytest.approx(0.02, abs=1e-6)
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2  # |dx| = |dy| = 1 everywhere
    assert crop_texture(checker.float()[None]) == pytest.approx(2.0)
    assert crop_texture(torch.full((2, 8, 8), 0.3)) == 0.0


def test_texture_candidates_move_crops_onto_texture(tmp_path):
    root = _half_flat_pair(tmp_path / "pair")
    crop = 16

    def percent_textured(ds: CropDataset) -> float:
        """Percentage of the crops of 20 epochs that reach into the noisy half (columns >= 48)."""
        hits = []
        for epoch in range(20):
            ds.set_epoch(epoch)
            for i in range(len(ds)):
                ir, _ = ds[i]
                hits.append(crop_texture(ir) > 0)
        return 100.0 * float(np.mean(hits))

    uniform = CropDataset([root], crop=crop, crops_per_pair=4, seed=3)
    textured = CropDataset([root], crop=crop, crops_per_pair=4, seed=3, texture_candidates=8)
    # uniform: left edge in 0..80, the crop reaches the noise when left >= 33: 48 of 81 positions (59 %)
    assert 45 < percent_textured(uniform) < 73
    # best of 8: a flat crop is kept only when all 8 draws are flat, (33/81)^8 < 0.1 %
    assert percent_textured(textured) >= 97.5
    # deterministic in (seed, epoch, index), and K = 1 is the uniform sampler
    textured.set_epoch(5)
    assert torch.equal(textured[2][0], textured[2][0])
    assert "texture_candidates" not in uniform.describe()
    assert textured.describe()["texture_candidates"] == 8
    with pytest.raises(InputError, match="texture candidates >= 1"):
        CropDataset([root], crop=crop, texture_candidates=0)
