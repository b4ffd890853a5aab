"""The embedded DNS server and network connect/disconnect with real busybox containers: names,
short ids and aliases resolve on a user network (and not on the default bridge), other names
go to a fake upstream server on a loopback address, a disconnected container reaches nothing
of the network; run's --add-host, --dns*, --mac-address, --ip, -P and a UDP publish. Traffic
goes only to loopback and into the namespaces these tests create, on 10.213.x subnets."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import images as tb_images
from testbed.engine import Engine
from testbed.fakedns import FakeDns, fake_dns

pytestmark = pytest.mark.integration

_counter = iter(range(1, 1000))
OUTSIDE = {"outside.example.test": "10.213.254.77"}


def _host_state() -> tuple[set[str], set[str]]:
    links = set(os.listdir("/sys/class/net"))
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                            check=True).stdout
    return links, set(tables.splitlines())


def _subnet(i: int) -> str:
    """A /28 of its own for this process's test network ``i`` (0..1)."""
    return f"10.213.{253 + i}.{(os.getpid() % 16) * 16}/28"


@pytest.fixture(scope="module")
def busybox() -> tb_images.BuiltImage:
    return tb_images.busybox()


@pytest.fixture
def upstream() -> Iterator[FakeDns]:
    with fake_dns(f"127.213.{os.getpid() % 250}.53", OUTSIDE) as server:
        yield server


@pytest.fixture
def eng(tmp_path: Path, busybox: tb_images.BuiltImage, upstream: FakeDns) -> Iterator[Engine]:
    n = (os.getpid() % 50) * 4 + next(_counter) % 4
    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({
        "cgroup-parent": "", "bip": f"10.213.{n}.1/24", "ip-forward": False,
        "default-address-pools": [{"base": f"10.213.{200 + n % 50}.0/24", "size": 26}],
        "dns": [upstream.sock.getsockname()[0]]}))
    e = Engine(tmp_path / "root", config, env={"DOCKYARD_RUN_ROOT": str(tmp_path / "run"),
                                               "DOCKYARD_MONITOR_LINGER": "0"})
    assert busybox.docker_archive is not None
    e.run("load", "-i", str(busybox.docker_archive))
    try:
        yield e
    finally:
        ours = _our_links_and_table(e)
        for cid in e.run("ps", "-aq", "--no-trunc", check=False).stdout.split():
            e.run("rm", "-f", cid, check=False)
        for net in e.run("network", "ls", "-q", "--filter", "type=custom",
                         check=False).stdout.split():
            e.run("network", "rm", net, check=False)
        e.run("system", "teardown", check=False)    # the kept default bridge, nftables table
        _assert_nothing_left(ours, tmp_path)


def _our_links_and_table(e: Engine) -> tuple[set[str], str]:
    """The names this engine's links can have (its bridges, the veths of its containers on
    its networks) and its nftables table: others' tests may add links meanwhile."""
    nets = json.loads(e.run("network", "inspect", *e.run(
        "network", "ls", "-q", "--no-trunc").stdout.split()).stdout)
    cids = e.run("ps", "-aq", "--no-trunc").stdout.split()
    links = {str(n["Options"].get("com.docker.network.bridge.name", "")) for n in nets}
    links |= {"veth" + hashlib.sha256(f"{n['Id']}{c}".encode()).hexdigest()[:7]
              for n in nets for c in cids}
    tag = hashlib.sha256(str(e.root).encode()).hexdigest()[:10]
    return links - {""}, f"table inet dockyard_{tag}"


def _dns_server_pids(tmp: Path) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"dockyard.engine.dns" in argv and str(tmp).encode() in b" ".join(argv):
            out.append(int(pid))
    return out


