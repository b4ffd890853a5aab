"""``--network container:<name>`` through ``dockyard serve``, driven by the real docker CLI: a
container joins another's namespace (here a ``--network none`` one: the namespace the runtime
made, pinned from /proc), and docker's conflicting options are refused with its status."""

from __future__ import annotations

import json
import os

import pytest

from testbed.apidaemon import DOCKER, Daemon

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="no docker CLI")]


def test_join_a_containers_network_through_the_api(api_daemon: Daemon) -> None:
    d = api_daemon
    web = d.docker("run", "-d", "--name", "nsweb", "--network", "none", "--hostname", "nsweb",
                   "busybox", "sh", "-c", "mkdir -p /www && echo joined-ok > /www/index.html "
                   "&& exec httpd -f -p 8080 -h /www").stdout.strip()
    try:
        out = d.docker("run", "--rm", "--network", "container:nsweb", "busybox", "sh", "-c",
                       "for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O- http://127.0.0.1:8080/ "
                       "&& break; sleep 0.2; done; hostname").stdout.split()
        assert out == ["joined-ok", "nsweb"]
        d.docker("create", "--name", "nsjoin", "--network", "container:nsweb", "busybox",
                 "true")
        doc = json.loads(d.docker("inspect", "nsjoin").stdout)[0]
        assert doc["HostConfig"]["NetworkMode"] == f"container:{web}"
        assert doc["NetworkSettings"]["Networks"] == {}
        bad = d.docker("create", "-p", "80", "--network", "container:nsweb", "busybox", "true",
                       check=False)
        assert bad.returncode != 0
        assert "conflicting options: port publishing and the container type network mode" \
            in bad.stderr
        bad = d.docker("create", "--hostname", "x", "--network", "container:nsweb", "busybox",
                       "true", check=False)
        assert "conflicting options: hostname and the network mode" in bad.stderr
    finally:
        d.docker("rm", "-f", "nsjoin", "nsweb", check=False)
