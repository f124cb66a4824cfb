"""DMNet: the two-stage wiring of equations (1)-(12) and the losses of (13)-(19).

Stage I (Fig. 2a): each source image goes through the shared encoder and the decoder,
I' = DE(CSAB(DIB(DTB(embed(I))))) (equation 11); the diffusion module is trained alongside on the
2-channel [IR, VIS-Y] image in [-1, 1] with L_dm. Its parameters are disjoint from the
autoencoder's, so the "total" L_au + L_dm gives each part exactly the gradient of its own loss.

Stage II (Fig. 2b): Phi^B = DTB(embed(.)) of each source (eq. 1); Phi^D = DIB(Phi^B) (eq. 2);
Phi^L = DM(Conv(concat(Phi^B_ir, Phi^B_vis))) with the conv giving 2 channels (eq. 9); and
F = DE(CSAB(Phi^D_ir) + CSAB(Phi^D_vis) + CSAB(Phi^L)) (eqs. 10, 12), one CSAB for all three.
Loss: L_int + L_dm + gamma2 * L_gd (eq. 18). The paper says L_dm is "the same as in the first
stage": we keep it on the [IR, VIS-Y] image pair. (On the stage-II DM input, a learned feature
map, L_dm would be minimised by shrinking that map towards zero, which carries no information.)

Latent-feature noise (t in ``latent_timesteps``): ``forward`` draws it from a generator seeded with
``config.seed`` on the input's device, one draw shared by every image of the batch, so an image's
noise does not depend on the batch it is in (its output then differs across batch sizes only by
float rounding: convolution libraries pick their algorithm per batch size). ``stage2_losses`` draws fresh noise per sample
from its ``generator`` argument (or the global RNG), like the t and noise of L_dm.

Sources are processed as one batch of 2B (IR and VIS together) through the shared encoder and
decoder: every layer acts per sample, so this equals two separate passes, at half the launches.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dmnet.config import DMNetConfig
from dmnet.decoder import Decoder
from dmnet.encoder import Encoder
from dmnet.errors import DMNetError
from dmnet.latent import DiffusionModule
from dmnet.losses import autoencoder_loss, gradient_loss, intensity_loss, to_diffusion_range
from dmnet.precision import LOW_PRECISION_PARTS
from dmnet.presets import build_config


def _check_pair(ir: Any, vis: Any, weight: torch.Tensor | None = None) -> None:
    """DMNetError unless ir and vis_y are B x 1 x H x W floating-point tensors of one shape and device
    (and, given the model's first `weight`, of its dtype and on its device)."""
    for name, x in (("ir", ir), ("vis_y", vis)):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise DMNetError(f"DMNet: {name} must be a floating-point tensor, got {type(x).__name__}"
                             + (f" of {x.dtype}" if isinstance(x, torch.Tensor) else ""))
        if x.dim() != 4 or x.shape[1] != 1:
            raise DMNetError(f"DMNet: {name} must be B x 1 x H x W, got shape {tuple(x.shape)}")
        if min(x.shape[-2:]) < 2 or x.shape[0] < 1:
            raise DMNetError(f"DMNet: {name} is too small ({tuple(x.shape)}); need H, W >= 2")
    if ir.shape != vis.shape:
        raise DMNetError(f"DMNet: ir and vis_y shapes differ: {tuple(ir.shape)} vs {tuple(vis.shape)}")
    if ir.device != vis.device:
        raise DMNetError(f"DMNet: ir is on {ir.device} but vis_y on {vis.device}")
    if weight is not None and (ir.dtype != weight.dtype or ir.device != weight.device):
        raise DMNetError(f"DMNet: the sources are {ir.dtype} on {ir.device} but the model is {weight.dtype} on "
                         f"{weight.device}: convert one to the other (e.g. ir.float(), model.to(device))")


class DMNet(nn.Module):
    """The DMNet fusion network. ``model(ir, vis_y)`` -> fused B x 1 x H x W in [0, 1]."""

    def __init__(self, config: DMNetConfig) -> None:
        super().__init__()
        if not isinstance(config, DMNetConfig):
            raise DMNetError(f"DMNet needs a DMNetConfig, got {type(config).__name__}")
        self.config = config
        c = config.dim
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.dm_in = nn.Conv2d(2 * c, 2, 3, padding=1)  # Conv(concat(Phi^B_ir, Phi^B_vis)), eq. (9)
        # the diffusion module, or for the ablations (use_dm=False) one plain conv in its place
        self.dm: nn.Module = DiffusionModule(config) if config.use_dm else nn.Conv2d(2, c, 3, padding=1)
        # channels-last: oneDNN (CPU) and cuDNN (bf16 tensor cores) run these convs several times faster
        self.to(memory_format=torch.channels_last)

    @classmethod
    def from_preset(cls, name: str, ablation: str | None = None, **overrides: Any) -> DMNet:
        """Build the ``paper`` or ``lite`` preset, optionally with a Table V row and overrides."""
        return cls(build_config(name, ablation=ablation, **overrides))

    def lower_precision(self, dtype: torch.dtype = torch.bfloat16, parts: tuple[str, ...] | None = None) -> DMNet:
        """Keep the weights of `parts` in `dtype`, for inference: those parts then compute in `dtype` and
        hand float32 back to the rest of the model (see dmnet.precision, which says why these parts). In
        place; returns the model. The float32 weights are not kept: build the model again for float32.
        `parts` None: those of LOW_PRECISION_PARTS this model has (the diffusion U-Net; nothing for a
        Table V row without the diffusion module). DMNetError in training mode (call .eval() first) and
        for a named part the model does not have."""
        if self.training:
            raise DMNetError("lower_precision is for inference: call model.eval() first")
        names = dict(self.named_modules())
        if parts is None:
            parts = tuple(name for name in LOW_PRECISION_PARTS if name in names)
        for name in parts:
            if name not in names:
                raise DMNetError(f"DMNet has no part {name!r} to lower (e.g. {', '.join(LOW_PRECISION_PARTS)})")
            names[name].to(dtype)
        return self

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---------------------------------------------------------------- building blocks
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Stage-I autoencoder, equation (11): DE(Phi^A) of B x 1 x H x W images."""
        return self.decoder(self.encoder(images))

    def latent(self, base_ir: torch.Tensor, base_vis: torch.Tensor,
               generator: torch.Generator | None = None, shared_noise: bool = False) -> torch.Tensor:
        """Phi^L = DM(Conv(concat(Phi^B_ir, Phi^B_vis))), equation (9)."""
        x = self.dm_in(torch.cat((base_ir, base_vis), dim=1))
        if isinstance(self.dm, DiffusionModule):
            return self.dm(x, generator=generator, shared_noise=shared_noise)
        return self.dm(x)

    def fuse(self, ir: torch.Tensor, vis_y: torch.Tensor, generator: torch.Generator | None = None,
             shared_noise: bool = False) -> torch.Tensor:
        """Stage-II fusion, equations (1), (2), (9), (10), (12)."""
        b = ir.shape[0]
        base = self.encoder.base(torch.cat((ir, vis_y), dim=0))
        detail = self.encoder.detail(base)
        lat = self.latent(base[:b], base[b:], generator, shared_noise)
        attended = self.encoder.attend(torch.cat((detail, lat), dim=0))  # ir, vis, latent: 3B
        return self.decoder(attended[:b] + attended[b:2 * b] + attended[2 * b:])

    def forward(self, ir: torch.Tensor, vis_y: torch.Tensor) -> torch.Tensor:
        """Deterministic stage-II inference: B x 1 x H x W sources in [0, 1] -> fused image, float32."""
        _check_pair(ir, vis_y, self.encoder.embed.weight)
        generator = torch.Generator(device=ir.device).manual_seed(self.config.seed)
        return self.fuse(ir, vis_y, generator, shared_noise=True).float()

    # ---------------------------------------------------------------- losses
    def _dm_loss(self, ir: torch.Tensor, vis_y: torch.Tensor,
                 generator: torch.Generator | None) -> torch.Tensor:
        if not isinstance(self.dm, DiffusionModule):
            return torch.zeros((), device=ir.device)
        return self.dm.loss(to_diffusion_range(torch.cat((ir, vis_y), dim=1)), generator)

    def stage1_losses(self, ir: torch.Tensor, vis_y: torch.Tensor,
                      generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Stage I: total = L_au + L_dm, with au, rec_vi, rec_ir, dm for logging (eqs. 13-17)."""
        _check_pair(ir, vis_y, self.encoder.embed.weight)
        b = ir.shape[0]
        recon = self.reconstruct(torch.cat((ir, vis_y), dim=0))
        losses = autoencoder_loss(vis_y, recon[b:], ir, recon[:b], self.config.gamma1, self.config.lam)
        losses["dm"] = self._dm_loss(ir, vis_y, generator)
        losses["total"] = losses["au"] + losses["dm"]
        return losses

    def stage2_losses(self, ir: torch.Tensor, vis_y: torch.Tensor,
                      generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Stage II: total = L_int + L_dm + gamma2 * L_gd (eqs. 18-19), with int, gd, dm."""
        _check_pair(ir, vis_y, self.encoder.embed.weight)
        fused = self.fuse(ir, vis_y, generator, shared_noise=False)
        l_int = intensity_loss(fused, ir, vis_y)
        l_gd = gradient_loss(fused, ir, vis_y, self.config.grad_operator)
        l_dm = self._dm_loss(ir, vis_y, generator)
        return {"total": l_int + l_dm + self.config.gamma2 * l_gd, "int": l_int, "gd": l_gd, "dm": l_dm}
