"""Real engines driving an OCI runtime: podman and dockerd, each isolated from the machine's own
storage, configuration and network (testbed.podman, testbed.dockerd), run against runc (which
checks the tests themselves) and against dockyard-runc.

Fixtures:
    podman          session-scoped isolated podman with the busybox image loaded
    dockerd         session-scoped dockerd with ``--add-runtime dockyard=<dockyard-runc>``
    runtime         the OCI runtime under test (parametrise with :func:`runtime_params`)

``DOCKYARD_COMPAT_TRACE=<dir>`` puts a wrapper with the runtime's own file name in front of each
runtime; it appends every argv the engines use to ``<dir>/<runtime>.argv`` (the wrapper's
``sh`` start then shows up in timings). ``DOCKYARD_COMPAT_NO_XFAIL=1`` drops the xfail marks of
the dockyard-runc cases, to see how they fail today.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed import images
from testbed.dockerd import Dockerd, DockerdError, start_dockerd, stop_dockerd
from testbed.podman import Podman, PodmanError, remove_podman, start_podman

DOCKYARD_RUNC = str(Path(sys.executable).with_name("dockyard-runc"))
RUNC = shutil.which("runc") or "/usr/sbin/runc"
#: dockerd's name for dockyard-runc (--add-runtime dockyard=<path>).
DOCKER_DOCKYARD = "dockyard"
TRACE_ENV = "DOCKYARD_COMPAT_TRACE"
#: Set to run the dockyard-runc cases without their xfail marks, to see how they fail today.
NO_XFAIL_ENV = "DOCKYARD_COMPAT_NO_XFAIL"
CGROUP_ROOT = Path("/sys/fs/cgroup")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "compat: drives Dockyard with real clients someone else wrote (podman, dockerd)"
    )


@dataclass(frozen=True, slots=True)
class RuntimeUnderTest:
    """One OCI runtime as each engine names it."""

    name: str  # "runc" or "dockyard-runc"
    path: str  # for podman --runtime (maybe a tracing wrapper with the same file name)
    docker_name: str  # for docker run --runtime

    @property
    def is_dockyard(self) -> bool:
        return self.name == "dockyard-runc"


def runtime_params(dockyard_xfail: str | None) -> list[object]:
    """``[runc, dockyard-runc]`` for ``@pytest.mark.parametrize("runtime", ..., indirect=True)``;
    with ``dockyard_xfail`` the dockyard-runc case is a strict xfail for that reason, so it turns
    into a failure (remove the mark!) the moment the feature lands."""
    dockyard: object = "dockyard-runc"
    if dockyard_xfail is not None and not os.environ.get(NO_XFAIL_ENV):
        dockyard = pytest.param(
            "dockyard-runc", marks=pytest.mark.xfail(strict=True, reason=dockyard_xfail)
        )
    return ["runc", dockyard]


def _traced(trace_dir: Path, real: str) -> str:
    """A wrapper named like ``real`` that logs its argv and execs ``real``: engines decide
    things by the runtime's file name (podman's runtime_supports_json), so keep it."""
    name = Path(real).name
    wrapper_dir = trace_dir / f"bin-{name}"
    wrapper_dir.mkdir(parents=True, exist_ok=True)
    wrapper = wrapper_dir / name
    log = trace_dir / f"{name}.argv"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'{{ printf %s "$0"; for a in "$@"; do printf " %s" "$a"; done; echo; }} >> {shlex.quote(str(log))}\n'  # noqa: E501
        f'exec {shlex.quote(real)} "$@"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.fixture(scope="session")
def runtime_paths() -> Mapping[str, str]:
    """name -> binary; tracing wrappers when DOCKYARD_COMPAT_TRACE is set."""
    real = {"runc": RUNC, "dockyard-runc": DOCKYARD_RUNC}
    trace = os.environ.get(TRACE_ENV)
    if not trace:
        return real
    return {name: _traced(Path(trace).resolve(), path) for name, path in real.items()}


@pytest.fixture
def runtime(request: pytest.FixtureRequest, runtime_paths: Mapping[str, str]) -> RuntimeUnderTest:
    name: str = request.param
    if not os.path.exists(runtime_paths[name]):
        pytest.skip(f"{name} is not installed")
    traced = bool(os.environ.get(TRACE_ENV))
    docker_name = DOCKER_DOCKYARD if name == "dockyard-runc" else "runc"
    if traced and name == "runc":
        docker_name = "traced-runc"
    return RuntimeUnderTest(name, runtime_paths[name], docker_name)


@pytest.fixture(scope="session")
def busybox() -> images.BuiltImage:
    return images.busybox()


# --------------------------------------------------------------------------- podman


@dataclass(frozen=True, slots=True)
class PodmanEnv:
    podman: Podman
    image: str  # the loaded busybox, as podman names it


@pytest.fixture(scope="session")
def podman_session(busybox: images.BuiltImage) -> Iterator[PodmanEnv]:
    if os.geteuid() != 0:
        pytest.skip("podman compat tests need root")
    if not os.path.exists("/usr/bin/podman") or not os.path.exists("/usr/bin/conmon"):
        pytest.skip("podman/conmon not installed (run bench/setup)")
    podman = start_podman()
    try:
        assert busybox.docker_archive is not None
        image = podman.load(busybox.docker_archive)
        yield PodmanEnv(podman, image)
    finally:
        remove_podman(podman)


@pytest.fixture
def podman(podman_session: PodmanEnv) -> Iterator[PodmanEnv]:
    """The session's podman; every container a test left is removed after it."""
    yield podman_session
    left = podman_session.podman.run("rm", "--all", "--force", "--time", "0", timeout=120)
    if left.returncode != 0:
        raise PodmanError(f"podman rm -af after the test: {left.stderr.strip()}")


