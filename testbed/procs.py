"""Stopping a child process the tests or benchmarks started, by its PID only."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any


def stop_child(proc: subprocess.Popen[Any], timeout: float) -> bool:
    """SIGTERM to ``proc`` and wait up to ``timeout`` seconds for it; SIGKILL (and wait as
    long again) if it did not leave. True when SIGTERM was enough (or it had exited)."""
    if proc.poll() is not None:
        return True
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)
        return False
    return True
