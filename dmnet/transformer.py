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

from dmnet import compiled_restormer
from dmnet.dense import chain_sum
from dmnet.kernels import conv1x1, conv_act, conv_mul, layer_norm_conv1x1, mix_channels_add


def pixels(x: torch.Tensor) -> torch.Tensor:
    """B x C x H x W -> B x HW x C, a view (no copy) for channels-last and for contiguous tensors."""
    return x.permute(0, 2, 3, 1).flatten(1, 2)


class ChannelLayerNorm(nn.Module):
    """LayerNorm with weight and bias over the channels of a B x C x H x W tensor."""

    eps = 1e-5

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, eps=self.eps)
        return y.permute(0, 3, 1, 2)

    def conv1x1(self, x: torch.Tensor, weights: list[torch.Tensor]) -> list[torch.Tensor]:
        """``[conv1x1(self(x), w) for w in weights]``, computed as ``kernels.layer_norm_conv1x1``."""
        return layer_norm_conv1x1(x, self.weight, self.bias, self.eps, weights)


class MDTA(nn.Module):
    """Multi-Dconv head transposed attention: per head, softmax(norm(Q) norm(K)^T * temperature) V,
    where Q, K, V are (channels of the head) x (pixels) after a 1x1 and a depthwise 3x3 conv.

    Computed on pixels-by-channels views (no copies for channels-last or contiguous tensors), with
    q, k and v from separate slices of the two convs' weights (both convs act per output channel),
    so that q|k and v are each one contiguous tensor. Restormer normalises the rows of q and k
    before the product; we divide the product by the norms instead (same result, no
    full-resolution divisions). With one head, the products and the squared norms are all in the
    Gram matrix of [q, k], one matrix product over the pixels. The output projection is linear, so
    it is folded into the attention matrix: project_out(attn @ v) = v @ (W_out blockdiag(attn))^T,
    one product at full resolution.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=False)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor, norm: ChannelLayerNorm | None = None,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        """MDTA(x), or MDTA(norm(x)) when ``norm`` is given (normalised and projected together);
        ``residual`` + that when ``residual`` is given (added as the output is written)."""
        b, c, h, w = x.shape
        heads = self.heads
        parts = (slice(0, 2 * c), slice(2 * c, 3 * c))  # [q, k] and v channels
        w_in, w_dw = self.qkv.weight, self.qkv_dwconv.weight
        if norm is None:
            qk, v = (conv1x1(x, w_in[part]) for part in parts)
        else:
            qk, v = norm.conv1x1(x, [w_in[part] for part in parts])
        qk, v = (F.conv2d(t, w_dw[part], padding=1, groups=part.stop - part.start) for t, part in zip((qk, v), parts))
        qk = pixels(qk)  # B x HW x 2C
        # the attention and W_out blockdiag(attn) (C x C per image) in float32 at least, autocast or not
        with torch.autocast(x.device.type, enabled=False):
            qk = qk.to(torch.promote_types(qk.dtype, torch.float32))
            if heads == 1:
                mix = self.mixing(qk.transpose(1, 2) @ qk)  # [q k]^T [q k]: q.k products and squared norms
            else:
                mix = self._mix(*self._cosine_heads(qk, c))
        if residual is not None:
            return mix_channels_add(residual, v, mix)
        out = pixels(v) @ mix.transpose(1, 2).to(v.dtype)  # B x HW x C
        return out.unflatten(1, (h, w)).permute(0, 3, 1, 2)

    def mixing(self, gram: torch.Tensor) -> torch.Tensor:
        """``W_out blockdiag(attn)``, B x C x C, from the B x 2C x 2C Gram matrix of the pixels of [q, k]
        (its q.k products and squared norms): what :func:`dmnet.compiled_restormer.restormer_forward` hands back."""
        c = gram.shape[-1] // 2
        heads, d = self.heads, c // self.heads
        norms = gram.diagonal(dim1=-2, dim2=-1).sqrt().clamp_min(1e-12)  # F.normalize's eps
        dots = gram[:, :c, c:].unflatten(1, (heads, d)).unflatten(3, (heads, d)).diagonal(dim1=1, dim2=3)
        return self._mix(dots.permute(0, 3, 1, 2), norms[:, :c].unflatten(1, (heads, d)),
                         norms[:, c:].unflatten(1, (heads, d)))

    def _cosine_heads(self, qk: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per head, the q.k products (B x heads x d x d) and the norms of q's and k's channel rows
        (B x heads x d each), from the B x HW x 2C pixels of [q, k]."""
        q, k = (t.unflatten(-1, (self.heads, c // self.heads)).transpose(1, 2)  # B x heads x HW x d
                for t in (qk[..., :c], qk[..., c:]))
        norms = (torch.linalg.vector_norm(t, dim=-2).clamp_min(1e-12) for t in (q, k))  # F.normalize's eps
        return q.transpose(-2, -1) @ k, *norms

    def _mix(self, dots: torch.Tensor, q_norm: torch.Tensor, k_norm: torch.Tensor) -> torch.Tensor:
        """softmax(cosine * temperature) per head, with the output projection folded in: B x C x C."""
        cosine = dots / (q_norm[..., :, None] * k_norm[..., None, :])
        attn = torch.softmax(cosine * self.temperature.to(cosine.dtype), dim=-1)
        b, heads, d, _ = attn.shape
        w_out = self.project_out.weight.to(attn.dtype).flatten(1).view(heads * d, heads, d).transpose(0, 1)  # heads C d
        return (w_out @ attn).permute(0, 2, 1, 3).reshape(b, heads * d, heads * d)


class GDFN(nn.Module):
    """Gated-Dconv feed-forward: 1x1 up to 2 x hidden, depthwise 3x3, GELU(x1) * x2, 1x1 down."""

    def __init__(self, dim: int, expansion: float) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=False)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=False)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: torch.Tensor, norm: ChannelLayerNorm | None = None) -> torch.Tensor:
        """GDFN(x), or GDFN(norm(x)) when ``norm`` is given (normalised and projected together)."""
        # the two halves as two separate tensors (the convs are per channel group): GELU on a
        # channel slice of a channels-last tensor is several times slower than on a whole tensor
        hidden = self.project_out.in_channels
        w_in, w_dw = self.project_in.weight, self.dwconv.weight
        halves = (slice(0, hidden), slice(hidden, 2 * hidden))
        if norm is None:
            x1, x2 = (conv1x1(x, w_in[part]) for part in halves)
        else:
            x1, x2 = norm.conv1x1(x, [w_in[part] for part in halves])
        # GELU(dwconv(x1)) * dwconv(x2), each element-wise step fused into its conv where oneDNN can
        gate = conv_act(x1, w_dw[halves[0]], None, "gelu", padding=1, groups=hidden)
        return conv1x1(conv_mul(x2, gate, w_dw[halves[1]], padding=1, groups=hidden), self.project_out.weight)


class TransformerBlock(nn.Module):
    """Restormer block: x + MDTA(LN(x)), then x + GDFN(LN(x)). Shape preserving."""

    def __init__(self, dim: int, heads: int, ffn_expansion: float) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim)
        self.attn = MDTA(dim, heads)
        self.norm2 = ChannelLayerNorm(dim)
        self.ffn = GDFN(dim, ffn_expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(x, self.norm1, residual=x)  # = x + attn(norm1(x))
        return x + self.ffn(x, self.norm2)  # = x + ffn(norm2(x))


class DTB(nn.Module):
    """Dense transformer block: each layer's output is the next layer's input, and the block
    returns omega * (sum of all layers' outputs) (Fig. 3, omega = 1/5 for 5 layers)."""

    def __init__(self, dim: int, heads: int, ffn_expansion: float, layers: int, omega: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerBlock(dim, heads, ffn_expansion) for _ in range(layers))
        self.omega = omega

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if compiled_restormer.supports(self.layers, x):  # CPU inference of a small block: compiled passes
            return compiled_restormer.restormer_forward(self.layers, x, self.omega)
        return self.omega * chain_sum(self.layers, x)
