"""SR3 epsilon-prediction U-Net, the denoising network of DMNet's diffusion module (Fig. 4).

The architecture of SR3 (Saharia et al., 2021) as DMNet's config instantiates it: a 3x3 input conv
to ``inner`` channels; per level ``res_blocks`` residual blocks (GroupNorm, Swish, 3x3 conv, time
embedding added after the first conv, dropout before the second) at ``inner * mult`` channels, a
stride-2 conv between levels; a middle of two residual blocks (the first with self-attention); a
decoder with ``res_blocks + 1`` residual blocks per level over the concatenated skip features and
nearest-neighbour x2 upsampling + 3x3 conv; a GroupNorm-Swish-3x3 conv output block.
Self-attention (single head, as SR3) follows each residual block of the levels in ``attn_levels``
and is computed with ``scaled_dot_product_attention`` (the fastest kernel its head width allows).

Time conditioning: the sinusoidal embedding of the integer step t (SR3 embeds the continuous noise
level sqrt(abar) instead; equation 17 writes eta(I_t, t), and at t = 5, 50, 100 the noise levels
are 0.99997, 0.99692, 0.98764, which SR3's embedding barely tells apart, while t's embedding does).

``forward(x, t)`` predicts the noise; ``decoder_features(x, t)`` returns the output of the last
residual block of every decoder level (deepest first), the multi-scale features DMNet fuses.
Inputs must have H and W divisible by 2 ** (levels - 1); the diffusion module pads for that.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dmnet import compiled_norm
from dmnet.kernels import conv1x1, conv_add, conv_bias_per_image, downsample_conv, group_norm


class TimeEmbedding(nn.Module):
    """Sinusoidal embedding of t (SR3's PositionalEncoding) followed by the SR3 MLP."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 4), nn.SiLU(), nn.Linear(dim * 4, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(-math.log(1e4) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        angles = t.float()[:, None] * freqs[None, :]
        return self.mlp(torch.cat((angles.sin(), angles.cos()), dim=-1).to(self.mlp[0].weight.dtype))


def _norm_act(channels: int, groups: int) -> nn.Sequential:
    return nn.Sequential(nn.GroupNorm(groups, channels), nn.SiLU())


class ResBlock(nn.Module):
    """SR3 residual block with the time embedding added after the first conv."""

    def __init__(self, dim: int, dim_out: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.block1 = nn.Sequential(_norm_act(dim, groups), nn.Conv2d(dim, dim_out, 3, padding=1))
        self.emb = nn.Linear(emb_dim, dim_out)
        self.block2 = nn.Sequential(
            _norm_act(dim_out, groups),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Conv2d(dim_out, dim_out, 3, padding=1),
        )
        self.skip = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # SiLU in place on fresh tensors, the residual added by the second conv as it writes (oneDNN's
        # post-op, dmnet.kernels.conv_add): fewer full-resolution allocations and passes, the same
        # gradients (tested)
        (norm1, _), conv1 = self.block1
        (norm2, _), dropout, conv2 = self.block2
        skip = self.skip
        residual = conv1x1(x, skip.weight, skip.bias) if isinstance(skip, nn.Conv2d) else x
        if compiled_norm.supports(x, norm1) and conv1.out_channels <= compiled_norm.MAX_CHANNELS:
            # CPU inference at full resolution: GroupNorm + SiLU compiled, the time embedding entering the
            # second norm instead of the first conv's output (the same sum)
            h = conv1(compiled_norm.group_norm_silu(x, norm1))
            h = dropout(compiled_norm.group_norm_silu(h, norm2, self.emb(emb)))
        else:
            h = conv_bias_per_image(F.silu(group_norm(x, norm1), inplace=True), conv1.weight, conv1.bias,
                                    self.emb(emb), padding=1)
            h = dropout(F.silu(group_norm(h, norm2), inplace=True))
        return conv_add(h, residual, conv2.weight, conv2.bias, padding=1)  # conv2(h) + residual


class SelfAttention(nn.Module):
    """Single-head spatial self-attention with a residual connection (SR3), via SDPA."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, channels * 3, 1, bias=False)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # pixels as tokens: a view, no copy, when x is channels-last (as DMNet keeps it)
        qkv = conv1x1(self.norm(x), self.qkv.weight).permute(0, 2, 3, 1).reshape(b, 1, h * w, 3 * c)
        q, k, v = qkv.split(c, dim=-1)  # b, 1 head, hw, c
        out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(c), as SR3
        return conv1x1(out.reshape(b, h, w, c).permute(0, 3, 1, 2), self.out.weight, self.out.bias).add_(x)


class ResAttnBlock(nn.Module):
    """A residual block, optionally followed by self-attention."""

    def __init__(self, dim: int, dim_out: int, emb_dim: int, groups: int, dropout: float,
                 attention: bool) -> None:
        super().__init__()
        self.res = ResBlock(dim, dim_out, emb_dim, groups, dropout)
        self.attn = SelfAttention(dim_out, groups) if attention else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = self.res(x, emb)
        return self.attn(x) if self.attn is not None else x


class Upsample(nn.Module):
    """x2 nearest-neighbour upsampling, then a 3x3 conv (SR3).

    Computed as one stride-2 transposed conv of the low-resolution input with a 4 x 4 kernel made
    of sums of the 3 x 3 taps: after nearest upsampling, output pixel 2i (per axis) sees the inputs
    i-1, i, i with taps w0, w1, w2, and pixel 2i+1 sees i, i, i+1, so the kernel is
    [w2, w1+w2, w0+w1, w0] per axis, with the zero padding of the conv falling on the zero padding
    of the input. The same linear map at 4/9 of the multiply-adds, and the upsampled tensor is
    never built (equality with the two-step form is tested).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        # row a of the 4 x 4 kernel sums the rows k of the 3 x 3 kernel with phases[a, k] = 1
        # (not saved: the checkpoint format is unchanged)
        phases = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
        self.register_buffer("phases", phases, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv.weight
        with torch.autocast(x.device.type, enabled=False):  # sums of taps in the weights' precision
            kernel = torch.einsum("ak,oikl,bl->ioab", self.phases.to(w.dtype), w, self.phases.to(w.dtype))
        if x.is_contiguous(memory_format=torch.channels_last):
            kernel = kernel.contiguous(memory_format=torch.channels_last)
        return F.conv_transpose2d(x, kernel, self.conv.bias, stride=2, padding=1)


class SR3UNet(nn.Module):
    """Epsilon-predicting U-Net over ``in_channels``-channel images (2 in DMNet: [IR, VIS-Y])."""

    def __init__(self, in_channels: int = 2, out_channels: int = 2, inner: int = 128,
                 mults: tuple[int, ...] = (1, 2, 4, 8, 8), res_blocks: int = 2,
                 attn_levels: tuple[int, ...] = (3,), dropout: float = 0.2, groups: int = 32) -> None:
        super().__init__()
        self.levels = len(mults)
        self.time = TimeEmbedding(inner)
        self.init_conv = nn.Conv2d(in_channels, inner, 3, padding=1)

        def block(cin: int, cout: int, level: int) -> ResAttnBlock:
            return ResAttnBlock(cin, cout, inner, groups, dropout, level in attn_levels)

        skip_channels = [inner]
        ch = inner
        self.down_blocks = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        for level, mult in enumerate(mults):
            blocks = nn.ModuleList()
            for _ in range(res_blocks):
                blocks.append(block(ch, inner * mult, level))
                ch = inner * mult
                skip_channels.append(ch)
            self.down_blocks.append(blocks)
            if level < self.levels - 1:
                self.downsamples.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skip_channels.append(ch)

        self.mid = nn.ModuleList([
            ResAttnBlock(ch, ch, inner, groups, dropout, attention=True),
            ResAttnBlock(ch, ch, inner, groups, dropout, attention=False),
        ])

        self.up_blocks = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        self.feature_channels: list[int] = []  # of decoder_features, deepest level first
        for level in reversed(range(self.levels)):
            blocks = nn.ModuleList()
            for _ in range(res_blocks + 1):
                blocks.append(block(ch + skip_channels.pop(), inner * mults[level], level))
                ch = inner * mults[level]
            self.up_blocks.append(blocks)
            self.feature_channels.append(ch)
            if level > 0:
                self.upsamples.append(Upsample(ch))
        self.final = nn.Sequential(_norm_act(ch, groups), nn.Conv2d(ch, out_channels, 3, padding=1))

    def _run(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        emb = self.time(t)
        h = self.init_conv(x)
        skips = [h]
        for level, blocks in enumerate(self.down_blocks):
            for blk in blocks:
                h = blk(h, emb)
                skips.append(h)
            if level < self.levels - 1:
                h = downsample_conv(self.downsamples[level], h)
                skips.append(h)
        for blk in self.mid:
            h = blk(h, emb)
        feats = []
        for i, blocks in enumerate(self.up_blocks):
            for blk in blocks:
                h = blk(torch.cat((h, skips.pop()), dim=1), emb)
            feats.append(h)
            if i < self.levels - 1:
                h = self.upsamples[i](h)
        return h, feats

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Predicted noise, same shape as ``x``; ``t`` is a (B,) tensor of steps."""
        h, _ = self._run(x, t)
        return self.final(h)

    def decoder_features(self, x: torch.Tensor, t: torch.Tensor) -> list[torch.Tensor]:
        """Last residual-block output of every decoder level: side H / 2**(levels-1) ... H."""
        return self._run(x, t)[1]
