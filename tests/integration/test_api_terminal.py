"""The daemon's own side of terminal sessions, seen from a raw HTTP client (the docker CLI
watches for its detach keys itself, so this is where the daemon's watch is proved): detach
keys on a hijacked attach and exec, and the resize endpoints' answers."""

from __future__ import annotations

import json
import socket
import time

import pytest

from testbed.apidaemon import Daemon

pytestmark = pytest.mark.integration


def _hijack(d: Daemon, path: str, body: bytes = b"") -> tuple[socket.socket, bytes]:
    """POST ``path`` with docker's upgrade headers; the socket after the 101 head, and what
    came after the head."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(d.socket)
    head = (f"POST {path} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    s.sendall(head.encode() + body)
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(4096)
        assert chunk, got
        got += chunk
    status = got.split(b"\r\n", 1)[0]
    assert status.startswith(b"HTTP/1.1 101"), got
    return s, got.split(b"\r\n\r\n", 1)[1]


def _read_until(s: socket.socket, want: bytes, already: bytes = b"") -> bytes:
    got = already
    while want not in got:
        chunk = s.recv(4096)
        assert chunk, f"closed before {want!r}: {got!r}"
        got += chunk
    return got


def _read_to_end(s: socket.socket) -> bytes:
    got = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        chunk = s.recv(4096)
        if not chunk:
            return got
        got += chunk
    raise AssertionError(f"the daemon kept the session open: {got!r}")


def _running(d: Daemon, name: str) -> bool:
    status, doc = d.request("GET", f"/containers/{name}/json")
    assert status == 200
    return bool(doc["State"]["Running"])


def test_detach_keys_end_an_attach_and_an_exec(api_daemon: Daemon) -> None:
    d = api_daemon
    d.docker("run", "-dit", "--name", "term", "--network", "none", "busybox", "sh")
    try:
        s, rest = _hijack(d, "/v1.44/containers/term/attach?stream=1&stdin=1&stdout=1&stderr=1"
                       "&detachKeys=ctrl-a,x")
        with s:
            s.sendall(b"\r")
            _read_until(s, b"# ", rest)
            s.sendall(b"echo raw-$((3*3))\r")
            _read_until(s, b"raw-9")
            s.sendall(b"\x01")          # the start of the sequence: held, not typed yet
            s.sendall(b"x")
            _read_to_end(s)             # the daemon ended the session
        assert _running(d, "term")

        bad = d.request("POST", "/v1.44/containers/term/attach?stream=1&stdin=1"
                        "&detachKeys=ctrl-%3F%3F")
        assert bad[0] == 400 and "Invalid detach keys" in bad[1]["message"]

        status, created = d.request(
            "POST", "/v1.44/containers/term/exec",
            json.dumps({"Cmd": ["sh"], "Tty": True, "AttachStdin": True,
                        "AttachStdout": True, "DetachKeys": "ctrl-b",
                        "ConsoleSize": [21, 77]}).encode(),
            {"Content-Type": "application/json"})
        assert status == 201
        eid = created["Id"]
        s, rest = _hijack(d, f"/v1.44/exec/{eid}/start", json.dumps({"Tty": True}).encode())
        with s:
            _read_until(s, b"# ", rest)     # the shell reads what is typed from now on
            s.sendall(b"stty size\r")
            _read_until(s, b"21 77")
            status, _ = d.request("POST", f"/v1.44/exec/{eid}/resize?h=30&w=90")
            assert status == 200
            deadline = time.monotonic() + 10
            while True:
                s.sendall(b"stty size\r")
                try:
                    _read_until(s, b"30 90")
                    break
                except TimeoutError:
                    assert time.monotonic() < deadline
            s.sendall(b"\x02")
            _read_to_end(s)
        status, doc = d.request("GET", f"/v1.44/exec/{eid}/json")
        assert status == 200 and doc["Running"] is True     # detached: it runs on
        assert doc["DetachKeys"] == "ctrl-b"
    finally:
        d.docker("rm", "-f", "term")


def test_resize_answers(api_daemon: Daemon) -> None:
    d = api_daemon
    d.docker("create", "--name", "sized", "-t", "--network", "none", "busybox", "sh")
    try:
        status, doc = d.request("POST", "/v1.44/containers/sized/resize?h=10&w=10")
        assert status == 409 and "is not running" in doc["message"]
        status, doc = d.request("POST", "/v1.44/containers/sized/resize?h=x&w=10")
        assert status == 400
        status, doc = d.request("POST", "/v1.44/containers/nope/resize?h=1&w=1")
        assert status == 404
        status, doc = d.request("POST", "/v1.44/exec/nope/resize?h=1&w=1")
        assert status == 404 and doc["message"] == "No such exec instance: nope"
        d.docker("start", "sized")
        status, _ = d.request("POST", "/v1.44/containers/sized/resize?h=12&w=34")
        assert status == 200
        # the container's terminal, as its init sees it
        out = d.docker("exec", "sized", "sh", "-c", "stty size < /proc/1/fd/0")
        assert out.stdout.strip() == "12 34"
    finally:
        d.docker("rm", "-f", "sized")
