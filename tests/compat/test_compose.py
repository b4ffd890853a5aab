"""docker-compose 1.29 (Debian's ``docker-compose``) against ``dockyard serve``: a two-service
application on its own network with a named volume. ``web`` (busybox httpd) serves a file it
wrote into the volume; ``client`` fetches it from ``web`` by service name. What a user checks:
``up -d`` brings both up, ``ps`` shows them Up, ``logs`` shows the fetch, ``exec`` reaches
``web`` by name, ``down`` removes the containers and the network (the volume stays), ``down
-v`` removes the volume too. Addresses: 10.213.251.0/24 (testbed.netdaemon)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import images as tb_images
from testbed.apidaemon import DOCKER, Daemon
from testbed.netdaemon import SUBNETS, net_daemon

COMPOSE = shutil.which("docker-compose") or "/usr/bin/docker-compose"

pytestmark = [pytest.mark.integration, pytest.mark.compat,
              pytest.mark.skipif(not os.access(COMPOSE, os.X_OK),
                                 reason="docker-compose not installed (./dev setup)"),
              pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="no docker CLI")]

PROJECT = "dyc"
COMPOSE_FILE = f"""\
version: "3.8"
services:
  web:
    image: busybox
    command: ["sh", "-c", "echo hello-from-volume > /www/index.html && exec httpd -f -v -p 80 -h /www"]
    volumes:
      - site:/www
    networks: [appnet]
  client:
    image: busybox
    command: ["sh", "-c", "trap 'exit 0' TERM; until wget -q -O- http://web/; do sleep 0.2; done; while true; do sleep 0.2; done"]
    depends_on: [web]
    networks: [appnet]
networks:
  appnet:
    labels:
      purpose: compose-test
    ipam:
      config:
        - subnet: {SUBNETS[0]}
volumes:
  site:
"""  # noqa: E501


@pytest.fixture(scope="module")
def d() -> Iterator[Daemon]:
    image = tb_images.busybox()
    assert image.docker_archive is not None
    with net_daemon(image.docker_archive) as daemon:
        yield daemon


class Compose:
    def __init__(self, d: Daemon, project_dir: Path) -> None:
        self.d = d
        self.dir = project_dir
        (project_dir / "docker-compose.yml").write_text(COMPOSE_FILE)
        self.env = {**os.environ, "DOCKER_HOST": d.url, "COMPOSE_PROJECT_NAME": PROJECT,
                    "DOCKER_CONFIG": str(d.workdir / "cli")}
        self.env.pop("DOCKER_TLS_VERIFY", None)

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([COMPOSE, "--ansi", "never", *args], cwd=self.dir, env=self.env,
                              capture_output=True, text=True, timeout=180, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)} failed "
                                 f"({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n"
                                 f"--- daemon log:\n{self.d.log()[-4000:]}")
        return proc


@pytest.fixture
def compose(d: Daemon, tmp_path: Path) -> Iterator[Compose]:
    c = Compose(d, tmp_path)
    try:
        yield c
    finally:
        c("down", "-v", "--timeout", "2", check=False)


def _names(d: Daemon, *what: str) -> list[str]:
    return d.docker(*what, "--format", "{{.Name}}" if what[0] != "ps" else "{{.Names}}"
                    ).stdout.split()


def test_up_ps_logs_exec_down(d: Daemon, compose: Compose) -> None:
    up = compose("up", "-d")
    assert f'Creating network "{PROJECT}_appnet"' in up.stderr
    assert f'Creating volume "{PROJECT}_site"' in up.stderr

    # ps: both Up (the client polls web until its first fetch, then idles)
    ps = compose("ps").stdout
    rows = {line.split()[0]: line for line in ps.splitlines() if line.startswith(PROJECT)}
    assert set(rows) == {f"{PROJECT}_web_1", f"{PROJECT}_client_1"}, ps
    assert all(" Up " in row or row.rstrip().endswith("Up") for row in rows.values()), ps
    assert len(compose("ps", "-q").stdout.split()) == 2
    assert sorted(compose("ps", "--services").stdout.split()) == ["client", "web"]

    # the project's network and volume, as the docker CLI sees them
    net = json.loads(d.docker("network", "inspect", f"{PROJECT}_appnet").stdout)[0]
    assert net["IPAM"]["Config"][0]["Subnet"] == SUBNETS[0]
    assert net["Labels"]["com.docker.compose.project"] == PROJECT
    assert net["Labels"]["purpose"] == "compose-test"
    assert sorted(c["Name"] for c in net["Containers"].values()) == \
        [f"{PROJECT}_client_1", f"{PROJECT}_web_1"]
    assert f"{PROJECT}_site" in d.docker("volume", "ls", "-q").stdout.split()

    # logs: the client's fetch by service name reached web, which logged it
    deadline = time.monotonic() + 20
    while True:
        logs = compose("logs", "--no-color").stdout
        if "hello-from-volume" in logs and "response:200" in logs:
            break
        assert time.monotonic() < deadline, logs
        time.sleep(0.3)
    client_lines = [x for x in logs.splitlines() if x.startswith("client_1")]
    assert any(x.endswith("| hello-from-volume") for x in client_lines), logs
    assert "response:200" in compose("logs", "--no-color", "web").stdout

    # exec: by service name, from the other service; the file is in the named volume
    got = compose("exec", "-T", "client", "wget", "-q", "-O-", "http://web/")
    assert got.stdout == "hello-from-volume\n"
    vol = json.loads(d.docker("volume", "inspect", f"{PROJECT}_site").stdout)[0]
    assert Path(vol["Mountpoint"], "index.html").read_text() == "hello-from-volume\n"
    code = compose("exec", "-T", "web", "sh", "-c", "exit 7", check=False)
    assert code.returncode == 7
    # run: a one-off client (compose links it to the running ones: HostConfig.Links)
    ran = compose("run", "--rm", "-T", "client", "sh", "-c",
                  "wget -q -O- http://web/ && nslookup client_1 >/dev/null && echo linked")
    assert ran.stdout == "hello-from-volume\nlinked\n"

    # up -d again: nothing to do, nothing recreated
    ids = sorted(compose("ps", "-q").stdout.split())
    again = compose("up", "-d")
    assert "is up-to-date" in again.stderr
    assert sorted(compose("ps", "-q").stdout.split()) == ids

    # down: containers and network go, the volume stays; down -v takes it
    down = compose("down", "--timeout", "2")
    assert f"Removing network {PROJECT}_appnet" in down.stderr
    assert d.docker("ps", "-aq").stdout.strip() == ""
    assert f"{PROJECT}_appnet" not in _names(d, "network", "ls")
    assert f"{PROJECT}_site" in d.docker("volume", "ls", "-q").stdout.split()
    compose("up", "-d")
    assert len(compose("ps", "-q").stdout.split()) == 2
    down = compose("down", "-v", "--timeout", "2")
    assert f"Removing volume {PROJECT}_site" in down.stderr
    assert d.docker("ps", "-aq").stdout.strip() == ""
    assert f"{PROJECT}_appnet" not in _names(d, "network", "ls")
    assert d.docker("volume", "ls", "-q").stdout.strip() == ""
