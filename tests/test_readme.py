"""The README's Python snippets run as written, offline, on a CPU (each in a fresh interpreter, in an
empty working folder; the demo data is generated into this test's cache)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("readme-cache")


def test_the_readme_has_python_snippets():
    assert len(SNIPPETS) >= 4


@pytest.mark.parametrize("index", range(len(SNIPPETS)), ids=[f"snippet{i}" for i in range(len(SNIPPETS))])
def test_readme_snippet_runs(index, cache, tmp_path):
    env = {**os.environ, "FUSEDET_CACHE": str(cache), "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-c", SNIPPETS[index]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"README snippet {index} failed:\n{SNIPPETS[index]}\n{done.stderr[-3000:]}"
