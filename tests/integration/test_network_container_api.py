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


def test_system_df_counts_volumes_through_the_api(api_daemon: Daemon) -> None:
    import re

    d = api_daemon
    try:        # -v name: makes the volume (docker's Binds)
        d.docker("run", "--name", "dfuser", "--network", "none", "-v", "dfvol:/data",
                 "busybox", "sh", "-c", "printf 1234567 > /data/f")
        rows = {r[0]: r[1:] for r in (re.split(r" {3,}", ln) for ln in
                                      d.docker("system", "df").stdout.splitlines()[1:])}
        total, active = int(rows["Local Volumes"][0]), int(rows["Local Volumes"][1])
        assert total >= 1 and active >= 1
        verbose = d.docker("system", "df", "-v").stdout
        line = next(ln for ln in verbose.splitlines() if ln.startswith("dfvol "))
        assert line.split() == ["dfvol", "1", "7B"]
    finally:
        d.docker("rm", "-f", "dfuser", check=False)
