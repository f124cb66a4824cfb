"""The dense aggregation shared by the DTB and the DIB (Fig. 3): the layers run in a chain and the
block returns a weight (omega, psi) times the sum of every layer's output."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def chain_sum(layers: Iterable[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Feed `x` through `layers` one after the other; the sum of their outputs (zeros for none)."""
    total = None
    for layer in layers:
        x = layer(x)
        total = x if total is None else total + x
    return total if total is not None else torch.zeros_like(x)
