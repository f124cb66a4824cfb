"""Lower precision for part of a float32 DMNet at inference: which part, and running it.

``DMNet.lower_precision()`` keeps the weights of :data:`LOW_PRECISION_PARTS` in bfloat16; every tensor
entering such a part is cast to its dtype, and what it returns is cast back to the caller's dtype
(:func:`run_in_own_dtype`), so the rest of the model runs in float32 as before. The default part is the
diffusion module's SR3 U-Net: its decoder features reach the fused image only through a float32 1x1
fusion (equation 9), the CSAB and the decoder. On a CPU with AMX its convolutions and attention then run
on the bf16 units with float32 accumulation. Measured with the shipped `lite` weights on 20 MSRS pairs
through ``fusedet fuse`` (PNG values against the float32 fusion): the U-Net in bf16, 100 % of values
within one grey level (largest difference 1); the DTB in bf16 as well (its residual stream then carries
bf16 rounding through five layers), only 99.884 % (largest difference 3), so the DTB stays float32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

LOW_PRECISION_PARTS = ("dm.unet",)

T = TypeVar("T")


def parameter_dtype(module: nn.Module) -> torch.dtype | None:
    """The dtype of `module`'s first parameter (None for a module without parameters, e.g. nn.Identity)."""
    return next((p.dtype for p in module.parameters()), None)


def run_in_own_dtype(module: nn.Module, call: Callable[..., T], x: torch.Tensor, *args) -> T:
    """``call(x, *args)`` with floating-point `x` cast to `module`'s parameter dtype when that differs,
    and every floating-point tensor of the result (a tensor or a list of them) cast back to x's dtype."""
    dtype = parameter_dtype(module)
    if dtype is None or dtype == x.dtype or not x.is_floating_point():
        return call(x, *args)
    out = call(x.to(dtype), *args)
    if isinstance(out, torch.Tensor):
        return out.to(x.dtype)
    return [t.to(x.dtype) for t in out]
