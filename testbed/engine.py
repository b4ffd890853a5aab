"""The ``dockyard`` engine CLI as a subprocess on a throwaway engine root (for image tests), and
one with the offline busybox image loaded (for container tests)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

DOCKYARD = [sys.executable, "-m", "dockyard.cli.main"]


class Engine:
    def __init__(self, root: Path, config: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.root = root
        self.config = config
        self.env = dict(os.environ, **(env or {}))

    def run(self, *args: str, check: bool = True, stdin: str | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        cmd = [*DOCKYARD, "--root", str(self.root)]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        proc = subprocess.run([*cmd, *args], capture_output=True, text=True, input=stdin,
                              env=self.env, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"dockyard {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def blobs(self) -> set[str]:
        d = self.root / "content" / "blobs" / "sha256"
        return set(os.listdir(d)) if d.exists() else set()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    root = tmp_path / "root"
    yield Engine(root)




@contextlib.contextmanager
def loaded_engine(tmp_path: Path, settings: dict[str, object] | None = None, *,
                  env: dict[str, str] | None = None, name: str = "root") -> Iterator[Engine]:
    """An engine on a throwaway root with the offline busybox image loaded; every container
    goes at the end, so no process or mount outlives the test.

    cgroup-parent "": each container's cgroup sits below its supervisor's (the test's own), so
    nothing is left in the hierarchy once the container is gone.
    """
    from testbed import images as tb_images

    image = tb_images.busybox()
    assert image.docker_archive is not None
    config = tmp_path / f"{name}.json"
    config.write_text(json.dumps({"cgroup-parent": "", **(settings or {})}))
    e = Engine(tmp_path / name, config,
               env={"DOCKYARD_RUN_ROOT": str(tmp_path / "run"), **(env or {})})
    e.run("load", "-i", str(image.docker_archive))
    try:
        yield e
    finally:
        for cid in e.run("ps", "-aq", "--no-trunc", check=False).stdout.split():
            e.run("rm", "-f", cid, check=False)
        e.run("system", "teardown", check=False)    # the kept default bridge, nftables table


@pytest.fixture
def busybox_engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine with the offline busybox image loaded (see :func:`loaded_engine`)."""
    with loaded_engine(tmp_path) as e:
        yield e


def remove_container_cgroups(cid: str) -> None:
    """What a reboot does to a killed container's (empty) cgroups, in every hierarchy: they go.
    For tests that kill a container's processes by hand, behind the engine's back."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        for found in sorted(hierarchy.glob(f"**/{cid}"), reverse=True):
            try:
                found.rmdir()
            except OSError:
                pass
