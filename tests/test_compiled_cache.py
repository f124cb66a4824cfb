"""dmnet's compiled routes give the same bytes in the process that compiles their kernels and in every
later process, which loads them from numba's disk cache (their helpers are compiled into each kernel:
dmnet.compiled.helper)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dmnet import compiled

pytestmark = pytest.mark.skipif(not compiled.NUMBA, reason="numba not installed")

_ROUTES = """
import hashlib, torch
from dmnet import DMNet, compiled_csab, compiled_dib, compiled_norm, compiled_restormer
torch.manual_seed(0)
model = DMNet.from_preset("lite").eval()
x = torch.randn(2, 8, 24, 37).contiguous(memory_format=torch.channels_last)
big = torch.randn(1, 8, 256, 512).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
norm = torch.nn.GroupNorm(4, 8)
with torch.inference_mode():
    outs = [compiled_restormer.restormer_forward(list(model.encoder.dtb.layers), x, omega=0.5),
            compiled_dib.dib_forward(model.encoder.dib, x), compiled_csab.csab_forward(model.encoder.csab, x),
            compiled_norm.group_norm_silu(big, norm, torch.randn(1, 8)).float()]
print(" ".join(hashlib.md5(o.numpy().tobytes()).hexdigest() for o in outs))
"""


def test_a_kernel_compiled_in_this_process_computes_what_its_cached_copy_computes(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    runs = [subprocess.run([sys.executable, "-c", _ROUTES], env=env, capture_output=True, text=True, check=True).stdout
            for _ in range(2)]  # the first compiles into the empty cache, the second loads from it
    assert any((tmp_path / "numba-cache").rglob("*.nbc"))
    assert runs[0] == runs[1] and len(runs[0].split()) == 4