def _assert_nothing_left(ours: tuple[set[str], str], tmp: Path) -> None:
    deadline = time.monotonic() + 5      # a namespace's veth goes asynchronously
    while True:
        links, tables = _host_state()
        new = (links & ours[0]) | (tables & {ours[1]})
        pids = _dns_server_pids(tmp)
        if (not new and not pids) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not new, f"left behind: {new}"
    assert not pids, f"DNS server left running: {pids}"
    assert not (tmp / "run" / "dns.sock").exists()
    netns_dir = tmp / "run-netns"
    assert not netns_dir.exists() or not os.listdir(netns_dir)
    with open("/proc/self/mountinfo") as f:
        assert str(tmp) not in f.read()


def _httpd(e: Engine, name: str, *args: str) -> str:
    return e.run("run", "-d", "--name", name, *args, "busybox", "sh", "-c",
                 "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && "
                 "exec httpd -f -p 80 -h /www").stdout.strip()


def _sh(e: Engine, container: str, script: str) -> subprocess.CompletedProcess[str]:
    return e.run("exec", container, "sh", "-c", script, check=False)


def _fetch(name: str) -> str:
    # busybox wget -T crashes in this build: the retry loop bounds it instead
    return (f"for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O- http://{name}/ && break; "
            "sleep 0.2; done")


def test_names_aliases_and_disconnect(eng: Engine, tmp_path: Path,
                                      upstream: FakeDns) -> None:
    eng.run("network", "create", "--subnet", _subnet(0), "dnsnet")
    web = _httpd(eng, "web", "--network", "dnsnet", "--network-alias", "webby")
    eng.run("run", "-d", "--name", "cli", "--network", "dnsnet", "busybox", "sleep", "300")
    assert _dns_server_pids(tmp_path), "no DNS server runs"
    resolv = _sh(eng, "cli", "cat /etc/resolv.conf").stdout
    assert "nameserver 127.0.0.11" in resolv and "options ndots:0" in resolv
    out = _sh(eng, "cli", f"{_fetch('web')}; {_fetch('webby')}").stdout
    assert out.count(f"hello-from-{web[:12]}") == 2, out
    out = _sh(eng, "cli", f"nslookup web; nslookup {web[:12]}; nslookup webby").stdout
    web_ip = json.loads(eng.run("inspect", "web").stdout)[0]["NetworkSettings"][
        "Networks"]["dnsnet"]["IPAddress"]
    assert out.count(f"Address: {web_ip}") == 3, out
    outside = _sh(eng, "cli", "nslookup outside.example.test").stdout
    assert "Address: 10.213.254.77" in outside
    assert "outside.example.test" in upstream.asked
    settings = json.loads(eng.run("inspect", "web").stdout)[0]["NetworkSettings"]
    assert settings["Networks"]["dnsnet"]["Aliases"] == ["webby"]

    # disconnected: no interface of the network, no name, no address
    assert eng.run("network", "disconnect", "dnsnet", "cli").stdout == ""
    gone = _sh(eng, "cli", f"ip -4 -o addr; wget -q -O- http://{web_ip}/ || echo ip-failed; "
                           "wget -q -O- http://web/ || echo name-failed")
    assert "ip-failed" in gone.stdout and "name-failed" in gone.stdout
    assert "hello-from" not in gone.stdout and "eth0" not in gone.stdout
    doc = json.loads(eng.run("network", "inspect", "dnsnet").stdout)[0]
    assert sorted(c["Name"] for c in doc["Containers"].values()) == ["web"]

    # connected again, with an address of its choosing and an alias the others resolve
    ip = _subnet(0).rsplit(".", 1)[0] + "." + str(int(_subnet(0).split(".")[3][:-3]) + 9)
    eng.run("network", "connect", "--alias", "client", "--ip", ip, "dnsnet", "cli")
    back = _sh(eng, "cli", f"ip -4 -o addr show eth0; {_fetch('webby')}").stdout
    assert f"inet {ip}/28" in back and "hello-from" in back
    assert f"Address: {ip}" in _sh(eng, "web", "nslookup client").stdout


