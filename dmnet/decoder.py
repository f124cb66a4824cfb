"""DMNet decoder, the same in both stages (section III-F, equations 11-12).

Hybrid transformer + CNN as in the authors' code (and CDDFuse's): Restormer block(s) at C channels,
then 3x3 conv C -> C/2, LeakyReLU, 3x3 conv C/2 -> 1, sigmoid, so the output is an image in [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn

from dmnet import compiled_restormer
from dmnet.config import DMNetConfig
from dmnet.kernels import conv_act
from dmnet.transformer import TransformerBlock


class Decoder(nn.Module):
    def __init__(self, cfg: DMNetConfig) -> None:
        super().__init__()
        c = cfg.dim
        self.blocks = nn.Sequential(
            *(TransformerBlock(c, cfg.heads, cfg.ffn_expansion) for _ in range(cfg.decoder_blocks))
        )
        self.head = nn.Sequential(
            nn.Conv2d(c, c // 2, 3, padding=1, bias=False),
            nn.LeakyReLU(),
            nn.Conv2d(c // 2, 1, 3, padding=1, bias=False),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """B x C x H x W features -> B x 1 x H x W image in [0, 1]."""
        # self.head's 3x3 conv, LeakyReLU (slope 0.01), 3x3 conv, then the sigmoid, with each
        # activation fused into its conv where oneDNN can (dmnet.kernels.conv_act)
        conv1, _, conv2 = self.head
        if compiled_restormer.supports(self.blocks, features):  # CPU inference: compiled passes
            features = compiled_restormer.restormer_forward(self.blocks, features)
        else:
            features = self.blocks(features)
        h = conv_act(features, conv1.weight, None, "leaky_relu", padding=1)
        return conv_act(h, conv2.weight, None, "sigmoid", padding=1)
