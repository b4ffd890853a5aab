"""Bridge networks with real busybox containers: the default bridge, user networks, published
ports, teardown, and bad input. Traffic goes only to 127.0.0.1 and into the namespaces these
tests create, on private 10.213.x subnets that each test's engine configures (never the
machine-wide default pools)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import images as tb_images
from testbed.engine import Engine

pytestmark = pytest.mark.integration

_counter = iter(range(1, 1000))


def _host_state() -> tuple[set[str], set[str]]:
    links = set(os.listdir("/sys/class/net"))
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                            check=True).stdout
    return links, set(tables.splitlines())


@pytest.fixture(scope="module")
def busybox() -> tb_images.BuiltImage:
    return tb_images.busybox()


@pytest.fixture
def eng(tmp_path: Path, busybox: tb_images.BuiltImage) -> Iterator[Engine]:
    # each test its own /24s in 10.213.0.0/16, its own bridge and nftables table
    n = (os.getpid() % 50) * 4 + next(_counter) % 4
    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({
        "cgroup-parent": "", "bip": f"10.213.{n}.1/24", "ip-forward": False,
        "default-address-pools": [{"base": f"10.213.{200 + n % 50}.0/24", "size": 26}]}))
    e = Engine(tmp_path / "root", config, env={"DOCKYARD_RUN_ROOT": str(tmp_path / "run")})
    assert busybox.docker_archive is not None
    e.run("load", "-i", str(busybox.docker_archive))
    before = _host_state()
    try:
        yield e
    finally:
        for cid in e.run("ps", "-aq", "--no-trunc", check=False).stdout.split():
            e.run("rm", "-f", cid, check=False)
        for net in e.run("network", "ls", "-q", "--filter", "type=custom",
                         check=False).stdout.split():
            e.run("network", "rm", net, check=False)
        e.run("system", "teardown", check=False)    # the kept default bridge, nftables table
        _assert_nothing_left(e, before, tmp_path)


def _assert_nothing_left(e: Engine, before: tuple[set[str], set[str]], tmp: Path) -> None:
    deadline = time.monotonic() + 5      # a namespace's veth goes asynchronously
    while True:
        links, tables = _host_state()
        new = (links - before[0]) | (tables - before[1])
        if not new or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not new, f"left behind: {new}"
    netns_dir = tmp / "run-netns"
    assert not netns_dir.exists() or not os.listdir(netns_dir)
    with open("/proc/self/mountinfo") as f:
        assert str(tmp) not in f.read()


def _wait_for(fn: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if fn():   # type: ignore[operator]
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _httpd(e: Engine, name: str, *args: str) -> str:
    return e.run("run", "-d", "--name", name, *args, "busybox", "sh", "-c",
                 "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && "
                 "exec httpd -f -p 80 -h /www").stdout.strip()


def _ip(e: Engine, name: str, network: str) -> str:
    doc = json.loads(e.run("network", "inspect", network).stdout)[0]
    for c in doc["Containers"].values():
        if c["Name"] == name:
            return str(c["IPv4Address"].split("/")[0])
    raise AssertionError(f"{name} not on {network}: {doc['Containers']}")


def test_default_bridge(eng: Engine) -> None:
    out = eng.run("run", "--rm", "busybox", "sh", "-c",
                  "ip -4 -o addr show eth0; ip route; cat /etc/hostname; "
                  "tail -n1 /etc/hosts").stdout
    cfg = json.loads(Path(eng.config).read_text())  # type: ignore[arg-type]
    prefix = cfg["bip"].rsplit(".", 1)[0]
    assert f"inet {prefix}.2/24" in out
    assert f"default via {prefix}.1 dev eth0" in out
    hostname = out.splitlines()[-2]
    assert out.splitlines()[-1] == f"{prefix}.2\t{hostname}"
    ls = eng.run("network", "ls").stdout.splitlines()
    assert ls[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert sorted(line.split()[1] for line in ls[1:]) == ["bridge", "host", "none"]


def _own(eng: Engine, first: int) -> str:
    """A /24 of this test's own (its bip's third number in 10.``first``.x.0/24): a fixed
    subnet could be another session's at the same time, and a bridge of theirs on it (with
    its masquerade rule) would take this test's traffic."""
    cfg = json.loads(Path(eng.config).read_text())  # type: ignore[arg-type]
    return f"10.{first}.{cfg['bip'].split('.')[2]}"


