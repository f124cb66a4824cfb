"""The one place a device argument becomes a torch device.

Every fusedet command and library call takes ``device`` as None, ``"auto"``, ``"cpu"``, ``"cuda"``,
``"cuda:N"`` or a ``torch.device`` and resolves it here: None and ``"auto"`` mean CUDA when torch
sees a GPU, else the CPU. Under ``torchrun`` (``LOCAL_RANK`` set) a bare ``"cuda"`` means this
process's own GPU, ``cuda:LOCAL_RANK``. (`dmnet` stays independent of fusedet and resolves its
training device itself, with the same rules.)
"""

from __future__ import annotations

import os

import torch

from fusedet.errors import InputError

DeviceLike = str | torch.device | None


def resolve_device(device: DeviceLike = None) -> torch.device:
    """`device` as a torch.device (see the module docstring).

    Raises InputError for a name torch does not know, or for CUDA when torch sees no GPU (the
    message names the value given and how to fix it)."""
    if device is None or (isinstance(device, str) and device.strip().lower() in ("", "auto")):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device.strip() if isinstance(device, str) else device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {str(device)!r}: CUDA is not available here (torch sees no CUDA GPU); use --device cpu")
        if dev.index is None and "LOCAL_RANK" in os.environ:
            dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {str(device)!r}: torch sees only {torch.cuda.device_count()} CUDA GPU(s)")
    elif dev.type not in ("cpu", "mps"):
        raise InputError(f"unsupported device {str(device)!r}; use cpu, cuda, cuda:N or auto")
    return dev


def device_for(device: DeviceLike, like: object = None) -> torch.device:
    """The device to compute on: `device` through resolve_device, or, when None, the device of a torch
    input `like` (the CPU for numpy inputs). Raises InputError as resolve_device does."""
    if device is None:
        return like.device if isinstance(like, torch.Tensor) else torch.device("cpu")
    return resolve_device(device)


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tile units (Intel Sapphire Rapids and later), on which oneDNN runs bfloat16
    convolutions and matrix products several times faster than float32 (torch's own CPU check; False
    where torch has none)."""
    check = getattr(getattr(torch, "cpu", None), "_is_amx_tile_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False
