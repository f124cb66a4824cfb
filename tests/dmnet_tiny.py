"""A tiny DMNet configuration for fast CPU tests of training, checkpoints and inference.

Every block is present (DTB, DIB, CSAB, the diffusion U-Net with attention), only narrow and shallow:
about 46k parameters, a training step on four 32x32 crops takes a fraction of a second.
"""

from __future__ import annotations

import json

import pytest

TINY = {
    "dim": 8, "heads": 1, "dtb_layers": 1, "dib_layers": 1,
    "unet_inner": 8, "unet_mults": [1, 2], "unet_res_blocks": 1, "unet_norm_groups": 4,
    "unet_attn_levels": [1], "unet_dropout": 0.0, "diffusion_steps": 200, "latent_timesteps": [5, 50],
}


def tiny_model(**overrides):
    """The `lite` preset shrunk to TINY (plus `overrides`), seeded so every call gives the same weights."""
    import torch

    from dmnet import DMNet

    torch.manual_seed(0)
    return DMNet.from_preset("lite", **{**TINY, **overrides})


def tiny_cli_args() -> list[str]:
    """`--set KEY=VALUE` options that give TINY through `fusedet train-fuser`."""
    args: list[str] = []
    for key, value in TINY.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    return args


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models are dominated by per-op overhead: one thread is as fast, and immune to busy cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
