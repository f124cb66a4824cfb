"""CPU threading policy for fusedet's commands: how torch's OpenMP threads wait, and how many there are.

torch runs its CPU operators on an OpenMP team of ``torch.get_num_threads()`` threads (all usable
cores by default), and every operator ends on a barrier. GNU libgomp, the OpenMP runtime of torch's
Linux wheels, lets a thread that reaches a barrier early spin for a while (``GOMP_SPINCOUNT``, 300k
rounds by default) before it sleeps. On a quiet machine that saves a wake-up per operator. On a
busy one it is a collapse: the thread that is late is waiting for a core, and the early one burns
the core it needs; a DMNet pass runs a few thousand operators, each ending on such a barrier.
With passive waiting (``OMP_WAIT_POLICY=PASSIVE``) the early thread sleeps at once and gives its
core back, so the team loses only what the other processes take. ``bench/busy_machine.py``
compares passive waiting with every core against libgomp's default, a shorter spin and one thread,
with and without competing processes (the README gives the figures). One thread per free core is what "fewer threads" gives on a busy machine, and
it lost: a single thread gets a smaller share of a crowded machine than two that sleep when they
wait.

libgomp reads its settings once, when it is loaded (on ``import torch``), so they must be in the
environment before that:

- ``openmp_environment(environ)`` (pure) is what fusedet adds to the environment for a command:
  ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a waiting policy (``OMP_WAIT_POLICY`` or
  ``GOMP_SPINCOUNT``); nothing else;
- ``torch_threads(environ, cores)`` (pure) is the intra-op thread count: the user's
  ``OMP_NUM_THREADS`` when it is a positive integer, else all usable cores;
- ``usable_cores()`` reads the cores this process may run on.

Nothing here changes process state: the caller applies both for the duration of its command.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

WAIT_POLICY = "PASSIVE"
USER_WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")  # either one is the user's choice of waiting


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def openmp_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Environment variables to add before torch is first imported: ``{"OMP_WAIT_POLICY": "PASSIVE"}``,
    or ``{}`` when ``environ`` already sets ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` (non-empty).

    Read by the OpenMP runtime when it loads; setting them after ``import torch`` has no effect.
    """
    if any(environ.get(name, "").strip() for name in USER_WAIT_SETTINGS):
        return {}
    return {"OMP_WAIT_POLICY": WAIT_POLICY}


def torch_threads(environ: Mapping[str, str], cores: int) -> int:
    """torch's intra-op thread count: ``OMP_NUM_THREADS`` from ``environ`` when it is a positive
    integer (the user's choice, even above ``cores``), else ``cores``. Raises ValueError for
    ``cores < 1``."""
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    chosen = environ.get("OMP_NUM_THREADS", "").strip()
    if chosen.isdigit() and int(chosen) > 0:
        return int(chosen)
    return cores
