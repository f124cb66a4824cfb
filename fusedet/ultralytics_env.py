"""Import ultralytics so that it never reaches the network unless asked to, and never hangs on it.

Out of the box ultralytics, on import and in use: resolves two DNS names to decide whether it is
online, sends usage events and crash reports (`sync`), may pip-install a missing module, downloads
the Arial font before it draws plots or checks a training data set, and downloads a YOLO model to
check AMP before GPU training. `prepare()` turns each of these off or makes it local, through
fusedet.runtime (so every change lasts only while fusedet's command or call runs, and is undone after):

- `YOLO_OFFLINE=1` (set by fusedet.runtime.session before ultralytics is imported): no DNS probe at
  import; no events, no crash reports, no update check. An explicit download (the default
  `yolov5xu.pt` when it is not on disk) is still tried, once, and fails fast when offline.
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
  `prepare()` runs in a session); on two cores, cores - 1 would halve both the detector's and
  DMNet's speed (``bench/pipeline_speed.py`` measures it).

Every module of fusedet that touches ultralytics calls `prepare()` first, inside a session (it is
idempotent within one).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

from fusedet import runtime
from fusedet.runtime import fusedet_cache_root

__all__ = ["fusedet_cache_root", "prepare"]

# GPUs on which ultralytics disables AMP (ultralytics.utils.checks.check_amp, 8.4): fp16 there gives NaN losses.
_AMP_UNSAFE_GPU = re.compile(r"(nvidia|geforce|quadro|tesla).*?(1660|1650|1630|t400|t550|t600|t1000|t1200|t2000|k40m)", re.I)
_INTEGRATIONS_OFF = ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")


def prepare() -> None:
    """Import ultralytics offline-safe and apply fusedet's patches for the current session (idempotent
    within a session; outside one, ultralytics is imported offline-safe and nothing else changes)."""
    with runtime.session():
        # the settings folder is ours: its creation is not news for the user ("Creating new
        # Ultralytics Settings ... Update Settings with 'yolo settings key=value'")
        logger = logging.getLogger("ultralytics")
        if _quiet_settings_notice not in logger.filters:
            logger.addFilter(_quiet_settings_notice)

        import torch
        import ultralytics.engine.trainer as trainer
        import ultralytics.utils as uutils
        import ultralytics.utils.events as events
        import ultralytics.utils.torch_utils as torch_utils

        if not runtime.once("ultralytics"):
            return
        runtime.patch(events.events, "enabled", False)  # in case ultralytics was imported before us, online
        for key in _INTEGRATIONS_OFF:
            if uutils.SETTINGS.get(key, False):
                runtime.patch(uutils.SETTINGS, key, False)  # in memory: the user's settings file is not rewritten
        _install_fonts(Path(uutils.USER_CONFIG_DIR))
        runtime.patch(trainer, "check_amp", _local_check_amp)
        runtime.patch(torch_utils, "NUM_THREADS", torch.get_num_threads())  # what select_device() gives torch (see above)


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
