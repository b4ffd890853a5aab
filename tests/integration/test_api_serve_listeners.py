"""``dockyard serve``'s listeners, driven by the real docker CLI: TLS on tcp:// with client
certificates verified (and clients without one refused), plain tcp:// only with
--insecure-tcp, sockets handed over by systemd (fd://, with a launcher that does what systemd
does), the unix socket's mode and group, and bad -H values that leave nothing behind."""

from __future__ import annotations

import grp
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import images as tb_images
from testbed.apidaemon import DOCKER, Daemon
from testbed.engine import DOCKYARD
from testbed.ptysession import PtySession
from testbed.tlscerts import Pki, client_cert, make_ca, make_pki

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="no docker CLI")]

# What systemd does for a socket unit: the listening sockets become fds 3, 4, ... of the
# service's process, LISTEN_PID names it and LISTEN_FDS counts them. exec keeps the pid.
LAUNCHER = r'''
import os, socket, sys
unix_path, tcp_port = sys.argv[1], int(sys.argv[2])
u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
u.bind(unix_path)
u.listen(64)
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", tcp_port))
t.listen(64)
for want, sock in ((3, u), (4, t)):
    if sock.fileno() != want:
        os.dup2(sock.fileno(), want)
    os.set_inheritable(want, True)
for sock in (u, t):
    if sock.fileno() not in (3, 4):
        sock.close()
    else:
        sock.detach()
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = "2"
os.execvp(sys.argv[3], sys.argv[3:])
'''