def test_user_network_ping_and_http(eng: Engine) -> None:
    net = _own(eng, 212)
    nid = eng.run("network", "create", "--subnet", f"{net}.0/24", "--label", "team=a",
                  "appnet").stdout.strip()
    assert len(nid) == 64
    _httpd(eng, "web", "--network", "appnet")
    ip = _ip(eng, "web", "appnet")
    assert ip.startswith(f"{net}.")
    out = eng.run("run", "--rm", "--network", "appnet", "busybox", "sh", "-c",
                  f"ping -c1 -W2 {ip} >/dev/null && echo pinged; "
                  f"for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O- http://{ip}/ && break; "
                  "sleep 0.2; done").stdout
    assert "pinged" in out
    assert "hello-from-" in out
    doc = json.loads(eng.run("network", "inspect", "appnet").stdout)[0]
    assert doc["IPAM"]["Config"] == [{"Subnet": f"{net}.0/24", "Gateway": f"{net}.1"}]
    assert doc["Labels"] == {"team": "a"} and doc["Driver"] == "bridge"
    # in use: refused, and nothing changes
    refused = eng.run("network", "rm", "appnet", check=False)
    assert refused.returncode == 1
    assert "has active endpoints" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert eng.run("network", "inspect", "-f", "{{.Name}}", "appnet").stdout == "appnet\n"
    eng.run("rm", "-f", "web")
    assert eng.run("network", "rm", "appnet").stdout == "appnet\n"


def test_published_port_from_loopback_and_port(eng: Engine) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _httpd(eng, "pub", "-p", f"127.0.0.1:{port}:80", "-p", "80")
    url = f"http://127.0.0.1:{port}/"

    def fetch() -> bool:
        with urllib.request.urlopen(url, timeout=2) as r:
            return b"hello-from-" in r.read()

    _wait_for(fetch)
    mappings = eng.run("port", "pub").stdout.splitlines()
    assert f"80/tcp -> 127.0.0.1:{port}" in mappings
    assert any(m.startswith("80/tcp -> 0.0.0.0:") for m in mappings)
    assert eng.run("port", "pub", "80").stdout.splitlines()[0] == f"127.0.0.1:{port}"
    settings = json.loads(eng.run("inspect", "pub").stdout)[0]["NetworkSettings"]
    assert {"HostIp": "127.0.0.1", "HostPort": str(port)} in settings["Ports"]["80/tcp"]
    assert settings["IPAddress"] == settings["Networks"]["bridge"]["IPAddress"] != ""
    # the same host port again: refused at start, exit 125, nothing of it remains running
    clash = eng.run("run", "-d", "-p", f"127.0.0.1:{port}:80", "busybox", "true", check=False)
    assert clash.returncode == 125 and "port is already allocated" in clash.stderr
    eng.run("rm", "-f", "pub")
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=1)


