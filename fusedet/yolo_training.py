"""Train (or resume, or reuse) one ultralytics detector on an exported YOLO dataset.

A training folder remembers what it is for (``request.json``: the data yaml's hash, start weights,
epochs, size, batch, seed, options); the same request resumes an interrupted training from its
``last.pt`` or reuses a finished one, another request in the same folder is an error rather than a
silent reuse. Plots are off, AMP is on for CUDA only, nothing is downloaded (fusedet.ultralytics_env).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from fusedet import runtime
from fusedet.datasets.atomic import write_text_atomic
from fusedet.detector import resolve_weights
from fusedet.errors import InputError, TrainingError
from fusedet.hashing import file_sha256
from fusedet.settings import FinetuneSettings


@dataclass(frozen=True)
class TrainedDetector:
    """One fine-tuning run: which sources it saw, where its weights are, how long it took."""

    name: str
    sources: tuple[str, ...]
    weights: Path
    data_yaml: Path
    seconds: float
    resumed: bool

    def info(self) -> dict:
        """Plain values for run.json."""
        return {
            "sources": list(self.sources),
            "weights": str(self.weights),
            "weights_sha256": file_sha256(self.weights),
            "data_yaml": str(self.data_yaml),
            "train_seconds": round(self.seconds, 1),
            "resumed_or_reused": self.resumed,
        }


@runtime.in_session
def train_detector(data_yaml: Path, run_dir: Path, train: FinetuneSettings, device: str, workers: int) -> tuple[Path, float, bool]:
    """Train (or resume, or reuse) one detector in `run_dir` on `data_yaml`; returns (best.pt,
    seconds, resumed or reused). Raises InputError when `run_dir` holds a training with other
    settings, TrainingError when ultralytics' training fails."""
    from fusedet.ultralytics_env import prepare

    prepare()
    from ultralytics import YOLO

    run_dir = Path(run_dir).resolve()
    done, best, last = run_dir / "done.json", run_dir / "weights" / "best.pt", run_dir / "weights" / "last.pt"
    request = {
        "data_yaml_sha256": hashlib.sha256(Path(data_yaml).read_bytes()).hexdigest(),
        "start": train.start_weights,
        "epochs": train.epochs,
        "imgsz": train.imgsz,
        "batch": train.batch,
        "seed": train.seed,
        "options": dict(train.options),
    }
    _check_request(run_dir, request)
    if best.is_file() and (done.is_file() or _finished(last)):
        seconds = float(json.loads(done.read_text()).get("seconds", 0.0)) if done.is_file() else 0.0
        return best, seconds, True
    start_time = time.perf_counter()
    resumed = last.is_file()
    try:
        if resumed:
            YOLO(str(last)).train(resume=True, workers=workers, device=device)
        else:
            model = YOLO(str(resolve_weights(train.start_weights)), task="detect")
            settings = {
                "data": str(Path(data_yaml).resolve()),
                "epochs": train.epochs,
                "imgsz": train.imgsz,
                "batch": train.batch,
                "device": device,
                "workers": workers,
                "project": str(run_dir.parent),
                "name": run_dir.name,
                "exist_ok": True,
                "plots": False,
                "seed": train.seed,
                "deterministic": True,
                "amp": device.startswith("cuda"),
                "val": True,
                "verbose": False,
            }
            model.train(**{**settings, **dict(train.options)})
    except InputError:
        raise
    except Exception as exc:  # ultralytics raises plain exceptions for bad data or weights
        raise TrainingError(f"training {run_dir.name} failed: {type(exc).__name__}: {exc}") from exc
    seconds = time.perf_counter() - start_time
    if not best.is_file():
        raise TrainingError(f"training {run_dir.name} finished without {best}")
    write_text_atomic(done, json.dumps({"seconds": seconds, "epochs": train.epochs, "best": str(best)}) + "\n")
    return best, seconds, resumed


def _check_request(run_dir: Path, request: dict) -> None:
    """Remember what a training folder is for; a folder made for other settings is an error, never
    silently reused or overwritten."""
    path = run_dir / "request.json"
    if path.is_file():
        earlier = json.loads(path.read_text())
        if earlier != request:
            changed = sorted(k for k in set(earlier) | set(request) if earlier.get(k) != request.get(k))
            raise InputError(
                f"{run_dir} holds a training with other settings ({', '.join(changed)} differ); "
                "use another --out, or delete that folder to train again"
            )
    else:
        write_text_atomic(path, json.dumps(request, indent=2) + "\n")


def _finished(last: Path) -> bool:
    """True when `last` is the checkpoint of a completed ultralytics training (optimizer stripped, epoch -1)."""
    if not last.is_file():
        return False
    import torch

    try:
        return torch.load(last, map_location="cpu", weights_only=False).get("epoch") == -1
    except Exception:  # unreadable: not finished, ultralytics' resume will say why
        return False
