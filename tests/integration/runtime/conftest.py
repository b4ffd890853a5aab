"""The runtime suite takes the runtime binary as a parameter: every test runs against
dockyard-runc and against runc (when installed), which checks the tests themselves."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed import images

DOCKYARD_RUNC = str(Path(sys.executable).with_name("dockyard-runc"))


@dataclass(frozen=True)
class Runtime:
    name: str
    binary: str
    root: Path

    def cmd(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), *args]

    def run(
        self, *args: str, check: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """For verbs that do not hand their stdio to a container (state, list, kill, ...)."""
        return subprocess.run(
            self.cmd(*args), capture_output=True, text=True, check=check, timeout=timeout
        )

    def run_to_files(self, tmp: Path, *args: str, timeout: float = 60) -> tuple[int, str, str]:
        """For create/run: runc hands its stdio to the container, so a pipe would block until
        the container exits; files do not."""
        tag = uuid.uuid4().hex[:8]
        out, err = tmp / f"out-{tag}", tmp / f"err-{tag}"
        with open(out, "w") as o, open(err, "w") as e:
            rc = subprocess.run(
                self.cmd(*args),
                stdout=o,
                stderr=e,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            ).returncode
        return rc, out.read_text(), err.read_text()


def _runtimes() -> list[str]:
    return ["dockyard-runc", "runc"]


@pytest.fixture(params=_runtimes())
def runtime(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runtime]:
    name = request.param
    binary = DOCKYARD_RUNC if name == "dockyard-runc" else shutil.which(name)
    if binary is None:
        pytest.skip(f"{name} is not installed")
    root = tmp_path_factory.mktemp(f"{name}-root")
    rt = Runtime(name, binary, root)
    yield rt
    # Whatever a test left: force-delete it, by id, through the runtime itself.
    listing = rt.run("list", "-q")
    for cid in listing.stdout.split():
        rt.run("delete", "--force", cid)
    reap_children()


@pytest.fixture(scope="session")
def busybox() -> images.BuiltImage:
    return images.busybox()


def reap_children() -> None:
    """Container inits re-parent to the test process (a subreaper): collect the dead ones."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] != 0:
            pass


def wait_for_status(rt: Runtime, cid: str, want: str, timeout: float = 10) -> str:
    import json

    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        reap_children()
        res = rt.run("state", cid)
        if res.returncode == 0:
            status = json.loads(res.stdout)["status"]
            if status == want:
                return status
        time.sleep(0.05)
    return status
