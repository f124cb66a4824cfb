"""Helpers of the tests of dmnet's compiled CPU routes: running a module on the torch route, and the
checks every route's output meets against the torch route and a float64 evaluation."""

from __future__ import annotations

import torch

from dmnet import compiled


def torch_route(module, *args):
    """``module(*args)`` with every compiled route switched off (the run-time switch, restored after)."""
    saved, compiled.AVAILABLE = compiled.AVAILABLE, False
    try:
        return module(*args)
    finally:
        compiled.AVAILABLE = saved


def assert_close_to_torch_and_float64(out: torch.Tensor, x: torch.Tensor, ref: torch.Tensor, exact: torch.Tensor) -> None:
    """`out` (compiled route) has x's shape, float32, channels-last; it equals the torch route's `ref` to
    float32 rounding and is as close to the float64 evaluation `exact` as `ref` is, or closer."""
    assert out.shape == x.shape and out.dtype == torch.float32 and out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-5)
    err, ref_err = (out.double() - exact).abs().max().item(), (ref.double() - exact).abs().max().item()
    assert err < 2e-5 and err <= 4 * ref_err + 1e-6
