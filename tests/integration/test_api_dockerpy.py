"""``dockyard serve`` driven by docker-py (the ``docker`` package), a client someone else wrote."""

from __future__ import annotations

import time

import docker
import pytest

from testbed.apidaemon import Daemon

pytestmark = pytest.mark.integration


def test_dockerpy_everyday_calls(api_daemon: Daemon) -> None:
    client = docker.DockerClient(base_url=api_daemon.url, version="auto", timeout=60)
    try:
        assert client.ping() is True
        assert client.version()["ApiVersion"] == "1.44"
        tags = [t for img in client.images.list() for t in img.tags]
        assert "busybox:latest" in tags

        out = client.containers.run("busybox", ["echo", "run-and-wait"], network_mode="none",
                                    remove=True)
        assert out == b"run-and-wait\n"

        c = client.containers.run("busybox", ["sh", "-c", "trap 'exit 0' TERM; echo up; "
                                              "while true; do sleep 0.1; done"],
                                  detach=True, name="pyc", network_mode="none")
        deadline = time.monotonic() + 10
        while b"up\n" not in c.logs():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        c.reload()
        assert c.status == "running"
        assert "pyc" in [x.name for x in client.containers.list()]
        # the CLI on the same root sees it
        assert "pyc" in api_daemon.engine.run("ps", "--format", "{{.Names}}").stdout.split()

        code, output = c.exec_run(["sh", "-c", "echo from-exec; exit 4"])
        assert (code, output) == (4, b"from-exec\n")
        code, (so, se) = c.exec_run(["sh", "-c", "echo o; echo e >&2"], demux=True)
        assert (code, so, se) == (0, b"o\n", b"e\n")

        c.stop(timeout=5)
        c.reload()
        assert c.status == "exited"
        assert c.wait()["StatusCode"] == 0
        c.remove()
        with pytest.raises(docker.errors.NotFound):
            client.containers.get("pyc")
    finally:
        for name in ("pyc",):
            try:
                client.containers.get(name).remove(force=True)
            except docker.errors.NotFound:
                pass
        client.close()
