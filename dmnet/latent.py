"""Diffusion module (DM) of DMNet: DDPM + SR3 U-Net as a multi-scale latent-feature extractor.

Section III-C and IV-B: the 2-channel input I_0 is noised to each t in ``latent_timesteps``
(5, 50, 100) by equation (5); the U-Net runs once on the three noisy copies (one batch); the last
residual-block outputs of its five decoder levels are brought to input resolution and fused by one
1x1 convolution into Phi^L with C channels (equation 9).

"One conv over the concatenation of the upsampled features" is computed as the sum over levels and
time steps of ``upsample(conv1x1_slice(feature))``: bilinear upsampling and a 1x1 conv are both
linear and act on different axes, so they commute, and the result is the same (tested) while the
full-resolution concatenation (8832 channels for the paper preset: 11 GB at 480x640 in fp32) is
never built.
The concatenation order is level-major (deepest level first), then time step.

The U-Net needs H and W divisible by 2 ** (levels - 1): the input is padded (replicate) and the
features are cropped back, so any H x W works.

``dm_scale`` k > 1 (not in the paper: a CPU-speed option of small presets) runs the DM on the input
average-pooled by k (padded to a multiple of k * 2 ** (levels - 1) first), for L_dm and for the
features alike; every level's fused features are then brought to the (padded) input resolution, as
the deeper levels always are. The U-Net's cost falls by about k^2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dmnet.compiled_upsample import upsample_sum
from dmnet.config import DMNetConfig
from dmnet.diffusion import NoiseSchedule, noise_prediction_loss, seeded_randn
from dmnet.kernels import conv1x1
from dmnet.precision import run_in_own_dtype
from dmnet.unet import SR3UNet


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad the bottom and right of a B x C x H x W tensor to multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


class DiffusionModule(nn.Module):
    """Noise schedule + epsilon U-Net + the 1x1 conv that fuses its decoder features into Phi^L."""

    def __init__(self, cfg: DMNetConfig) -> None:
        super().__init__()
        self.schedule = NoiseSchedule(cfg.diffusion_steps, cfg.beta_start, cfg.beta_end)
        self.unet = SR3UNet(2, 2, cfg.unet_inner, cfg.unet_mults, cfg.unet_res_blocks,
                            cfg.unet_attn_levels, cfg.unet_dropout, cfg.unet_norm_groups)
        self.timesteps = tuple(cfg.latent_timesteps)
        self.scale = int(cfg.dm_scale)
        self.multiple = 2 ** (len(cfg.unet_mults) - 1) * self.scale
        n_t = len(self.timesteps)
        self.fuse = nn.Conv2d(n_t * sum(self.unet.feature_channels), cfg.dim, 1)

    def loss(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """L_dm (equation 17) on a 2-channel image in [-1, 1]; t and noise from ``generator``."""
        return noise_prediction_loss(self.unet, self.schedule, self.unet_input(x0), generator)

    def unet_input(self, x0: torch.Tensor) -> torch.Tensor:
        """The DM's view of a B x 2 x H x W input: padded to a multiple of the U-Net's stride (times
        ``dm_scale``), then average-pooled by ``dm_scale``."""
        x0 = pad_to_multiple(x0, self.multiple)
        return F.avg_pool2d(x0, self.scale) if self.scale > 1 else x0

    def decoder_features(self, x0: torch.Tensor, generator: torch.Generator | None = None,
                         shared_noise: bool = False) -> list[torch.Tensor]:
        """U-Net decoder features of the noised, padded input, one tensor per level (deepest
        first), each (n_t * B) x C_l x h_l x w_l with the time steps outermost.

        ``shared_noise``: one noise draw per time step, the same for every image of the batch, so
        that an image's features do not depend on the batch it is in (deterministic inference).
        """
        x0 = self.unet_input(x0)
        b = x0.shape[0]
        n_t = len(self.timesteps)
        shape = (n_t, 1 if shared_noise else b) + tuple(x0.shape[1:])
        if shared_noise and generator is not None and generator.device == x0.device:
            noise = seeded_randn(shape, generator)  # the same draw for every pair of a size: remembered
        else:
            noise = torch.randn(shape, device=x0.device, generator=generator)  # float32 under autocast too
        noise = noise.expand(n_t, b, *x0.shape[1:]).reshape(n_t * b, *x0.shape[1:])
        t = torch.tensor(self.timesteps, device=x0.device).repeat_interleave(b)
        x_t = self.schedule.q_sample(x0.repeat(n_t, 1, 1, 1), t, noise)
        # float32 features out, also from a U-Net kept in bf16 (dmnet.precision)
        return run_in_own_dtype(self.unet, self.unet.decoder_features, x_t, t)

    def fuse_features(self, feats: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Phi^L = conv1x1(concat(upsample(features))) cropped to ``size`` (computed per level)."""
        n_t = len(self.timesteps)
        padded = (feats[-1].shape[-2] * self.scale, feats[-1].shape[-1] * self.scale)
        full, smaller = None, []  # the levels' 1x1 conv outputs at padded size, and at their own smaller size
        offset = 0
        for f in feats:
            nb, c, h, w = f.shape
            b = nb // n_t
            y = None
            for i in range(n_t):  # the channels of time step i: no time-major concatenation copy
                part = conv1x1(f[i * b:(i + 1) * b], self.fuse.weight[:, offset:offset + c])
                y = part if y is None else y.add_(part)
                offset += c
            if (h, w) != tuple(padded):
                smaller.append(y)
            else:
                full = y if full is None else full + y
        # bias + full + the upsampled others, cropped (one compiled pass on the CPU at inference)
        return upsample_sum(smaller, full, self.fuse.bias, padded, size)

    def forward(self, x0: torch.Tensor, generator: torch.Generator | None = None,
                shared_noise: bool = False) -> torch.Tensor:
        """Phi^L (B x C x H x W) of a 2-channel input (B x 2 x H x W)."""
        feats = self.decoder_features(x0, generator, shared_noise)
        return self.fuse_features(feats, tuple(x0.shape[-2:]))
