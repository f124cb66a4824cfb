"""Channel and spatial attention block (CSAB) of DMNet (section III-D, Fig. 5).

CBAM-like, with "mixed pooling" (0.5 average + 0.5 max) in place of CBAM's average pooling, as in
the authors' code:

- channel map  = sigmoid(MLP(global max pool) + MLP(global mixed pool)), MLP shared, reduction 4;
- spatial map  = sigmoid(conv7x7([channel-wise max, channel-wise mixed]));
- CSAB(x)      = y * spatial_map(y) with y = x * channel_map(x).
"""

from __future__ import annotations

import torch
from torch import nn

from dmnet import compiled_csab
from dmnet.kernels import conv_act


def _global_max(x: torch.Tensor) -> torch.Tensor:
    """``x.amax(dim=(2, 3), keepdim=True)``.

    On a channels-last tensor that reduction runs with the 8 or so channels as the inner loop and
    is ~7x slower than a reduction over rows of 16 pixels x C channels followed by a max over the
    16 partial maxima, which gives the same values. Used without autograd only: the two-step max
    would share the gradient among tied maxima differently from ``amax``.
    """
    b, c, h, w = x.shape
    if torch.is_grad_enabled() or (h * w) % 16 or not x.is_contiguous(memory_format=torch.channels_last):
        return x.amax(dim=(2, 3), keepdim=True)
    partial = x.permute(0, 2, 3, 1).reshape(b, h * w // 16, 16 * c).amax(dim=1)
    return partial.view(b, 16, c).amax(dim=1)[:, :, None, None]


class ChannelAttention(nn.Module):
    """B x C x H x W -> B x C x 1 x 1 attention map in [0, 1]."""

    def __init__(self, dim: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, dim // reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(dim, hidden, 1, bias=False), nn.ReLU(), nn.Conv2d(hidden, dim, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_pools(_global_max(x), x.mean(dim=(2, 3), keepdim=True))

    def from_pools(self, max_pool: torch.Tensor, mean_pool: torch.Tensor) -> torch.Tensor:
        """The attention map from the global max and mean pools (B x C x 1 x 1 each)."""
        mixed_pool = 0.5 * mean_pool + 0.5 * max_pool
        return torch.sigmoid(self.mlp(max_pool) + self.mlp(mixed_pool))


class SpatialAttention(nn.Module):
    """B x C x H x W -> B x 1 x H x W attention map in [0, 1]."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel, padding=kernel // 2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        max_map = x.amax(dim=1, keepdim=True)
        mixed_map = 0.5 * x.mean(dim=1, keepdim=True) + 0.5 * max_map
        conv = self.conv
        return conv_act(torch.cat((max_map, mixed_map), dim=1), conv.weight, conv.bias, "sigmoid", padding=conv.padding[0])


class CSAB(nn.Module):
    """Channel attention, then spatial attention on the re-weighted features. Shape preserving."""

    def __init__(self, dim: int, reduction: int = 4, kernel: int = 7) -> None:
        super().__init__()
        self.channel = ChannelAttention(dim, reduction)
        self.spatial = SpatialAttention(kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if compiled_csab.supports(self, x):  # CPU inference: two compiled passes
            return compiled_csab.csab_forward(self, x)
        x = x * self.channel(x)
        return x * self.spatial(x)
