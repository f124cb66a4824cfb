"""How the fusedet command ends its process (fusedet.runtime.exit_process): exit handlers run, streams
are flushed, the exit code is kept; the interpreter's teardown is skipped unless FUSEDET_FAST_EXIT=0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import atexit, sys, weakref
from fusedet import runtime
atexit.register(lambda: open({marker!r}, "w").write("ran"))
class Noisy:  # its finalizer runs only in the interpreter's teardown
    def __del__(self):
        sys.stdout.write(" teardown")
        sys.stdout.flush()
keep = Noisy()
sys.stdout.write("partial line without newline")  # still buffered when the process ends
runtime.exit_process({code!r})
print("not reached")
"""


def _run(tmp_path: Path, code, fast: bool) -> subprocess.CompletedProcess:
    marker = tmp_path / "atexit.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FUSEDET_FAST_EXIT": "1" if fast else "0"}
    script = SCRIPT.format(marker=str(marker), code=code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("code,expected", [(0, 0), (3, 3), (None, 0)])
def test_fast_exit_runs_exit_handlers_flushes_and_keeps_the_code(tmp_path, code, expected):
    done = _run(tmp_path, code, fast=True)
    assert done.returncode == expected
    assert done.stdout == "partial line without newline"  # flushed; no teardown, "not reached" never printed
    assert (tmp_path / "atexit.txt").read_text() == "ran"


def test_a_message_exits_1_and_the_usual_exit_tears_down(tmp_path):
    done = _run(tmp_path, "fatal: bad thing", fast=True)
    assert done.returncode == 1 and done.stderr.strip() == "fatal: bad thing"
    assert _run(tmp_path, 2.5, fast=True).returncode == 1  # any other object: printed, status 1, as SystemExit
    usual = _run(tmp_path, 5, fast=False)  # FUSEDET_FAST_EXIT=0: SystemExit, then the interpreter's teardown
    assert usual.returncode == 5 and usual.stdout == "partial line without newline teardown"
    assert (tmp_path / "atexit.txt").read_text() == "ran"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_output_that_cannot_be_written_gives_120_as_pythons_own_exit(tmp_path):
    script = "import sys; from fusedet import runtime; sys.stdout.write('x' * 10); runtime.exit_process(0)"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": ""}
    env.pop("PYTHONUNBUFFERED")
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-c", script], stdout=full, stderr=subprocess.PIPE, text=True, env=env, timeout=60)
    assert done.returncode == 120 and "flushing" in done.stderr


def test_main_raises_systemexit_for_callers_and_run_is_the_console_script():
    import tomllib

    from fusedet.cli import main

    sys_argv = sys.argv
    sys.argv = ["fusedet", "--help"]
    try:
        with pytest.raises(SystemExit) as exc:
            main()
    finally:
        sys.argv = sys_argv
    assert exc.value.code == 0
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"fusedet": "fusedet.cli:run"}
