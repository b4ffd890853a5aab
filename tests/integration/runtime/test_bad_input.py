"""Bad input: a clear one-line error, a non-zero exit, and nothing left behind (no state dir,
no cgroup, no mount, no process; the session's leak guard checks the last two)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testbed.bundles import make_bundle
from testbed.images import BuiltImage
from tests.integration.runtime.conftest import Runtime, reap_children

pytestmark = pytest.mark.integration


def _no_cgroup_named(name: str) -> bool:
    for base in Path("/sys/fs/cgroup").iterdir():
        if not base.is_dir():
            continue
        for dirpath, dirnames, _ in os.walk(base):
            if name in dirnames:
                return False
            if dirpath.count("/") > 8:
                dirnames.clear()
    return True


def _check_refused(runtime: Runtime, tmp_path: Path, bundle: Path, cid: str,
                   expect: str) -> None:
    rc, _, err = runtime.run_to_files(tmp_path, "create", "--bundle", str(bundle), cid)
    reap_children()
    assert rc != 0
    if runtime.name == "dockyard-runc":  # runc's wording differs; the outcome must not
        assert expect.lower() in err.lower(), err
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err
    assert runtime.run("list", "-q").stdout.split() == []
    if "/" not in cid:
        assert not (runtime.root / cid).exists()
    assert _no_cgroup_named(cid)


def _bundle(busybox: BuiltImage, tmp_path: Path, runtime: Runtime,
            edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    return make_bundle(busybox, tmp_path / "b", runtime.binary, ["true"], edit=edit)


def test_invalid_json(runtime: Runtime, busybox: BuiltImage, tmp_path: Path) -> None:
    bundle = _bundle(busybox, tmp_path, runtime)
    (bundle / "config.json").write_text("{not json")
    _check_refused(runtime, tmp_path, bundle, "bad-json", "json")


def test_unknown_namespace(runtime: Runtime, busybox: BuiltImage, tmp_path: Path) -> None:
    bundle = _bundle(busybox, tmp_path, runtime,
                     lambda c: c["linux"]["namespaces"].append({"type": "bogus"}))
    _check_refused(runtime, tmp_path, bundle, "bad-ns", "bogus")


def test_missing_rootfs(runtime: Runtime, busybox: BuiltImage, tmp_path: Path) -> None:
    bundle = _bundle(busybox, tmp_path, runtime,
                     lambda c: c["root"].update(path="no-such-rootfs"))
    _check_refused(runtime, tmp_path, bundle, "bad-root", "no-such-rootfs")


def test_id_with_slash(runtime: Runtime, busybox: BuiltImage, tmp_path: Path) -> None:
    bundle = _bundle(busybox, tmp_path, runtime)
    _check_refused(runtime, tmp_path, bundle, "a/b", "id")


def test_existing_id(runtime: Runtime, busybox: BuiltImage, tmp_path: Path) -> None:
    bundle = make_bundle(busybox, tmp_path / "b", runtime.binary, ["sleep", "300"])
    assert runtime.run_to_files(tmp_path, "create", "--bundle", str(bundle), "dup2")[0] == 0
    rc, _, err = runtime.run_to_files(tmp_path, "create", "--bundle", str(bundle), "dup2")
    assert rc != 0 and "exists" in err
    assert runtime.run("list", "-q").stdout.split() == ["dup2"]
    runtime.run("delete", "--force", "dup2", check=True)
    reap_children()


def test_mount_destination_with_dotdot(runtime: Runtime, busybox: BuiltImage, tmp_path: Path
                                       ) -> None:
    if runtime.name == "runc":
        pytest.skip("runc clamps the path inside the rootfs instead of refusing it")
    bundle = _bundle(busybox, tmp_path, runtime, lambda c: c["mounts"].append(
        {"destination": "/../../../escaped", "type": "tmpfs", "source": "tmpfs"}))
    _check_refused(runtime, tmp_path, bundle, "bad-dest", "..")


def test_mount_destination_through_escaping_symlink(runtime: Runtime, busybox: BuiltImage,
                                                    tmp_path: Path) -> None:
    """A symlink planted in the image that climbs out of the rootfs: refused by us; runc
    resolves it inside the rootfs. Either way nothing is mounted on the host's side."""
    host_target = tmp_path / "host-side"
    host_target.mkdir()
    bundle = _bundle(busybox, tmp_path, runtime, lambda c: c["mounts"].append(
        {"destination": "/evil/x", "type": "tmpfs", "source": "tmpfs"}))
    (bundle / "rootfs" / "evil").symlink_to("../../host-side")
    rc, _, err = runtime.run_to_files(tmp_path, "run", "--bundle", str(bundle), "esc")
    reap_children()
    assert not (host_target / "x").exists()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(host_target) not in mounts
    if runtime.name == "dockyard-runc":
        assert rc != 0
        assert "leads out of" in err
        assert len(err.strip().splitlines()) == 1, err
        assert runtime.run("list", "-q").stdout.split() == []
        assert _no_cgroup_named("esc")


def test_console_socket_without_terminal(runtime: Runtime, busybox: BuiltImage,
                                         tmp_path: Path) -> None:
    bundle = _bundle(busybox, tmp_path, runtime)
    sock = tmp_path / "nosock"
    rc, _, err = runtime.run_to_files(tmp_path, "create", "--bundle", str(bundle),
                                      "--console-socket", str(sock), "cs")
    reap_children()
    assert rc != 0
    assert runtime.run("list", "-q").stdout.split() == []
    json.dumps(err)


def _no_process_naming(cid: str) -> bool:
    """No process left whose command line names the container (a create, or its init
    still waiting for its parent)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if cid.encode() in cmdline.split(b"\0"):
            return False
    return True


def test_limit_the_cgroup_manager_refuses(runtime: Runtime, busybox: BuiltImage,
                                          tmp_path: Path) -> None:
    """dockyard-runc sets the limits while the init it has just cloned sets itself up: a
    limit refused then (here ``unified`` on a v1 host, or a knob v2 does not have) must take
    the init, the cgroup and the state directory with it."""
    bundle = _bundle(busybox, tmp_path, runtime, lambda c: c["linux"].setdefault(
        "resources", {}).update(unified={"memory.no_such_knob": "1"}))
    _check_refused(runtime, tmp_path, bundle, "bad-limit", "unified")
    assert _no_process_naming("bad-limit")


def test_init_fails_before_its_cgroup_is_complete(runtime: Runtime, busybox: BuiltImage,
                                                  tmp_path: Path) -> None:
    """The init fails (a bind mount without a source, before any cgroup mount) while
    dockyard-runc is still making the cgroup: its error is the one reported."""
    bundle = _bundle(busybox, tmp_path, runtime, lambda c: c["mounts"].insert(0, {
        "destination": "/mnt/x", "type": "bind", "source": str(tmp_path / "no-such-source"),
        "options": ["rbind"]}))
    _check_refused(runtime, tmp_path, bundle, "bad-bind", "/mnt/x")
    assert _no_process_naming("bad-bind")
