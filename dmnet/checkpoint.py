"""DMNet checkpoints: one file with the weights, the full configuration and the training summary.

A checkpoint is a ``torch.save`` file holding only tensors and plain Python values, so it loads with
``torch.load(weights_only=True)`` (no pickled code runs). Layout::

    {"format": "dmnet-checkpoint", "format_version": 1,
     "preset": "lite", "config": DMNetConfig.to_dict(),
     "state_dict": {name: tensor},
     "summary": {...},           # data, pairs, epochs, final losses, versions, time (plain values)
     "training": {...} | absent} # optimizer state, epoch, stage, settings: only in a trainer's last.pt

Files are written atomically (temp file + rename), so a killed writer never leaves half a checkpoint.
Every failure to read one raises :class:`DMNetError` naming the file and the problem.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dmnet.config import DMNetConfig
from dmnet.errors import DMNetError

if TYPE_CHECKING:
    from dmnet.model import DMNet

FORMAT = "dmnet-checkpoint"
FORMAT_VERSION = 1

_PLAIN = (str, int, float, bool, type(None))


@dataclass
class Checkpoint:
    """The contents of a checkpoint file, checked for shape (not yet for fitting the model)."""

    path: Path
    config: DMNetConfig
    state_dict: dict[str, torch.Tensor]
    summary: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] | None = None

    @property
    def preset(self) -> str:
        return self.config.preset

    def build_model(self, device: str | torch.device = "cpu") -> DMNet:
        """Build the DMNet of this configuration, load the weights (strictly), move it to `device`."""
        from dmnet.model import DMNet

        model = DMNet(self.config)
        check_state_dict(model, self.state_dict, self.path)
        model.load_state_dict(self.state_dict, strict=True)
        return model.to(device)


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    summary: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> Path:
    """Write `model` (its weights and ``model.config``) with a summary, atomically; returns the path.
    Its parameters must be float32 (DMNetError otherwise: a model lowered for inference has lost bits).

    `summary` and `training` may hold tensors and plain values (str, int, float, bool, None, and
    lists/tuples/dicts of them); anything else raises DMNetError here rather than at load time.
    """
    path = Path(path)
    config: DMNetConfig = model.config
    lowered = sorted({name.rsplit(".", 1)[0] for name, p in model.named_parameters() if p.dtype != torch.float32})
    if lowered:  # e.g. after DMNet.lower_precision: the float32 weights are gone
        raise DMNetError(f"{path}: not saved: the weights of {', '.join(lowered[:3])}{' ...' if len(lowered) > 3 else ''} "
                         "are not float32 (a model kept in lower precision for inference)")
    state_dict = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "preset": config.preset,
        "config": config.to_dict(),
        "state_dict": state_dict,
        "summary": summary or {},
    }
    if training is not None:
        payload["training"] = training
    _check_plain(payload, "checkpoint")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read and validate a checkpoint file (safely: ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise DMNetError(f"{path}: no such checkpoint file")
    with open(path, "rb") as handle:
        head = handle.read(2)
    if head[:2] != b"PK" and head[:1] != b"\x80":  # torch.save writes a zip archive (legacy: a pickle)
        raise DMNetError(f"{path}: not a torch checkpoint file (neither a zip archive nor a pickle)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        reason = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else text
        reason = next((ln.strip() for ln in reason.splitlines() if ln.strip()), type(exc).__name__)
        raise DMNetError(
            f"{path}: refused to load: it holds objects other than tensors and plain values "
            f"(loading it could run code): {reason}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DMNetError(f"{path}: corrupt or truncated checkpoint file ({first})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        what = "a bare state dict" if _looks_like_state_dict(payload) else f"a {type(payload).__name__}"
        raise DMNetError(
            f"{path}: not a DMNet checkpoint (it holds {what}, not a dict with format={FORMAT!r}); "
            "write checkpoints with `fusedet train-fuser` or dmnet.checkpoint.save_checkpoint"
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DMNetError(
            f"{path}: checkpoint format version {version!r} is not supported (this dmnet reads up to "
            f"{FORMAT_VERSION}); upgrade fusedet"
        )
    for key, kind in (("config", dict), ("state_dict", dict), ("summary", dict)):
        if not isinstance(payload.get(key), kind):
            raise DMNetError(f"{path}: checkpoint entry {key!r} is missing or not a {kind.__name__}")
    bad = [k for k, v in payload["state_dict"].items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise DMNetError(f"{path}: state_dict entries that are not tensors: {', '.join(map(str, bad[:5]))}")
    try:
        config = DMNetConfig.from_dict(payload["config"])
    except DMNetError as exc:
        raise DMNetError(f"{path}: invalid model configuration: {exc}") from None
    training = payload.get("training")
    if training is not None and not isinstance(training, dict):
        raise DMNetError(f"{path}: checkpoint entry 'training' is not a dict")
    return Checkpoint(path, config, payload["state_dict"], payload["summary"], training)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> DMNet:
    """Read a checkpoint and return its DMNet, weights loaded, in eval mode on `device`."""
    return read_checkpoint(path).build_model(device).eval()


def check_state_dict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Raise DMNetError naming `path` unless `state_dict` has exactly the model's names and shapes."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} of another shape (stored vs model, e.g. {'; '.join(shapes[:3])})")
        raise DMNetError(f"{path}: the weights do not fit the stored configuration: " + ", ".join(parts))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _looks_like_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _check_plain(obj: Any, where: str) -> None:
    """Only tensors and plain values survive ``weights_only`` loading: refuse anything else now."""
    if isinstance(obj, torch.Tensor) or type(obj) in _PLAIN:  # exact types: str subclasses do not load
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise DMNetError(f"{where}: key {key!r} is not a str or int")
            _check_plain(value, f"{where}.{key}")
        return
    if isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _check_plain(value, f"{where}[{i}]")
        return
    raise DMNetError(f"{where}: a {type(obj).__name__} cannot be stored in a checkpoint (tensors and plain values only)")
