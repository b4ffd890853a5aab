"""Version negotiation as dockerd does it: ``/_ping``'s headers (GET and HEAD), ``/version``'s
ApiVersion and MinAPIVersion, versioned paths from /v1.24 to ours, docker's 400 for versions
out of range, and the docker CLI pinned to old API versions."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from testbed.apidaemon import DOCKER, Daemon, UnixHTTPConnection

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="no docker CLI")]


def _get(d: Daemon, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = UnixHTTPConnection(d.socket)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


def test_ping_headers(api_daemon: Daemon) -> None:
    for method in ("GET", "HEAD"):
        for path in ("/_ping", "/v1.24/_ping", "/v1.44/_ping"):
            status, headers, body = _get(api_daemon, method, path)
            assert status == 200, (method, path)
            assert body == (b"OK" if method == "GET" else b"")
            assert _version(headers["api-version"]) >= (1, 44)
            assert headers["docker-experimental"] == "false"
            assert headers["builder-version"] in ("1", "2")
            assert headers["ostype"] == "linux"
            assert headers["cache-control"] == "no-cache, no-store, must-revalidate"


def test_version_document(api_daemon: Daemon) -> None:
    status, _, body = _get(api_daemon, "GET", "/version")
    doc = json.loads(body)
    assert status == 200
    assert _version(doc["ApiVersion"]) >= (1, 44)
    assert doc["MinAPIVersion"] == "1.24"
    assert doc["Os"] == "linux"
    for key in ("Version", "GitCommit", "GoVersion", "Arch", "KernelVersion", "BuildTime"):
        assert key in doc, key
    engine = next(c for c in doc["Components"] if c["Name"] == "Engine")
    assert engine["Details"]["ApiVersion"] == doc["ApiVersion"]
    assert engine["Details"]["MinAPIVersion"] == "1.24"


@pytest.mark.parametrize("version", ["1.24", "1.25", "1.30", "1.40", "1.43", "1.44"])
def test_versioned_paths_down_to_1_24(api_daemon: Daemon, version: str) -> None:
    for path in ("/version", "/info", "/containers/json?all=1", "/images/json", "/system/df"):
        status, _, body = _get(api_daemon, "GET", f"/v{version}{path}")
        assert status == 200, (version, path, body)
        json.loads(body)


def test_versions_out_of_range_get_dockers_400(api_daemon: Daemon) -> None:
    status, headers, body = _get(api_daemon, "GET", "/v1.99/version")
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body) == {"message": "client version 1.99 is too new. Maximum "
                                           "supported API version is 1.44"}
    status, _, body = _get(api_daemon, "GET", "/v1.12/containers/json")
    assert status == 400
    assert json.loads(body)["message"] == (
        "client version 1.12 is too old. Minimum supported API version is 1.24, please "
        "upgrade your client to a newer version")


def _pinned(d: Daemon, version: str, *args: str, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([DOCKER, "-H", d.url, *args], capture_output=True, text=True,
                          timeout=120, check=False,
                          env={**os.environ, "DOCKER_CONFIG": str(d.workdir / "cli"),
                               "DOCKER_API_VERSION": version})
    if check and proc.returncode != 0:
        raise AssertionError(f"DOCKER_API_VERSION={version} docker {' '.join(args)}: "
                             f"{proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_docker_cli_pinned_to_old_api_versions(api_daemon: Daemon) -> None:
    d = api_daemon
    for version in ("1.24", "1.41"):
        assert _pinned(d, version, "version", "--format", "{{.Client.APIVersion}}"
                       ).stdout.strip() == version
        ran = _pinned(d, version, "run", "--rm", "--network", "none", "busybox", "sh", "-c",
                      "echo old-api; exit 2", check=False)
        assert (ran.returncode, ran.stdout) == (2, "old-api\n"), ran.stderr
        assert _pinned(d, version, "ps", "-a", "--format", "{{.Names}}").returncode == 0
        assert "busybox" in _pinned(d, version, "images").stdout
    too_new = _pinned(d, "1.99", "version", check=False)
    assert too_new.returncode != 0
    assert "client version 1.99 is too new. Maximum supported API version is 1.44" in \
        too_new.stderr


def test_head_of_a_stream_has_no_body_and_a_reset_is_quiet(api_daemon: Daemon) -> None:
    import socket
    import time

    from testbed.rawhttp import RawClient, build_request

    with RawClient(api_daemon.socket) as c:
        r = c.request(build_request("HEAD", "/images/get?names=busybox"), head=True)
        assert r.status == 200 and r.body == b""
        r = c.request(build_request("GET", "/_ping"))   # the same connection, framed right
        assert (r.status, r.body) == (200, b"OK")
    # a client that goes away with the answers unread: the server's next read is a reset
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(api_daemon.socket)
    s.sendall(build_request("GET", "/_ping") + build_request("GET", "/version"))
    time.sleep(0.3)
    s.close()
    time.sleep(0.3)
    assert "Traceback" not in api_daemon.log()
    with RawClient(api_daemon.socket) as c:
        assert c.request(build_request("GET", "/_ping")).status == 200