def test_connect_from_the_default_bridge_and_isolation(eng: Engine) -> None:
    eng.run("network", "create", "--subnet", _subnet(0), "neta")
    web = _httpd(eng, "web", "--network", "neta")
    web_ip = json.loads(eng.run("inspect", "web").stdout)[0]["NetworkSettings"][
        "Networks"]["neta"]["IPAddress"]
    eng.run("run", "-d", "--name", "b", "busybox", "sleep", "300")
    # the default bridge cannot reach another network (dropped: ping, not a TCP timeout)
    ping = f"ping -c1 -W1 {web_ip} >/dev/null && echo reached || echo isolated"
    assert _sh(eng, "b", ping).stdout.strip() == "isolated"
    eng.run("network", "connect", "neta", "b")
    out = _sh(eng, "b", f"ip -4 -o addr show eth1; {_fetch(web_ip)}").stdout
    assert "eth1" in out and f"hello-from-{web[:12]}" in out
    nets = json.loads(eng.run("inspect", "b").stdout)[0]["NetworkSettings"]["Networks"]
    assert sorted(nets) == ["bridge", "neta"]
    assert _sh(eng, "b", ping).stdout.strip() == "reached"
    eng.run("network", "disconnect", "neta", "b")
    assert _sh(eng, "b", ping).stdout.strip() == "isolated"
    # a restart keeps what network connect added
    eng.run("network", "connect", "neta", "b")
    eng.run("restart", "b")
    assert "hello-from" in _sh(eng, "b", _fetch(web_ip)).stdout


def test_default_bridge_has_no_names_and_run_flags(eng: Engine, tmp_path: Path) -> None:
    eng.run("run", "-d", "--name", "other", "busybox", "sleep", "300")
    out = eng.run("run", "--rm", "--name", "me", "--add-host", "db.local:10.213.99.9",
                  "--dns", "10.213.99.53", "--dns-search", "corp.test", "--dns-option",
                  "timeout:3", "--mac-address", "02:42:aa:bb:cc:dd", "busybox", "sh", "-c",
                  "cat /etc/hosts; echo ===; cat /etc/resolv.conf; echo ===; "
                  "cat /sys/class/net/eth0/address; nslookup other 127.0.0.1 2>&1 || "
                  "echo no-name").stdout
    hosts, resolv, rest = out.split("===\n")
    lines = hosts.strip().splitlines()
    assert lines[-2] == "10.213.99.9\tdb.local"
    assert "other" not in hosts and len([x for x in lines if "\t" in x and
                                         x.startswith("10.")]) == 2
    assert "nameserver 10.213.99.53" in resolv and "search corp.test" in resolv
    assert "options timeout:3" in resolv and "127.0.0.11" not in resolv
    assert rest.splitlines()[0] == "02:42:aa:bb:cc:dd"
    assert "no-name" in rest
    assert not _dns_server_pids(tmp_path)   # nothing on a user network: no server


def test_bad_input_changes_nothing(eng: Engine) -> None:
    eng.run("network", "create", "--subnet", _subnet(0), "one")
    eng.run("run", "-d", "--name", "c", "--network", "one", "busybox", "sleep", "300")
    eng.run("run", "-d", "--name", "d", "busybox", "sleep", "300")
    before = eng.run("network", "inspect", "one").stdout
    taken = json.loads(before)[0]["Containers"]
    taken_ip = next(iter(taken.values()))["IPv4Address"].split("/")[0]
    cases = [
        (("network", "connect", "nosuchnet", "d"), "network nosuchnet not found"),
        (("network", "connect", "one", "nosuch"), "No such container: nosuch"),
        (("network", "connect", "--ip", "10.213.1.5", "one", "d"), "no configured subnet"),
        (("network", "connect", "--ip", taken_ip, "one", "d"), "Address already in use"),
        (("network", "connect", "one", "c"), "already exists in network one"),
        (("network", "disconnect", "one", "d"), "is not connected to network one"),
        (("network", "disconnect", "nosuchnet", "c"), "network nosuchnet not found"),
    ]
    for args, message in cases:
        r = eng.run(*args, check=False)
        assert r.returncode == 1, (args, r.stderr)
        assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert eng.run("network", "inspect", "one").stdout == before
    nets = json.loads(eng.run("inspect", "d").stdout)[0]["NetworkSettings"]["Networks"]
    assert list(nets) == ["bridge"]
    assert "eth1" not in _sh(eng, "d", "ip -o link").stdout
    for args, message in [(("--ip", "10.213.1.1"), "only"),
                          (("--network-alias", "x"), "user defined networks"),
                          (("--network", "one", "--ip", "10.213.1.1"), "no configured subnet"),
                          (("--add-host", "nohost"), "bad format for add-host"),
                          (("--mac-address", "zz"), "invalid MAC address")]:
        r = eng.run("run", "--rm", *args, "busybox", "true", check=False)
        assert r.returncode == 125 and message in r.stderr, (args, r.stderr)
    assert sorted(eng.run("ps", "-a", "--format", "{{.Names}}").stdout.split()) == ["c", "d"]


