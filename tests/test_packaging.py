"""One package however fusedet is run: a non-editable install (a wheel built from this checkout, as
`pip install .` makes it) imported from the repository root, where the checkout's own fusedet/ comes
first on sys.path, still finds fusedet.eval and fusedet.datasets, and `python -m` entry points work."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory) -> Path:
    """fusedet installed (no dependencies, not editable) into a folder of its own."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / "fusedet"  # a copy: setuptools writes build/ into the tree it builds
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", "runs"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=600,
    )
    if done.returncode != 0:
        pytest.skip(f"could not build the package here: {done.stderr.strip().splitlines()[-1:]}")
    return target


def _run_in_root(site: Path, *args: str) -> subprocess.CompletedProcess:
    """Python with only the installed package and the environment's dependencies on its path, run from
    the repository root (so the checkout's fusedet/ shadows the installed one, as for a user there)."""
    deps = sysconfig.get_paths()["purelib"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), deps])
    return subprocess.run([sys.executable, "-S", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def test_installed_wheel_imports_its_subpackages_from_the_repository_root(wheel_site):
    assert (wheel_site / "fusedet" / "eval" / "detection_ap.py").is_file()  # package-dir mapped them in
    code = "import fusedet, fusedet.eval.detection_ap, fusedet.datasets.io; print(fusedet.__file__, fusedet.eval.__file__)"
    done = _run_in_root(wheel_site, "-c", code)
    assert done.returncode == 0, done.stderr[-2000:]
    fusedet_file, eval_file = done.stdout.split()
    assert Path(fusedet_file).parent.parent == Path(eval_file).parent.parent.parent or Path(eval_file).parent == ROOT / "eval"


def test_python_dash_m_entry_point_from_the_repository_root(wheel_site, tmp_path):
    gt = {"images": [{"id": 1, "width": 10, "height": 10}], "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "area": 16, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "person"}]}
    dets = [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "score": 0.9}]
    import json

    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    done = _run_in_root(wheel_site, "-m", "fusedet.eval.detection_ap", str(tmp_path / "gt.json"), str(tmp_path / "dets.json"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["person"] == pytest.approx(100.0)
