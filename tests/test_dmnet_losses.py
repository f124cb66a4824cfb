"""DMNet losses (equations 13-19) on hand-computed tensors, SSIM against pytorch_msssim, and the
four gradient operators of Table VI."""

from __future__ import annotations

import pytest
import torch
from dmnet_tiny import one_torch_thread  # noqa: F401 (autouse fixture: one torch thread)

from dmnet.errors import DMNetError
from dmnet.losses import (
    autoencoder_loss,
    canny,
    gradient,
    gradient_loss,
    intensity_loss,
    laplacian_of_gaussian,
    reconstruction_loss,
    roberts,
    sobel,
    ssim,
)


def test_ssim_matches_pytorch_msssim():
    pytorch_msssim = pytest.importorskip("pytorch_msssim")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 40, 33, generator=g)
    y = (x + 0.2 * torch.rand(2, 1, 40, 33, generator=g)).clamp(0, 1)
    expected = pytorch_msssim.ssim(x, y, data_range=1.0, size_average=True, win_size=11, win_sigma=1.5)
    torch.testing.assert_close(ssim(x, y), expected, atol=1e-6, rtol=1e-5)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)


def test_ssim_rejects_small_or_mismatched_images():
    with pytest.raises(DMNetError, match="at least 11x11"):
        ssim(torch.rand(1, 1, 10, 20), torch.rand(1, 1, 10, 20))
    with pytest.raises(DMNetError, match="shapes differ"):
        ssim(torch.rand(1, 1, 12, 12), torch.rand(1, 1, 12, 13))


def test_reconstruction_loss_on_constant_images():
    """Constant images: MSE = (0.5 - 0.25)^2; SSIM reduces to its luminance term."""
    image = torch.full((1, 1, 16, 16), 0.5)
    recon = torch.full((1, 1, 16, 16), 0.25)
    c1 = 0.01**2
    s = (2 * 0.5 * 0.25 + c1) / (0.5**2 + 0.25**2 + c1)
    assert ssim(image, recon).item() == pytest.approx(s, rel=1e-5)
    assert reconstruction_loss(image, recon, lam=2.5).item() == pytest.approx(0.0625 + 2.5 * (1 - s), rel=1e-5)
    assert reconstruction_loss(image, image, lam=2.5).item() == pytest.approx(0.0, abs=1e-6)


def test_autoencoder_loss_weights_ir_by_gamma1():
    vis, ir = torch.full((1, 1, 12, 12), 0.5), torch.full((1, 1, 12, 12), 0.2)
    vis_rec, ir_rec = torch.full((1, 1, 12, 12), 0.4), torch.full((1, 1, 12, 12), 0.6)
    out = autoencoder_loss(vis, vis_rec, ir, ir_rec, gamma1=3.0, lam=0.0)
    assert out["rec_vi"].item() == pytest.approx(0.01, rel=1e-5)
    assert out["rec_ir"].item() == pytest.approx(0.16, rel=1e-5)
    assert out["au"].item() == pytest.approx(0.01 + 3 * 0.16, rel=1e-5)


def test_intensity_loss_uses_pixel_max():
    fused = torch.tensor([[[[0.2, 0.8], [0.5, 0.0]]]])
    ir = torch.tensor([[[[0.5, 0.1], [0.5, 0.3]]]])
    vis = torch.tensor([[[[0.3, 0.9], [0.1, 0.1]]]])
    # max = [[0.5, 0.9], [0.5, 0.3]]; |F - max| = [[0.3, 0.1], [0, 0.3]]
    assert intensity_loss(fused, ir, vis).item() == pytest.approx(0.7 / 4, rel=1e-6)


