"""docker's OpenStdin without a terminal, through the engine's own CLI: ``run -di`` keeps the
container's stdin open (its supervision holds it), ``attach`` later writes to it, a client
that goes leaves it open, and a restart gets a fresh one."""

from __future__ import annotations

import subprocess
import time

import pytest

from testbed.engine import DOCKYARD, Engine

pytestmark = pytest.mark.integration


def _attach(e: Engine, name: str) -> subprocess.Popen[bytes]:
    cmd = [*DOCKYARD, "--root", str(e.root)]
    if e.config is not None:
        cmd += ["--config", str(e.config)]
    return subprocess.Popen([*cmd, "attach", name], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=e.env)


def _say(e: Engine, name: str, line: bytes) -> bytes:
    att = _attach(e, name)
    try:
        assert att.stdin is not None and att.stdout is not None
        att.stdin.write(line)
        att.stdin.flush()
        return att.stdout.readline()
    finally:
        if att.pid > 0:
            att.kill()
        att.wait()


def _status(e: Engine, name: str) -> str:
    return e.run("inspect", "-f", "{{.State.Status}}", name).stdout.strip()


def test_run_di_keeps_stdin_open_for_attach(busybox_engine: Engine) -> None:
    e = busybox_engine
    e.run("run", "-di", "--name", "cat", "--network", "none", "busybox", "cat")
    time.sleep(0.3)
    assert _status(e, "cat") == "running"       # not EOF at once, as /dev/null would be
    assert _say(e, "cat", b"first\n") == b"first\n"
    assert _say(e, "cat", b"second\n") == b"second\n"     # still open after a client went
    assert e.run("logs", "cat").stdout == "first\nsecond\n"
    # without -i the stdin is empty, as before
    e.run("run", "-d", "--name", "noin", "--network", "none", "busybox", "cat")
    deadline = time.monotonic() + 10
    while _status(e, "noin") != "exited":
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_restart_gets_a_fresh_stdin(busybox_engine: Engine) -> None:
    e = busybox_engine
    e.run("run", "-di", "--restart", "always", "--name", "once", "--network", "none",
          "busybox", "sh", "-c", "read x; echo got-$x")
    assert _say(e, "once", b"one\n") == b"got-one\n"
    deadline = time.monotonic() + 15
    while e.run("inspect", "-f", "{{.RestartCount}} {{.State.Status}}",
                "once").stdout.split() != ["1", "running"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert _say(e, "once", b"two\n") == b"got-two\n"
