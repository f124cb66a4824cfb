"""The `dmnet` fuser: a trained DMNet checkpoint behind the Fuser interface (registered on import).

``get_fuser("dmnet")`` loads the weights shipped in the package (fusedet/weights/dmnet_lite.pt, see its
model card dmnet_lite.md); ``get_fuser("dmnet:PATH")`` loads a checkpoint written by
``fusedet train-fuser``. Inference is stage II of the model (deterministic), batched over B x 1 x H x W
tensors of any size. ``precision="bf16"`` runs under bf16 autocast (CUDA); the default is fp32.
A checkpoint may name a post-processing of the fused luma in its summary (``summary["postprocess"]``,
see fusedet.postprocess): part of that fuser, applied to every image alike.
On CPU a small model's fuser also asks glibc's malloc to keep freed memory for reuse
(``keep_freed_memory``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
from importlib import resources
from pathlib import Path

import torch

from dmnet.checkpoint import read_checkpoint, save_checkpoint
from fusedet import __version__
from fusedet.errors import InputError
from fusedet.fusers import Fuser, register_fuser
from fusedet.hashing import file_sha256
from fusedet.postprocess import parse_postprocess, postprocess

DEFAULT_WEIGHTS = "dmnet_lite.pt"
PRECISIONS = ("fp32", "bf16")
KEEP_MEMORY_MAX_PARAMS = 10_000_000  # CPU malloc reuse for models below this size (keep_freed_memory)


def default_weights() -> Path:
    """Path of the DMNet checkpoint shipped inside the package."""
    return Path(str(resources.files("fusedet.weights").joinpath(DEFAULT_WEIGHTS)))



def small_model(model: torch.nn.Module) -> bool:
    """Whether `model` is small enough for ``keep_freed_memory`` to pay off on CPU."""
    return sum(p.numel() for p in model.parameters()) < KEEP_MEMORY_MAX_PARAMS


def with_postprocess(src: str | os.PathLike, dst: str | os.PathLike, mode: str) -> Path:
    """Copy the DMNet checkpoint `src` to `dst` with ``summary["postprocess"] = mode``; returns `dst`.

    `mode` is a post-processing spec of fusedet.postprocess (e.g. ``minmax+unsharp:0.75``).

    The weights, configuration and the rest of the summary are kept (a trainer's optimizer state is
    dropped); a DMNetFuser of `dst` then applies `mode` to every fused image. Raises InputError for
    an unknown mode, DMNetError for an unreadable checkpoint.
    """
    parse_postprocess(mode)
    checkpoint = read_checkpoint(src)
    return save_checkpoint(dst, checkpoint.build_model(), {**checkpoint.summary, "postprocess": mode})


# glibc <malloc.h> mallopt parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of giving it back to the kernel.

    A DMNet forward pass on a 480x640 pair allocates about 2 GB of short-lived tensors, most of
    them larger than glibc's largest mmap threshold (32 MB). By default each one is a fresh mmap
    that the kernel zero-fills page by page: 400-500k page faults per pass, a third of its CPU
    time. With mmap off for large blocks and heap trimming only above 2 GB, freed blocks are
    reused and the faults are gone from the second pass on (``bench/fuse_speed.py --malloc``
    compares both). The cost: the process keeps its peak heap. Fusing 480x640 and 576x768 pairs
    with the lite weights leaves 1.8 GB resident, against a 1.65 GB peak and 1.2 GB afterwards
    with glibc's defaults.

    For the 392M-parameter ``paper`` preset the trade is worse: 110 s instead of 126 s per pair,
    but a 13.1 GB peak instead of 7.8 GB (freed blocks of other sizes pile up), so the fuser uses
    it only for models under ``KEEP_MEMORY_MAX_PARAMS`` parameters.

    Process-wide, applied once when such a DMNet fuser is put on the CPU; set the environment
    variable FUSEDET_KEEP_FREED_MEMORY=0 to leave malloc alone. Returns whether the setting was applied
    (False off Linux/glibc).
    """
    if os.environ.get("FUSEDET_KEEP_FREED_MEMORY", "1") == "0":
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # no C library with mallopt
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


class DMNetFuser(Fuser):
    """Fuses with a DMNet checkpoint; `weights=None` uses the shipped default."""

    name = "dmnet"

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
        self.device = torch.device("cpu")
        self.to(device)

    @property
    def summary(self) -> dict:
        """The training summary stored in the checkpoint (data, epochs, losses, versions)."""
        return self.checkpoint.summary

    def to(self, device: str | torch.device) -> DMNetFuser:
        self.device = torch.device(device)
        self.model.to(self.device)
        if self.device.type == "cpu" and small_model(self.model):
            keep_freed_memory()
        return self

    def cache_key(self) -> str:
        # the package version too: a release may change the model code's arithmetic
        return f"dmnet-{self.sha256[:16]}-{self.precision}-v{__version__}"

    @torch.inference_mode()
    def fuse(self, ir: torch.Tensor, vis_y: torch.Tensor) -> torch.Tensor:
        amp = self.precision == "bf16"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
            fused = self.model(ir.to(self.device, torch.float32), vis_y.to(self.device, torch.float32))
        return postprocess(fused.float().clamp(0.0, 1.0), self.postprocess).to(ir.device)



register_fuser("dmnet", lambda arg=None, device="cpu", **_: DMNetFuser(arg, device=device))
