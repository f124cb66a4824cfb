"""The scalar building blocks of DMNet's compiled routes (dmnet/compiled.py) against math's float64
functions and torch's bfloat16 rounding, and its row bands."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys

import numpy as np
import pytest
import torch

from dmnet import compiled as cm

pytestmark = pytest.mark.skipif(not cm.NUMBA, reason="numba not installed")

if cm.NUMBA:
    @cm.jit
    def _apply(fn_id, x, out):
        for j in range(x.shape[0]):
            v = x[j]
            if fn_id == 0:
                out[j] = cm.exp32(v)
            elif fn_id == 1:
                out[j] = cm.erf32(v)
            elif fn_id == 2:
                out[j] = cm.gelu32(v)
            else:
                out[j] = cm.silu32(v)


def _run(fn_id: int, x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    _apply(fn_id, x, out)
    return out.astype(np.float64)


def test_exp32_is_within_3_ulp_on_its_range_and_clamps_outside():
    x = np.concatenate([np.linspace(-87, 88, 400001), [0.0, -0.0, 1e-30, -1e-30, 0.5, -0.5]]).astype(np.float32)
    ref = np.exp(x.astype(np.float64))
    assert np.abs(_run(0, x) / ref - 1).max() < 4e-7
    far = _run(0, np.array([-200.0, 200.0], np.float32))
    assert far[0] == pytest.approx(math.exp(-87), rel=1e-6) and far[1] == pytest.approx(math.exp(88), rel=1e-6)


def test_erf32_gelu32_and_silu32_against_float64_formulas():
    x = np.concatenate([np.linspace(-9, 9, 200001), [0.0, -0.0, 50.0, -50.0]]).astype(np.float32)
    xd = x.astype(np.float64)
    erf = np.array([math.erf(v) for v in xd])
    assert np.abs(_run(1, x) - erf).max() < 5e-7
    gelu = 0.5 * xd * (1 + np.array([math.erf(v / math.sqrt(2)) for v in xd]))
    assert np.abs(_run(2, x) - gelu).max() < 5e-6  # at |x| = 9 one float32 ulp is 1e-6
    silu = xd / (1 + np.exp(-xd))
    assert np.allclose(_run(3, x), silu, rtol=1e-6, atol=1e-7)


def test_bfloat16_conversions_equal_torch():
    torch.manual_seed(0)
    values = torch.cat([torch.randn(100000) * 10.0 ** torch.randint(-6, 6, (100000,)), torch.tensor([0.0, -0.0, 1.0, 3.0e38])])
    rounded = values.to(torch.bfloat16)

    @cm.jit
    def roundtrip(f, stored, back):
        for j in range(f.shape[0]):
            stored[j] = cm.f32_to_bf16(f[j])
            back[j] = cm.bf16_to_f32(stored[j])

    f = values.numpy()
    stored, back = np.empty(f.shape, np.uint16), np.empty_like(f)
    roundtrip(f, stored, back)
    assert np.array_equal(stored, rounded.view(torch.int16).numpy().view(np.uint16))
    assert np.array_equal(back, rounded.float().numpy())


@pytest.mark.parametrize(("images", "height", "threads"), [(2, 480, 2), (1, 480, 2), (3, 21, 2), (3, 7, 4), (1, 1, 8), (5, 3, 3)])
def test_row_bands_cover_every_row_once_in_even_shares(images, height, threads):
    bands = cm.row_bands(images, height, threads)
    for i in range(images):
        rows = [r for image, r0, r1 in bands if image == i for r in range(r0, r1)]
        assert rows == list(range(height))
    sizes = {r1 - r0 for _, r0, r1 in bands}
    assert max(sizes) - min(sizes) <= 1  # bands of one image differ by a row at most
    assert len(bands) % threads == 0 or len(bands) == images * height  # shares divide evenly unless rows run out


def test_run_bands_runs_every_job_and_raises_a_kernels_error():
    seen = []
    cm.run_bands(lambda a, b: seen.append((a, b)), [(1, 2), (3, 4), (5, 6)], threads=2)
    assert sorted(seen) == [(1, 2), (3, 4), (5, 6)]

    def fails(a):
        if a == 2:
            raise ValueError("band 2")

    with pytest.raises(ValueError, match="band 2"):
        cm.run_bands(fails, [(1,), (2,), (3,)], threads=2)


_SHOW_FEATURES = """
import numba
import dmnet.compiled as cm
from numba.core.registry import cpu_target
print(repr(numba.config.CPU_FEATURES))
cpu_target.target_context  # numba's code generator built: a later call changes nothing
print(cm.use_full_vector_width())
"""


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="the 256-bit tuning is x86's")
def test_full_vector_width_is_set_once_at_import_and_never_over_the_users_choice():
    def features(**env):
        environ = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")} | env
        done = subprocess.run([sys.executable, "-c", _SHOW_FEATURES], capture_output=True, text=True, env=environ,
                              check=True)
        return done.stdout.split()

    setting, later = features()
    assert setting.endswith(",-prefer-256-bit'") and "+avx" in setting and later == "False"
    assert features(NUMBA_CPU_FEATURES="+sse2") == ["'+sse2'", "False"]
    generic, later = features(NUMBA_CPU_NAME="generic")  # numba's own features for its generic target
    assert "prefer-256-bit" not in generic and later == "False"
