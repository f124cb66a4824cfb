"""Named configurations: ``paper`` (the published model) and ``lite`` (same blocks, CPU-sized).

``paper`` is the dataclass defaults of :class:`DMNetConfig` (about 392M parameters, almost all in the
SR3 U-Net; the paper reports 386.358M). ``lite`` keeps every block and the wiring (5 DTB layers,
3 coupling layers, CSAB, a 5-level SR3 U-Net with attention at level 3 and in the middle, latent
features at t = 5, 50, 100, the same decoder) with fewer channels: C = 8 with one attention head
(head width 8, as the paper's 64 channels / 8 heads), a U-Net of 8-16-16-32-32 channels with one
residual block per level and GroupNorm over 4 groups, about 0.3M parameters. Its U-Net has no
dropout: it is trained for minutes on a few hundred crops, where dropout only slows convergence.
On CPU every block runs at full resolution and is memory-bound, so time scales with pixels more
than with channels; the measured step and inference times are in the README section of dmnet.
"""

from __future__ import annotations

from typing import Any

from dmnet.config import DMNetConfig, field_names
from dmnet.errors import DMNetError

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "lite": {
        "dim": 8,
        "heads": 1,
        "unet_inner": 8,
        "unet_mults": (1, 2, 2, 4, 4),
        "unet_res_blocks": 1,
        "unet_norm_groups": 4,
        "unet_dropout": 0.0,
    },
}


def build_config(preset: str, ablation: str | None = None, **overrides: Any) -> DMNetConfig:
    """Preset values, then the Table V row ``ablation``, then ``overrides`` (each may replace the last)."""
    from dmnet.ablations import ABLATIONS

    if preset not in PRESETS:
        raise DMNetError(f"unknown DMNet preset {preset!r} (known: {', '.join(PRESETS)})")
    unknown = sorted(set(overrides) - set(field_names()))
    if unknown:
        raise DMNetError(f"unknown DMNet config key(s): {', '.join(unknown)}")
    for key in ("preset", "ablation"):
        if key in overrides:
            raise DMNetError(f"{key} is set by from_preset's own arguments, not as an override")
    values: dict[str, Any] = dict(PRESETS[preset])
    if ablation is not None:
        if ablation not in ABLATIONS:
            raise DMNetError(f"unknown ablation {ablation!r} (known: {', '.join(ABLATIONS)})")
        values.update(ABLATIONS[ablation])
    values.update(overrides)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return DMNetConfig(preset=preset, ablation=ablation, **values)
