"""DMNetConfig: every hyper-parameter of the model and its losses, JSON round-trippable.

Defaults are the paper's configuration (section III, IV-B) with the figures of the authors' public
model code (github Pancy9476/DMNet: ``config/diffusion.json`` for the diffusion module,
``models/net.py`` for the Restormer blocks, the INN and the CBAM-like attention).

The three loss weights are not given in the paper; we take them from CDDFuse (Zhao et al., CVPR 2023,
github Zhaozixiang1228/MMIF-CDDFuse, ``train.py`` and ``utils/loss.py``), the method DMNet's
two-stage training and losses follow [22]:

- ``gamma1 = 1.0``: CDDFuse weighs the IR and the VIS reconstruction losses equally
  (``coeff_mse_loss_VF = coeff_mse_loss_IF = 1``).
- ``lam = 2.5``: CDDFuse writes ``MSE + 5 * kornia.losses.SSIM(11)``, and kornia's SSIM loss is
  ``(1 - SSIM) / 2``; in the form of equation (14), ``MSE + lam * (1 - SSIM)``, that is ``lam = 2.5``.
- ``gamma2 = 10.0``: CDDFuse's fusion loss is ``loss_in + 10 * loss_grad`` with the same
  intensity (max) and Sobel-gradient (max) terms as equations (18)-(19).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from dmnet.errors import DMNetError

GRAD_OPERATORS = ("sobel", "canny", "log", "roberts")


@dataclass
class DMNetConfig:
    """All hyper-parameters of DMNet. Build one with ``DMNet.from_preset`` or directly.

    Invalid values raise :class:`DMNetError` at construction, so a config that exists is usable.
    """

    # bookkeeping
    preset: str = "custom"  # the preset the config was built from; "custom" when built directly
    ablation: str | None = None  # Table V row applied on top of the preset, if any
    seed: int = 0  # seeds the latent-feature noise of forward() (t in latent_timesteps)

    # encoder / decoder (C = dim channels everywhere)
    dim: int = 64
    heads: int = 8  # heads of the multi-Dconv head transposed attention
    ffn_expansion: float = 2.0  # gated-Dconv feed-forward expansion
    dtb_layers: int = 5
    omega: float = 1 / 5  # DTB output = omega * sum of its layers' outputs
    dib_layers: int = 3
    psi: float = 1 / 3  # DIB output = psi * sum of its layers' outputs
    inn_expansion: int = 2  # MobileNetV2 inverted residual expansion inside the coupling layers
    csab_reduction: int = 4
    csab_kernel: int = 7
    decoder_blocks: int = 1

    # diffusion module: DDPM schedule and SR3 epsilon U-Net
    diffusion_steps: int = 2000
    beta_start: float = 1e-6
    beta_end: float = 1e-2
    unet_inner: int = 128
    unet_mults: tuple[int, ...] = (1, 2, 4, 8, 8)
    unet_res_blocks: int = 2
    unet_attn_levels: tuple[int, ...] = (3,)  # level 3 has side 16 for a 128 input (SR3 attn_res 16)
    unet_dropout: float = 0.2
    unet_norm_groups: int = 32
    latent_timesteps: tuple[int, ...] = (5, 50, 100)
    # the diffusion module sees its input average-pooled by this factor (1: full resolution, the
    # paper); its features are brought back to input resolution as before (equation 9)
    dm_scale: int = 1

    # losses (see the module docstring for where the weights come from)
    gamma1: float = 1.0
    lam: float = 2.5
    gamma2: float = 10.0
    grad_operator: str = "sobel"

    # ablation switches (Table V); use_dm=False replaces the diffusion module by one plain conv
    use_dtb: bool = True
    use_dib: bool = True
    use_csab: bool = True
    use_dm: bool = True
    two_stage: bool = True  # False = AE1: the trainer runs stage II only, for both stages' epochs

    def __post_init__(self) -> None:
        _check_types(self)
        _check_values(self)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples become lists); ``from_dict`` rebuilds the same config."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DMNetConfig:
        """Rebuild a config; unknown keys or values of the wrong type raise DMNetError."""
        if not isinstance(data, dict):
            raise DMNetError(f"DMNet config must be a dict, got {type(data).__name__}")
        unknown = sorted(set(data) - set(field_names()))
        if unknown:
            raise DMNetError(f"unknown DMNet config key(s): {', '.join(unknown)}")
        kwargs = {}
        for key, value in data.items():
            if _FIELD_TYPES[key] == "tuple" and isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        return cls(**kwargs)

    def replace(self, **changes: Any) -> DMNetConfig:
        """A copy with some fields changed (validated); unknown fields raise DMNetError."""
        unknown = sorted(set(changes) - set(field_names()))
        if unknown:
            raise DMNetError(f"unknown DMNet config key(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(DMNetConfig))


# kind of each field, checked strictly (a bool is not an int here, an int is a valid float)
_FIELD_TYPES: dict[str, str] = {
    "preset": "str", "ablation": "str|None", "seed": "int",
    "dim": "int", "heads": "int", "ffn_expansion": "float", "dtb_layers": "int", "omega": "float",
    "dib_layers": "int", "psi": "float", "inn_expansion": "int", "csab_reduction": "int",
    "csab_kernel": "int", "decoder_blocks": "int",
    "diffusion_steps": "int", "beta_start": "float", "beta_end": "float", "unet_inner": "int",
    "unet_mults": "tuple", "unet_res_blocks": "int", "unet_attn_levels": "tuple",
    "unet_dropout": "float", "unet_norm_groups": "int", "latent_timesteps": "tuple", "dm_scale": "int",
    "gamma1": "float", "lam": "float", "gamma2": "float", "grad_operator": "str",
    "use_dtb": "bool", "use_dib": "bool", "use_csab": "bool", "use_dm": "bool", "two_stage": "bool",
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_types(cfg: DMNetConfig) -> None:
    for name, kind in _FIELD_TYPES.items():
        v = getattr(cfg, name)
        ok = {
            "str": isinstance(v, str),
            "str|None": v is None or isinstance(v, str),
            "int": _is_int(v),
            "float": (_is_int(v) or isinstance(v, float)) and math.isfinite(v),
            "bool": isinstance(v, bool),
            "tuple": isinstance(v, tuple) and len(v) > 0 and all(_is_int(x) for x in v),
        }[kind]
        if not ok:
            want = {"tuple": "a non-empty list of integers", "float": "a finite number"}.get(kind, kind)
            raise DMNetError(f"DMNet config: {name} must be {want}, got {v!r}")
        if kind == "float":
            object.__setattr__(cfg, name, float(v))


def _check_values(cfg: DMNetConfig) -> None:
    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise DMNetError(f"DMNet config: {msg}")

    for name in ("dim", "heads", "dtb_layers", "dib_layers", "inn_expansion", "csab_reduction",
                 "decoder_blocks", "diffusion_steps", "unet_inner", "unet_res_blocks", "unet_norm_groups"):
        need(getattr(cfg, name) >= 1, f"{name} must be >= 1, got {getattr(cfg, name)}")
    need(cfg.dim % 2 == 0, f"dim must be even (the DIB splits channels in halves), got {cfg.dim}")
    need(cfg.dim % cfg.heads == 0, f"dim ({cfg.dim}) must be divisible by heads ({cfg.heads})")
    need(cfg.ffn_expansion > 0, f"ffn_expansion must be > 0, got {cfg.ffn_expansion}")
    need(cfg.csab_kernel % 2 == 1, f"csab_kernel must be odd, got {cfg.csab_kernel}")
    need(cfg.omega > 0 and cfg.psi > 0, "omega and psi must be > 0")
    need(0 < cfg.beta_start < cfg.beta_end < 1, f"need 0 < beta_start < beta_end < 1, got "
         f"{cfg.beta_start}, {cfg.beta_end}")
    need(all(m >= 1 for m in cfg.unet_mults), f"unet_mults must be >= 1, got {list(cfg.unet_mults)}")
    for m in cfg.unet_mults:
        need((cfg.unet_inner * m) % cfg.unet_norm_groups == 0,
             f"unet channels {cfg.unet_inner}*{m} not divisible by unet_norm_groups {cfg.unet_norm_groups}")
    need(cfg.unet_inner % cfg.unet_norm_groups == 0,
         f"unet_inner {cfg.unet_inner} not divisible by unet_norm_groups {cfg.unet_norm_groups}")
    need(cfg.unet_inner % 2 == 0, f"unet_inner must be even (sinusoidal embedding), got {cfg.unet_inner}")
    levels = len(cfg.unet_mults)
    need(all(0 <= a < levels for a in cfg.unet_attn_levels),
         f"unet_attn_levels must lie in 0..{levels - 1}, got {list(cfg.unet_attn_levels)}")
    need(0 <= cfg.unet_dropout < 1, f"unet_dropout must be in [0, 1), got {cfg.unet_dropout}")
    need(cfg.dm_scale in (1, 2, 4, 8), f"dm_scale must be 1, 2, 4 or 8, got {cfg.dm_scale}")
    need(all(1 <= t <= cfg.diffusion_steps for t in cfg.latent_timesteps),
         f"latent_timesteps must lie in 1..{cfg.diffusion_steps}, got {list(cfg.latent_timesteps)}")
    for name in ("gamma1", "lam", "gamma2"):
        need(getattr(cfg, name) >= 0, f"{name} must be >= 0, got {getattr(cfg, name)}")
    need(cfg.grad_operator in GRAD_OPERATORS,
         f"grad_operator must be one of {', '.join(GRAD_OPERATORS)}, got {cfg.grad_operator!r}")
    if cfg.ablation is not None:
        from dmnet.ablations import ABLATIONS

        need(cfg.ablation in ABLATIONS,
             f"unknown ablation {cfg.ablation!r} (known: {', '.join(ABLATIONS)})")
