"""What DMNet's compiled CPU routes (numba) share: the one switch for all of them, float32 erf and exp
that vectorise, bfloat16 <-> float32 conversions, and running row bands of images on threads.

LLVM vectorises a loop over pixels only if every call in it can be vectorised; libm's ``expf`` and
``erff`` cannot (numba has no vector math library here), so these are written out as polynomials:

- :func:`exp32`: Cephes' ``expf`` (S. Moshier): x = n ln2 + r with ln2 in two parts, a degree-6
  polynomial in r, then 2^n put into the exponent bits. Relative error below 3e-7 (4 ulp) on
  [-87, 88]; outside it clamps (exp32(-inf) is about 1.6e-38, exp32(inf) about 1.6e38; fast-math
  gives NaN inputs no defined result) (tests/test_compiled.py).
- :func:`erf32`: x P(x^2) / Q(x^2) on [-4, 4] and +-1 outside, the rational approximation of Eigen's
  ``generic_fast_erf_float`` and XLA's ``ErfImpl32``: absolute error below 5e-7 on the whole line.
- :func:`bf16_to_f32` / :func:`f32_to_bf16`: bfloat16 values stored as uint16 (a torch bfloat16
  tensor viewed as int16); the rounding is to nearest, ties to even, as torch's ``.to(torch.bfloat16)``
  (finite values; NaN is not kept as NaN).

``DMNET_COMPILED=0`` in the environment switches every compiled route off (:data:`AVAILABLE`, which
the routes read at every call: setting ``dmnet.compiled.AVAILABLE = False`` in a process does the same);
so does a Python without numba. The routes are then the torch code they replace, with the same results up to
float32 rounding.

numba caches each kernel on disk keyed by its own source file: a kernel does not see a change of the
functions it takes from this module until its own file changes. Installing another fusedet version
rewrites every file, so nothing stale survives an upgrade; in a checkout, delete the ``*.nbi`` and
``*.nbc`` files of ``dmnet/__pycache__`` after editing this module.

A route cuts each image of a batch into row bands (:func:`row_bands`) and runs its kernels on them on
``torch.get_num_threads()`` threads (:func:`run_bands`; the kernels release the GIL), so one pair uses
every core fusedet gives torch.
"""

from __future__ import annotations

import functools
import math
import os
import platform
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

try:
    import numba
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic
except ImportError:  # pragma: no cover - numba is a dependency of fusedet; dmnet alone may lack it
    numba = None

NUMBA = numba is not None
AVAILABLE = NUMBA and os.environ.get("DMNET_COMPILED", "1") != "0"
TILE = 16  # pixels per row of the per-channel kernels' loops (tile_rows)


def use_full_vector_width() -> bool:
    """Let LLVM vectorise every numba kernel of this process with the CPU's widest vectors; returns
    whether the setting was made.

    On CPUs with AVX-512 LLVM's x86 tuning ``prefer-256-bit`` keeps loops at 256 bits (8 float32 lanes)
    unless told otherwise; numba compiles for the host's features with that tuning on. Without it the
    kernels here run at 16 lanes: the lite DMNet's forward pass 0.447 against 0.470 s on 2 cores, the
    fusion metrics 19.9 against 20.5 CPU-ms per TNO triplet (Sapphire Rapids). It is one setting for
    every numba kernel of the process (``numba.config.CPU_FEATURES``: the host's features plus
    ``-prefer-256-bit``), read when numba first compiles or loads a cached kernel; so it is made at the
    import of this module and of fusedet.eval.metrics_kernels, before their kernels run, and not where
    the user has set ``NUMBA_CPU_FEATURES`` or ``NUMBA_CPU_NAME``, after numba has compiled anything in
    this process, or off x86 (other targets do not know the tuning). numba caches a kernel per feature
    set, so either setting finds its own cached code."""
    if not NUMBA or numba.config.CPU_FEATURES is not None or numba.config.CPU_NAME is not None \
            or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    from numba.core.registry import cpu_target

    if "_toplevel_target_context" in vars(cpu_target):  # numba has built its code generator already
        return False
    try:
        from llvmlite import binding

        features = binding.get_host_cpu_features().flatten()
    except RuntimeError:  # pragma: no cover - llvm cannot tell this host's features: numba's defaults
        return False
    numba.config.CPU_FEATURES = f"{features},-prefer-256-bit" if features else "-prefer-256-bit"
    return True


use_full_vector_width()


_NJIT = {"nogil": True, "fastmath": True, "error_model": "numpy", "cache": True}


def jit(fn):
    """numba's nopython compilation as the compiled routes use it: the GIL released (the routes run
    row bands on threads), fast-math (contraction into FMAs, reassociation), cached on disk. Without
    numba the function is returned as it is (the routes are then off: :data:`AVAILABLE`)."""
    return numba.njit(**_NJIT)(fn) if NUMBA else fn


def helper(fn):
    """:func:`jit` for a function the kernels call: compiled into each kernel that calls it (numba's
    ``inline="always"``), never called as code of its own. A kernel loaded from numba's disk cache
    otherwise calls its helpers' separately compiled code, which with fast-math can round differently
    from the copy optimised into the kernel when the kernel was compiled: the first process on a machine
    (the one that compiles) fused 0.03-0.1 % of the values one grey level off every later process."""
    return numba.njit(**_NJIT, inline="always")(fn) if NUMBA else fn