# --------------------------------------------------------------------------- dockerd


@dataclass(frozen=True, slots=True)
class DockerEnv:
    dockerd: Dockerd
    image: str


@pytest.fixture(scope="session")
def dockerd_session(
    busybox: images.BuiltImage, runtime_paths: Mapping[str, str]
) -> Iterator[DockerEnv]:
    if os.geteuid() != 0:
        pytest.skip("dockerd compat tests need root")
    if not os.path.exists("/usr/sbin/dockerd"):
        pytest.skip("dockerd not installed (Debian package docker.io; run bench/setup)")
    runtimes = {DOCKER_DOCKYARD: runtime_paths["dockyard-runc"]}
    if os.environ.get(TRACE_ENV):
        runtimes["traced-runc"] = runtime_paths["runc"]
    daemon = start_dockerd(runtimes=runtimes)
    try:
        assert busybox.docker_archive is not None
        image = daemon.load(busybox.docker_archive)
        yield DockerEnv(daemon, image)
    finally:
        stop_dockerd(daemon)


@pytest.fixture
def docker(dockerd_session: DockerEnv) -> Iterator[DockerEnv]:
    """The session's dockerd; every container a test left is removed after it."""
    yield dockerd_session
    daemon = dockerd_session.dockerd
    ids = daemon.run("ps", "-aq", check=True).stdout.split()
    if ids:
        left = daemon.run("rm", "-f", *ids, timeout=120)
        if left.returncode != 0:
            raise DockerdError(f"docker rm -f after the test: {left.stderr.strip()}")


# --------------------------------------------------------------------------- helpers


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{time.monotonic_ns() % 10**9}"


def cgroup_value(pid: int, controller: str, filename: str) -> str:
    """``filename`` of ``pid``'s v1 ``controller`` cgroup, read on the host. Fails with the
    cgroup's path when the file is missing: the root cgroup has no limit files, so a runtime
    that created no cgroup leaves the process where the file is not."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            file = CGROUP_ROOT / controller / path.lstrip("/") / filename
            try:
                return file.read_text().strip()
            except FileNotFoundError:
                raise AssertionError(
                    f"pid {pid} is in {controller} cgroup {path!r}, which has no {filename}"
                ) from None
    raise AssertionError(f"pid {pid} has no {controller} cgroup")


def cgroup_path(pid: int, controller: str) -> str:
    """``pid``'s cgroup in a v1 ``controller``, for assertion messages."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return "?"


@dataclass(frozen=True, slots=True)
class PtyResult:
    returncode: int | None  # None: still running at the deadline (then killed)
    output: str


def run_in_pty(
    argv: Sequence[str],
    env: Mapping[str, str],
    steps: Sequence[tuple[str, str]],
    timeout: float = 60,
) -> PtyResult:
    """Runs ``argv`` with a new pseudo-terminal as its controlling tty and stdio, then for each
    ``(wait_for, send)``: waits until ``wait_for`` appears in the output (after the previous
    step's match), then types ``send``. Returns the exit status and everything it printed."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))

    # setsid --ctty: a new session whose controlling terminal is the pty (stdin), as a
    # terminal emulator would give; it does not fork, so proc.pid is the engine's CLI.
    proc = subprocess.Popen(
        ["setsid", "--ctty", *argv], stdin=slave, stdout=slave, stderr=slave, env=dict(env),
        close_fds=True,
    )
    os.close(slave)
    output = b""
    seen = 0
    deadline = time.monotonic() + timeout
    pending = list(steps)
    try:
        while time.monotonic() < deadline:
            if pending:
                want, send = pending[0]
                at = output.find(want.encode(), seen)
                if at >= 0:
                    seen = at + len(want)
                    os.write(master, send.encode())
                    pending.pop(0)
                    continue
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError as exc:  # EIO: every holder of the slave side is gone
                    if exc.errno != errno.EIO:
                        raise
                    chunk = b""
                if not chunk:
                    break
                output += chunk
            elif proc.poll() is not None and not pending:
                break
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.1, deadline - time.monotonic()))
        rc = proc.poll()
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # its own session and process group
            proc.wait()
        os.close(master)
    return PtyResult(rc, output.decode(errors="replace"))
