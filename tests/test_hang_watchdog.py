"""The suite's hang watchdog (tests/conftest.py): a test stuck with the interpreter lock held still ends the run,
with every thread's stack, instead of running into CI's time limit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent

HUNG = '''
import ctypes
import threading


def test_holds_the_interpreter_lock():
    threading.Thread(target=lambda: None, name="bystander").start()
    ctypes.PyDLL(None).sleep(30)  # a C call through PyDLL keeps the interpreter lock, as a hung C call would
'''


def test_a_test_hung_with_the_interpreter_lock_held_ends_the_run_with_its_stack(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text((TESTS / "conftest.py").read_text())
    (tmp_path / "test_hung.py").write_text(HUNG)
    env = {**os.environ, "UNETPP_TEST_HANG_S": "3"}
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "timeout=0",
                          str(tmp_path / "test_hung.py")], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=100)
    took = time.monotonic() - start
    assert out.returncode != 0 and took < 25, (out.returncode, took)
    assert "Timeout (0:00:03)!" in out.stderr and "test_holds_the_interpreter_lock" in out.stderr, out.stderr[-3000:]
