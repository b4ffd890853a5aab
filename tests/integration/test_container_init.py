"""`dockyard run --init`: docker's init (Debian's static tini) as the container's PID 1, which
reaps orphaned zombies and forwards signals to the command."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from testbed.engine import Engine

pytestmark = pytest.mark.integration


def _processes(eng: Engine, cid: str) -> list[tuple[str, str, str]]:
    """(pid, state, command) of every process in the container, as its own ps sees them."""
    out = eng.run("exec", cid, "ps", "-o", "pid,stat,comm").stdout.splitlines()
    return [(f[0], f[1], f[2]) for f in (line.split() for line in out[1:]) if len(f) >= 3]


def test_init_is_pid_1_and_inspect_says_so(busybox_engine: Engine) -> None:
    eng = busybox_engine
    cmdline = eng.run("run", "--rm", "--init", "busybox", "cat", "/proc/1/cmdline").stdout
    assert cmdline.split("\0") == ["/sbin/docker-init", "--", "cat", "/proc/1/cmdline", ""]
    # read-only: the container cannot replace the host's init binary
    p = eng.run("run", "--rm", "--init", "busybox", "sh", "-c", "echo x > /sbin/docker-init",
                check=False)
    assert p.returncode != 0 and "Read-only file system" in p.stderr
    cid = eng.run("create", "--init", "busybox", "true").stdout.strip()
    plain = eng.run("create", "busybox", "true").stdout.strip()
    docs = json.loads(eng.run("inspect", cid, plain).stdout)
    assert docs[0]["HostConfig"]["Init"] is True
    assert docs[1]["HostConfig"]["Init"] is None
    assert docs[0]["Path"] == "true"    # as docker: the init is not part of the command


def test_init_reaps_orphaned_zombies(busybox_engine: Engine) -> None:
    eng = busybox_engine
    # the subshell exits at once: its `sleep 0.1` is orphaned and re-parented to PID 1, which
    # must wait for it when it exits; `sleep` as PID 1 never does
    orphan = ["sh", "-c", "(sleep 0.1 &); exec sleep 30"]
    without = eng.run("run", "-d", "busybox", *orphan).stdout.strip()
    with_init = eng.run("run", "-d", "--init", "busybox", *orphan).stdout.strip()
    deadline = time.monotonic() + 10
    while not any(state.startswith("Z") for _, state, _ in _processes(eng, without)):
        assert time.monotonic() < deadline, _processes(eng, without)
        time.sleep(0.1)
    while True:
        procs = _processes(eng, with_init)
        if [c for _, _, c in procs if c == "sleep"] == ["sleep"]:
            break       # the orphan is gone for good
        assert time.monotonic() < deadline, procs
        time.sleep(0.1)
    assert not any(state.startswith("Z") for _, state, _ in procs), procs
    assert ("1", "docker-init") in [(pid, c) for pid, _, c in procs]


def test_init_forwards_sigterm(busybox_engine: Engine) -> None:
    eng = busybox_engine
    # `sleep` has no handler for SIGTERM: as PID 1 it ignores it, under tini it dies of it
    cid = eng.run("run", "-d", "--init", "busybox", "sleep", "100").stdout.strip()
    eng.run("stop", "-t", "30", cid)
    assert eng.run("wait", cid).stdout.strip() == "143"
    bare = eng.run("run", "-d", "busybox", "sleep", "100").stdout.strip()
    eng.run("stop", "-t", "1", bare)
    assert eng.run("wait", bare).stdout.strip() == "137"   # killed after the timeout


def test_missing_init_binary_exits_125(busybox_engine: Engine, tmp_path: Path) -> None:
    eng = busybox_engine
    assert eng.config is not None
    config = json.loads(eng.config.read_text())
    eng.config.write_text(json.dumps({**config, "init-path": str(tmp_path / "no-such-init")}))
    p = eng.run("run", "--rm", "--init", "busybox", "true", check=False)
    assert p.returncode == 125
    assert p.stderr.splitlines()[0] == (
        f"Error: --init: no init binary: {tmp_path / 'no-such-init'} is not an executable file")
    assert '"init-path"' in p.stderr and "Traceback" not in p.stderr
    assert eng.run("ps", "-aq").stdout == ""
