"""The one place where fusedet changes process-wide state, and only while its own command or call runs.

Every CLI command and every long-running library call (FusionDetector's methods, fuse_folder,
finetune, train_fuser, the Detector) runs inside ``session()``. The outermost session records what it
changes and puts it back when it ends, so a Python caller's process is left as it was:

- **Environment variables** for ultralytics, set only where the user has not set them:
  ``YOLO_OFFLINE=1`` (no DNS probe, no events), ``YOLO_AUTOINSTALL=false`` (never pip-install),
  ``YOLO_CONFIG_DIR=$FUSEDET_CACHE/ultralytics`` (fusedet's own settings folder). Removed again at the end.
- **ultralytics globals** patched through ``patch()`` (see fusedet.ultralytics_env): its AMP check,
  its thread count, its event sender, its integration switches (in memory only: the settings file is
  not rewritten). Restored at the end.
- **OpenMP's waiting** (fusedet.threads): ``OMP_WAIT_POLICY=PASSIVE`` unless you chose a policy
  (``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``), so torch's threads sleep at barriers instead of
  spinning: on a busy machine spinning threads take the cores the late ones need. OpenMP reads it
  when torch is first imported, so it acts only when fusedet's command or call is the first to import
  torch (the CLI is); the variable is removed again at the end.
- **torch's CPU thread count** (``set_torch_threads``): ``OMP_NUM_THREADS`` when you set it, else
  every usable core (fusedet.threads.torch_threads); restored at the end. Both only when the session
  is the first to import torch: a caller that has imported torch keeps its own settings.
- **glibc malloc** (``keep_freed_memory``): asked for by the DMNet fuser and the fusion metrics
  (score_folders) on CPU; reset to glibc's default thresholds at the end.
- **the processes of a torchrun launch** (fusedet.distributed.current): the connection to the
  launch's key-value store, opened on first use and closed at the end (torch's default process
  group is never initialised).

- **the end of a CLI process** (``exit_process``, called by the ``fusedet`` console script through
  ``fusedet.cli.run``, never by a library call or ``fusedet.cli.main``): once the command has returned,
  Python's exit handlers run and the streams are flushed, then the process ends without the interpreter's
  teardown of its modules, which takes 0.4 s after ``import torch`` alone and 0.8 s with torchvision on
  2 cores (every command paid it). FUSEDET_FAST_EXIT=0 keeps the usual exit.

What remains global after a session, because it cannot be undone: OpenMP's waiting policy once torch
has loaded under it, the choices ultralytics makes once when it is first imported (offline mode, no
auto-install and the settings folder, if fusedet's session was the first to import it), ultralytics'
font files in its settings folder (fusedet installs matplotlib's DejaVu Sans there instead of letting
it download Arial), and glibc's dynamic mmap threshold, which stays fixed once malloc's thresholds
have been set.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from fusedet import threads

F = TypeVar("F", bound=Callable[..., Any])

_lock = threading.RLock()
_depth = 0
_undo: list[Callable[[], None]] = []  # run in reverse order when the outermost session ends
_done: set[str] = set()  # once-per-session actions already taken


def fusedet_cache_root() -> Path:
    """Where fusedet keeps caches by default: ``$FUSEDET_CACHE`` or ``~/.cache/fusedet``, as an absolute
    path (ultralytics is handed its settings folder inside it)."""
    return Path(os.environ.get("FUSEDET_CACHE") or Path.home() / ".cache" / "fusedet").expanduser().resolve()


@contextlib.contextmanager
def session() -> Iterator[None]:
    """Apply fusedet's process-wide settings for the duration of the block (nested blocks share the
    outermost one); everything changed through this module is restored when the outermost ends."""
    global _depth
    with _lock:
        _depth += 1
        if _depth == 1:
            _setenv_default("YOLO_OFFLINE", "1")
            _setenv_default("YOLO_AUTOINSTALL", "false")
            _setenv_default("YOLO_CONFIG_DIR", str(fusedet_cache_root() / "ultralytics"))
            if "torch" not in sys.modules:  # else the caller has set torch up already: its threads are its own
                for name, value in threads.openmp_environment(os.environ).items():
                    _setenv_default(name, value)  # read by OpenMP when torch loads: before the first import torch
                set_torch_threads(threads.torch_threads(os.environ, threads.usable_cores()))
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                while _undo:
                    _undo.pop()()
                _done.clear()


def in_session(fn: F) -> F:
    """Decorator: run `fn` inside ``session()``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with session():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def active() -> bool:
    """Whether a session is open in this process."""
    return _depth > 0


def once(key: str) -> bool:
    """True the first time `key` is asked for within the current session (False outside a session)."""
    with _lock:
        if not active() or key in _done:
            return False
        _done.add(key)
        return True


def on_exit(undo: Callable[[], None]) -> None:
    """Run `undo` when the outermost session ends (at once when no session is open)."""
    with _lock:
        if active():
            _undo.append(undo)
            return
    undo()


