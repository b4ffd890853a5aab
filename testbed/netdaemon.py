"""``dockyard serve`` with networking confined to the tests' own addresses: its default bridge
and address pools in 10.213.250-253.x (the engine tests use 10.213.0-249.x), its own bridge
names and nftables table (the engine derives them from its root), no ip_forward change.

:func:`net_daemon` starts one, yields it and, at the end, removes every container, custom
network and volume through the engine's CLI, stops the daemon by its PID and checks that no
link, nftables table, network namespace pin or mount of it is left."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from testbed.apidaemon import Daemon

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
    try:
        d.engine.run("load", "-i", str(busybox_archive))
        d.start()
        yield d
    finally:
        try:
            e = d.engine
            for cid in e.run("ps", "-aq", "--no-trunc", check=False).stdout.split():
                e.run("rm", "-f", cid, check=False)
            for net in e.run("network", "ls", "-q", "--filter", "type=custom",
                             check=False).stdout.split():
                e.run("network", "rm", net, check=False)
            for vol in e.run("volume", "ls", "-q", check=False).stdout.split():
                e.run("volume", "rm", "-f", vol, check=False)
        finally:
            d.stop()
        try:
            _assert_nothing_left(before, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def _assert_nothing_left(before: tuple[set[str], set[str]], workdir: Path) -> None:
    deadline = time.monotonic() + 5      # a namespace's veth goes asynchronously
    while True:
        links, tables = host_state()
        new = (links - before[0]) | (tables - before[1])
        if not new or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not new, f"left behind: {new}"
    pins = workdir / "run-netns"
    assert not pins.exists() or not os.listdir(pins), os.listdir(pins)
    with open("/proc/self/mountinfo") as f:
        assert str(workdir) not in f.read()
