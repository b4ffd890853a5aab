"""The engine's monitor as a user meets it through ``dockyard``: one process supervises every
container of an engine root, attached sessions (``run``, ``run -i``, ``run -it``, ``attach``) go
through it, it leaves once it supervises nothing, and its death or a slow reader costs the
containers nothing.

Every test drives the CLI as a subprocess on a throwaway engine root (``busybox_engine``:
cgroup-parent "", its own run root). Processes started here are ended by their own pids only.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testbed.engine import DOCKYARD, Engine, remove_container_cgroups

pytestmark = pytest.mark.integration


@pytest.fixture
def eng(busybox_engine: Engine) -> Engine:
    return busybox_engine


# --- helpers ----------------------------------------------------------------------------------


def _argv(eng: Engine, *args: str) -> list[str]:
    assert eng.config is not None
    return [*DOCKYARD, "--root", str(eng.root), "--config", str(eng.config), *args]


def _monitor_dir(eng: Engine) -> Path:
    return Path(eng.env["DOCKYARD_RUN_ROOT"]) / "containers"


def _monitor_pid(eng: Engine) -> int:
    pid = int((_monitor_dir(eng) / "monitor.pid").read_text())
    assert pid > 0
    return pid


def _state(pid: int) -> str:
    """The process's state letter ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    return _state(pid) not in ("", "Z", "X")


def _ppid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid for {pid}")


