"""A spec from engine.specgen runs: busybox's rootfs plus the generated config.json, run by
dockyard-runc (and by runc, which checks that the spec is one a real runtime takes)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from dockyard.engine import specgen as sg
from dockyard.model.image import ContainerConfig
from testbed.bundles import unpack_layout
from testbed.images import BuiltImage

# The runtime suite's fixtures: every runtime it knows (dockyard-runc, runc), and busybox.
from tests.integration.runtime.conftest import Runtime, busybox, runtime  # noqa: F401

pytestmark = pytest.mark.integration

PROBE = r"""
echo "id=$(id)"
echo "hostname=$(hostname)"
echo "cwd=$(pwd)"
grep -E '^Cap(Eff|Bnd)' /proc/self/status | tr -d '\t' | sed 's/:/=/'
echo "nofile=$(ulimit -n)"
env | sed 's/^/env:/'
if touch /x 2>/dev/null; then echo root=rw; else echo root=ro; fi
if touch /run/x 2>/dev/null; then echo run=rw; else echo run=ro; fi
echo "shm=$(df -k /dev/shm | tail -1 | awk '{print $2}')"
echo "links=$(ls /sys/class/net | tr '\n' ' ')"
"""


def test_generated_spec_runs(runtime: Runtime, busybox: BuiltImage,  # noqa: F811
                             tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    unpack_layout(busybox.oci_layout, busybox.tag, rootfs)
    cid = secrets.token_hex(32)
    image = ContainerConfig(env=(f"PATH={sg.DEFAULT_PATH_ENV}", "FROM_IMAGE=1"), cmd=("sh",),
                            working_dir="/tmp")
    opts = sg.RunOptions(command=("sh", "-c", PROBE), env=("GREETING=hello", "FROM_IMAGE=2"),
                         user="1234:5678", hostname="genspec", read_only=True,
                         tmpfs=(("/run", "size=1m"),), shm_size=2 << 20, network="none",
                         cap_drop=("NET_RAW",), cap_add=("SYS_TIME",),
                         ulimits=(sg.Ulimit("nofile", 512, 1024),))
    spec = sg.generate_spec(image, opts, container_id=cid, rootfs=str(rootfs),
                            cgroups_path=f"/dockyard-specgen-{cid[:12]}")
    (bundle / "config.json").write_text(json.dumps(spec))
    rc, out, err = runtime.run_to_files(tmp_path, "run", "--bundle", str(bundle),
                                        f"specgen-{cid[:8]}")
    assert rc == 0, err
    seen: dict[str, str] = {}
    env: list[str] = []
    for line in out.splitlines():
        if line.startswith("env:"):
            env.append(line[4:])
        elif "=" in line:
            k, _, v = line.partition("=")
            seen[k] = v
    assert seen["id"].startswith("uid=1234 gid=5678")
    assert seen["hostname"] == "genspec"
    assert seen["cwd"] == "/tmp"
    caps = set(sg.DEFAULT_CAPABILITIES) - {"CAP_NET_RAW"} | {"CAP_SYS_TIME"}
    from dockyard.runtime.capabilities import mask

    want = f"{mask(tuple(caps)):016x}"
    assert seen["CapBnd"] == want
    assert seen["CapEff"] == "0000000000000000"   # not root: no effective capabilities
    assert seen["nofile"] == "512"
    assert "GREETING=hello" in env and "FROM_IMAGE=2" in env and "HOSTNAME=genspec" in env
    assert seen["root"] == "ro" and seen["run"] == "rw"
    assert seen["shm"] == "2048"
    assert seen["links"].split() == ["lo"]


CGROUP_PROBE = r"""
if [ -d /sys/fs/cgroup/memory ]; then
  echo "limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
  echo "dirs=$(find /sys/fs/cgroup/memory /sys/fs/cgroup/pids -mindepth 1 -type d | wc -l)"
else
  echo "limit=$(cat /sys/fs/cgroup/memory.max)"
  echo "dirs=$(find /sys/fs/cgroup -mindepth 1 -type d | wc -l)"
fi
"""


def test_container_sees_its_own_cgroup_only(runtime: Runtime, busybox: BuiltImage,  # noqa: F811
                                            tmp_path: Path) -> None:
    """/sys/fs/cgroup shows the container's cgroup (its limits), never the host's tree: on
    cgroup v1 the engine makes no cgroup namespace (docker's default there), so the runtime
    binds the container's own directory of each hierarchy, as runc does."""
    bundle = tmp_path / "bundle"
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    unpack_layout(busybox.oci_layout, busybox.tag, rootfs)
    cid = secrets.token_hex(32)
    opts = sg.RunOptions(command=("sh", "-c", CGROUP_PROBE), network="none", memory=64 << 20)
    spec = sg.generate_spec(ContainerConfig(env=(f"PATH={sg.DEFAULT_PATH_ENV}",)), opts,
                            container_id=cid, rootfs=str(rootfs),
                            cgroups_path=f"/dockyard-specgen-{cid[:12]}")
    (bundle / "config.json").write_text(json.dumps(spec))
    rc, out, err = runtime.run_to_files(tmp_path, "run", "--bundle", str(bundle),
                                        f"cgview-{cid[:8]}")
    assert rc == 0, err
    seen = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert seen["limit"] == str(64 << 20)
    assert seen["dirs"] == "0", out     # no other cgroup (the host's, say) is visible
