"""fusedet: infrared-visible image fusion (DMNet) and what it does for object detection.

The library call under every command, importable from here (each loads its heavy parts on first use,
so ``import fusedet``, ``import fusedet.datasets`` and ``import fusedet.eval`` stay fast):

- ``FusionDetector``: fuse, detect, and ``evaluate`` (``fusedet evaluate``);
- ``fuse_folder``: fuse two folders of pairs (``fusedet fuse``);
- ``finetune``: fine-tune detectors, then evaluate (``fusedet finetune``);
- ``score_folders``: fusion metrics of fused folders (``fusedet metrics``);
- ``train_fuser``: two-stage DMNet training (``fusedet train-fuser``).

Package layout. The repository keeps ``datasets/`` and ``eval/`` beside ``fusedet/``; setuptools
installs them as ``fusedet.datasets`` and ``fusedet.eval`` (pyproject's ``package-dir``: a top-level
``datasets`` would shadow Hugging Face's, and ``eval`` is a builtin's name). When this package is
imported from a checkout rather than from an installed wheel (``python -m ...`` or ``python cli.py``
in the repository root, where the checkout's ``fusedet/`` comes first on ``sys.path``), the finder
below maps the two names onto those folders, so every entry point gets the same package.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

__version__ = "0.2.1"

__all__ = ["FusionDetector", "__version__", "finetune", "fuse_folder", "score_folders", "train_fuser"]

_LAZY = {
    "FusionDetector": "fusedet.pipeline",
    "fuse_folder": "fusedet.folder_fusion",
    "finetune": "fusedet.fine_tuning",
    "score_folders": "fusedet.eval.metrics_folders",
    "train_fuser": "fusedet.fuser_training",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fusedet' has no attribute {name!r}")


class _CheckoutFinder(importlib.abc.MetaPathFinder):
    """Finds ``fusedet.datasets`` and ``fusedet.eval`` (and their submodules) in a checkout's
    ``datasets/`` and ``eval/`` folders, as pyproject's package-dir maps them in an install."""

    def __init__(self, root: Path) -> None:
        self.folders = {f"{__name__}.{name}": root / name for name in ("datasets", "eval")}

    def find_spec(self, fullname, path=None, target=None):
        top = ".".join(fullname.split(".")[:2])
        folder = self.folders.get(top)
        if folder is None:
            return None
        rest = fullname.split(".")[2:]
        base = folder.joinpath(*rest)
        if (base / "__init__.py").is_file():
            return importlib.util.spec_from_file_location(fullname, base / "__init__.py", submodule_search_locations=[str(base)])
        if base.with_suffix(".py").is_file():
            return importlib.util.spec_from_file_location(fullname, base.with_suffix(".py"))
        return None


def _install_checkout_finder() -> None:
    here = Path(__file__).resolve().parent
    root = here.parent
    in_checkout = not (here / "eval").is_dir() and (root / "eval" / "__init__.py").is_file() and (root / "datasets" / "__init__.py").is_file()
    if in_checkout and not any(isinstance(f, _CheckoutFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _CheckoutFinder(root))


_install_checkout_finder()