def _wait_until(what: str, ok: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _wait_gone(*pids: int) -> None:
    """Until the processes are gone or zombies; reap those that became our children (with the
    leak guard the test session is a subreaper and inherits orphans)."""
    for pid in pids:
        assert pid > 0

        def gone(pid: int = pid) -> bool:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            return not _alive(pid)

        _wait_until(f"pid {pid} to end", gone)


def _kill(pid: int, sig: int = signal.SIGKILL) -> None:
    assert pid > 0, pid
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _reap_popen(proc: subprocess.Popen[bytes]) -> None:
    """A command this test started: ended (by its pid) if it still runs, then reaped."""
    if proc.poll() is None:
        _kill(proc.pid)
        proc.wait(timeout=10)


def _status(eng: Engine, name: str) -> str:
    """The container's STATUS column in ``ps -a`` ("" if there is no such container)."""
    for line in eng.run("ps", "-a", "--format", "{{.Names}}\t{{.Status}}").stdout.splitlines():
        n, _, status = line.partition("\t")
        if n == name:
            return status
    return ""


def _init_pid(eng: Engine, name: str) -> int:
    pid = int(eng.run("inspect", "-f", "{{.State.Pid}}", name).stdout.strip())
    assert pid > 0, name
    return pid


class PtyCommand:
    """``dockyard`` on a pseudo-terminal of its own (its controlling terminal, in its own
    session), as if typed in a terminal window of ``rows`` x ``cols``."""

    def __init__(self, eng: Engine, *args: str, rows: int = 24, cols: int = 80) -> None:
        self.master, slave = os.openpty()
        try:
            self.resize(rows, cols, fd=slave)
            # setsid --ctty: a new session whose controlling terminal is the pty (so a resize
            # sends SIGWINCH); it does not fork, so proc.pid is the CLI's
            self.proc = subprocess.Popen(["setsid", "--ctty", *_argv(eng, *args)], stdin=slave,
                                         stdout=slave, stderr=slave, env=eng.env)
        except BaseException:
            os.close(self.master)
            raise
        finally:
            os.close(slave)
        self.out = b""

    def resize(self, rows: int, cols: int, fd: int | None = None) -> None:
        fcntl.ioctl(self.master if fd is None else fd, termios.TIOCSWINSZ,
                    struct.pack("HHHH", rows, cols, 0, 0))

    def _read(self, wait: float) -> bool:
        """Read what is there (waiting at most ``wait``); False at the end of output."""
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:     # EIO: the command and everything on the terminal are gone
            return False
        self.out += chunk
        return bool(chunk)

    def expect(self, pattern: bytes, timeout: float = 10, since: int = 0) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.out[since:]):
            assert time.monotonic() < deadline, f"no {pattern!r} in {self.out!r}"
            if not self._read(0.05):
                raise AssertionError(f"output ended before {pattern!r}: {self.out!r}")

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def finish(self, timeout: float = 10) -> int:
        """The command's exit code once it exits (its output read to the end)."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, f"still running; output: {self.out!r}"
            self._read(0.05)
        while self._read(0.05) and time.monotonic() < deadline:
            pass
        return self.proc.returncode

    def close(self) -> None:
        _reap_popen(self.proc)
        os.close(self.master)


@pytest.fixture
def pty_commands() -> Iterator[list[PtyCommand]]:
    made: list[PtyCommand] = []
    yield made
    for command in made:
        command.close()


# --- one monitor for many containers ----------------------------------------------------------


def test_one_monitor_supervises_many_containers_and_leaves_after_the_last(eng: Engine) -> None:
    names = [f"m{i}" for i in range(5)]
    for name in names:
        eng.run("run", "-d", "--name", name, "busybox", "sleep", "60")
    monitor = _monitor_pid(eng)
    assert _alive(monitor)
    # every container's init is a child of that one monitor (it is their subreaper)
    assert {_ppid(_init_pid(eng, name)) for name in names} == {monitor}
    for name in names:
        assert _status(eng, name).startswith("Up "), _status(eng, name)
    assert _monitor_pid(eng) == monitor
    eng.run("rm", "-f", *names)
    _wait_gone(monitor)
    _wait_until("monitor.sock and monitor.pid to go", lambda: not any(
        (_monitor_dir(eng) / f).exists() for f in ("monitor.sock", "monitor.pid")))
    assert eng.run("ps", "-aq").stdout == ""
    # ... and when the last container ends by itself
    assert eng.run("run", "--rm", "busybox", "echo", "ok").stdout == "ok\n"
    _wait_until("the monitor to leave", lambda: not any(
        (_monitor_dir(eng) / f).exists() for f in ("monitor.sock", "monitor.pid")))


# --- attach -----------------------------------------------------------------------------------


def test_attach_follows_the_output_and_returns_the_exit_code(eng: Engine) -> None:
    eng.run("run", "-d", "--name", "ticker", "busybox", "sh", "-c",
            "for i in $(seq 50); do echo line $i; sleep 0.1; done; exit 7")
    _wait_until("the first line", lambda: "line 1" in eng.run("logs", "ticker").stdout)
    proc = subprocess.Popen(_argv(eng, "attach", "ticker"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=eng.env)
    try:
        out, err = proc.communicate(timeout=15)
    finally:
        _reap_popen(proc)
    assert proc.returncode == 7, err
    lines = out.decode().splitlines()
    # new lines, in order, up to the last one (docker's attach does not replay the log)
    numbers = [int(line.split()[1]) for line in lines]
    assert numbers == list(range(numbers[0], 51)), lines
    assert len(numbers) >= 5, lines
    assert eng.run("wait", "ticker").stdout.strip() == "7"


def test_attach_to_a_stopped_container_fails_in_one_line(eng: Engine) -> None:
    eng.run("run", "--name", "done", "busybox", "true")
    p = eng.run("attach", "done", check=False)
    assert p.returncode != 0 and p.stdout == ""
    assert "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [
        "Error: You cannot attach to a stopped container, start it first"], p.stderr
    missing = eng.run("attach", "nosuchcontainer", check=False)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines() == ["Error: No such container: nosuchcontainer"]


def test_attach_errors_exit_1_as_in_docker(eng: Engine) -> None:
    eng.run("run", "--name", "done", "busybox", "true")
    assert eng.run("attach", "done", check=False).returncode == 1
    assert eng.run("attach", "nosuchcontainer", check=False).returncode == 1


# --- run -it through a real terminal ---------------------------------------------------------


def test_run_it_types_into_the_container_and_returns_its_exit_code(
        eng: Engine, pty_commands: list[PtyCommand]) -> None:
    sh = PtyCommand(eng, "run", "-it", "--rm", "busybox", "sh")
    pty_commands.append(sh)
    sh.expect(rb"# ")
    mark = len(sh.out)
    sh.type(b"tty\n")
    sh.expect(rb"/dev/pts/\d+", since=mark)
    sh.type(b"echo hi; exit 3\n")
    assert sh.finish() == 3, sh.out
    assert re.search(rb"(^|\n)hi\r?\n", sh.out), sh.out
    assert eng.run("ps", "-aq").stdout == ""


def test_run_it_window_size_and_resize(eng: Engine, pty_commands: list[PtyCommand]) -> None:
    sh = PtyCommand(eng, "run", "-it", "--rm", "busybox", "sh", rows=40, cols=100)
    pty_commands.append(sh)
    sh.expect(rb"# ")
    mark = len(sh.out)
    sh.type(b"stty size\n")
    sh.expect(rb"\n40 100\r?\n", since=mark)
    # a resize of our terminal (SIGWINCH) follows into the container's
    sh.resize(50, 132)
    deadline = time.monotonic() + 5
    while True:
        mark = len(sh.out)
        sh.type(b"stty size\n")
        sh.expect(rb"\n\d+ \d+\r?\n", since=mark)
        if re.search(rb"\n50 132\r?\n", sh.out[mark:]):
            break
        assert time.monotonic() < deadline, sh.out
        time.sleep(0.2)
    sh.type(b"exit\n")
    assert sh.finish() == 0, sh.out


def test_run_it_detach_keys_then_attach(eng: Engine, pty_commands: list[PtyCommand]) -> None:
    sh = PtyCommand(eng, "run", "-it", "--name", "det", "busybox", "sh")
    pty_commands.append(sh)
    sh.expect(rb"# ")
    sh.type(b"\x10\x11")        # ctrl-p ctrl-q
    assert sh.finish() == 0, sh.out
    assert _status(eng, "det").startswith("Up "), _status(eng, "det")
    # attach from a terminal of another size: the container's terminal takes it
    again = PtyCommand(eng, "attach", "det", rows=33, cols=77)
    pty_commands.append(again)
    time.sleep(0.5)
    again.type(b"echo att-$((1+1)); stty size\n")
    again.expect(rb"\natt-2\r?\n33 77\r?\n")
    again.type(b"exit 5\n")
    assert again.finish() == 5, again.out
    assert eng.run("wait", "det").stdout.strip() == "5"


def test_ctrl_c_interrupts_a_command_in_run_it(eng: Engine,
                                               pty_commands: list[PtyCommand]) -> None:
    sh = PtyCommand(eng, "run", "-it", "--rm", "busybox", "sh")
    pty_commands.append(sh)
    sh.expect(rb"# ")
    mark = len(sh.out)
    sh.type(b"sleep 30\n")
    time.sleep(0.5)
    started = time.monotonic()
    sh.type(b"\x03")       # ctrl-c: the foreground sleep dies of SIGINT, the shell prompts
    sh.expect(rb"\^C", since=mark)
    sh.type(b"echo slept-$?\n")
    sh.expect(rb"slept-\d+", since=mark)
    assert time.monotonic() - started < 10
    assert b"slept-130" in sh.out[mark:], sh.out[mark:]
    sh.type(b"exit\n")
    sh.finish()


# --- run -i without a terminal ----------------------------------------------------------------


def test_run_i_pipes_stdin_and_eof_ends_it(eng: Engine) -> None:
    proc = subprocess.Popen(_argv(eng, "run", "-i", "--rm", "busybox", "cat"),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=eng.env)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"first\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"first\n"     # it streams: no wait for EOF
        payload = os.urandom(1 << 20)
        out, err = proc.communicate(payload, timeout=15)
    finally:
        _reap_popen(proc)
    assert proc.returncode == 0, err
    assert out == payload
    assert eng.run("ps", "-aq").stdout == ""


# --- robustness -------------------------------------------------------------------------------


def test_monitor_killed_containers_survive_and_a_new_monitor_takes_over(eng: Engine) -> None:
    eng.run("run", "-d", "--name", "a", "busybox", "sleep", "60")
    eng.run("run", "-d", "--name", "b", "busybox", "sleep", "60")
    orphans = {name: (_init_pid(eng, name),
                      eng.run("inspect", "-f", "{{.Id}}", name).stdout.strip())
               for name in ("a", "b")}
    attached = subprocess.Popen(_argv(eng, "run", "--name", "talker", "busybox", "sh", "-c",
                                      "while :; do echo talk; sleep 0.1; done"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=eng.env)
    monitor = _monitor_pid(eng)
    try:
        assert attached.stdout is not None
        assert attached.stdout.readline() == b"talk\n"
        orphans["talker"] = (_init_pid(eng, "talker"),
                             eng.run("inspect", "-f", "{{.Id}}", "talker").stdout.strip())
        _kill(monitor)
        _wait_gone(monitor)
        for name in ("a", "b"):
            assert _alive(orphans[name][0]), f"{name} died with its monitor"
        # the attached command says so in one line, and exits as an engine error would
        _, err = attached.communicate(timeout=10)
        assert attached.returncode == 125, err
        assert err.decode().strip().splitlines() == [
            f"Error: container {orphans['talker'][1][:12]}: lost its supervisor"]
        # unsupervised, they still run (the keeper holds the talker's pipes: no SIGPIPE)
        for name in ("a", "b", "talker"):
            assert _alive(orphans[name][0]), f"{name} died with its monitor"
            assert _status(eng, name).startswith("Up "), _status(eng, name)
        # once their inits are gone, their exit status is unknown: 255
        for name in ("a", "b", "talker"):
            _kill(orphans[name][0])
        _wait_gone(*(pid for pid, _ in orphans.values()))
        for name in ("a", "b", "talker"):
            assert _status(eng, name).startswith("Exited (255)"), _status(eng, name)
        assert eng.run("inspect", "-f", "{{.State.ExitCode}}", "a").stdout.strip() == "255"
        # the next command that starts a container spawns a new monitor
        eng.run("run", "-d", "--name", "c", "busybox", "sleep", "60")
        again = _monitor_pid(eng)
        assert again != monitor and _alive(again)
        assert _status(eng, "c").startswith("Up ")
        assert eng.run("run", "--rm", "busybox", "echo", "ok").stdout == "ok\n"
        eng.run("rm", "-f", "c")
    finally:
        _reap_popen(attached)
        for pid, _ in orphans.values():
            _kill(pid)
        _wait_gone(*(pid for pid, _ in orphans.values()))
        eng.run("rm", "-f", *orphans, check=False)     # unmounts their rootfs
        for _, cid in orphans.values():
            remove_container_cgroups(cid)


# --- what a container inherits -------------------------------------------------------------


def test_a_container_starts_with_default_signal_dispositions(eng: Engine) -> None:
    eng.run("run", "-d", "--name", "neighbour", "busybox", "sleep", "60")
    status = eng.run("run", "--rm", "busybox", "cat", "/proc/self/status").stdout
    masks = dict(line.split(":\t") for line in status.splitlines()
                 if line.startswith(("SigIgn", "SigBlk")))
    assert masks == {"SigIgn": "0000000000000000", "SigBlk": "0000000000000000"}, masks
    p = eng.run("run", "--rm", "busybox", "sh", "-c", "yes | head -c 2")
    assert (p.stdout, p.stderr) == ("y\n", "")
    eng.run("rm", "-f", "neighbour")


# --- fds --------------------------------------------------------------------------------------


def _fds(pid: int) -> dict[str, str]:
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass
    return out


def test_no_fd_leaks_into_containers_or_in_the_monitor(eng: Engine) -> None:
    eng.run("run", "-d", "--name", "keeper", "busybox", "sleep", "60")
    eng.run("run", "-dt", "--name", "term", "busybox", "sleep", "60")
    # a container only has its stdio, however many others the monitor holds
    ls = eng.run("run", "--rm", "busybox", "ls", "/proc/self/fd").stdout.split()
    assert ls == ["0", "1", "2", "3"], ls
    assert sorted(_fds(_init_pid(eng, "term"))) == ["0", "1", "2"]
    monitor = _monitor_pid(eng)
    baseline = _fds(monitor)
    for i in range(5):
        eng.run("run", "--rm", "busybox", "true")
        eng.run("run", "--rm", "-i", "busybox", "cat", stdin="in\n")
        eng.run("run", "--rm", "-t", "busybox", "true")
        eng.run("run", "-d", "--name", f"gone{i}", "busybox", "true")
        eng.run("wait", f"gone{i}")
        eng.run("rm", f"gone{i}")
    assert _monitor_pid(eng) == monitor
    deadline = time.monotonic() + 5
    while len(now := _fds(monitor)) != len(baseline):
        assert time.monotonic() < deadline, (
            f"the monitor holds {len(now)} fds, {len(baseline)} before; new: "
            f"{sorted(set(now.items()) - set(baseline.items()))}")
        time.sleep(0.1)
    eng.run("rm", "-f", "keeper", "term")


# --- a reader that does not read -------------------------------------------------------------


def test_output_nobody_reads_does_not_stall_other_containers(eng: Engine) -> None:
    # 20 MB of "y\n" is 10 million log lines: the container runs for a while (about a minute
    # here), all of it output, while its command's stdout pipe is not read
    flood = subprocess.Popen(_argv(eng, "run", "--name", "flood", "busybox", "sh", "-c",
                                   "yes | head -c 20000000"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, env=eng.env)
    try:
        _wait_until("the flood to start", lambda: _status(eng, "flood").startswith("Up "))
        time.sleep(2)           # its command's pipe and socket are full by now
        started = time.monotonic()
        ok = eng.run("run", "--rm", "busybox", "echo", "ok", timeout=30)
        took = time.monotonic() - started
        assert ok.stdout == "ok\n"
        assert took < 10, f"another container's run took {took:.1f} s"
        assert _status(eng, "flood").startswith("Up ")
        assert flood.stdout is not None
        assert flood.stdout.read(4096) == b"y\n" * 2048     # what it printed, in order
        eng.run("rm", "-f", "flood")
        out, err = flood.communicate(timeout=15)
        # killed: its exit code (137); or, had the monitor dropped the command for not
        # reading (more than monitor.host.MAX_QUEUED bytes behind), an engine error
        assert flood.returncode in (137, 125), err
        assert set(out) <= set(b"y\n")
    finally:
        _reap_popen(flood)


# --- healthchecks and restart policies under the shared monitor -------------------------------


def test_healthcheck_and_restart_policy_side_by_side(eng: Engine) -> None:
    eng.run("run", "-d", "--name", "doc", "--health-cmd", "test -e /tmp/ok",
            "--health-interval", "200ms", "--health-retries", "1", "busybox", "sleep", "60")
    monitor = _monitor_pid(eng)
    eng.run("run", "-d", "--name", "flaky", "--restart", "on-failure:3", "busybox", "sh", "-c",
            "echo try; exit 4")
    assert eng.run("wait", "flaky", timeout=30).stdout.strip() == "4"
    assert eng.run("inspect", "-f", "{{.RestartCount}}", "flaky").stdout.strip() == "3"
    assert eng.run("logs", "flaky").stdout.split() == ["try"] * 4

    def health() -> str:
        doc = json.loads(eng.run("inspect", "doc").stdout)[0]
        return str(doc["State"]["Health"]["Status"])

    _wait_until("unhealthy", lambda: health() == "unhealthy", timeout=15)
    eng.run("exec", "doc", "touch", "/tmp/ok")
    _wait_until("healthy", lambda: health() == "healthy", timeout=15)
    assert _monitor_pid(eng) == monitor     # one monitor did both
    eng.run("rm", "-f", "doc", "flaky")
