"""DMNet: dense multiscale fusion network with a diffusion module (Pan et al., IEEE IoT J. 2025).

    from dmnet import DMNet, DMNetConfig, ABLATIONS, PRESETS
    model = DMNet.from_preset("lite")            # or "paper"; ablation="AE5"; any config field=...
    fused = model(ir, vis_y)                     # B x 1 x H x W in [0, 1] -> same, deterministic
    losses = model.stage1_losses(ir, vis_y)      # / stage2_losses: dict of scalars, "total" to backprop
"""

from dmnet.ablations import ABLATIONS
from dmnet.config import GRAD_OPERATORS, DMNetConfig
from dmnet.errors import DMNetError
from dmnet.presets import PRESETS, build_config

__all__ = ["ABLATIONS", "DMNet", "DMNetConfig", "DMNetError", "GRAD_OPERATORS", "PRESETS", "build_config"]


def __getattr__(name: str):
    # The model pulls in torch; loading it lazily keeps `import dmnet.errors` (the CLI) light.
    if name == "DMNet":
        from dmnet.model import DMNet

        return DMNet
    raise AttributeError(f"module 'dmnet' has no attribute {name!r}")