def test_udp_publish_and_publish_all(eng: Engine) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # this busybox has no UDP listener (nc without -u, no udpsvd): the container's kernel
    # counts a datagram to a port nobody listens on (Udp NoPorts), which proves its arrival
    eng.run("run", "-d", "--name", "udp", "-p", f"127.0.0.1:{port}:53/udp", "busybox",
            "sleep", "300")
    assert eng.run("port", "udp").stdout.strip() == f"53/udp -> 127.0.0.1:{port}"

    def no_ports() -> int:
        lines = [line.split() for line in
                 _sh(eng, "udp", "cat /proc/net/snmp").stdout.splitlines()
                 if line.startswith("Udp:")]
        return int(lines[1][lines[0].index("NoPorts")])

    before = no_ports()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"datagram-from-host\n", ("127.0.0.1", port))
    deadline = time.monotonic() + 5
    while no_ports() == before:
        assert time.monotonic() < deadline, "the datagram never arrived"
        time.sleep(0.1)
    eng.run("rm", "-f", "udp")
    # and a process in the container receives it: Debian's perl (perl-base) listens on 53/udp
    debian = tb_images.debian()
    assert debian.docker_archive is not None
    eng.run("load", "-i", str(debian.docker_archive))
    listener = ("use IO::Socket::INET; $| = 1; my $s = IO::Socket::INET->new(LocalPort => 53, "
                "Proto => 'udp') or die $!; print \"ready\\n\"; $s->recv(my $m, 100); "
                "print \"got $m\"")
    eng.run("run", "-d", "--name", "udpapp", "-p", f"127.0.0.1:{port}:53/udp",
            f"{debian.name}:{debian.tag}",
            "perl", "-e", listener)
    deadline = time.monotonic() + 20
    while "ready" not in eng.run("logs", "udpapp").stdout:
        assert time.monotonic() < deadline, eng.run("logs", "udpapp").stderr
        time.sleep(0.1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"datagram-from-host\n", ("127.0.0.1", port))
    assert eng.run("wait", "udpapp", timeout=20).stdout.strip() == "0"
    assert "got datagram-from-host" in eng.run("logs", "udpapp").stdout
    # -P: every EXPOSEd port of the image on a random host port
    eng.run("run", "-d", "--name", "base", "busybox", "true")
    eng.run("wait", "base")
    eng.run("commit", "-c", "EXPOSE 80", "-c", "EXPOSE 81/udp", "base", "exposing:1")
    eng.run("run", "-d", "--name", "all", "-P", "exposing:1", "sleep", "300")
    ports = sorted(line.split(" -> ")[0] for line in
                   eng.run("port", "all").stdout.splitlines())
    assert ports == ["80/tcp", "81/udp"]
    host = json.loads(eng.run("inspect", "all").stdout)[0]["HostConfig"]
    assert host["PublishAllPorts"] is True
    eng.run("rm", "-f", "all")
    eng.run("rmi", "exposing:1")
