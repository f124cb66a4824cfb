"""Shared fixtures: paths into ../shared/data (read only, never copied into the project)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FUSEDET_SHARED", ROOT.parent / "shared")) / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED} (set FUSEDET_SHARED to the folder that holds data/)")
    return SHARED
