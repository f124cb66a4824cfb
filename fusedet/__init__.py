"""fusedet: infrared-visible image fusion (DMNet) and what it does for object detection.

Heavy parts (ultralytics, the detector) load lazily, so `import fusedet.datasets` or
`import fusedet.eval` stays fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["FusionDetector", "__version__", "score_folders"]


def __getattr__(name: str):
    if name == "FusionDetector":
        from fusedet.pipeline import FusionDetector

        return FusionDetector
    if name == "score_folders":
        from fusedet.eval.metrics_folders import score_folders

        return score_folders
    raise AttributeError(f"module 'fusedet' has no attribute {name!r}")
