"""``dockyard serve`` with networking confined to the tests' own addresses: its default bridge
and address pools in 10.213.250-253.x (the engine tests use 10.213.0-249.x), its own bridge
names and nftables table (the engine derives them from its root), no ip_forward change.

:func:`net_daemon` starts one, yields it and, at the end, removes every container, custom
network and volume through the engine's CLI, stops the daemon by its PID and checks that no
link, nftables table, network namespace pin or mount of it is left (links and tables: those
named as this engine names its own, as other sessions add theirs meanwhile)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from testbed.apidaemon import Daemon, UnixHTTPConnection

#: subnets these tests may name explicitly (the pools below hand out the others)
SUBNETS = ("10.213.251.0/24", "10.213.253.0/24")


def host_state() -> tuple[set[str], set[str]]:
    links = set(os.listdir("/sys/class/net"))
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                            check=True).stdout
    return links, set(tables.splitlines())


@contextmanager
def net_daemon(busybox_archive: Path) -> Iterator[Daemon]:
    workdir = Path(tempfile.mkdtemp(prefix="dy-nv-"))    # a socket path is 107 bytes at most
    d = Daemon(workdir)
    (workdir / "daemon.json").write_text(json.dumps({
        "cgroup-parent": "", "bip": "10.213.250.1/24", "ip-forward": False,
        "default-address-pools": [{"base": "10.213.252.0/24", "size": 26}]}))
    before = host_state()
    bridge_id = ""
    try:
        d.engine.run("load", "-i", str(busybox_archive))
        d.start()
        bridge_id = str(d.request("GET", "/networks/bridge")[1]["Id"])
        yield d
    finally:
        ours = _our_names(d, bridge_id) if d.proc is not None else None
        try:
            e = d.engine
            for cid in e.run("ps", "-aq", "--no-trunc", check=False).stdout.split():
                e.run("rm", "-f", cid, check=False)
            for net in e.run("network", "ls", "-q", "--filter", "type=custom",
                             check=False).stdout.split():
                e.run("network", "rm", net, check=False)
            for vol in e.run("volume", "ls", "-q", check=False).stdout.split():
                e.run("volume", "rm", "-f", vol, check=False)
            e.run("system", "teardown", check=False)    # the kept default bridge, nft table
        finally:
            d.stop()
        try:
            _assert_nothing_left(before, workdir, ours)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def _our_names(d: Daemon, bridge_id: str) -> set[str]:
    """The links and nftables table this daemon's engine can have made: its default bridge,
    the bridges of the networks and the veths of the containers its event journal names
    (other sessions make links of their own meanwhile). The engine's naming: dy<tag>0,
    dy-<network id>, veth<sha256(network id + container id)>, table dockyard_<tag>."""
    conn = UnixHTTPConnection(d.socket)
    try:
        conn.request("GET", f"/events?since=0&until={time.time():.0f}")
        lines = conn.getresponse().read().splitlines()
    finally:
        conn.close()
    events = [json.loads(x) for x in lines if x.strip()]
    nets = {bridge_id} | {e["Actor"]["ID"] for e in events if e["Type"] == "network"}
    cids = {e["Actor"]["ID"] for e in events if e["Type"] == "container"}
    tag = hashlib.sha256(str(d.engine.root).encode()).hexdigest()
    names = {f"dy{tag[:8]}0", f"table inet dockyard_{tag[:10]}"}
    names |= {f"dy-{n[:12]}" for n in nets}
    names |= {"veth" + hashlib.sha256(f"{n}{c}".encode()).hexdigest()[:7]
              for n in nets for c in cids}
    return names


def _assert_nothing_left(before: tuple[set[str], set[str]], workdir: Path,
                         ours: set[str] | None) -> None:
    deadline = time.monotonic() + 5      # a namespace's veth goes asynchronously
    while True:
        links, tables = host_state()
        new = (links - before[0]) | (tables - before[1])
        if ours is not None:
            new &= ours
        if not new or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not new, f"left behind: {new}"
    pins = workdir / "run-netns"
    assert not pins.exists() or not os.listdir(pins), os.listdir(pins)
    with open("/proc/self/mountinfo") as f:
        assert str(workdir) not in f.read()
