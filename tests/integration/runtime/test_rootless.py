"""Rootless: an unprivileged user runs a container from ``spec --rootless`` (its own uid mapped
to root inside, maps written without privileges, no cgroup)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.bundles import unpack_layout
from testbed.images import BuiltImage

pytestmark = pytest.mark.integration

USER = "dockyard-rootless"
SRC = Path(__file__).resolve().parents[3] / "src"
# The venv's interpreter lives under /root (0700 here); Debian's python3 can run the runtime,
# which needs only the standard library (and libseccomp through ctypes).
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture
def rootless_user() -> Iterator[pwd.struct_passwd]:
    created = False
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", USER], check=True)
        created = True
        entry = pwd.getpwnam(USER)
    try:
        yield entry
    finally:
        shutil.rmtree(f"/tmp/dockyard-runc-{entry.pw_uid}", ignore_errors=True)
        if created:
            subprocess.run(["userdel", USER], check=False)


def _as_user(user: pwd.struct_passwd, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "PYTHONPATH": str(SRC), "HOME": "/tmp"}
    return subprocess.run(["runuser", "-u", user.pw_name, "--", "env", *(f"{k}={v}"
                           for k, v in env.items()), SYSTEM_PYTHON, "-m",
                           "dockyard.runtime.cli", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason="no /usr/bin/python3")
def test_unprivileged_user_runs_a_container(rootless_user: pwd.struct_passwd,
                                            busybox: BuiltImage) -> None:
    bundle = Path(tempfile.mkdtemp(prefix="dockyard-rootless-", dir="/var/tmp"))
    try:
        (bundle / "rootfs").mkdir()
        unpack_layout(busybox.oci_layout, busybox.tag, bundle / "rootfs")
        subprocess.run(["chown", "-R", f"{rootless_user.pw_uid}:{rootless_user.pw_gid}",
                        str(bundle)], check=True)
        res = _as_user(rootless_user, bundle, "spec", "--rootless")
        assert res.returncode == 0, res.stderr
        config = json.loads((bundle / "config.json").read_text())
        config["process"]["terminal"] = False
        config["process"]["args"] = ["sh", "-c", "id -u; cat /proc/self/uid_map | tr -s ' '"]
        (bundle / "config.json").write_text(json.dumps(config))
        res = _as_user(rootless_user, bundle, "run", "rl")
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert lines[0] == "0"
        assert lines[1].split() == ["0", str(rootless_user.pw_uid), "1"]
        assert _as_user(rootless_user, bundle, "list", "-q").stdout.split() == []
    finally:
        shutil.rmtree(bundle)
