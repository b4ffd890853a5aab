"""What a process sees of its own world inside a container made from runc's default spec."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testbed.bundles import make_bundle
from testbed.images import BuiltImage
from tests.integration.runtime.conftest import Runtime

pytestmark = pytest.mark.integration

PROBE = r"""
echo "pid=$$"
echo "hostname=$(hostname)"
grep -E '^Cap(Eff|Bnd|Amb)' /proc/self/status | tr -d '\t' | sed 's/:/=/'
grep '^NoNewPrivs' /proc/self/status | tr -d '\t' | sed 's/:/=/'
echo "nofile=$(ulimit -n)"
if touch /rootfs-write 2>/dev/null; then echo root=rw; else echo root=ro; fi
echo "timer_list=$(wc -c < /proc/timer_list) $(stat -c %t,%T /proc/timer_list)"
if echo 1 > /proc/sys/kernel/domainname 2>/dev/null; then echo procsys=rw; else echo procsys=ro; fi
echo "devnull=$(stat -c %t,%T /dev/null)"
echo "links=$(ls /sys/class/net | tr '\n' ' ')"
echo "maxpid=$(ls /proc | grep '^[0-9]' | sort -n | tail -1)"
echo "shm=$(stat -f -c %T /dev/shm)"
"""


def _probe(runtime: Runtime, busybox: BuiltImage, tmp_path: Path) -> dict[str, str]:
    bundle = make_bundle(
        busybox,
        tmp_path / "b",
        runtime.binary,
        ["sh", "-c", PROBE],
        edit=lambda c: c.update(hostname="probe"),
    )
    rc, out, err = runtime.run_to_files(tmp_path, "run", "--bundle", str(bundle), "probe")
    assert rc == 0, err
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_default_spec_world(runtime: Runtime, busybox: BuiltImage, tmp_path: Path) -> None:
    seen = _probe(runtime, busybox, tmp_path)
    assert seen["pid"] == "1"
    assert seen["hostname"] == "probe"
    # AUDIT_WRITE, KILL, NET_BIND_SERVICE
    assert seen["CapEff"] == "0000000020000420"
    assert seen["CapBnd"] == "0000000020000420"
    assert seen["NoNewPrivs"] == "1"
    assert seen["nofile"] == "1024"
    assert seen["root"] == "ro"
    assert seen["timer_list"] == "0 1,3"  # masked: /dev/null bound over it
    assert seen["procsys"] == "ro"  # read-only path
    assert seen["devnull"] == "1,3"
    assert seen["links"].split() == ["lo"]  # a network namespace of its own
    assert int(seen["maxpid"]) < 200  # a pid namespace of its own: only its own few
    assert int(seen["maxpid"]) < os.getpid()
    assert seen["shm"] == "tmpfs"
