"""What a container must not reach: the runtime's own binary and state through /proc while the
runtime is inside the container's namespaces (the CVE-2019-5736 class)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from testbed.bundles import make_bundle
from testbed.images import BuiltImage
from tests.integration.runtime.conftest import Runtime, reap_children

pytestmark = pytest.mark.integration

PROBE = ("if cat /proc/1/exe >/dev/null 2>&1; then echo exe=readable; else echo exe=denied; fi;"
         " if echo x >> /proc/1/exe 2>/dev/null; then echo exe=WRITTEN; else echo exe=ro; fi;"
         " if readlink /proc/1/fd/0 >/dev/null 2>&1 || readlink /proc/1/cwd >/dev/null 2>&1;"
         " then echo fd=followed; else echo fd=denied; fi")


def _sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_created_init_is_out_of_reach(runtime: Runtime, busybox: BuiltImage, tmp_path: Path
                                      ) -> None:
    """Between create and start the init is the runtime's own process (for dockyard-runc:
    the host's Python). A process exec'd into the created container must not be able to
    open its binary for writing nor look into its fds."""
    bundle = make_bundle(busybox, tmp_path / "b", runtime.binary, ["true"])
    host_python = os.path.realpath(sys.executable)
    before = _sha(host_python)
    assert runtime.run_to_files(tmp_path, "create", "--bundle", str(bundle), "sec1")[0] == 0
    try:
        res = runtime.run("exec", "sec1", "sh", "-c", PROBE)
        seen = dict(line.split("=") for line in res.stdout.split())
        assert seen["exe"] == "ro", res.stdout
        if runtime.name == "dockyard-runc":  # runc's init is a sealed memfd copy instead
            assert res.stdout.split()[0] == "exe=denied"
            assert seen["fd"] == "denied"
    finally:
        runtime.run("delete", "--force", "sec1")
        reap_children()
    assert _sha(host_python) == before


def test_state_dir_is_not_in_the_container(runtime: Runtime, busybox: BuiltImage,
                                           tmp_path: Path) -> None:
    bundle = make_bundle(busybox, tmp_path / "b", runtime.binary,
                         ["sh", "-c", f"ls {runtime.root} 2>&1; ls /proc/self/fd | wc -l"])
    rc, out, err = runtime.run_to_files(tmp_path, "run", "--bundle", str(bundle), "sec2")
    assert rc == 0, err
    assert "No such file" in out
    json.dumps(out)


def test_container_gets_its_own_session_keyring(runtime: Runtime, busybox: BuiltImage,
                                                tmp_path: Path) -> None:
    cid = f"keyring{os.getpid()}"
    bundle = make_bundle(busybox, tmp_path / "b", runtime.binary, ["sleep", "300"])
    assert runtime.run_to_files(tmp_path, "run", "-d", "--bundle", str(bundle), cid)[0] == 0
    try:
        assert f"_ses.{cid}" in Path("/proc/keys").read_text()
    finally:
        runtime.run("delete", "--force", cid)
        reap_children()
