"""The `dmnet` fuser: a trained DMNet checkpoint behind the Fuser interface.

``get_fuser("dmnet")`` loads the weights shipped in the package (fusedet/weights/dmnet_lite.pt, see its
model card dmnet_lite.md); ``get_fuser("dmnet:PATH")`` loads a checkpoint written by
``fusedet train-fuser``. Inference is stage II of the model (deterministic), batched over B x 1 x H x W
tensors of any size. ``precision="bf16"`` runs under bf16 autocast (CUDA); the default is fp32.
A checkpoint may name a post-processing of the fused luma in its summary (``summary["postprocess"]``,
see fusedet.postprocess): part of that fuser, applied to every image alike.
On CPU, a small model's passes ask fusedet.runtime to keep freed malloc memory for reuse while the
session lasts (``fusedet.runtime.keep_freed_memory``).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import torch

from dmnet.checkpoint import read_checkpoint, save_checkpoint
from fusedet import __version__, runtime
from fusedet.errors import InputError
from fusedet.fusers import Fuser
from fusedet.hashing import file_sha256
from fusedet.postprocess import parse_postprocess, postprocess

DEFAULT_WEIGHTS = "dmnet_lite.pt"
PRECISIONS = ("fp32", "bf16")
# Malloc reuse (fusedet.runtime.keep_freed_memory) pays off below this size; for the 392M-parameter
# `paper` preset freed blocks of other sizes pile up and the peak memory grows by more than half.
KEEP_MEMORY_MAX_PARAMS = 10_000_000


def default_weights() -> Path:
    """Path of the DMNet checkpoint shipped inside the package."""
    return Path(str(resources.files("fusedet.weights").joinpath(DEFAULT_WEIGHTS)))


def small_model(model: torch.nn.Module) -> bool:
    """Whether `model` has fewer than KEEP_MEMORY_MAX_PARAMS parameters (malloc reuse pays off on CPU)."""
    return sum(p.numel() for p in model.parameters()) < KEEP_MEMORY_MAX_PARAMS


def with_postprocess(src: str | os.PathLike, dst: str | os.PathLike, mode: str) -> Path:
    """Copy the DMNet checkpoint `src` to `dst` with ``summary["postprocess"] = mode``; returns `dst`.

    `mode` is a post-processing spec of fusedet.postprocess (e.g. ``minmax+unsharp:0.75``). The
    weights, configuration and the rest of the summary are kept (a trainer's optimizer state is
    dropped); a DMNetFuser of `dst` then applies `mode` to every fused image. Raises InputError for
    a bad spec, DMNetError for an unreadable checkpoint.
    """
    parse_postprocess(mode)
    checkpoint = read_checkpoint(src)
    return save_checkpoint(dst, checkpoint.build_model(), {**checkpoint.summary, "postprocess": mode})


class DMNetFuser(Fuser):
    """Fuses with a DMNet checkpoint; `weights=None` uses the shipped default.

    Raises InputError for a missing file or an unknown precision, and dmnet's DMNetError for a file
    that is not a readable DMNet checkpoint."""

    name = "dmnet"
    min_side = 2  # dmnet.model: H, W >= 2

    def __init__(
        self, weights: str | os.PathLike | None = None, device: str | torch.device = "cpu", precision: str = "fp32"
    ) -> None:
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.weights = Path(weights) if weights else default_weights()
        if not self.weights.is_file():
            raise InputError(f"{self.weights}: no such DMNet checkpoint file")
        self.checkpoint = read_checkpoint(self.weights)
        self.model = self.checkpoint.build_model().eval()
        self.postprocess = self.checkpoint.summary.get("postprocess", "none")
        try:
            parse_postprocess(self.postprocess)
        except InputError as err:
            raise InputError(f"{self.weights}: {err}") from None
        self.sha256 = file_sha256(self.weights)
        self.precision = precision
        self._small = small_model(self.model)
        self.to(device)

    @property
    def summary(self) -> dict:
        """The training summary stored in the checkpoint (data, epochs, losses, versions)."""
        return self.checkpoint.summary

    def to(self, device: str | torch.device) -> DMNetFuser:
        super().to(device)
        self.model.to(self.device)
        return self

    def cache_key(self) -> str:
        # the package version too: a release may change the model code's arithmetic
        return f"dmnet-{self.sha256[:16]}-{self.precision}-v{__version__}"

    def provenance(self) -> dict:
        return {
            **super().provenance(),
            "weights": str(self.weights),
            "weights_sha256": self.sha256,
            "precision": self.precision,
            "preset": self.checkpoint.preset,
        }

    @torch.inference_mode()
    def fuse(self, ir: torch.Tensor, vis_y: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cpu" and self._small:
            runtime.keep_freed_memory()
        amp = self.precision == "bf16"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
            fused = self.model(ir.to(self.device, torch.float32), vis_y.to(self.device, torch.float32))
        return postprocess(fused.float().clamp(0.0, 1.0), self.postprocess).to(ir.device)
