"""Live restore: containers do not belong to ``dockyard serve``. Killing the daemon (SIGKILL, or
SIGTERM in the middle of an attach and a logs -f) leaves them running; a new daemon sees them
as they are, and what the ``dockyard`` CLI did meanwhile, and drives them (ps, logs, exec,
stop) with the docker CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from testbed.apidaemon import DOCKER, Daemon

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="no docker CLI")]

TICKER = ("trap 'exit 0' TERM; i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.1; "
          "done")


def _kill_daemon(d: Daemon, sig: int) -> None:
    proc = d.proc
    assert proc is not None and proc.pid > 0
    os.kill(proc.pid, sig)
    proc.wait(timeout=30)
    d.proc = None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _ticks(d: Daemon, name: str) -> int:
    lines = d.docker("logs", name).stdout.split()
    return int(lines[-1][4:]) if lines else -1


def test_containers_outlive_the_daemon_and_a_new_one_resyncs(api_daemon: Daemon) -> None:
    d = api_daemon
    d.docker("run", "-d", "--name", "lr-a", "--network", "none", "busybox", "sh", "-c", TICKER)
    d.docker("run", "-d", "--name", "lr-gone", "--network", "none", "busybox", "sleep", "60")
    pid_a = int(d.docker("inspect", "-f", "{{.State.Pid}}", "lr-a").stdout)
    # sessions open in the daemon when it dies: a follower and an attached client
    follow = subprocess.Popen([DOCKER, "-H", d.url, "logs", "-f", "lr-a"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    attach = subprocess.Popen([DOCKER, "-H", d.url, "attach", "--no-stdin", "lr-a"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert follow.stdout is not None and attach.stdout is not None
        assert follow.stdout.readline().startswith(b"tick")
        assert attach.stdout.readline().startswith(b"tick")

        _kill_daemon(d, signal.SIGKILL)
        # the clients lose their daemon, not the container
        follow.wait(timeout=30)
        attach.wait(timeout=30)
        assert _alive(pid_a)
        before = _ticks_cli(d, "lr-a")
        time.sleep(0.5)
        assert _ticks_cli(d, "lr-a") > before

        # meanwhile, with the engine's own CLI: one made and started, one removed
        d.engine.run("run", "-d", "--name", "lr-cli", "--network", "none", "busybox", "sh",
                     "-c", TICKER)
        d.engine.run("rm", "-f", "lr-gone")

        d.start()
        restored = [x for x in d.log().splitlines() if "live-restore:" in x]
        assert restored[-1].endswith("live-restore: 2 containers, 2 running"), restored
        names = d.docker("ps", "--format", "{{.Names}} {{.State}}").stdout.split("\n")
        assert "lr-a running" in names and "lr-cli running" in names
        assert "lr-gone" not in d.docker("ps", "-a", "--format", "{{.Names}}").stdout
        assert d.docker("inspect", "-f", "{{.State.Pid}}", "lr-a").stdout.strip() == \
            str(pid_a)
        t = _ticks(d, "lr-a")
        deadline = time.monotonic() + 10
        while _ticks(d, "lr-a") <= t:       # still logging, seen through the new daemon
            assert time.monotonic() < deadline
            time.sleep(0.1)
        ex = d.docker("exec", "lr-a", "sh", "-c", "echo exec-after-restart; exit 3",
                      check=False)
        assert (ex.returncode, ex.stdout) == (3, "exec-after-restart\n")
        assert d.docker("exec", "lr-cli", "true").returncode == 0

        # a graceful stop of the daemon leaves them running too
        _kill_daemon(d, signal.SIGTERM)
        assert _alive(pid_a)
        d.start()
        d.docker("stop", "-t", "5", "lr-a", "lr-cli")
        assert d.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "lr-a",
                        "lr-cli").stdout.split() == ["exited", "0", "exited", "0"]
        assert not _alive(pid_a)
    finally:
        for p in (follow, attach):
            if p.poll() is None and p.pid > 0:
                p.terminate()
            p.communicate(timeout=10)
        if d.proc is None:
            d.start()
        d.docker("rm", "-f", "lr-a", "lr-cli", "lr-gone", check=False)


def test_a_container_that_ends_while_no_daemon_runs(api_daemon: Daemon) -> None:
    """Its exit is recorded by its supervision; the next daemon reports it (wait, ps -a,
    inspect) and can start it again."""
    d = api_daemon
    d.docker("run", "-d", "--name", "lr-short", "--network", "none", "busybox", "sh", "-c",
             "sleep 1; echo done; exit 7")
    _kill_daemon(d, signal.SIGKILL)
    try:
        deadline = time.monotonic() + 20
        while "Exited (7)" not in d.engine.run("ps", "-a", "--filter", "name=lr-short",
                                               "--format", "{{.Status}}").stdout:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        d.start()
    assert d.docker("wait", "lr-short").stdout.strip() == "7"
    assert d.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}",
                    "lr-short").stdout.split() == ["exited", "7"]
    assert d.docker("logs", "lr-short").stdout == "done\n"
    d.docker("start", "lr-short")
    assert d.docker("wait", "lr-short").stdout.strip() == "7"
    d.docker("rm", "lr-short")


def _ticks_cli(d: Daemon, name: str) -> int:
    """The last tick through the engine's CLI (no daemon needed)."""
    lines = d.engine.run("logs", name).stdout.split()
    return int(lines[-1][4:]) if lines else -1