def _setenv_default(key: str, value: str) -> None:
    if key in os.environ:
        return
    os.environ[key] = value
    _undo.append(lambda: os.environ.pop(key, None))


def patch(owner: Any, attribute: str, value: Any) -> None:
    """Set ``owner.attribute = value`` for the rest of the session (restored at its end). For a dict
    `owner`, the item is set in memory with dict's own __setitem__ (no save hooks). Outside a session
    nothing is changed."""
    if not active():
        return
    if isinstance(owner, dict):
        missing = attribute not in owner
        old = owner.get(attribute)
        dict.__setitem__(owner, attribute, value)
        on_exit(lambda: dict.__delitem__(owner, attribute) if missing else dict.__setitem__(owner, attribute, old))
    else:
        old = getattr(owner, attribute)
        setattr(owner, attribute, value)
        on_exit(lambda: setattr(owner, attribute, old))


def set_torch_threads(count: int) -> None:
    """torch's intra-op CPU thread count for the rest of the session (restored at its end)."""
    import torch

    if not active() or count < 1:
        return
    old = torch.get_num_threads()
    if count != old:
        torch.set_num_threads(count)
        on_exit(lambda: torch.set_num_threads(old))


# glibc <malloc.h> mallopt parameters and their documented defaults (mallopt(3))
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_TOP_PAD, _DEFAULT_MMAP_MAX = 128 * 1024, 128 * 1024, 65536


@functools.cache
def _mallopt() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # no C library with mallopt (musl, other platforms)
        return None


def keep_freed_memory(heap_step: int = 0) -> bool:
    """Make glibc's malloc keep freed memory for reuse, for the rest of the session.

    A DMNet forward pass on a 480x640 pair allocates about 2 GB of short-lived tensors, most of them
    larger than glibc's largest mmap threshold (32 MB). By default each one is a fresh mmap that the
    kernel zero-fills page by page: 400-500k page faults per pass, a third of its CPU time. With mmap
    off for large blocks and heap trimming only above 2 GB, freed blocks are reused and the faults are
    gone from the second pass on (``bench/fuse_speed.py --malloc`` compares both). The cost: the
    process keeps its peak heap while the session lasts. Used by the DMNet fuser for small models on
    CPU (fusedet.dmnet_fuser.small_model) and by the fusion metrics on CPU, whose every pair allocates
    the same few dozen image-sized maps (fusedet.eval.metrics_folders.score_plan). At the session's
    end malloc gets glibc's default thresholds back (mallopt(3)). Set FUSEDET_KEEP_FREED_MEMORY=0 to
    leave malloc alone.

    `heap_step` (bytes, 0: glibc's 128 KiB) makes the heap grow in steps of at least that much (M_TOP_PAD).
    The fusion metrics ask for 256 MiB: their worker threads' heaps then fault in half as many pages
    (175 TNO triplets: 273k -> 137k minor page faults, `fusedet metrics` wall -3 %, median of 5 runs
    alternated); the DMNet fuser does not ask (no gain measured).

    Returns whether the setting is in force (False outside a session, off Linux/glibc, or when disabled).
    """
    mallopt = _mallopt()
    if mallopt is None or not active() or os.environ.get("FUSEDET_KEEP_FREED_MEMORY", "1") == "0":
        return False
    if heap_step > 0 and once("heap_step"):
        mallopt(_M_TOP_PAD, int(heap_step))
        on_exit(lambda: mallopt(_M_TOP_PAD, _DEFAULT_TOP_PAD))
    if not once("keep_freed_memory"):
        return True
    applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    on_exit(lambda: (mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX), mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)))
    return applied


def exit_process(code: object = 0) -> None:
    """End the process now with `code`, as SystemExit(code) would (None is 0, an int is the status, anything
    else is printed to stderr and gives 1), after running the ``atexit`` handlers (multiprocessing's
    clean-up of worker processes, logging, the finalizers of temporary folders) and flushing stdout and
    stderr, but without the interpreter's teardown of modules and objects (``os._exit``): see the module
    docstring. Output that cannot be flushed (a closed pipe, a full disk) gives status 120 and a line on
    stderr where it can, as CPython's own exit does. With FUSEDET_FAST_EXIT=0 it raises SystemExit(code)
    instead, the usual way out. For a process's entry point only (``fusedet.cli.run``): it never returns."""
    if os.environ.get("FUSEDET_FAST_EXIT", "1") == "0":
        raise SystemExit(code)
    if code is None:
        code = 0
    elif not isinstance(code, int) or isinstance(code, bool):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception as exc:  # noqa: BLE001 - any failure to write out is reported the same way
            with contextlib.suppress(Exception):
                os.write(2, f"Exception ignored while flushing {getattr(stream, 'name', 'a stream')}: {exc!r}\n".encode())
            code = 120
    os._exit(code)
