"""Warm commands: a lingering monitor runs container commands for the `dockyard` processes that
users start (cli/fastpath.py, monitor/worker.py), and they behave exactly as cold ones."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.engine import DOCKYARD, Engine, loaded_engine

pytestmark = pytest.mark.integration


def _monitor_pid(eng: Engine) -> int:
    path = Path(eng.env["DOCKYARD_RUN_ROOT"]) / "containers" / "monitor.pid"
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def warm(tmp_path: Path) -> Iterator[Engine]:
    with loaded_engine(tmp_path, env={"DOCKYARD_MONITOR_LINGER": "60"}) as e:
        try:
            yield e
        finally:
            for cid in e.run("ps", "-aq", "--no-trunc", check=False).stdout.split():
                e.run("rm", "-f", cid, check=False)
            pid = _monitor_pid(e)
            if pid > 0 and _alive(pid):
                os.kill(pid, signal.SIGTERM)
                assert _wait_gone(pid), "the monitor did not leave on SIGTERM"


def _children(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            out += [int(p) for p in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except OSError:
            pass
    return out


def test_the_monitor_lingers_and_runs_commands_warm(warm: Engine, tmp_path: Path) -> None:
    assert warm.run("run", "--rm", "busybox", "echo", "cold").stdout == "cold\n"
    monitor = _monitor_pid(warm)
    assert _alive(monitor), "the monitor left although it should linger"
    # a foreground run: its worker is a python child of the monitor, beside the container
    cmd = [*DOCKYARD, "--root", str(warm.root), "--config", str(warm.config), "run", "--rm",
           "busybox", "sh", "-c", "echo started; sleep 1; echo done"]
    proc = subprocess.Popen(cmd, env=warm.env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "started\n"
    exes = {os.path.basename(os.readlink(f"/proc/{c}/exe")) for c in _children(monitor)
            if _alive(c)}
    assert any(e.startswith("python") for e in exes), exes
    assert proc.stdout.read() == "done\n"
    assert proc.wait(timeout=30) == 0
    assert _monitor_pid(warm) == monitor


def test_warm_commands_are_the_users_own(warm: Engine, tmp_path: Path) -> None:
    """Exit codes, stderr, stdin, environment and working directory are the client's."""
    warm.run("run", "--rm", "busybox", "true")     # spawns the monitor
    assert _alive(_monitor_pid(warm))
    p = warm.run("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3",
                 check=False)
    assert (p.returncode, p.stdout, p.stderr) == (3, "out\n", "err\n")
    assert warm.run("run", "--rm", "-i", "busybox", "tr", "a-z", "A-Z",
                    stdin="piped\n").stdout == "PIPED\n"
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "vars.env").write_text("FROM_FILE=yes\n")
    cmd = [*DOCKYARD, "--root", str(warm.root), "--config", str(warm.config), "run", "--rm",
           "--env-file", "vars.env", "-e", "FROM_ENV", "busybox", "sh", "-c",
           "echo $FROM_FILE $FROM_ENV"]
    done = subprocess.run(cmd, env=dict(warm.env, FROM_ENV="client"), cwd=tmp_path / "here",
                          capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (0, "yes client\n"), done.stderr
    bad = warm.run("run", "--memory", "12zz", "busybox", "true", check=False)
    assert bad.returncode == 125 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    missing = warm.run("logs", "nosuch", check=False)
    assert missing.returncode == 1 and "No such container: nosuch" in missing.stderr


def test_signals_reach_the_container_through_a_warm_command(warm: Engine) -> None:
    warm.run("run", "--rm", "busybox", "true")
    cmd = [*DOCKYARD, "--root", str(warm.root), "--config", str(warm.config), "run", "--rm",
           "busybox", "sh", "-c", "trap 'echo trapped; exit 7' TERM; echo ready; "
           "while :; do sleep 0.1; done"]
    proc = subprocess.Popen(cmd, env=warm.env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 7
    assert proc.stdout.read() == "trapped\n"


def test_an_idle_monitor_leaves_after_its_linger_and_on_sigterm(warm: Engine) -> None:
    warm.env["DOCKYARD_MONITOR_LINGER"] = "0.5"
    warm.run("run", "--rm", "busybox", "true")
    first = _monitor_pid(warm)
    assert first > 0 and _wait_gone(first, timeout=10)
    assert not (Path(warm.env["DOCKYARD_RUN_ROOT"]) / "containers" / "monitor.sock").exists()
    warm.env["DOCKYARD_MONITOR_LINGER"] = "60"
    warm.run("run", "-d", "--name", "busy", "busybox", "sleep", "60")
    second = _monitor_pid(warm)
    assert second != first and _alive(second)
    os.kill(second, signal.SIGTERM)     # it supervises a container: it stays for it
    time.sleep(0.3)
    assert _alive(second)
    assert "busy" in warm.run("ps", "--format", "{{.Names}}").stdout
    warm.run("rm", "-f", "busy")
    assert _wait_gone(second), "a monitor told to leave stayed once idle"