if NUMBA:
    @intrinsic
    def _f32_from_bits(typingctx, bits):
        """The float32 whose bits are the uint32 `bits` (an LLVM bitcast: no instruction)."""
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.FloatType())
        return types.float32(types.uint32), codegen

    @intrinsic
    def _bits_from_f32(typingctx, value):
        """The bits of the float32 `value` as a uint32."""
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.IntType(32))
        return types.uint32(types.float32), codegen

    _LOG2E = np.float32(1.0 / math.log(2.0))
    _LN2_HI, _LN2_LO = np.float32(0.693359375), np.float32(-2.12194440e-4)
    _EXP = tuple(np.float32(v) for v in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                                         1.6666665459e-1, 5.0000001201e-1))
    _ERF_P = tuple(np.float32(v) for v in (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
                                           -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
                                           -1.60960333262415e-02))
    _ERF_Q = tuple(np.float32(v) for v in (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
                                           -7.37332916720468e-03, -1.42647390514189e-02))
    _HALF, _ONE, _RSQRT2 = np.float32(0.5), np.float32(1.0), np.float32(1.0 / math.sqrt(2.0))

    @helper
    def exp32(x):
        """exp of a float32 (Cephes expf), clamped to [-87, 88]."""
        e0, e1, e2, e3, e4, e5 = _EXP
        x = min(max(x, np.float32(-87.0)), np.float32(88.0))
        n = np.floor(x * _LOG2E + _HALF)
        r = x - n * _LN2_HI - n * _LN2_LO
        p = (((((e0 * r + e1) * r + e2) * r + e3) * r + e4) * r + e5) * r * r + r + _ONE
        return p * _f32_from_bits(np.uint32(np.int32(n) + 127) << np.uint32(23))

    @helper
    def erf32(x):
        """erf of a float32 (the rational approximation above)."""
        p0, p1, p2, p3, p4, p5, p6 = _ERF_P
        q0, q1, q2, q3, q4 = _ERF_Q
        x = min(max(x, np.float32(-4.0)), np.float32(4.0))
        x2 = x * x
        p = ((((((p0 * x2 + p1) * x2 + p2) * x2 + p3) * x2 + p4) * x2 + p5) * x2 + p6)
        q = ((((q0 * x2 + q1) * x2 + q2) * x2 + q3) * x2 + q4)
        return x * p / q

    @helper
    def gelu32(x):
        """GELU, the erf form (F.gelu's default): x (1 + erf(x / sqrt 2)) / 2."""
        return _HALF * x * (_ONE + erf32(x * _RSQRT2))

    @helper
    def silu32(x):
        """SiLU: x sigmoid(x) = x / (1 + exp(-x))."""
        return x / (_ONE + exp32(-x))

    @helper
    def bf16_to_f32(stored):
        """The float32 value of a bfloat16 stored as uint16 (exact)."""
        return _f32_from_bits(np.uint32(stored) << np.uint32(16))

    @helper
    def f32_to_bf16(value):
        """`value` rounded to bfloat16 (nearest, ties to even), as the uint16 that stores it."""
        bits = _bits_from_f32(value)
        return np.uint16((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))


def cpu_inference(*tensors, dtypes: tuple = ()) -> bool:
    """What every compiled route needs: the routes switched on (:data:`AVAILABLE`), no autograd, no CPU
    autocast, and each of `tensors` a 4-D channels-last CPU tensor of one of `dtypes` (float32 when
    empty). The routes' own checks (channels, sizes, weights) come on top."""
    import torch  # here, not at the top: the metrics kernels import this module without needing it

    allowed = dtypes or (torch.float32,)
    return (AVAILABLE and not torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
            and all(t.device.type == "cpu" and t.dtype in allowed and t.dim() == 4
                    and t.is_contiguous(memory_format=torch.channels_last) for t in tensors))


def float32_array(t) -> np.ndarray:
    """A C-contiguous float32 numpy array of a CPU tensor's values (the kernels' operand form)."""
    return np.ascontiguousarray(t.detach().numpy(), dtype=np.float32)


def row_bands(images: int, height: int, threads: int) -> list[tuple[int, int, int]]:
    """(image, first row, end row) work items: each image cut into the same number of row bands, so that
    the items divide evenly among `threads` (one band per image when the batch alone does)."""
    per_image = min(height, max(1, threads) // math.gcd(images, max(1, threads)))
    edges = np.linspace(0, height, per_image + 1).round().astype(int)
    return [(i, int(r0), int(r1)) for i in range(images) for r0, r1 in zip(edges[:-1], edges[1:]) if r1 > r0]


def tile_rows(flat: np.ndarray, channels: int, threads: int) -> list[tuple[int, np.ndarray, int, int]]:
    """Work items over each image of `flat` (B x (P C): the values of channels-last images, one row
    each) as rows of TILE pixels, TILE C values, the per-channel loops' layout with a unit-stride inner
    loop that vectorises: (image, its rows as a 2-D view, first row, end row), in row bands for
    `threads` threads (:func:`row_bands`), then the last P mod TILE pixels of each image as one short row."""
    b, size = flat.shape
    full, tail = divmod(size // channels, TILE)
    span = TILE * channels
    items = [(i, flat[i, :full * span].reshape(full, span), r0, r1) for i, r0, r1 in row_bands(b, full, threads)] if full else []
    return items + ([(i, flat[i, full * span:].reshape(1, -1), 0, 1) for i in range(b)] if tail else [])


@functools.lru_cache(maxsize=1)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dmnet-compiled")


os.register_at_fork(after_in_child=_pool.cache_clear)  # a forked child has none of the parent's threads


def run_bands(kernel: Callable, jobs: Sequence[tuple], threads: int) -> None:
    """``kernel(*args)`` for every tuple of `jobs`, on `threads` threads (in this thread for one thread or
    one job); the first exception raised by a kernel is raised here."""
    if threads <= 1 or len(jobs) <= 1:
        for args in jobs:
            kernel(*args)
        return
    for _ in _pool(threads).map(lambda args: kernel(*args), jobs):
        pass
