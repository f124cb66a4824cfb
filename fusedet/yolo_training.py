"""Train (or resume, or reuse) one ultralytics detector on an exported YOLO dataset.

- **Options.** `check_train_options` checks ``--train-option`` keys and values with ultralytics' own
  configuration check (``ultralytics.cfg.check_dict_alignment`` and ``get_cfg``: its argument list,
  types and ranges), before any work; an unknown key names the closest valid one, and a key fusedet
  sets itself (`OWNED_OPTIONS`) names the fusedet flag to use instead.
- **Training folders.** A training folder remembers what it is for (``request.json``: start weights
  and their hash, epochs, size, batch, seed, options, sources, classes, value ranges, and the data
  fingerprint: every train/val pair's split, boxes and file stamps). `plan_training` compares a folder
  with the request before any export: the same request resumes an interrupted training from its
  ``last.pt`` or reuses a finished one; another request is an error naming what differs (for the data:
  the pairs added, removed or modified), so a finished training is never silently reused on other
  data. A folder that never saved weights (a failed start) blocks nothing: its request is replaced.
- **Output.** Everything ultralytics logs during a training goes to ``train.log`` in the training
  folder, not to the terminal (`captured_ultralytics_output`); progress comes as events (one step per
  epoch, with the loss and mAP50). When ultralytics fails, TrainingError carries its own message (one
  line) and the log's path. Plots are off, AMP is on for CUDA only, nothing is downloaded
  (fusedet.ultralytics_env).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusedet import runtime
from fusedet.datasets.atomic import write_text_atomic
from fusedet.detector import resolve_weights
from fusedet.errors import InputError, TrainingError
from fusedet.events import Events, as_events
from fusedet.hashing import file_sha256
from fusedet.settings import FinetuneSettings

REQUEST_VERSION = 2
LOG_NAME = "train.log"
# ultralytics train() arguments fusedet sets itself -> the fusedet option that sets them
OWNED_OPTIONS: dict[str, str] = {
    "epochs": "--epochs",
    "imgsz": "--imgsz",
    "batch": "--batch",
    "data": "--dataset, --root and --split-file (fusedet exports the data)",
    "project": "--out",
    "name": "--out",
    "exist_ok": "--out",
    "save_dir": "--out",
    "resume": "the same command again (an interrupted training resumes by itself)",
    "seed": "--seed",
    "device": "--device",
    "workers": "--workers",
    "model": "--weights",
    "cfg": "one --train-option per argument",
    "task": "nothing (fusedet trains detectors)",
    "mode": "nothing (fusedet trains)",
    "save": "nothing (fusedet evaluates the weights the training saves)",
}


@dataclass(frozen=True)
class TrainedDetector:
    """One fine-tuning run: which sources it saw, where its weights are, how long it took, and the
    arguments ultralytics trained with (its ``args.yaml``)."""

    name: str
    sources: tuple[str, ...]
    weights: Path
    data_yaml: Path
    seconds: float
    resumed: bool
    ultralytics_args: Mapping[str, Any] | None = None

    def info(self) -> dict:
        """Plain values for run.json."""
        return {
            "sources": list(self.sources),
            "weights": str(self.weights),
            "weights_sha256": file_sha256(self.weights),
            "data_yaml": str(self.data_yaml),
            "train_seconds": round(self.seconds, 1),
            "resumed_or_reused": self.resumed,
            "log": str(self.weights.parent.parent / LOG_NAME),
            "ultralytics_args": dict(self.ultralytics_args or {}),
        }


@dataclass(frozen=True)
class TrainingPlan:
    """What one training folder will do: the model `name` and the `sources` it trains on, `run_dir`,
    the `request` it is for, and `state`: ``new`` (nothing there, or a failed start whose request is
    replaced), ``resume`` (an interrupted training with the same request) or ``reuse`` (a finished
    one); `note` says something the user should know (an older folder, a failed start)."""

    name: str
    sources: tuple[str, ...]
    run_dir: Path
    request: dict
    state: str
    note: str = ""


# --- options -------------------------------------------------------------------------------------


def check_train_options(options: Mapping[str, Any]) -> list[str]:
    """Check ultralytics train() arguments before any work, with ultralytics' own configuration check.

    Returns ultralytics' warnings about them (deprecated keys), one line each. Raises InputError for a
    key fusedet sets itself (naming the fusedet option instead), a key ultralytics does not know
    (naming the closest valid one), or a value of the wrong type or range (ultralytics' message)."""
    from fusedet.ultralytics_env import prepare

    prepare()
    from ultralytics.cfg import DEFAULT_CFG_DICT, check_dict_alignment, get_cfg

    for key in options:
        if key in OWNED_OPTIONS:
            raise InputError(f"--train-option {key}: fusedet sets {key!r} itself; use {OWNED_OPTIONS[key]} instead")
    valid = [k for k in DEFAULT_CFG_DICT if k not in OWNED_OPTIONS]
    with captured_ultralytics_output(None) as lines:
        for key, value in options.items():
            try:
                check_dict_alignment(DEFAULT_CFG_DICT, {key: value}, allowed_custom_keys=set())
            except SyntaxError:
                raise InputError(f"--train-option {key}: not an ultralytics train() argument{_suggest(key, valid)}") from None
        try:
            get_cfg(DEFAULT_CFG_DICT, dict(options))
        except (TypeError, ValueError, SyntaxError) as exc:
            raise InputError(f"--train-option: {first_line(exc)}") from None
    return [f"--train-option: ultralytics: {line}" for line in dict.fromkeys(lines) if line]  # each warning once


def check_start_weights(spec: str) -> None:
    """The start weights load as an ultralytics detection model (a checkpoint, ``demo``, or a model
    yaml such as ``yolov8n.yaml``); InputError naming them otherwise."""
    from fusedet.ultralytics_env import prepare

    prepare()
    from ultralytics import YOLO

    start = resolve_weights(spec)
    with captured_ultralytics_output(None):
        try:
            model = YOLO(str(start))
        except Exception as exc:  # ultralytics raises plain exceptions for files it cannot read
            raise InputError(f"--weights {spec}: ultralytics cannot load it ({first_line(exc)})") from None
    if model.task != "detect":
        raise InputError(f"--weights {spec}: a {model.task} model; fine-tuning needs a detection model")


def _suggest(key: str, valid: list[str]) -> str:
    """' (did you mean 'mosaic'?)', or the few closest keys when several are as close ('lr': lrf, lr0)."""
    import difflib

    matches = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    if not matches:
        return ""
    return f" (did you mean {matches[0]!r}?)" if len(matches) == 1 else f" (did you mean one of {', '.join(map(repr, matches))}?)"


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (ultralytics' messages can span many)."""
    text = str(exc).strip()
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


class _Lines(logging.Handler):
    """Collects warning records as plain lines."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(" ".join(str(record.getMessage()).split()).replace("WARNING ⚠️ ", ""))


@contextlib.contextmanager
def captured_ultralytics_output(log: Path | None) -> Iterator[list[str]]:
    """For the block, ultralytics' logger writes to `log` (appended; None: nowhere) instead of the
    terminal, and its progress bars are off; yields a list that collects its warnings. The logger's
    handlers, level and bar switch are put back at the end."""
    import ultralytics.utils as uutils

    logger = logging.getLogger("ultralytics")
    terminal = [h for h in logger.handlers if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    old_level, old_verbose = logger.level, uutils.VERBOSE
    warnings = _Lines()
    handlers: list[logging.Handler] = [warnings]
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(log, encoding="utf-8")
        to_file.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        handlers.append(to_file)
    for h in terminal:
        logger.removeHandler(h)
    for h in handlers:
        logger.addHandler(h)
    logger.setLevel(logging.INFO)
    uutils.VERBOSE = False  # ultralytics' TQDM bars read it: no bars on the terminal
    try:
        yield warnings.lines
    finally:
        uutils.VERBOSE = old_verbose
        logger.setLevel(old_level)
        for h in handlers:
            logger.removeHandler(h)
            h.close()
        for h in terminal:
            logger.addHandler(h)


# --- training folders ----------------------------------------------------------------------------


def training_request(train: FinetuneSettings, data: Mapping[str, Any]) -> dict:
    """What a training folder is for: the fine-tuning settings, the start weights (and their SHA-256
    when a file) and `data` (sources, classes, value ranges and the ``pairs`` fingerprint)."""
    start = resolve_weights(train.start_weights)
    return {
        "version": REQUEST_VERSION,
        "start": train.start_weights,
        "start_sha256": file_sha256(start) if isinstance(start, Path) else None,
        "epochs": train.epochs,
        "imgsz": train.imgsz,
        "batch": train.batch,
        "seed": train.seed,
        "options": dict(train.options),
        **data,
    }


def _has_weights(run_dir: Path) -> bool:
    return any((run_dir / "weights" / name).is_file() for name in ("last.pt", "best.pt"))


def plan_training(name: str, sources: tuple[str, ...], run_dir: Path, request: dict) -> TrainingPlan:
    """Compare training folder `run_dir` with `request` (nothing is written): see the module
    docstring. Raises InputError when the folder holds weights of a training made for another request,
    naming what differs (the pairs added, removed or modified for the data)."""
    from dmnet.train import fingerprint_changes

    run_dir = Path(run_dir).resolve()
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"{run_dir} is a file; fusedet trains into that folder (use another --out)")
    path = run_dir / "request.json"
    if not _has_weights(run_dir):
        note = f"{run_dir} holds no weights (an earlier start failed): training there anew" if path.is_file() else ""
        return TrainingPlan(name, tuple(sources), run_dir, request, "new", note)
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        earlier = None
    if not isinstance(earlier, dict):
        raise InputError(f"{run_dir} holds weights but no readable request.json; use another --out, or delete that folder to train again")
    note = ""
    if earlier.get("version") != REQUEST_VERSION:  # written before the data fingerprint existed
        keys = ("start", "epochs", "imgsz", "batch", "seed", "options")
        earlier, compared = {k: earlier.get(k) for k in keys}, {k: request.get(k) for k in keys}
        note = f"{run_dir} was trained by an older fusedet: its data cannot be compared with these pairs"
    else:
        compared = request
    changed = sorted(k for k in set(earlier) | set(compared) if earlier.get(k) != compared.get(k) and k != "start_sha256")
    if earlier.get("start_sha256") != compared.get("start_sha256") and "start" not in changed and "start_sha256" in compared:
        changed.append("start weights (same name, other file)")
    if changed:
        detail = ""
        if "pairs" in changed:
            detail = f"; the pairs: {fingerprint_changes(earlier.get('pairs') or {}, compared.get('pairs') or {})}"
        raise InputError(
            f"{run_dir} holds a training with other settings ({', '.join(changed)} differ{detail}); "
            "use another --out, or delete that folder to train again"
        )
    finished = (run_dir / "done.json").is_file() or _finished(run_dir / "weights" / "last.pt")
    state = "reuse" if finished and (run_dir / "weights" / "best.pt").is_file() else "resume"
    return TrainingPlan(name, tuple(sources), run_dir, request, state, note)


# --- training ------------------------------------------------------------------------------------


class _EpochEvents:
    """ultralytics callbacks -> events: one stage per training, advanced once per epoch with the loss
    and mAP50; each epoch also goes into the log."""

    def __init__(self, stage: str, epochs: int, events: Events) -> None:
        self.stage, self.epochs, self.events = stage, epochs, events

    def on_train_start(self, trainer) -> None:
        self.events.start(self.stage, total=int(trainer.epochs))
        self.events.advance(self.stage, int(trainer.start_epoch), "resumed" if trainer.start_epoch else "")

    def on_fit_epoch_end(self, trainer) -> None:
        tloss = getattr(trainer, "tloss", None)  # a dict of mean losses (a tensor in older ultralytics)
        values = [] if tloss is None else tloss.values() if isinstance(tloss, Mapping) else tloss
        loss = sum(float(v) for v in values) if tloss is not None else math.nan
        mapped = (trainer.metrics or {}).get("metrics/mAP50(B)", math.nan)
        status = f"loss {loss:.3f}  mAP50 {float(mapped):.3f}"
        logging.getLogger("ultralytics").info(f"fusedet: epoch {trainer.epoch + 1}/{trainer.epochs}: {status}")
        self.events.advance(self.stage, 1, status)


@runtime.in_session
def train_detector(
    plan: TrainingPlan, data_yaml: Path, train: FinetuneSettings, device: str, workers: int, events: Events | None = None
) -> TrainedDetector:
    """Carry out `plan` (from `plan_training`) on `data_yaml`: train, resume or reuse the detector in
    ``plan.run_dir``. ultralytics' output goes to ``RUN_DIR/train.log``. Raises TrainingError (with
    ultralytics' message and the log's path) when its training fails."""
    from fusedet.ultralytics_env import prepare

    prepare()
    from ultralytics import YOLO

    events = as_events(events)
    run_dir, data_yaml = plan.run_dir, Path(data_yaml).resolve()
    done, best, last = run_dir / "done.json", run_dir / "weights" / "best.pt", run_dir / "weights" / "last.pt"
    sources = plan.sources
    if plan.state == "reuse":
        seconds = float(json.loads(done.read_text()).get("seconds", 0.0)) if done.is_file() else 0.0
        return TrainedDetector(plan.name, sources, best, data_yaml, seconds, True, _ultralytics_args(run_dir))
    if plan.state == "new":
        done.unlink(missing_ok=True)
    write_text_atomic(run_dir / "request.json", json.dumps(plan.request, indent=2) + "\n")
    log = run_dir / LOG_NAME
    progress = _EpochEvents(f"{plan.name}: train", train.epochs, events)
    start_time = time.perf_counter()
    with captured_ultralytics_output(log):
        try:
            if plan.state == "resume":
                model = YOLO(str(last))
                settings: dict[str, Any] = {"resume": True, "data": str(data_yaml), "workers": workers, "device": device,
                                            "save_dir": str(run_dir)}
            else:
                start = resolve_weights(train.start_weights)
                model = YOLO(str(start.resolve()) if isinstance(start, Path) else start, task="detect")
                settings = {
                    "data": str(data_yaml),
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
                    **dict(train.options),
                }
            model.add_callback("on_train_start", progress.on_train_start)
            model.add_callback("on_fit_epoch_end", progress.on_fit_epoch_end)
            logging.getLogger("ultralytics").info(f"fusedet: {plan.state} training {plan.name} with {settings}")
            model.train(**settings)
        except (KeyboardInterrupt, InputError):
            raise
        except Exception as exc:  # ultralytics raises plain exceptions for bad data, weights or options
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(traceback.format_exc())
            if not _has_weights(run_dir):  # a failed start: nothing there for the request to protect
                (run_dir / "request.json").unlink(missing_ok=True)
            raise TrainingError(f"training {plan.name} failed: {first_line(exc)}", log=log) from exc
    events.finish(progress.stage)
    seconds = time.perf_counter() - start_time
    if not best.is_file():
        raise TrainingError(f"training {plan.name} finished without {best}", log=log)
    write_text_atomic(done, json.dumps({"seconds": seconds, "epochs": train.epochs, "best": str(best)}) + "\n")
    return TrainedDetector(plan.name, sources, best, data_yaml, seconds, plan.state == "resume", _ultralytics_args(run_dir))


def _ultralytics_args(run_dir: Path) -> dict[str, Any] | None:
    """The arguments ultralytics trained with (``args.yaml`` in the training folder), or None."""
    import yaml

    try:
        return yaml.safe_load((run_dir / "args.yaml").read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None


def _finished(last: Path) -> bool:
    """True when `last` is the checkpoint of a completed ultralytics training: optimizer stripped
    (epoch -1), or every epoch done (a run stopped in its final validation)."""
    if not last.is_file():
        return False
    import torch

    try:
        ck = torch.load(last, map_location="cpu", weights_only=False)
        epoch, epochs = ck.get("epoch"), (ck.get("train_args") or {}).get("epochs")
    except Exception:  # unreadable: not finished, ultralytics' resume will say why
        return False
    return epoch == -1 or (isinstance(epoch, int) and isinstance(epochs, int) and epoch + 1 >= epochs)
