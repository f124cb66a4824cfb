"""DMNet encoder, shared by IR and VIS-Y (section III-E): 3x3 conv embed -> DTB -> DIB -> CSAB.

Each stage can be switched off (identity) for the ablations of Table V. The stages are exposed
separately because stage II branches after the DTB: Phi^B feeds both the DIB and the diffusion
module (equations 1, 2, 9).
"""

from __future__ import annotations

import torch
from torch import nn

from dmnet.attention import CSAB
from dmnet.config import DMNetConfig
from dmnet.invertible import DIB
from dmnet.precision import run_in_own_dtype
from dmnet.transformer import DTB


class Encoder(nn.Module):
    def __init__(self, cfg: DMNetConfig) -> None:
        super().__init__()
        self.embed = nn.Conv2d(1, cfg.dim, 3, padding=1, bias=False)
        self.dtb = (DTB(cfg.dim, cfg.heads, cfg.ffn_expansion, cfg.dtb_layers, cfg.omega)
                    if cfg.use_dtb else nn.Identity())
        self.dib = DIB(cfg.dim, cfg.inn_expansion, cfg.dib_layers, cfg.psi) if cfg.use_dib else nn.Identity()
        self.csab = CSAB(cfg.dim, cfg.csab_reduction, cfg.csab_kernel) if cfg.use_csab else nn.Identity()

    def base(self, x: torch.Tensor) -> torch.Tensor:
        """Phi^B = DTB(embed(x)) (equation 1); x is B x 1 x H x W."""
        return run_in_own_dtype(self.dtb, self.dtb, self.embed(x))  # the DTB may be kept in bf16 (dmnet.precision)

    def detail(self, base: torch.Tensor) -> torch.Tensor:
        """Phi^D = DIB(Phi^B) (equation 2)."""
        return self.dib(base)

    def attend(self, features: torch.Tensor) -> torch.Tensor:
        """Phi^A = CSAB(Phi) (equation 10); the same CSAB serves Phi^D_ir, Phi^D_vis and Phi^L."""
        return self.csab(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Stage-I path: Phi^A = CSAB(DIB(DTB(embed(x))))."""
        return self.attend(self.detail(self.base(x)))