@pytest.fixture(scope="module")
def served() -> Iterator[Daemon]:
    """An engine root with busybox, for one ``dockyard serve`` at a time (each test starts
    and stops its own)."""
    image = tb_images.busybox()
    assert image.docker_archive is not None
    workdir = Path(tempfile.mkdtemp(prefix="dy-lsn-"))
    d = Daemon(workdir)
    try:
        d.engine.run("load", "-i", str(image.docker_archive))
        yield d
    finally:
        try:
            for cid in d.engine.run("ps", "-aq", "--no-trunc", check=False).stdout.split():
                d.engine.run("rm", "-f", cid, check=False)
        finally:
            d.stop()
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    d = Path(tempfile.mkdtemp(prefix="dy-pki-"))
    try:
        yield make_pki(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def docker(d: Daemon, *args: str, check: bool = True,
           stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The docker CLI with its own -H and TLS flags in ``args``."""
    proc = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=120,
                          input=stdin, check=False,
                          env={**os.environ, "DOCKER_CONFIG": str(d.workdir / "cli")})
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}\n--- daemon log:\n{d.log()}")
    return proc


def serve_fails(d: Daemon, *args: str, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:
    """``dockyard serve`` that must refuse to start."""
    proc = subprocess.run([*DOCKYARD, "--root", str(d.engine.root), "--config",
                           str(d.engine.config), "serve", *args], capture_output=True,
                          text=True, timeout=60, check=False, env=env or d.engine.env)
    assert proc.returncode == 125, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def test_tls_verifies_client_certificates(served: Daemon, pki: Pki) -> None:
    d = served
    port = free_port()
    tcp = f"tcp://127.0.0.1:{port}"
    d.start("-H", d.url, "-H", tcp, "--tlsverify", "--tlscacert", str(pki.ca),
            "--tlscert", str(pki.server_cert), "--tlskey", str(pki.server_key))
    try:
        tls = ["--tlsverify", "--tlscacert", str(pki.ca), "--tlscert", str(pki.client_cert),
               "--tlskey", str(pki.client_key), "-H", tcp]
        assert docker(d, *tls, "version", "--format", "{{.Server.APIVersion}}"
                      ).stdout.strip() == "1.44"
        # hijacked streams over TLS: attach (run), stdin, exec with its exit code
        ran = docker(d, *tls, "run", "--rm", "-i", "--network", "none", "busybox", "sh", "-c",
                     "cat; echo over-tls", stdin="typed\n")
        assert ran.stdout == "typed\nover-tls\n"
        docker(d, *tls, "run", "-d", "--name", "tlsd", "--network", "none", "busybox",
               "sleep", "60")
        ex = docker(d, *tls, "exec", "tlsd", "sh", "-c", "echo in; exit 4", check=False)
        assert (ex.returncode, ex.stdout) == (4, "in\n")
        docker(d, *tls, "rm", "-f", "tlsd")
        # a terminal over TLS: typed keys in, output back, the window size, the exit status
        env = {**os.environ, "DOCKER_CONFIG": str(d.workdir / "cli")}
        with PtySession([DOCKER, *tls, "run", "-it", "--rm", "--network", "none", "busybox",
                         "sh"], env, rows=27, cols=91) as t:
            t.expect("# ")
            t.send("stty size; echo tls-$((20+1))\r")
            assert "27 91" in t.expect("tls-21")
            t.send("exit 3\r")
            assert t.wait() == 3

        # no client certificate: the handshake fails, nothing is served
        anon = docker(d, "--tls", "--tlscacert", str(pki.ca), "-H", tcp, "version", check=False)
        assert anon.returncode != 0
        assert "Server:" not in anon.stdout
        # a certificate from another CA
        make_ca(pki.dir, "other")
        cert, key = client_cert(pki.dir, "stranger", ca="other")
        alien = docker(d, "--tlsverify", "--tlscacert", str(pki.ca), "--tlscert", str(cert),
                       "--tlskey", str(key), "-H", tcp, "version", check=False)
        assert alien.returncode != 0 and "Server:" not in alien.stdout
        # plain HTTP to the TLS port
        plain = docker(d, "-H", tcp, "version", check=False)
        assert plain.returncode != 0 and "Server:" not in plain.stdout
        # the same refusal seen from a TLS client library
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                pytest.raises((ssl.SSLError, ConnectionError)), \
                ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
            if not s.recv(100):     # TLS 1.3: the alert comes after the handshake
                raise ConnectionResetError("closed")
        assert d.request("GET", "/_ping")[0] == 200      # and it serves on
    finally:
        d.stop()
    assert not os.path.exists(d.socket)


def test_plain_tcp_only_when_asked_and_then_with_a_warning(served: Daemon) -> None:
    d = served
    port = free_port()
    tcp = f"tcp://127.0.0.1:{port}"
    refused = serve_fails(d, "-H", tcp)
    assert "--tlsverify" in refused.stderr and "--insecure-tcp" in refused.stderr
    d.start("-H", d.url, "-H", tcp, "--insecure-tcp")
    try:
        assert docker(d, "-H", tcp, "version", "--format", "{{.Server.Os}}"
                      ).stdout.strip() == "linux"
        assert f"WARNING: API is accessible on http://127.0.0.1:{port} without encryption" \
            in d.log()
    finally:
        d.stop()


def test_systemd_socket_activation(served: Daemon, tmp_path: Path, pki: Pki) -> None:
    d = served
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    port = free_port()
    d.start("-H", "fd://", "--insecure-tcp",
            launcher=(sys.executable, str(launcher), d.socket, str(port)))
    try:
        assert d.docker("version", "--format", "{{.Server.APIVersion}}").stdout.strip() == \
            "1.44"
        assert docker(d, "-H", f"tcp://127.0.0.1:{port}", "run", "--rm", "--network", "none",
                      "busybox", "echo", "via-fd-4").stdout == "via-fd-4\n"
        # systemd's variables are ours alone: the monitor the daemon starts does not get them
        d.docker("run", "-d", "--name", "fdmon", "--network", "none", "busybox", "sleep", "60")
        pid = d.docker("inspect", "-f", "{{.State.Pid}}", "fdmon").stdout.strip()
        environs = []
        while True:         # the container's supervision, up to init (or the daemon)
            with open(f"/proc/{pid}/status") as f:
                pid = next(line.split()[1] for line in f if line.startswith("PPid:"))
            assert d.proc is not None
            if pid in ("0", "1") or int(pid) == d.proc.pid:
                break
            with open(f"/proc/{pid}/environ", "rb") as f:
                environs.append(f.read())
        assert environs and not any(b"LISTEN_FDS=" in e for e in environs)
        d.docker("rm", "-f", "fdmon")
    finally:
        d.stop()
    # the socket file is systemd's: left where it is
    assert os.path.exists(d.socket)
    os.unlink(d.socket)

    d.start("-H", "fd://3", launcher=(sys.executable, str(launcher), d.socket, str(port)))
    try:
        assert d.docker("ps", "--format", "{{.Names}}").returncode == 0
    finally:
        d.stop()
    os.unlink(d.socket)

    # a TCP socket from systemd speaks TLS when the daemon is told to
    d.start("-H", "fd://", "--tlsverify", "--tlscacert", str(pki.ca), "--tlscert",
            str(pki.server_cert), "--tlskey", str(pki.server_key),
            launcher=(sys.executable, str(launcher), d.socket, str(port)))
    try:
        tcp = f"tcp://127.0.0.1:{port}"
        assert docker(d, "--tlsverify", "--tlscacert", str(pki.ca), "--tlscert",
                      str(pki.client_cert), "--tlskey", str(pki.client_key), "-H", tcp,
                      "version", "--format", "{{.Server.Os}}").stdout == "linux\n"
        assert docker(d, "-H", tcp, "version", check=False).returncode != 0
    finally:
        d.stop()
    os.unlink(d.socket)


def test_bad_listeners_leave_nothing_behind(served: Daemon, tmp_path: Path) -> None:
    d = served
    sock = tmp_path / "never.sock"
    bad = serve_fails(d, "-H", f"unix://{sock}", "-H", "http://127.0.0.1:1")
    assert "invalid bind address" in bad.stderr
    assert not sock.exists()
    no_fds = serve_fails(d, "-H", "fd://")
    assert "socket activation" in no_fds.stderr
    env = dict(d.engine.env, LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
    not_us = serve_fails(d, "-H", "fd://", env=env)      # LISTEN_PID names someone else
    assert "socket activation" in not_us.stderr
    missing = serve_fails(d, "-H", f"unix://{sock}", "-H", "tcp://127.0.0.1:1",
                          "--tlsverify", "--tlscacert", str(tmp_path / "nope.pem"),
                          "--tlscert", str(tmp_path / "nope.pem"),
                          "--tlskey", str(tmp_path / "nope.pem"))
    assert "nope.pem" in missing.stderr
    assert not sock.exists()
    group = serve_fails(d, "-H", f"unix://{sock}", "--group", "no-such-group-here")
    assert "no-such-group-here" in group.stderr
    assert not sock.exists()


def test_unix_socket_mode_and_group(served: Daemon) -> None:
    d = served
    gid = grp.getgrnam("daemon").gr_gid
    d.start("-H", d.url, "--group", "daemon")
    try:
        st = os.stat(d.socket)
        assert (st.st_mode & 0o777, st.st_gid) == (0o660, gid)
    finally:
        d.stop()
    deadline = time.monotonic() + 5
    while os.path.exists(d.socket):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_listeners_from_the_config_file(served: Daemon, pki: Pki) -> None:
    """daemon.json's hosts/tlsverify/tlscacert/tlscert/tlskey, as dockerd reads them; a
    setting named both as a flag and in the file is an error, as dockerd's."""
    d = served
    assert d.engine.config is not None
    original = d.engine.config.read_text()
    port = free_port()
    tcp = f"tcp://127.0.0.1:{port}"
    settings = {**json.loads(original), "hosts": [d.url, tcp], "tlsverify": True,
                "tlscacert": str(pki.ca), "tlscert": str(pki.server_cert),
                "tlskey": str(pki.server_key)}
    try:
        d.engine.config.write_text(json.dumps(settings))
        both = serve_fails(d, "-H", d.url)
        assert "specified both as a flag and in the configuration file: hosts" in both.stderr
        bad = dict(settings, hosts="tcp://x")
        d.engine.config.write_text(json.dumps(bad))
        assert "'hosts' must be a list of strings" in serve_fails(d).stderr
        d.engine.config.write_text(json.dumps(settings))
        d.start("--insecure-tcp")     # (moot here: the file asks for TLS)
        try:
            assert docker(d, "--tlsverify", "--tlscacert", str(pki.ca), "--tlscert",
                          str(pki.client_cert), "--tlskey", str(pki.client_key), "-H", tcp,
                          "ps", "-q").returncode == 0
            assert docker(d, "-H", tcp, "ps", check=False).returncode != 0
            assert "WARNING" not in d.log().split("live-restore")[-1]
        finally:
            d.stop()
    finally:
        d.engine.config.write_text(original)
