"""User namespaces: maps written by the runtime, root inside is unprivileged outside."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.bundles import make_bundle
from testbed.images import BuiltImage
from tests.integration.runtime.conftest import Runtime

pytestmark = pytest.mark.integration

MAP = [{"containerID": 0, "hostID": 200000, "size": 65536}]
PROBE = ("id -u; cat /proc/self/uid_map /proc/self/gid_map | tr -s ' ' | sed 's/^ //'; "
         "stat -c %U /; echo x > /dev/null && echo null-ok; "
         "if touch /sys/host-write 2>/dev/null; then echo sys=rw; else echo sys=ro; fi; "
         "grep CapEff /proc/self/status | tr -d '\\t'")


def _userns(c: dict[str, Any]) -> None:
    c["linux"]["namespaces"].append({"type": "user"})
    c["linux"]["uidMappings"] = MAP
    c["linux"]["gidMappings"] = MAP


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A bundle directory the mapped root (host uid 200000) can reach: pytest's own tmp
    dirs are 0700 root."""
    d = Path(tempfile.mkdtemp(prefix="dockyard-userns-", dir="/var/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


def test_root_in_a_user_namespace(runtime: Runtime, busybox: BuiltImage, open_tmp: Path
                                  ) -> None:
    tmp_path = open_tmp
    bundle = make_bundle(busybox, tmp_path / "b", runtime.binary, ["sh", "-c", PROBE],
                         edit=_userns)
    rc, out, err = runtime.run_to_files(tmp_path, "run", "--bundle", str(bundle), "u1")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == "0"
    assert lines[1] == "0 200000 65536"
    assert lines[2] == "0 200000 65536"
    assert lines[3] in ("nobody", "overflow")  # host root's files: unmapped in here
    assert lines[4] == "null-ok"
    assert lines[5] == "sys=ro"
    assert lines[6] == "CapEff:0000000020000420"


def test_exec_joins_the_user_namespace(runtime: Runtime, busybox: BuiltImage, open_tmp: Path
                                       ) -> None:
    tmp_path = open_tmp
    bundle = make_bundle(busybox, tmp_path / "b", runtime.binary, ["sleep", "300"],
                         edit=_userns)
    rc, _, err = runtime.run_to_files(tmp_path, "run", "-d", "--bundle", str(bundle), "u2")
    assert rc == 0, err
    res = runtime.run("exec", "u2", "sh", "-c", "cat /proc/self/uid_map | tr -s ' '")
    assert res.stdout.strip() == "0 200000 65536", res.stderr
    state = runtime.run("state", "u2", check=True).stdout
    import json

    pid = json.loads(state)["pid"]
    # seen from the host, the container's root is uid 200000
    status = Path(f"/proc/{pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == ["200000"] * 4
    assert os.stat(f"/proc/{pid}").st_uid == 200000