STEP = torch.tensor([[[[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]]])


def test_sobel_on_a_vertical_step():
    # |Gx| + |Gy|, replicate padding: Gx = (1 + 2 + 1) * 1 where the 3x3 window sees the step
    expected = torch.tensor([[[[0.0, 4.0, 4.0]] * 3]])
    torch.testing.assert_close(sobel(STEP), expected)
    torch.testing.assert_close(sobel(STEP.transpose(-1, -2)), expected.transpose(-1, -2))
    assert sobel(torch.full((1, 1, 5, 5), 0.7)).abs().max() < 1e-6  # no false edges at borders


def test_roberts_on_2x2():
    a, b, c, d = 0.9, 0.2, 0.4, 0.1
    img = torch.tensor([[[[a, b], [c, d]]]])
    out = roberts(img)
    assert out[0, 0, 0, 0].item() == pytest.approx(abs(a - d) + abs(b - c))
    assert out[0, 0, 1, 1].item() == 0.0  # replicate padding: a flat 2x2 window
    assert out[0, 0, 0, 1].item() == pytest.approx(abs(b - d) + abs(b - d))  # window [[b, b], [d, d]]


def test_log_on_impulse_and_flat():
    img = torch.zeros(1, 1, 7, 7)
    img[0, 0, 3, 3] = 1.0
    out = laplacian_of_gaussian(img)
    assert out[0, 0, 3, 3].item() == 16.0
    assert out[0, 0, 3, 4].item() == 2.0 and out[0, 0, 3, 5].item() == 1.0 and out[0, 0, 2, 2].item() == 1.0
    assert out.sum().item() == 32.0  # |kernel| sums to 16 + 16
    assert laplacian_of_gaussian(torch.full((1, 1, 9, 9), 0.3)).abs().max() < 1e-6


def test_canny_is_thin_thresholded_and_differentiable():
    img = torch.zeros(1, 1, 24, 24)
    img[..., 12:] = 1.0
    img.requires_grad_(True)
    out = canny(img)
    edge_cols = (out[0, 0] > 0).any(dim=0).nonzero().flatten().tolist()
    assert edge_cols and set(edge_cols) <= {11, 12}  # the step lies between columns 11 and 12
    assert ((out[0, 0] > 0).sum(dim=1) <= 2).all()  # thin: at most two pixels per row
    assert (out[0, 0] > 0).all(dim=1).sum() == 0 and (out[0, 0] > 0).any(dim=1).all()  # every row
    assert out[out > 0].min() >= 0.1  # hysteresis low threshold
    out.sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    # hysteresis: an edge above the low threshold but nowhere above the high one is dropped
    faint = torch.zeros(1, 1, 24, 24)
    faint[..., 12:] = 0.04  # magnitude ~0.1-0.16 < high threshold 0.2: no edge at all
    assert canny(faint).max() == 0


def test_canny_agrees_with_skimage_on_a_square():
    feature = pytest.importorskip("skimage.feature")
    img = torch.zeros(1, 1, 40, 40)
    img[..., 10:30, 10:30] = 1.0
    ours = (canny(img)[0, 0] > 0).numpy()
    ref = feature.canny(img[0, 0].numpy(), sigma=1.0, low_threshold=0.1, high_threshold=0.2)
    # the same edge set up to the one-pixel ambiguity of an edge lying between two pixels
    import scipy.ndimage as ndi

    assert ours.sum() > 0 and ref.sum() > 0
    assert (ours & ~ndi.binary_dilation(ref)).sum() == 0
    assert (ref & ~ndi.binary_dilation(ours)).sum() == 0


def test_gradient_loss_hand_computed():
    fused = torch.full((1, 1, 3, 3), 0.5, requires_grad=True)
    vis = torch.zeros(1, 1, 3, 3)
    # target = max(|sobel IR|, |sobel VIS|) = [[0, 4, 4]] * 3; |sobel F| = 0
    loss = gradient_loss(fused, STEP, vis, "sobel")
    assert loss.item() == pytest.approx(24 / 9)
    loss.backward()
    assert fused.grad is not None
    # F equal to the source with the stronger gradients: zero loss
    assert gradient_loss(STEP, STEP, vis, "sobel").item() == 0.0


@pytest.mark.parametrize("op", ["sobel", "canny", "log", "roberts"])
def test_every_operator_gives_a_differentiable_loss(op):
    g = torch.Generator().manual_seed(1)
    ir, vis = torch.rand(2, 1, 16, 16, generator=g), torch.rand(2, 1, 16, 16, generator=g)
    fused = torch.rand(2, 1, 16, 16, generator=g, requires_grad=True)
    loss = gradient_loss(fused, ir, vis, op)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    assert fused.grad.abs().sum() > 0
    assert gradient(ir, op).shape == ir.shape


def test_unknown_operator_rejected():
    with pytest.raises(DMNetError, match="unknown gradient operator"):
        gradient(torch.rand(1, 1, 4, 4), "prewitt")


def test_losses_stay_float32_under_bf16_autocast():
    x, y = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    reference = [ssim(x, y), gradient_loss(x, x, y), intensity_loss(x, x, y), reconstruction_loss(x, y, 1.0)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        values = [ssim(x, y), gradient_loss(x, x, y), intensity_loss(x, x, y), reconstruction_loss(x, y, 1.0)]
    for value, ref in zip(values, reference):
        assert value.dtype == torch.float32
        assert value.item() == ref.item()
