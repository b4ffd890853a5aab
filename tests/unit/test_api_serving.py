"""The daemon's serving side without a daemon: ``-H`` addresses and systemd's fds
(api/listeners.py), docker's detach keys (api/terminal.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.api.listeners import inherited_fds, plan
from dockyard.api.terminal import DEFAULT_DETACH_KEYS, DetachScanner, parse_detach_keys
from dockyard.errors import InvalidArgument


def test_unix_and_tcp_addresses() -> None:
    got = plan(["unix:///run/x.sock", "tcp://127.0.0.1:2376", "tcp://[::1]:99", "tcp://:5"],
               tls=True, insecure_tcp=False, env={}, pid=1)
    assert [(a.kind, a.path, a.host, a.port, a.tls) for a in got] == [
        ("unix", "/run/x.sock", "", 0, False),
        ("tcp", "", "127.0.0.1", 2376, True),
        ("tcp", "", "::1", 99, True),
        ("tcp", "", "127.0.0.1", 5, True),
    ]
    # dockerd's default ports: 2376 with TLS, 2375 without
    assert plan(["tcp://10.0.0.1"], tls=True, insecure_tcp=False, env={}, pid=1)[0].port == 2376
    assert plan(["tcp://10.0.0.1"], tls=False, insecure_tcp=True, env={}, pid=1)[0].port == 2375


def test_tcp_needs_tls_or_the_explicit_insecure_flag() -> None:
    with pytest.raises(InvalidArgument, match="--tlsverify"):
        plan(["tcp://127.0.0.1:2375"], tls=False, insecure_tcp=False, env={}, pid=1)
    assert plan(["tcp://127.0.0.1:2375"], tls=False, insecure_tcp=True, env={}, pid=1)


@pytest.mark.parametrize("bad", ["http://x", "unix://relative.sock", "tcp://h:port",
                                 "tcp://h:70000", "tcp://h:1/path", "tcp://[::1", "",
                                 "unix:///" + "x" * 120])
def test_bad_addresses(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        plan([bad], tls=True, insecure_tcp=True, env={}, pid=1)


def test_systemd_fds_only_when_meant_for_us() -> None:
    assert inherited_fds({"LISTEN_PID": "42", "LISTEN_FDS": "2"}, 42) == [3, 4]
    assert inherited_fds({"LISTEN_PID": "41", "LISTEN_FDS": "2"}, 42) == []
    assert inherited_fds({"LISTEN_FDS": "2"}, 42) == []
    assert inherited_fds({"LISTEN_PID": "42", "LISTEN_FDS": "x"}, 42) == []
    env = {"LISTEN_PID": "7", "LISTEN_FDS": "2"}
    every = plan(["fd://"], tls=False, insecure_tcp=False, env=env, pid=7)
    assert [a.fds for a in every] == [(3, 4)]
    one = plan(["fd://4"], tls=False, insecure_tcp=False, env=env, pid=7)
    assert [a.fds for a in one] == [(4,)]
    with pytest.raises(InvalidArgument, match="no such socket"):
        plan(["fd://5"], tls=False, insecure_tcp=False, env=env, pid=7)
    with pytest.raises(InvalidArgument, match="listed twice"):
        plan(["fd://", "fd://3"], tls=False, insecure_tcp=False, env=env, pid=7)
    with pytest.raises(InvalidArgument, match="socket activation"):
        plan(["fd://"], tls=False, insecure_tcp=False, env={}, pid=7)


def test_detach_keys_in_dockers_notation() -> None:
    assert parse_detach_keys("") == DEFAULT_DETACH_KEYS == b"\x10\x11"
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("a,ctrl-X,ctrl-@,ctrl-_") == b"a\x18\x00\x1f"
    for bad in ("ctrl-", "ctrl-1", "ab", "a,,b", "ctrl-pq"):
        with pytest.raises(InvalidArgument, match="Invalid detach keys"):
            parse_detach_keys(bad)


def test_detach_scanner_holds_a_prefix_back() -> None:
    s = DetachScanner(b"\x10\x11")
    assert s.feed(b"ls\x10") == (b"ls", False)
    assert s.feed(b"x") == (b"\x10x", False)       # not the sequence: passed on
    assert s.feed(b"\x10") == (b"", False)
    assert s.feed(b"\x11rest") == (b"", True)


@given(st.lists(st.binary(max_size=8), max_size=12))
def test_detach_scanner_passes_everything_before_the_keys(chunks: list[bytes]) -> None:
    keys = b"\x10\x11"
    s = DetachScanner(keys)
    passed = b""
    detached = False
    for chunk in chunks:
        out, detached = s.feed(chunk)
        passed += out
        if detached:
            break
    typed = b"".join(chunks)
    if detached:
        assert passed == typed[:typed.find(keys)]
    else:
        assert keys not in typed
        assert passed + s.held == typed


def test_systemd_units_match_the_daemon() -> None:
    """contrib/systemd: the socket unit listens where the daemon does by default and the
    service takes it with fd://; stopping the service stops only the daemon (live-restore)."""
    import configparser
    import shlex
    from pathlib import Path

    from dockyard.cli.serve import DEFAULT_HOST

    units = Path(__file__).resolve().parents[2] / "contrib" / "systemd"

    def load(name: str) -> configparser.ConfigParser:
        cp = configparser.ConfigParser(interpolation=None, strict=False)
        cp.optionxform = str    # type: ignore[assignment,method-assign]
        cp.read(units / name)
        return cp

    sock, svc = load("dockyard.socket"), load("dockyard.service")
    assert f"unix://{sock['Socket']['ListenStream']}" == DEFAULT_HOST
    assert sock["Socket"]["SocketMode"] == "0660"
    argv = shlex.split(svc["Service"]["ExecStart"])
    assert argv[1:] == ["serve", "-H", "fd://"]
    assert svc["Service"]["KillMode"] == "process"
    assert "dockyard.socket" in svc["Unit"]["Requires"]


def test_tcp_connections_do_not_wait_for_nagle() -> None:
    """A response is two writes (head, body): with Nagle's algorithm the second waits for the
    client's delayed ACK, ~40 ms a request on a keep-alive connection."""
    import socket

    from dockyard.api.http import Handler, TCPServer

    server = TCPServer(("127.0.0.1", 0), Handler)
    try:
        with socket.create_connection(server.server_address[:2]):   # type: ignore[index]
            accepted, _ = server.get_request()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        server.server_close()
