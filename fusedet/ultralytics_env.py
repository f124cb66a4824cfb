"""Import ultralytics so that it never reaches the network unless asked to, and never hangs on it.

Out of the box ultralytics, on import and in use: resolves two DNS names to decide whether it is
online, sends usage events and crash reports (`sync`), may pip-install a missing module, downloads
the Arial font before it draws plots or checks a training data set, and downloads a YOLO model to
check AMP before GPU training. `prepare()` turns each of these off or makes it local:

- `YOLO_OFFLINE=1`: no DNS probe at import; no events, no crash reports, no update check. An
  explicit download (the default `yolov5xu.pt` when it is not on disk) is still tried, once, and
  fails fast when offline.
- `YOLO_AUTOINSTALL=false`: never pip-install anything.
- `YOLO_CONFIG_DIR`: our own settings folder (``$FUSEDET_CACHE/ultralytics`` or
  ``~/.cache/fusedet/ultralytics``) unless the user set one, so the user's settings are untouched.
  In it `sync` (events, crash reports) and the logging integrations (ClearML, Comet, DVC, MLflow,
  Ray Tune, W&B, TensorBoard) are switched off; the hub stays idle without an API key. The notice
  ultralytics prints when it creates that folder's settings file is filtered out.
- Fonts: matplotlib's bundled DejaVu Sans is installed as the ``Arial.ttf`` /
  ``Arial.Unicode.ttf`` that ultralytics looks for in its config folder, so plots and data-set
  checks find a font on disk and never download one.
- AMP: the trainer's AMP check (which downloads a model to compare FP32 with AMP outputs) is
  replaced by a local decision: AMP on CUDA except on the GPUs ultralytics itself lists as unsafe
  (GTX 16xx, T-series Quadro, K40m), off elsewhere.
- Threads: ultralytics' device selection sets torch to min(8, cores - 1) threads each time a
  predictor or trainer starts (sized for training's loader workers), and the DMNet fusions of an
  evaluation run between detections. fusedet keeps torch's own count instead (the one it has when
  `prepare()` first runs: all cores, or OMP_NUM_THREADS). Measured on this project's 2-core
  machine: the demo detector 150 instead of 105 images/s, DMNet lite 0.27 instead of 0.49 s per
  320x256 pair, and `fusedet evaluate` with sources ir, vi, dmnet on the demo 28 s instead of
  43 s. (An earlier measurement on a machine whose other core was taken found 2 threads much
  slower than 1: set OMP_NUM_THREADS on a crowded machine.)

Every module of fusedet that touches ultralytics calls `prepare()` first (it is idempotent).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

_PREPARED = False

# GPUs on which ultralytics disables AMP (ultralytics.utils.checks.check_amp, 8.4): fp16 there gives NaN losses.
_AMP_UNSAFE_GPU = re.compile(r"(nvidia|geforce|quadro|tesla).*?(1660|1650|1630|t400|t550|t600|t1000|t1200|t2000|k40m)", re.I)
_INTEGRATIONS_OFF = ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")


def fusedet_cache_root() -> Path:
    """Where fusedet keeps caches by default: ``$FUSEDET_CACHE`` or ``~/.cache/fusedet``."""
    return Path(os.environ.get("FUSEDET_CACHE") or Path.home() / ".cache" / "fusedet").expanduser()


def prepare() -> None:
    """Configure the environment, import ultralytics and make it offline-safe (idempotent)."""
    global _PREPARED
    if _PREPARED:
        return
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(fusedet_cache_root() / "ultralytics"))
    # the settings folder is ours: its creation is not news for the user ("Creating new
    # Ultralytics Settings ... Update Settings with 'yolo settings key=value'")
    logging.getLogger("ultralytics").addFilter(_quiet_settings_notice)

    import torch
    import ultralytics.engine.trainer as trainer
    import ultralytics.utils as uutils
    import ultralytics.utils.events as events
    import ultralytics.utils.torch_utils as torch_utils

    events.events.enabled = False  # in case ultralytics was imported before us, online
    settings = uutils.SETTINGS
    changes = {k: False for k in _INTEGRATIONS_OFF if settings.get(k, False)}
    if changes:
        settings.update(changes)
    _install_fonts(Path(uutils.USER_CONFIG_DIR))
    trainer.check_amp = _local_check_amp
    torch_utils.NUM_THREADS = torch.get_num_threads()  # what select_device() gives torch (see above)
    _PREPARED = True


def _quiet_settings_notice(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Creating new Ultralytics Settings")


def _install_fonts(config_dir: Path) -> None:
    """Give ultralytics a local font under the names it looks for (matplotlib ships DejaVu Sans)."""
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    if not source.is_file():  # pragma: no cover - matplotlib always ships it
        return
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = config_dir / name
        if not target.exists():
            tmp = target.with_name(f".{name}.tmp{os.getpid()}")
            try:
                shutil.copyfile(source, tmp)
                os.replace(tmp, target)
            except OSError:  # read-only config dir: ultralytics then fails its font lookup offline, quietly
                tmp.unlink(missing_ok=True)


def _local_check_amp(model) -> bool:
    """AMP decision without downloading a reference model: on for CUDA unless the GPU is known to break it."""
    import torch

    device = next(model.parameters()).device
    if device.type != "cuda":
        return False
    return not _AMP_UNSAFE_GPU.search(torch.cuda.get_device_name(device))
