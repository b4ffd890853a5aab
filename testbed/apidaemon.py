"""pytest plugin: ``dockyard serve`` as a subprocess on a throwaway engine root with the offline
busybox image loaded, and the real docker CLI pointed at it.

Fixture ``api_daemon`` (module-scoped): a :class:`Daemon`. At its end every container goes
(through the CLI, on the same root), then the daemon is stopped by its PID (SIGTERM, then
SIGKILL) and its temp dir removed; a daemon still alive fails the teardown.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.engine import DOCKYARD, Engine
from testbed.procs import stop_child

DOCKER = "/usr/local/bin/docker"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 30) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


class Daemon:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.socket = str(workdir / "d.sock")
        self.url = f"unix://{self.socket}"
        config = workdir / "daemon.json"
        config.write_text(json.dumps({"cgroup-parent": ""}))
        self.env = {"DOCKYARD_RUN_ROOT": str(workdir / "run"), "DOCKYARD_MONITOR_LINGER": "0"}
        self.engine = Engine(workdir / "root", config, env=self.env)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *serve_args: str, launcher: tuple[str, ...] = ()) -> None:
        """``dockyard serve -H <self.url>``, or with ``serve_args`` instead of that -H; run
        through ``launcher`` (a program that execs its arguments) when given. Ready once
        /_ping answers on :attr:`socket`."""
        log = open(self.workdir / "serve.log", "ab")  # noqa: SIM115 (the daemon's, closed below)
        with log:
            self.proc = subprocess.Popen(
                [*launcher, *DOCKYARD, "--root", str(self.engine.root), "--config",
                 str(self.engine.config), "serve", *(serve_args or ("-H", self.url))],
                env=self.engine.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dockyard serve exited: {self.log()}")
            try:
                status, _ = self.request("GET", "/_ping")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"dockyard serve did not answer: {self.log()}")

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.pid <= 0:
            return
        if not stop_child(proc, 15):
            raise AssertionError("dockyard serve ignored SIGTERM")
        self.proc = None

    def log(self) -> str:
        try:
            return (self.workdir / "serve.log").read_text(errors="replace")
        except OSError:
            return ""

    def docker(self, *args: str, check: bool = True, stdin: str | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([DOCKER, "-H", self.url, *args], capture_output=True, text=True,
                              input=stdin, timeout=timeout, check=False,
                              env={**os.environ, "DOCKER_CONFIG": str(self.workdir / "cli")})
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}\n--- daemon log:\n{self.log()}")
        return proc

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        conn = UnixHTTPConnection(self.socket)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if resp.getheader("Content-Type", "").startswith("application/json") and data:
            return resp.status, json.loads(data)
        return resp.status, data


@contextlib.contextmanager
def running_daemon(prefix: str, config: dict[str, Any] | None = None) -> Iterator[Daemon]:
    """A started daemon with the busybox image loaded, in a new work directory (``prefix``:
    short, a unix socket's path has at most 107 bytes); ``config``: its daemon.json instead of
    the default one. Afterwards its containers, custom networks and kept default bridge go,
    then the daemon and the directory."""
    from testbed import images as tb_images

    image = tb_images.busybox()
    assert image.docker_archive is not None
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    d = Daemon(workdir)
    if config is not None:
        (workdir / "daemon.json").write_text(json.dumps(config))
    try:
        d.engine.run("load", "-i", str(image.docker_archive))
        d.start()
        yield d
    finally:
        try:
            for cid in d.engine.run("ps", "-aq", "--no-trunc", check=False).stdout.split():
                d.engine.run("rm", "-f", cid, check=False)
            for net in d.engine.run("network", "ls", "-q", "--filter", "type=custom",
                                    check=False).stdout.split():
                d.engine.run("network", "rm", net, check=False)
            d.engine.run("system", "teardown", check=False)   # the kept default bridge
        finally:
            d.stop()
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def api_daemon() -> Iterator[Daemon]:
    with running_daemon("dy-api-") as d:
        yield d
