"""Fusion-quality metrics and detection AP (installed as `fusedet.eval`)."""
