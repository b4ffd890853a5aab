"""exec into a running container, terminals (console socket, foreground proxy), and what must
not cross into a container: file descriptors and host paths."""

from __future__ import annotations

import json
import os
import pty
import select
import socket
import subprocess
import time
from pathlib import Path

import pytest

from testbed.bundles import make_bundle
from testbed.images import BuiltImage
from tests.integration.runtime.conftest import Runtime, wait_for_status

pytestmark = pytest.mark.integration


def _running(runtime: Runtime, busybox: BuiltImage, tmp_path: Path, cid: str) -> Path:
    bundle = make_bundle(busybox, tmp_path / "b", runtime.binary, ["sleep", "300"],
                         edit=lambda c: c.update(hostname="exechost"))
    rc, _, err = runtime.run_to_files(tmp_path, "run", "-d", "--bundle", str(bundle), cid)
    assert rc == 0, err
    return bundle


def test_exec_joins_the_container(runtime: Runtime, busybox: BuiltImage, tmp_path: Path
                                  ) -> None:
    _running(runtime, busybox, tmp_path, "e1")
    res = runtime.run("exec", "e1", "sh", "-c", "echo $(hostname) $(ls /sys/class/net); exit 5")
    assert res.returncode == 5, res.stderr
    assert res.stdout.split() == ["exechost", "lo"]
    res = runtime.run("exec", "--cwd", "/tmp", "--user", "1000:1000", "--env", "FOO=bar",
                      "e1", "sh", "-c", "echo $(id -u):$(id -g) $(pwd) $FOO")
    assert res.stdout.split() == ["1000:1000", "/tmp", "bar"], res.stderr
    # the exec'd process is in the container's pid namespace, a sibling of its pid 1
    res = runtime.run("exec", "e1", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '")
    assert res.stdout.strip() == "sleep 300"


def test_exec_process_file_and_errors(runtime: Runtime, busybox: BuiltImage, tmp_path: Path
                                      ) -> None:
    _running(runtime, busybox, tmp_path, "e2")
    process = {"terminal": False, "user": {"uid": 0, "gid": 0}, "cwd": "/",
               "args": ["sh", "-c", "echo from-file $X"], "env": ["PATH=/bin", "X=y"]}
    pfile = tmp_path / "process.json"
    pfile.write_text(json.dumps(process))
    res = runtime.run("exec", "--process", str(pfile), "e2")
    assert res.stdout.strip() == "from-file y", res.stderr
    missing = runtime.run("exec", "e2", "no-such-program")
    assert missing.returncode != 0
    assert "no-such-program" in missing.stderr
    assert runtime.run("exec", "nope", "true").returncode != 0


def test_exec_in_created_works_and_in_stopped_is_refused(runtime: Runtime, busybox: BuiltImage,
                                                        tmp_path: Path) -> None:
    """runc lets exec join a created container (its init waits for start); not a stopped one."""
    bundle = make_bundle(busybox, tmp_path / "b", runtime.binary, ["true"])
    assert runtime.run_to_files(tmp_path, "create", "--bundle", str(bundle), "e3")[0] == 0
    res = runtime.run("exec", "e3", "sh", "-c", "echo $$")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() not in ("", "1")  # in the container's pid namespace, not its init
    runtime.run("start", "e3", check=True)
    assert wait_for_status(runtime, "e3", "stopped") == "stopped"
    res = runtime.run("exec", "e3", "true")
    assert res.returncode != 0
    assert "stopped" in res.stderr


def _read_until(fd: int, needle: bytes, timeout: float = 10) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while needle not in out and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return out


def test_console_socket_hands_over_the_pty(runtime: Runtime, busybox: BuiltImage,
                                           tmp_path: Path) -> None:
    bundle = make_bundle(busybox, tmp_path / "b", runtime.binary, ["sh"],
                         edit=lambda c: c["process"].update(terminal=True))
    sock_path = tmp_path / "console.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(1)
    proc = subprocess.Popen(runtime.cmd("create", "--bundle", str(bundle), "--console-socket",
                                        str(sock_path), "t1"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        server.settimeout(20)
        conn, _ = server.accept()
        _msg, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        conn.close()
        assert proc.wait(timeout=20) == 0
        master = fds[0]
        runtime.run("start", "t1", check=True)
        os.write(master, b"tty; echo marker-$((6*7))\n")
        out = _read_until(master, b"marker-42")
        assert b"/dev/pts/0" in out
        assert b"marker-42" in out
        os.write(master, b"exit\n")
        os.close(master)
    finally:
        server.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_foreground_tty_is_proxied(runtime: Runtime, busybox: BuiltImage, tmp_path: Path
                                   ) -> None:
    bundle = make_bundle(busybox, tmp_path / "b", runtime.binary,
                         ["sh", "-c", "tty; read line; echo got-$line; exit 3"],
                         edit=lambda c: c["process"].update(terminal=True))
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(runtime.binary, runtime.cmd("run", "--bundle", str(bundle), "t2"))
    try:
        assert b"/dev/pts/0" in _read_until(fd, b"/dev/pts/0")
        os.write(fd, b"hello\r")
        assert b"got-hello" in _read_until(fd, b"got-hello")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 3


def test_no_fd_crosses_into_the_container(runtime: Runtime, busybox: BuiltImage,
                                          tmp_path: Path) -> None:
    """An fd the caller left inheritable (a host directory) must not reach the container's
    process: only stdio and what --preserve-fds names (the CVE-2024-21626 class)."""
    bundle = make_bundle(busybox, tmp_path / "b", runtime.binary,
                         ["sh", "-c", "ls /proc/self/fd | sort -n | tr '\\n' ' '"])
    leaked = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(leaked, True)
    try:
        out = tmp_path / "out"
        with open(out, "w") as f:
            rc = subprocess.run(runtime.cmd("run", "--bundle", str(bundle), "fd1"),
                                stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                                close_fds=False, check=False).returncode
    finally:
        os.close(leaked)
    assert rc == 0, out.read_text()
    # 0-2 are stdio; 3 is the directory ls itself is reading
    assert out.read_text().split() == ["0", "1", "2", "3"]


def test_cwd_cannot_escape_the_rootfs(runtime: Runtime, busybox: BuiltImage, tmp_path: Path
                                      ) -> None:
    bundle = make_bundle(busybox, tmp_path / "b", runtime.binary, ["sh", "-c", "pwd; ls"],
                         edit=lambda c: c["process"].update(cwd="/../../../.."))
    host_marker = tmp_path / "HOST-ONLY-MARKER"
    host_marker.touch()
    rc, out, err = runtime.run_to_files(tmp_path, "run", "--bundle", str(bundle), "cwd1")
    assert rc == 0, err
    assert out.splitlines()[0] == "/"
    assert "HOST-ONLY-MARKER" not in out
    assert "bin" in out.split()
