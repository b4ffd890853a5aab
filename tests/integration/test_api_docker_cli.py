"""``dockyard serve`` driven by the real docker CLI (/usr/local/bin/docker, 28.x): the everyday
container and image commands, against a daemon started here and stopped by its PID."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from testbed import images as tb_images
from testbed.apidaemon import DOCKER, Daemon
from testbed.registry import Registry, push_oci_layout

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="no docker CLI")]


def test_version_info_images(api_daemon: Daemon) -> None:
    d = api_daemon
    assert d.docker("version", "--format", "{{.Server.APIVersion}}").stdout.strip() == "1.44"
    assert d.docker("version", "--format", "{{.Server.MinAPIVersion}}").stdout.strip() == "1.24"
    doc = json.loads(d.docker("info", "--format", "{{json .}}").stdout)
    assert doc["OSType"] == "linux"
    assert doc["Images"] >= 1
    names = d.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert "busybox:latest" in names


def test_run_rm_output_and_exit_code(api_daemon: Daemon) -> None:
    d = api_daemon
    got = d.docker("run", "--rm", "--name", "once", "--network", "none", "busybox", "sh", "-c",
                   "echo hello; echo oops >&2; exit 3", check=False)
    assert got.returncode == 3, got.stderr
    assert got.stdout == "hello\n"
    assert "oops" in got.stderr
    deadline = time.monotonic() + 10     # --rm: the daemon removes it once it exited
    while d.docker("ps", "-aq", "--filter", "name=once").stdout.strip():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    piped = d.docker("run", "--rm", "-i", "--network", "none", "busybox", "cat",
                     stdin="through stdin\n")
    assert piped.stdout == "through stdin\n"


def test_detached_ps_logs_exec_inspect_stop_rm(api_daemon: Daemon) -> None:
    d = api_daemon
    cid = d.docker("run", "-d", "--name", "ticker", "--network", "none", "busybox", "sh", "-c",
                   "trap 'exit 0' TERM; i=0; while [ $i -lt 400 ]; do echo tick$i; "
                   "i=$((i+1)); sleep 0.05; done").stdout.strip()
    assert len(cid) == 64
    ps = d.docker("ps", "--format", "{{.ID}} {{.Names}} {{.Status}}").stdout
    assert f"{cid[:12]} ticker Up" in ps
    # the same engine root: the CLI sees what the API made
    assert "ticker" in d.engine.run("ps", "--format", "{{.Names}}").stdout.split()

    deadline = time.monotonic() + 10
    while "tick2\n" not in d.docker("logs", "ticker").stdout:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    follow = subprocess.Popen([DOCKER, "-H", d.url, "logs", "-f", "--tail", "1", "ticker"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert follow.stdout is not None
        first = follow.stdout.readline()
        second = follow.stdout.readline()
        assert first.startswith("tick") and second.startswith("tick")
        assert int(second[4:]) == int(first[4:]) + 1    # new lines as they come
    finally:
        if follow.poll() is None and follow.pid > 0:
            follow.terminate()
        follow.communicate(timeout=10)

    ex = d.docker("exec", "ticker", "sh", "-c", "echo in-exec; echo err-exec >&2; exit 5",
                  check=False)
    assert (ex.returncode, ex.stdout, ex.stderr.strip()) == (5, "in-exec\n", "err-exec")
    assert d.docker("exec", "-i", "ticker", "cat", stdin="to exec\n").stdout == "to exec\n"
    assert d.docker("exec", "-t", "ticker", "tty").stdout.startswith("/dev/pts/")

    doc = json.loads(d.docker("inspect", "ticker").stdout)[0]
    assert doc["Id"] == cid
    assert doc["Name"] == "/ticker"
    assert doc["State"]["Running"] is True
    assert "PID" in d.docker("top", "ticker").stdout

    d.docker("stop", "-t", "5", "ticker")
    assert d.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}",
                    "ticker").stdout.split() == ["exited", "0"]
    assert "Exited (0)" in d.docker("ps", "-a", "--format", "{{.Status}}",
                                    "--filter", "name=ticker").stdout
    d.docker("start", "ticker")
    d.docker("rm", "-f", "ticker")
    assert d.docker("ps", "-aq", "--filter", "name=ticker").stdout.strip() == ""
    gone = d.docker("inspect", "ticker", check=False)
    assert gone.returncode == 1
    assert "No such object: ticker" in gone.stderr     # docker's words after trying each kind


def test_cli_container_shows_through_the_api(api_daemon: Daemon) -> None:
    d = api_daemon
    cid = d.engine.run("create", "--name", "from-cli", "--network", "none", "busybox",
                       "true").stdout.strip()
    try:
        listed = d.docker("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}").stdout
        assert f"{cid} from-cli" in listed
        d.docker("start", "from-cli")
        assert d.docker("wait", "from-cli").stdout.strip() == "0"
    finally:
        d.docker("rm", "-f", "from-cli")


def test_pull_from_the_test_registry(api_daemon: Daemon, registry: Registry) -> None:
    d = api_daemon
    image = tb_images.busybox()
    push_oci_layout(registry, image.oci_layout, image.tag, "api/busybox", "v1")
    name = f"{registry.host}/api/busybox:v1"
    out = d.docker("pull", name).stdout
    assert "Pulling from api/busybox" in out
    assert f"Status: Downloaded newer image for {name}" in out
    assert out.strip().endswith(name)
    assert d.docker("image", "inspect", "-f", "{{.Id}}", name).stdout.strip() == \
        image.config_digest
    again = d.docker("pull", name).stdout
    assert f"Status: Image is up to date for {name}" in again
    d.docker("tag", name, "api-tagged:v2")
    assert "api-tagged:v2" in d.docker("images", "--format",
                                       "{{.Repository}}:{{.Tag}}").stdout.split()
    assert "Untagged: api-tagged:v2" in d.docker("rmi", "api-tagged:v2").stdout
    missing = d.docker("pull", f"{registry.host}/api/nothing:here", check=False)
    assert missing.returncode != 0
    # run of an image not here: create says 404, the CLI pulls through the API and retries
    push_oci_layout(registry, image.oci_layout, image.tag, "api/busybox", "v3")
    ran = d.docker("run", "--rm", "--network", "none", f"{registry.host}/api/busybox:v3",
                   "echo", "pulled-then-ran")
    assert "Unable to find image" in ran.stderr
    assert ran.stdout == "pulled-then-ran\n"


def test_errors_are_docker_shaped(api_daemon: Daemon) -> None:
    d = api_daemon
    status, doc = d.request("POST", "/v1.44/containers/create", b"{not json",
                            {"Content-Type": "application/json"})
    assert status == 400
    assert isinstance(doc["message"], str) and doc["message"]
    status, doc = d.request("GET", "/v1.44/containers/no-such-container/json")
    assert status == 404
    assert doc["message"] == "No such container: no-such-container"
    status, doc = d.request("GET", "/containers/no-such-container/json")     # unversioned
    assert status == 404
    status, doc = d.request("GET", "/v1.44/no/such/endpoint")
    assert status == 404 and "message" in doc
    status, doc = d.request("GET", "/v1.99/version")
    assert status == 400 and "too new" in doc["message"]
    status, _ = d.request("HEAD", "/_ping")
    assert status == 200
    status, body = d.request("GET", "/_ping")
    assert (status, body) == (200, b"OK")
    mode = os.stat(d.socket).st_mode & 0o777
    assert mode == 0o660


def test_events_df_and_lifecycle_verbs(api_daemon: Daemon) -> None:
    d = api_daemon
    since = str(int(time.time()) - 1)
    d.docker("run", "-d", "--name", "verbs", "--network", "none", "busybox", "sh", "-c",
             "trap 'exit 0' TERM; while true; do sleep 0.1; done")
    try:
        d.docker("pause", "verbs")
        assert d.docker("inspect", "-f", "{{.State.Status}}", "verbs").stdout.strip() in (
            "paused", "running")
        d.docker("unpause", "verbs")
        d.docker("rename", "verbs", "verbs2")
        d.docker("restart", "-t", "5", "verbs2")
        assert d.docker("inspect", "-f", "{{.State.Running}}", "verbs2").stdout.strip() == \
            "true"
        d.docker("kill", "verbs2")
        assert d.docker("wait", "verbs2").stdout.strip() == "137"
        pruned = d.docker("container", "prune", "-f").stdout
        assert "Deleted Containers:" in pruned
        assert d.docker("ps", "-aq", "--filter", "name=verbs2").stdout.strip() == ""
    finally:
        d.docker("rm", "-f", "verbs", "verbs2", check=False)
    until = str(int(time.time()) + 1)
    got = d.docker("events", "--since", since, "--until", until, "--filter", "type=container",
                   "--format", "{{.Action}} {{.Actor.Attributes.name}}").stdout.splitlines()
    for line in ("create verbs", "start verbs", "pause verbs", "unpause verbs",
                 "rename verbs2", "kill verbs2", "destroy verbs2"):
        assert line in got, got
    assert d.docker("system", "df", "--format", "{{.Type}}").stdout.split()[:2] == \
        ["Images", "Containers"]


def test_volumes_and_mounts_through_the_api(api_daemon: Daemon, tmp_path: Path) -> None:
    """`docker run -v` and `--mount` reach the engine's one create path: a named volume keeps
    data between containers, a bind mount honours :ro, a --mount tmpfs is a tmpfs."""
    d = api_daemon
    d.docker("run", "--rm", "--network", "none", "-v", "apidata:/data", "busybox", "sh", "-c",
             "echo kept > /data/f")
    assert d.docker("run", "--rm", "--network", "none", "--mount",
                    "type=volume,source=apidata,target=/v,readonly", "busybox", "cat",
                    "/v/f").stdout == "kept\n"
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "note").write_text("from the host\n")
    ro = d.docker("run", "--rm", "--network", "none", "-v", f"{tmp_path / 'host'}:/h:ro",
                  "busybox", "sh", "-c", "cat /h/note; touch /h/x", check=False)
    assert ro.stdout == "from the host\n" and ro.returncode != 0
    assert "Read-only file system" in ro.stderr
    fs = d.docker("run", "--rm", "--network", "none", "--mount", "type=tmpfs,target=/t",
                  "busybox", "sh", "-c", "grep ' /t ' /proc/mounts | cut -d' ' -f3").stdout
    assert fs == "tmpfs\n"
    bad = d.docker("run", "--rm", "--network", "none", "--mount", "type=nope,target=/x",
                   "busybox", "true", check=False)
    assert bad.returncode != 0 and "nope" in bad.stderr
