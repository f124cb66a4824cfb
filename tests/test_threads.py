"""fusedet.threads: the OpenMP waiting policy and torch's thread count for a command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fusedet.threads import openmp_environment, torch_threads, usable_cores


def test_passive_waiting_unless_the_user_chose_a_policy():
    assert openmp_environment({}) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert openmp_environment({"OMP_NUM_THREADS": "2", "PATH": "/bin"}) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert openmp_environment({"OMP_WAIT_POLICY": "active"}) == {}
    assert openmp_environment({"GOMP_SPINCOUNT": "10000"}) == {}
    assert openmp_environment({"OMP_WAIT_POLICY": " "}) == {"OMP_WAIT_POLICY": "PASSIVE"}  # blank is unset


def test_torch_threads_all_cores_unless_omp_num_threads_is_set():
    assert torch_threads({}, 2) == 2
    assert torch_threads({"OMP_NUM_THREADS": "1"}, 8) == 1
    assert torch_threads({"OMP_NUM_THREADS": "16"}, 2) == 16  # the user's choice wins
    for bad in ("0", "-1", "two", "", "1.5"):
        assert torch_threads({"OMP_NUM_THREADS": bad}, 3) == 3
    with pytest.raises(ValueError, match="cores"):
        torch_threads({}, 0)


def test_usable_cores_is_the_affinity_mask():
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert usable_cores() == expected >= 1


def _openmp_settings_seen_by_torch(extra: dict[str, str]) -> str:
    """What torch's OpenMP runtime reports at load (OMP_DISPLAY_ENV) in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(extra, OMP_DISPLAY_ENV="VERBOSE")
    done = subprocess.run([sys.executable, "-c", "import torch; torch.ones(64).sum()"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_the_policy_reaches_torchs_openmp_runtime_when_set_before_import():
    """libgomp spins 300k rounds by default (it shows that unset policy as PASSIVE too); the
    explicit passive policy makes it sleep at once: spin count 0."""
    default = _openmp_settings_seen_by_torch({})
    if "GOMP_SPINCOUNT" not in default:
        pytest.skip("torch's OpenMP runtime is not GNU libgomp (no GOMP_SPINCOUNT in OMP_DISPLAY_ENV)")
    assert "GOMP_SPINCOUNT = '0'" not in default
    assert "GOMP_SPINCOUNT = '0'" in _openmp_settings_seen_by_torch(openmp_environment({}))
