"""The DMNet fuser's post-processing: min-max stretch and unsharp mask (against OpenCV), and the checkpoint that names it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from dmnet_tiny import one_torch_thread, tiny_model  # noqa: F401 (autouse fixture)

from dmnet.checkpoint import read_checkpoint, save_checkpoint
from fusedet.dmnet_fuser import DMNetFuser, with_postprocess
from fusedet.errors import InputError
from fusedet.postprocess import parse_postprocess, postprocess


def test_minmax_stretches_each_image_to_the_full_range():
    a = torch.tensor([[0.2, 0.4], [0.6, 0.3]])
    b = torch.tensor([[0.5, 0.5], [0.5, 0.5]])  # flat: left as it is
    c = torch.tensor([[0.0, 0.25], [0.5, 1.0]])  # already full range: unchanged
    batch = torch.stack([a, b, c])[:, None]
    out = postprocess(batch, "minmax")
    expected = torch.stack([torch.tensor([[0.0, 0.5], [1.0, 0.25]]), b, c])[:, None]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert torch.equal(postprocess(batch[:1], "minmax"), out[:1])  # per image: the batch does not matter
    assert postprocess(batch, "none") is batch
    with pytest.raises(InputError, match="unknown DMNet post-processing 'gamma'"):
        postprocess(batch, "gamma")


def _opencv_unsharp(image: np.ndarray, amount: float) -> np.ndarray:
    """An independent unsharp mask: OpenCV's Gaussian (sigma 1, float image, BORDER_REFLECT_101)."""
    blurred = cv2.GaussianBlur(image, (0, 0), 1.0, borderType=cv2.BORDER_REFLECT_101)
    return np.clip(image + amount * (image - blurred), 0.0, 1.0)


def test_unsharp_mask_equals_opencv_and_chains_after_the_stretch():
    rng = np.random.default_rng(0)
    images = rng.uniform(0.2, 0.7, size=(2, 37, 50))
    images[1, :, :25] = 0.5  # a flat half and an edge
    batch = torch.from_numpy(images).float()[:, None]
    for amount in (0.5, 0.75, 2.0):
        expected = np.stack([_opencv_unsharp(im, amount) for im in images])
        for dtype in (torch.float32, torch.float64):  # float32 on the CPU: OpenCV's separable filter; else torch's
            out = postprocess(batch.to(dtype), f"unsharp:{amount}")
            assert out.dtype == dtype and out.shape == batch.shape
            np.testing.assert_allclose(out[:, 0].numpy(), expected, rtol=0, atol=2e-6)
    traced = batch.clone().requires_grad_(True)  # torch's route: the gradient flows
    postprocess(traced, "unsharp:0.75").sum().backward()
    assert traced.grad is not None and traced.grad.abs().sum() > 0
    chained = postprocess(batch, "minmax+unsharp:0.75")
    stretched = postprocess(batch, "minmax")[:, 0].double().numpy()
    expected = np.stack([_opencv_unsharp(im, 0.75) for im in stretched])
    np.testing.assert_allclose(chained[:, 0].numpy(), expected, rtol=0, atol=2e-6)
    assert not torch.allclose(chained, postprocess(batch, "unsharp:0.75+minmax"))  # order matters
    tiny = torch.rand(1, 1, 4, 9)
    assert torch.equal(postprocess(tiny, "unsharp:1"), tiny)  # 4 rows: too small for a radius of 4


@pytest.mark.parametrize(
    "spec, message",
    [
        ("unsharp", "unknown DMNet post-processing 'unsharp'"),
        ("unsharp:0", "unsharp amount '0' is not a number in \\(0, 4\\]"),
        ("unsharp:x", "unsharp amount 'x' is not a number"),
        ("minmax+", "unknown DMNet post-processing 'minmax\\+'"),
        ("minmax:2", "unknown DMNet post-processing 'minmax:2'"),
    ],
)
def test_bad_post_processing_specs_are_refused(spec, message):
    with pytest.raises(InputError, match=message):
        parse_postprocess(spec)
    assert parse_postprocess("minmax+unsharp:0.75") == (("minmax", 0.0), ("unsharp", 0.75))
    assert parse_postprocess("none") == ()


def test_a_checkpoint_names_its_post_processing(tmp_path):
    plain = save_checkpoint(tmp_path / "plain.pt", tiny_model(), {"note": "untrained"})
    stretched = with_postprocess(plain, tmp_path / "stretched.pt", "minmax")
    ck_plain, ck_stretched = read_checkpoint(plain), read_checkpoint(stretched)
    assert ck_stretched.summary == {"note": "untrained", "postprocess": "minmax"}
    assert all(torch.equal(ck_plain.state_dict[k], v) for k, v in ck_stretched.state_dict.items())
    ir, vis = torch.rand(2, 1, 20, 24, generator=torch.Generator().manual_seed(0)).unbind(0)
    ir, vis = ir[None], vis[None]
    raw = DMNetFuser(plain).fuse(ir, vis)
    assert DMNetFuser(plain).postprocess == "none" and DMNetFuser(stretched).postprocess == "minmax"
    out = DMNetFuser(stretched).fuse(ir, vis)
    torch.testing.assert_close(out, (raw - raw.min()) / (raw.max() - raw.min()), rtol=0, atol=1e-6)
    assert float(out.min()) == 0.0 and float(out.max()) == pytest.approx(1.0, abs=1e-6)
    sharpened = with_postprocess(plain, tmp_path / "sharpened.pt", "minmax+unsharp:0.75")
    torch.testing.assert_close(DMNetFuser(sharpened).fuse(ir, vis), postprocess(raw, "minmax+unsharp:0.75"), rtol=0, atol=1e-6)
    with pytest.raises(InputError, match="unknown DMNet post-processing 'sharpen'"):
        with_postprocess(plain, tmp_path / "bad.pt", "sharpen")
    bad = save_checkpoint(tmp_path / "bad.pt", tiny_model(), {"postprocess": "sharpen"})
    with pytest.raises(InputError, match="bad.pt: unknown DMNet post-processing 'sharpen'"):
        DMNetFuser(bad)
