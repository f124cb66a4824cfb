"""Restormer transformer block and the dense transformer block (DTB) of DMNet (section III-B, Fig. 3).

The Restormer block (Zamir et al., CVPR 2022) as DMNet and CDDFuse use it: LayerNorm with bias over
channels, multi-Dconv head transposed attention (MDTA: attention between channels, so its cost is
linear in the number of pixels and any H x W works), and the gated-Dconv feed-forward network
(GDFN). Convolutions have no bias, as in the authors' code (``bias=False``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelLayerNorm(nn.Module):
    """LayerNorm with weight and bias over the channels of a B x C x H x W tensor."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, eps=1e-5)
        return y.permute(0, 3, 1, 2)


class MDTA(nn.Module):
    """Multi-Dconv head transposed attention: per head, softmax(norm(Q) norm(K)^T * temperature) V,
    where Q, K, V are (channels of the head) x (pixels) after a 1x1 and a depthwise 3x3 conv."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=False)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = (t.reshape(b, self.heads, c // self.heads, h * w)
                   for t in self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1))
        # cosine similarity of q and k rows (Restormer's F.normalize), normalised after the
        # product: same result, without two full-resolution divisions and their backward
        q_norm = torch.linalg.vector_norm(q, dim=-1).clamp_min(1e-12)
        k_norm = torch.linalg.vector_norm(k, dim=-1).clamp_min(1e-12)
        cosine = (q @ k.transpose(-2, -1)) / (q_norm[..., :, None] * k_norm[..., None, :])
        attn = torch.softmax(cosine * self.temperature, dim=-1)
        return self.project_out((attn.to(v.dtype) @ v).reshape(b, c, h, w))


class GDFN(nn.Module):
    """Gated-Dconv feed-forward: 1x1 up to 2 x hidden, depthwise 3x3, GELU(x1) * x2, 1x1 down."""

    def __init__(self, dim: int, expansion: float) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=False)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=False)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class TransformerBlock(nn.Module):
    """Restormer block: x + MDTA(LN(x)), then x + GDFN(LN(x)). Shape preserving."""

    def __init__(self, dim: int, heads: int, ffn_expansion: float) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim)
        self.attn = MDTA(dim, heads)
        self.norm2 = ChannelLayerNorm(dim)
        self.ffn = GDFN(dim, ffn_expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class DTB(nn.Module):
    """Dense transformer block: each layer's output is the next layer's input, and the block
    returns omega * (sum of all layers' outputs) (Fig. 3, omega = 1/5 for 5 layers)."""

    def __init__(self, dim: int, heads: int, ffn_expansion: float, layers: int, omega: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerBlock(dim, heads, ffn_expansion) for _ in range(layers))
        self.omega = omega

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = torch.zeros_like(x)
        for layer in self.layers:
            x = layer(x)
            total = total + x
        return self.omega * total
