"""Networks and volumes of ``dockyard serve`` driven by the real docker CLI (28.x): create, ls
with filters, inspect, connect/disconnect, rm, prune; ``run --network`` and ``run -v vol:``;
docker's status codes for bad input. Networks live in 10.213.250-253.x (testbed.netdaemon)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from testbed import images as tb_images
from testbed.apidaemon import DOCKER, Daemon
from testbed.netdaemon import SUBNETS, net_daemon

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="no docker CLI")]


@pytest.fixture(scope="module")
def d() -> Iterator[Daemon]:
    image = tb_images.busybox()
    assert image.docker_archive is not None
    with net_daemon(image.docker_archive) as daemon:
        yield daemon


def _fetch(d: Daemon, net: str, url: str) -> tuple[int, str]:
    got = d.docker("run", "--rm", "--network", net, "busybox", "sh", "-c",
                   f"for i in 1 2 3 4 5 6 7 8 9 10; do timeout 3 wget -q -O- {url} && exit 0; "
                   "sleep 0.3; done; exit 1", check=False)
    return got.returncode, got.stdout


def test_network_create_ls_inspect_rm(d: Daemon) -> None:
    nid = d.docker("network", "create", "--subnet", SUBNETS[0], "--gateway", "10.213.251.254",
                   "--label", "team=blue", "--internal", "nv-one").stdout.strip()
    assert len(nid) == 64
    try:
        doc = json.loads(d.docker("network", "inspect", "nv-one").stdout)[0]
        assert doc["Id"] == nid and doc["Name"] == "nv-one" and doc["Driver"] == "bridge"
        assert doc["IPAM"]["Config"] == [{"Subnet": SUBNETS[0], "Gateway": "10.213.251.254"}]
        assert doc["Internal"] is True and doc["Labels"] == {"team": "blue"}
        assert doc["Scope"] == "local"
        auto = d.docker("network", "create", "nv-two").stdout.strip()
        sub = d.docker("network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}}",
                       "nv-two").stdout.strip()
        assert sub.startswith("10.213.252.")        # from the configured pool

        def names(*filters: str) -> list[str]:
            args = [x for f in filters for x in ("--filter", f)]
            return d.docker("network", "ls", "--format", "{{.Name}}", *args).stdout.split()

        assert set(names()) >= {"bridge", "host", "none", "nv-one", "nv-two"}
        assert names("name=nv-") == ["nv-one", "nv-two"]
        assert names("label=team=blue") == ["nv-one"]
        assert names("label=team") == ["nv-one"]
        assert names(f"id={auto[:10]}") == ["nv-two"]
        assert sorted(names("type=builtin")) == ["bridge", "host", "none"]
        assert names("type=custom") == ["nv-one", "nv-two"]
        assert names("driver=null") == ["none"]
        assert names("dangling=true") == ["nv-one", "nv-two"]
        bad = d.docker("network", "ls", "--filter", "colour=red", check=False)
        assert bad.returncode == 1 and "invalid filter 'colour'" in bad.stderr

        dup = d.docker("network", "create", "nv-one", check=False)
        assert dup.returncode == 1
        assert "network with name nv-one already exists" in dup.stderr
        overlap = d.docker("network", "create", "--subnet", "10.213.251.128/25", "nv-three",
                           check=False)
        assert overlap.returncode == 1 and "overlaps" in overlap.stderr
        for bad_subnet in ("10.213.251.0/33", "not-a-subnet"):
            got = d.docker("network", "create", "--subnet", bad_subnet, "nv-bad", check=False)
            assert got.returncode == 1 and "nv-bad" not in names()
        gw = d.docker("network", "create", "--subnet", SUBNETS[1], "--gateway", "10.9.9.9",
                      "nv-bad", check=False)
        assert gw.returncode == 1 and "no matching subnet for gateway" in gw.stderr
        plugin = d.docker("network", "create", "-d", "overlay", "nv-bad", check=False)
        assert plugin.returncode == 1 and "not found" in plugin.stderr
        assert "nv-bad" not in names()
        predefined = d.docker("network", "create", "host", check=False)
        assert predefined.returncode == 1 and "predefined host network" in predefined.stderr
        gone = d.docker("network", "inspect", "nv-none-such", check=False)
        assert gone.returncode == 1 and "not found" in gone.stderr.lower()
        rm_builtin = d.docker("network", "rm", "bridge", check=False)
        assert rm_builtin.returncode == 1 and "pre-defined network" in rm_builtin.stderr

        assert d.docker("network", "rm", "nv-two").stdout.strip() == "nv-two"
        assert "nv-two" not in names()
    finally:
        d.docker("network", "rm", "nv-one", "nv-two", check=False)
    assert "nv-one" not in names()


def test_run_network_aliases_connect_disconnect_and_volume(d: Daemon) -> None:
    d.docker("network", "create", "--subnet", SUBNETS[1], "nv-app")
    try:
        # a named volume holds what the server serves
        d.docker("volume", "create", "nv-site")
        d.docker("run", "--rm", "--network", "none", "-v", "nv-site:/data", "busybox", "sh",
                 "-c", "echo served-from-volume > /data/index.html")
        d.docker("run", "-d", "--name", "nv-web", "--network", "nv-app", "--network-alias",
                 "www", "--ip", "10.213.253.40", "-v", "nv-site:/www:ro", "busybox", "httpd",
                 "-f", "-p", "80", "-h", "/www")
        for url in ("http://nv-web/", "http://www/", "http://10.213.253.40/"):
            assert _fetch(d, "nv-app", url) == (0, "served-from-volume\n"), url

        doc = json.loads(d.docker("inspect", "nv-web").stdout)[0]
        ep = doc["NetworkSettings"]["Networks"]["nv-app"]
        assert ep["IPAddress"] == "10.213.253.40"
        assert ep["Gateway"] == "10.213.253.1" and ep["IPPrefixLen"] == 24
        assert "www" in ep["Aliases"]
        assert ep["DNSNames"][:2] == ["nv-web", "www"]
        assert doc["HostConfig"]["NetworkMode"] == "nv-app"
        net = json.loads(d.docker("network", "inspect", "nv-app").stdout)[0]
        assert [c["Name"] for c in net["Containers"].values()] == ["nv-web"]

        # a link on a user network: a name only the linking container resolves
        linked = d.docker("run", "--rm", "--network", "nv-app", "--link", "nv-web:backend",
                          "busybox", "timeout", "5", "wget", "-q", "-O-", "http://backend/")
        assert linked.stdout == "served-from-volume\n"
        unlinked = d.docker("run", "--rm", "--network", "nv-app", "busybox", "nslookup",
                            "backend", check=False)
        assert unlinked.returncode != 0
        nolink = d.docker("run", "--rm", "--network", "nv-app", "--link", "nv-ghost:g",
                          "busybox", "true", check=False)
        assert nolink.returncode != 0 and "could not get container for nv-ghost" in \
            nolink.stderr

        # in use: neither the network nor the volume goes
        busy = d.docker("network", "rm", "nv-app", check=False)
        assert busy.returncode == 1 and "active endpoints" in busy.stderr
        vbusy = d.docker("volume", "rm", "nv-site", check=False)
        assert vbusy.returncode == 1 and "volume is in use" in vbusy.stderr
        assert "nv-app" in d.docker("network", "ls", "--format", "{{.Name}}").stdout.split()

        # a container on the default bridge joins nv-app with an alias and an address
        d.docker("run", "-d", "--name", "nv-client", "busybox", "sleep", "600")
        d.docker("network", "connect", "--alias", "cli", "--ip", "10.213.253.50", "nv-app",
                 "nv-client")
        nets = json.loads(d.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}",
                                   "nv-client").stdout)
        assert set(nets) == {"bridge", "nv-app"}
        assert nets["nv-app"]["IPAddress"] == "10.213.253.50"
        # (busybox's wget -T crashes: the timeout applet bounds it instead)
        got = d.docker("exec", "nv-client", "timeout", "5", "wget", "-q", "-O-",
                       "http://10.213.253.40/")
        assert got.stdout == "served-from-volume\n"
        # from the default bridge to a user network: the embedded DNS answers it now
        got = d.docker("exec", "nv-client", "timeout", "5", "wget", "-q", "-O-", "http://www/")
        assert got.stdout == "served-from-volume\n"
        # its alias on nv-app resolves for the others there
        found = d.docker("exec", "nv-web", "nslookup", "cli").stdout
        assert "10.213.253.50" in found
        again = d.docker("network", "connect", "nv-app", "nv-client", check=False)
        assert again.returncode == 1 and "already exists" in again.stderr
        d.docker("network", "disconnect", "nv-app", "nv-client")
        cut = d.docker("exec", "nv-client", "timeout", "2", "wget", "-q", "-O-",
                       "http://10.213.253.40/", check=False)
        assert cut.returncode != 0
        # no user network left: the host's resolvers again, not the embedded server
        resolv = d.docker("exec", "nv-client", "cat", "/etc/resolv.conf").stdout
        assert "127.0.0.11" not in resolv
        not_connected = d.docker("network", "disconnect", "nv-app", "nv-client", check=False)
        assert not_connected.returncode == 1 and "is not connected" in not_connected.stderr
        d.docker("network", "disconnect", "-f", "nv-app", "nv-client", check=False)
        unknown = d.docker("network", "connect", "nv-app", "nv-nobody", check=False)
        assert unknown.returncode == 1 and "No such container: nv-nobody" in unknown.stderr
        host = d.docker("network", "connect", "host", "nv-client", check=False)
        assert host.returncode == 1 and "host network" in host.stderr

        d.docker("rm", "-f", "nv-web", "nv-client")
        d.docker("network", "rm", "nv-app")
        assert "nv-app" not in d.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
        d.docker("volume", "rm", "nv-site")
    finally:
        d.docker("rm", "-f", "nv-web", "nv-client", check=False)
        d.docker("network", "rm", "nv-app", check=False)
        d.docker("volume", "rm", "-f", "nv-site", check=False)


def test_unknown_network_at_run(d: Daemon) -> None:
    got = d.docker("run", "--rm", "--network", "nv-missing", "busybox", "true", check=False)
    assert got.returncode != 0
    assert "network nv-missing not found" in got.stderr
    assert d.docker("ps", "-aq").stdout.strip() == ""


def test_network_prune(d: Daemon) -> None:
    d.docker("network", "create", "--label", "keep=yes", "nv-keep")
    d.docker("network", "create", "nv-drop")
    d.docker("network", "create", "nv-used")
    d.docker("create", "--name", "nv-holder", "--network", "nv-used", "busybox", "true")
    try:
        out = d.docker("network", "prune", "-f", "--filter", "label!=keep").stdout
        assert out.startswith("Deleted Networks:\n") and "nv-drop\n" in out
        left = d.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
        assert "nv-drop" not in left and {"nv-keep", "nv-used"} <= set(left)
        out = d.docker("network", "prune", "-f").stdout
        assert "nv-keep" in out and "nv-used" not in out
    finally:
        d.docker("rm", "-f", "nv-holder", check=False)
        d.docker("network", "rm", "nv-keep", "nv-drop", "nv-used", check=False)


def test_volume_create_ls_inspect_rm_prune(d: Daemon) -> None:
    assert d.docker("volume", "create", "--label", "kind=data", "nv-vol").stdout.strip() == \
        "nv-vol"
    anon = d.docker("volume", "create").stdout.strip()
    assert len(anon) == 64
    try:
        doc = json.loads(d.docker("volume", "inspect", "nv-vol").stdout)[0]
        assert doc["Name"] == "nv-vol" and doc["Driver"] == "local"
        assert doc["Labels"] == {"kind": "data"} and doc["Scope"] == "local"
        assert doc["Mountpoint"].endswith("/volumes/nv-vol/_data")
        # create of an existing name gives it back, as docker does
        assert d.docker("volume", "create", "nv-vol").stdout.strip() == "nv-vol"

        def names(*filters: str) -> list[str]:
            args = [x for f in filters for x in ("--filter", f)]
            return d.docker("volume", "ls", "-q", *args).stdout.split()

        assert set(names()) == {"nv-vol", anon}
        assert names("label=kind=data") == ["nv-vol"]
        assert names("name=nv-") == ["nv-vol"]
        assert set(names("driver=local")) == {"nv-vol", anon}
        d.docker("create", "--name", "nv-user", "--network", "none", "-v", "nv-vol:/data",
                 "busybox", "true")
        assert names("dangling=true") == [anon]
        assert names("dangling=false") == ["nv-vol"]
        bad = d.docker("volume", "ls", "--filter", "colour=red", check=False)
        assert bad.returncode == 1 and "invalid filter 'colour'" in bad.stderr

        busy = d.docker("volume", "rm", "nv-vol", check=False)
        assert busy.returncode == 1 and "volume is in use" in busy.stderr
        missing = d.docker("volume", "inspect", "nv-nothing", check=False)
        assert missing.returncode == 1 and "no such volume" in missing.stderr
        assert d.docker("volume", "rm", "-f", "nv-nothing").returncode == 0
        invalid = d.docker("volume", "create", "bad/name", check=False)
        assert invalid.returncode == 1 and "invalid characters" in invalid.stderr

        # the anonymous-only default: a named volume stays, -a takes it
        d.docker("rm", "nv-user")
        d.docker("volume", "create", "--label", "com.docker.volume.anonymous=", "nv-anon")
        out = d.docker("volume", "prune", "-f").stdout
        assert "nv-anon" in out and "nv-vol" not in out
        out = d.docker("volume", "prune", "-f", "-a", "--filter", "label=kind=data").stdout
        assert "nv-vol" in out and anon not in out and "Total reclaimed space" in out
        out = d.docker("volume", "prune", "-af").stdout
        assert anon in out
        assert names() == []
    finally:
        d.docker("rm", "-f", "nv-user", check=False)
        d.docker("volume", "rm", "-f", "nv-vol", "nv-anon", anon, check=False)


def test_status_codes(d: Daemon) -> None:
    def req(method: str, path: str, body: object | None = None) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        return d.request(method, "/v1.44" + path, data,
                         {"Content-Type": "application/json"} if data else None)

    status, doc = req("GET", "/networks/nv-nope")
    assert (status, doc) == (404, {"message": "network nv-nope not found"})
    status, doc = req("POST", "/networks/create", {"Name": "nv-codes"})
    assert status == 201 and isinstance(doc, dict) and len(doc["Id"]) == 64
    try:
        assert req("POST", "/networks/create", {"Name": "nv-codes"})[0] == 409
        assert req("POST", "/networks/create", {"Name": "nv-x", "IPAM": {"Config": [
            {"Subnet": "10.213.251.0/99"}]}})[0] == 400
        assert req("POST", "/networks/create", {"Name": "nv-x", "EnableIPv6": True})[0] == 400
        assert req("POST", "/networks/create", {"Name": "nv-x", "Driver": "nope"})[0] == 404
        assert req("POST", "/networks/create", {"Name": "bridge"})[0] == 403
        assert req("POST", "/networks/create", {})[0] == 400
        assert req("DELETE", "/networks/bridge")[0] == 403
        assert req("DELETE", "/networks/nv-nope")[0] == 404
        assert req("POST", "/networks/nv-codes/connect", {"Container": "nv-nobody"})[0] == 404
        assert req("POST", "/networks/nv-nope/connect", {"Container": "x"})[0] == 404
        assert req("GET", '/networks?filters={"colour":["red"]}')[0] == 400
        assert d.request("POST", "/v1.44/networks/create", b"{nope",
                         {"Content-Type": "application/json"})[0] == 400
        assert req("GET", "/volumes/nv-nope")[0] == 404
        assert req("DELETE", "/volumes/nv-nope")[0] == 404
        assert req("DELETE", "/volumes/nv-nope?force=1")[0] == 204
        status, vol = req("POST", "/volumes/create", {"Name": "nv-v", "Labels": {"a": "b"}})
        assert status == 201 and isinstance(vol, dict) and vol["Labels"] == {"a": "b"}
        assert req("POST", "/volumes/create", {"Name": "nv-v", "Driver": "nfs"})[0] == 404
        assert req("POST", "/volumes/create", {"Name": "../x"})[0] == 400
        status, listed = req("GET", "/volumes")
        assert status == 200 and isinstance(listed, dict)
        assert [v["Name"] for v in listed["Volumes"]] == ["nv-v"]
        assert req("DELETE", "/volumes/nv-v")[0] == 204
        # an old client's prune takes named volumes too (docker before API 1.42)
        req("POST", "/volumes/create", {"Name": "nv-old"})
        status, pruned = d.request("POST", "/v1.41/volumes/prune")
        assert status == 200 and isinstance(pruned, dict)
        assert pruned["VolumesDeleted"] == ["nv-old"]
        status, pruned = req("POST", "/networks/prune")
        assert status == 200 and pruned == {"NetworksDeleted": ["nv-codes"]}
    finally:
        req("DELETE", "/networks/nv-codes")
        req("DELETE", "/volumes/nv-v?force=1")
        req("DELETE", "/volumes/nv-old?force=1")


def test_connect_a_stopped_container(d: Daemon) -> None:
    d.docker("network", "create", "--subnet", SUBNETS[1], "nv-late")
    try:
        d.docker("create", "--name", "nv-sleeper", "busybox", "sleep", "600")
        d.docker("network", "connect", "--alias", "late", "--ip", "10.213.253.60", "nv-late",
                 "nv-sleeper")
        nets = json.loads(d.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}",
                                   "nv-sleeper").stdout)
        assert set(nets) == {"bridge", "nv-late"}
        assert "late" in nets["nv-late"]["Aliases"]
        assert nets["nv-late"]["IPAMConfig"] == {"IPv4Address": "10.213.253.60"}
        assert nets["nv-late"]["IPAddress"] == ""        # not running: no address yet
        d.docker("start", "nv-sleeper")
        nets = json.loads(d.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}",
                                   "nv-sleeper").stdout)
        assert nets["nv-late"]["IPAddress"] == "10.213.253.60"
        assert nets["bridge"]["IPAddress"].startswith("10.213.250.")
        addrs = d.docker("exec", "nv-sleeper", "ip", "-4", "-o", "addr").stdout
        assert "10.213.253.60/24" in addrs
        d.docker("stop", "-t", "1", "nv-sleeper")
        d.docker("network", "disconnect", "nv-late", "nv-sleeper")
        nets = json.loads(d.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}",
                                   "nv-sleeper").stdout)
        assert set(nets) == {"bridge"}
    finally:
        d.docker("rm", "-f", "nv-sleeper", check=False)
        d.docker("network", "rm", "nv-late", check=False)