def test_bad_input(eng: Engine) -> None:
    net = _own(eng, 211)
    eng.run("network", "create", "--subnet", f"{net}.0/24", "one")
    overlap = eng.run("network", "create", "--subnet", f"{net}.128/25", "two", check=False)
    assert overlap.returncode == 1
    assert "overlaps" in overlap.stderr and len(overlap.stderr.strip().splitlines()) == 1
    same = eng.run("network", "create", "one", check=False)
    assert same.returncode == 1 and "already exists" in same.stderr
    builtin = eng.run("network", "rm", "bridge", check=False)
    assert builtin.returncode == 1 and "pre-defined" in builtin.stderr
    unknown = eng.run("run", "--rm", "--network", "nosuchnet", "busybox", "true", check=False)
    assert unknown.returncode == 125
    assert unknown.stderr.strip().splitlines()[0].endswith("network nosuchnet not found")
    assert eng.run("ps", "-aq").stdout == ""
    missing = eng.run("network", "inspect", "nosuchnet", check=False)
    assert missing.returncode == 1
    names = eng.run("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert sorted(names) == ["bridge", "host", "none", "one"]
    assert eng.run("network", "prune", "-f").stdout == "Deleted Networks:\none\n"


def test_concurrent_starts_get_distinct_addresses(eng: Engine) -> None:
    eng.run("network", "create", "--subnet", f"{_own(eng, 210)}.0/24", "many")
    procs = [subprocess.Popen(
        [*_cli(eng), "run", "-d", "--network", "many", "busybox", "sleep", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=eng.env)
        for _ in range(20)]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    doc = json.loads(eng.run("network", "inspect", "many").stdout)[0]
    ips = [c["IPv4Address"] for c in doc["Containers"].values()]
    assert len(ips) == 20 and len(set(ips)) == 20


def _cli(e: Engine) -> list[str]:
    from testbed.engine import DOCKYARD

    return [*DOCKYARD, "--root", str(e.root), "--config", str(e.config)]


def _table(e: Engine) -> str:
    import hashlib

    return "dockyard_" + hashlib.sha256(str(e.root).encode()).hexdigest()[:10]


def _bridge(e: Engine) -> str:
    doc = json.loads(e.run("network", "inspect", "bridge").stdout)[0]
    return str(doc["Options"]["com.docker.network.bridge.name"])


def _nft_table(e: Engine) -> str:
    return subprocess.run(["nft", "-a", "list", "table", "inet", _table(e)],
                          capture_output=True, text=True, check=False).stdout


def test_default_bridge_and_table_are_kept_until_teardown(eng: Engine) -> None:
    eng.run("run", "--rm", "busybox", "true")
    bridge = _bridge(eng)
    assert os.path.exists(f"/sys/class/net/{bridge}")      # kept, as docker0 is
    kept = _nft_table(eng)
    assert "masquerade" in kept and "dnat ip to" not in kept
    # a container without published ports changes no rule: same rules, same handles
    eng.run("run", "--rm", "busybox", "true")
    assert _nft_table(eng) == kept
    # one with a published port adds its DNAT rules, and they go with it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    eng.run("run", "-d", "--name", "p", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "30")
    assert f"tcp dport {port} dnat ip to" in _nft_table(eng)
    eng.run("rm", "-f", "p")
    assert "dnat ip to" not in _nft_table(eng)
    # a table flushed behind our back is made again by the next change
    subprocess.run(["nft", "delete", "table", "inet", _table(eng)], check=True)
    eng.run("run", "--rm", "busybox", "true")
    assert "masquerade" in _nft_table(eng)
    # teardown keeps what a running container uses, and removes the rest
    eng.run("run", "-d", "--name", "up", "busybox", "sleep", "30")
    assert eng.run("system", "teardown").stdout == ""
    assert os.path.exists(f"/sys/class/net/{bridge}")
    eng.run("rm", "-f", "up")
    assert eng.run("system", "teardown").stdout == f"{bridge}\n"
    assert not os.path.exists(f"/sys/class/net/{bridge}")
    assert _nft_table(eng) == ""


def test_network_container_mode(eng: Engine) -> None:
    web = _httpd(eng, "web")
    web_host = eng.run("inspect", "-f", "{{.Config.Hostname}}", "web").stdout.strip()
    web_ip = eng.run("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web").stdout.strip()
    out = eng.run("run", "--rm", "--network", "container:web", "busybox", "sh", "-c",
                  "for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O- http://127.0.0.1/ && break; "
                  "sleep 0.2; done; hostname; echo $HOSTNAME; cat /etc/hostname; "
                  "tail -n1 /etc/hosts; ip -4 -o addr show eth0").stdout.splitlines()
    assert out[0] == f"hello-from-{web_host}"          # the other's httpd, on 127.0.0.1
    assert out[1:4] == [web_host] * 3                   # its hostname and /etc files
    assert out[4] == f"{web_ip}\t{web_host}"
    assert f"inet {web_ip}/24" in out[5]                # its interface
    # recorded by full id; no network settings of its own
    eng.run("run", "-d", "--name", "joiner", "--network", "container:web", "busybox",
            "sleep", "60")
    doc = json.loads(eng.run("inspect", "joiner").stdout)[0]
    assert doc["HostConfig"]["NetworkMode"] == f"container:{web}"
    assert doc["NetworkSettings"]["Networks"] == {}
    assert doc["NetworkSettings"]["IPAddress"] == "" and doc["NetworkSettings"]["Ports"] == {}
    assert doc["HostsPath"].endswith(f"{web}/hosts")
    assert eng.run("ps", "--filter", "name=joiner", "--format", "[{{.Networks}}]").stdout \
        == "[]\n"
    refused = eng.run("network", "connect", "bridge", "joiner", check=False)
    assert "sharing network namespace" in refused.stderr
    # docker's conflicts, refused before anything is made
    for flags, message in ((["-p", "80"], "port publishing and the container type network"),
                           (["-P"], "port publishing and the container type network"),
                           (["--dns", "10.213.9.9"], "dns and the network mode"),
                           (["--hostname", "x"], "hostname and the network mode"),
                           (["--add-host", "a:10.213.9.9"], "custom host-to-IP mapping"),
                           (["--mac-address", "02:42:0a:d5:00:09"], "mac-address and the"),
                           (["--ip", "10.213.9.9"], "supported on user defined networks only"),
                           (["--network-alias", "x"], "only supported for user-defined")):
        bad = eng.run("run", "--rm", *flags, "--network", "container:web", "busybox", "true",
                      check=False)
        assert bad.returncode == 125, flags
        assert message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    empty = eng.run("create", "--network", "container:", "busybox", "true", check=False)
    assert "invalid container format container:<name|id>" in empty.stderr
    assert {n for n in eng.run("ps", "-a", "--format", "{{.Names}}").stdout.split()} == {
        "web", "joiner"}
    # a target that is not running: the joiner does not start, and nothing of it stays pinned
    eng.run("create", "--name", "idle", "busybox", "true")
    eng.run("create", "--name", "late", "--network", "container:idle", "busybox", "true")
    late = eng.run("start", "late", check=False)
    assert late.returncode != 0
    assert "cannot join network of a non running container: " in late.stderr
    late_id = eng.run("inspect", "-f", "{{.Id}}", "late").stdout.strip()
    assert not (eng.root.parent / "run-netns" / late_id).exists()
    with open("/proc/self/mountinfo") as f:
        assert late_id not in f.read()
    # the target goes (rm needs -f, as in docker); the joiner keeps running with lo only
    assert "cannot remove a running container" in eng.run("rm", "web", check=False).stderr
    eng.run("rm", "-f", "web")
    links = eng.run("exec", "joiner", "ip", "-o", "link").stdout
    assert "lo:" in links and "eth0" not in links
    eng.run("stop", "-t", "0", "joiner")
    gone = eng.run("start", "joiner", check=False)
    assert f"No such container: {web}" in gone.stderr


def test_a_changed_bip_remakes_the_kept_bridge(eng: Engine) -> None:
    eng.run("run", "--rm", "busybox", "true")
    bridge = _bridge(eng)
    cfg = json.loads(Path(eng.config).read_text())  # type: ignore[arg-type]
    new = _own(eng, 209)
    cfg["bip"] = f"{new}.1/24"
    Path(eng.config).write_text(json.dumps(cfg))  # type: ignore[arg-type]
    out = eng.run("run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert f"inet {new}.2/24" in out
    addrs = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", bridge], capture_output=True,
                           text=True, check=True).stdout
    assert [ln.split()[3] for ln in addrs.splitlines()] == [f"{new}.1/24"]
