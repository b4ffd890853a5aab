"""seccomp in real containers: the spec's profile is enforced on the init and on exec."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from testbed.bundles import make_bundle
from testbed.images import BuiltImage
from tests.integration.runtime.conftest import Runtime

pytestmark = pytest.mark.integration

PROFILE = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        {"names": ["sethostname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
    ],
}
PROBE = ("if mkdir /tmp/x 2>/tmp/err; then echo mkdir=ok; else echo mkdir=$(cat /tmp/err); fi;"
         " touch /tmp/file && echo touch=ok")
PODMAN_PROFILE = Path("/usr/share/containers/seccomp.json")


def _edit(profile: dict[str, Any], nnp: bool = True):  # type: ignore[no-untyped-def]
    def edit(c: dict[str, Any]) -> None:
        c["linux"]["seccomp"] = profile
        c["process"]["noNewPrivileges"] = nnp
        c["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                            "options": ["nosuid", "nodev", "mode=1777"]})
    return edit


@pytest.mark.parametrize("nnp", [True, False])
def test_profile_is_enforced(runtime: Runtime, busybox: BuiltImage, tmp_path: Path,
                             nnp: bool) -> None:
    bundle = make_bundle(busybox, tmp_path / "b", runtime.binary, ["sh", "-c", PROBE],
                         edit=_edit(PROFILE, nnp))
    rc, out, err = runtime.run_to_files(tmp_path, "run", "--bundle", str(bundle), "sc1")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("mkdir=") and "ermitted" in lines[0]  # EPERM
    assert lines[1] == "touch=ok"


def test_exec_gets_the_profile(runtime: Runtime, busybox: BuiltImage, tmp_path: Path) -> None:
    bundle = make_bundle(busybox, tmp_path / "b", runtime.binary, ["sleep", "300"],
                         edit=_edit(PROFILE))
    rc, _, err = runtime.run_to_files(tmp_path, "run", "-d", "--bundle", str(bundle), "sc2")
    assert rc == 0, err
    res = runtime.run("exec", "sc2", "sh", "-c", PROBE)
    assert "ermitted" in res.stdout.splitlines()[0], res.stdout + res.stderr


@pytest.mark.skipif(not PODMAN_PROFILE.exists(), reason="podman's seccomp.json not installed")
def test_an_engine_default_profile_runs_busybox(runtime: Runtime, busybox: BuiltImage,
                                                tmp_path: Path) -> None:
    """podman's default profile (what engines really send): everyday commands work, and
    what it forbids (here: unshare of a user namespace needs CAP_SYS_ADMIN) is refused."""
    raw = json.loads(PODMAN_PROFILE.read_text())
    profile = {k: v for k, v in raw.items() if k in ("defaultAction", "defaultErrnoRet",
                                                       "architectures", "syscalls", "flags")}
    if "archMap" in raw and "architectures" not in profile:
        # as an engine does: the host's entry of the map, with its sub-architectures
        native = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}[os.uname().machine]
        entry = next(a for a in raw["archMap"] if a["architecture"] == native)
        profile["architectures"] = [native, *entry.get("subArchitectures", [])]
    # keep only the rules that need no capability or only the ones the default spec grants
    rules = []
    for rule in raw["syscalls"]:
        caps = rule.get("includes", {}).get("caps")
        excl = rule.get("excludes", {}).get("caps")
        if caps or excl:
            continue
        rules.append({k: v for k, v in rule.items() if k not in ("includes", "excludes",
                                                                 "comment")})
    profile["syscalls"] = rules
    bundle = make_bundle(busybox, tmp_path / "b", runtime.binary,
                         ["sh", "-c", "ls / >/dev/null && echo ls=ok; "
                                      "cat /proc/self/status | grep -c Seccomp:.2"],
                         edit=_edit(profile))
    rc, out, err = runtime.run_to_files(tmp_path, "run", "--bundle", str(bundle), "sc3")
    assert rc == 0, err
    assert out.split() == ["ls=ok", "1"]
