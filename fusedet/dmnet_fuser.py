"""The `dmnet` fuser: a trained DMNet checkpoint behind the Fuser interface.

``get_fuser("dmnet")`` loads the weights shipped in the package (fusedet/weights/dmnet_lite.pt, see its
model card dmnet_lite.md); ``get_fuser("dmnet:PATH")`` loads a checkpoint written by
``fusedet train-fuser``. Inference is stage II of the model (deterministic), batched over B x 1 x H x W
tensors of any size.

Precision (``precision=``, ``fusedet fuse --precision``):
- ``fp32``: float32 throughout.
- ``mixed``: the diffusion module's U-Net in bfloat16, the rest float32 (``DMNet.lower_precision``;
  dmnet.precision says why that part). On a CPU with AMX faster than fp32 for the shipped `lite`
  weights, with every fused value within one grey level of the fp32 fusion on 20 MSRS pairs (README,
  Performance); on a CPU without native bf16 units slower than fp32.
- ``bf16``: the whole model under bf16 autocast (the CUDA setting of bench/gpu_check.sh; on the CPU only
  96-99.7 % of pixels within one level of fp32).
- ``auto`` (default): ``mixed`` on a CPU with AMX (:func:`fusedet.devices.cpu_has_amx`) where oneDNN
  may use it (not under ``ONEDNN_MAX_CPU_ISA=AVX2``, say: dmnet.kernels.ONEDNN_BF16), else ``fp32``.
The cache key names the precision in force, so fusions of different precisions never share a cache
entry or an output folder.
A checkpoint may name a post-processing of the fused luma in its summary (``summary["postprocess"]``,
see fusedet.postprocess): part of that fuser, applied to every image alike.
On CPU, a small model's passes ask fusedet.runtime to keep freed malloc memory for reuse while the
session lasts (``fusedet.runtime.keep_freed_memory``).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from dmnet import compiled as dmnet_compiled
from dmnet.checkpoint import read_checkpoint, save_checkpoint
from dmnet.kernels import ONEDNN_BF16
from fusedet import __version__, runtime
from fusedet.devices import cpu_has_amx
from fusedet.errors import InputError
from fusedet.fusers import Fuser
from fusedet.hashing import file_sha256
from fusedet.postprocess import parse_postprocess, postprocess

if TYPE_CHECKING:
    from dmnet.model import DMNet

DEFAULT_WEIGHTS = "dmnet_lite.pt"
PRECISIONS = ("auto", "fp32", "mixed", "bf16")
# Malloc reuse (fusedet.runtime.keep_freed_memory) pays off below this size; for the 392M-parameter
# `paper` preset freed blocks of other sizes pile up and the peak memory grows by more than half.
KEEP_MEMORY_MAX_PARAMS = 10_000_000


def default_weights() -> Path:
    """Path of the DMNet checkpoint shipped inside the package."""
    return Path(str(resources.files("fusedet.weights").joinpath(DEFAULT_WEIGHTS)))


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision ``auto`` stands for on `device` (see the module docstring); others as they are."""
    if precision != "auto":
        return precision
    return "mixed" if device.type == "cpu" and cpu_has_amx() and ONEDNN_BF16 else "fp32"


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
        self, weights: str | os.PathLike | None = None, device: str | torch.device = "cpu", precision: str = "auto"
    ) -> None:
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.weights = Path(weights) if weights else default_weights()
        if not self.weights.is_file():
            raise InputError(f"{self.weights}: no such DMNet checkpoint file")
        self.checkpoint = read_checkpoint(self.weights)
        self.model: DMNet | None = None  # built by to(), once the device and so the precision are known
        self._lowered = False  # whether self.model is lowered (precision "mixed")
        self.postprocess = self.checkpoint.summary.get("postprocess", "none")
        try:
            parse_postprocess(self.postprocess)
        except InputError as err:
            raise InputError(f"{self.weights}: {err}") from None
        self.sha256 = file_sha256(self.weights)
        self.requested_precision = precision
        self.precision = precision  # the one in force, set by to() for the device
        self.to(device)
        self._small = small_model(self.model)

    @property
    def summary(self) -> dict:
        """The training summary stored in the checkpoint (data, epochs, losses, versions)."""
        return self.checkpoint.summary

    def to(self, device: str | torch.device) -> DMNetFuser:
        super().to(device)
        self.precision = resolve_precision(self.requested_precision, self.device)
        lowered = self.precision == "mixed"
        if self.model is None or lowered != self._lowered:  # from the checkpoint's float32 weights (a bf16 copy would lose bits)
            self.model = self.checkpoint.build_model().eval()
            if lowered:
                self.model.lower_precision(torch.bfloat16)
            self._lowered = lowered
        self.model.to(self.device)
        return self

    def cache_key(self) -> str:
        # the package version too: a release may change the model code's arithmetic; "-eager" when dmnet's
        # compiled CPU routes are switched off (DMNET_COMPILED=0): fused bytes may then differ by a grey level
        eager = "-eager" if self.device.type == "cpu" and not dmnet_compiled.AVAILABLE else ""
        return f"dmnet-{self.sha256[:16]}-{self.precision}{eager}-v{__version__}"

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
        for name, t in (("ir", ir), ("vis_y", vis_y)):
            if not t.is_floating_point():  # 0..255 integers would be read as far-out-of-range values
                raise InputError(f"dmnet fuser: {name} must be a float tensor in [0, 1], got {t.dtype} (divide 8-bit images by 255)")
            if not bool(torch.isfinite(t).all()):  # one NaN would spread over the whole fused image (attention, norms)
                raise InputError(f"dmnet fuser: {name} holds NaN or infinite values")
        if self.device.type == "cpu" and self._small:
            runtime.keep_freed_memory()
        amp = self.precision == "bf16"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
            fused = self.model(ir.to(self.device, torch.float32), vis_y.to(self.device, torch.float32))
        return postprocess(fused.float().clamp(0.0, 1.0), self.postprocess).to(ir.device)
