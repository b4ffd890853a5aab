"""A dockerd of our own: Debian's docker.io daemon started by hand, isolated, stopped by PID.

Owns starting ``/usr/sbin/dockerd`` (20.10) with every piece of its state in a work directory,
without touching the host's network or ``/etc/docker``, and removing every trace of it after:
its containerd (dockerd starts and supervises one itself, as no ``--containerd`` is given), the
shims, the mounts and the cgroups.

Isolation, flag by flag:

- ``--data-root``, ``--exec-root``, ``--pidfile``, ``-H unix://<workdir>/docker.sock``, and
  ``--config-file`` naming our own daemon.json (never ``/etc/docker/daemon.json``), which also
  moves the trust key (``deprecated-key-path``) out of ``/etc/docker``;
- no network changes: ``--bridge=none --iptables=false --ip6tables=false --ip-masq=false
  --ip-forward=false`` (the last one keeps dockerd from writing ``net.ipv4.ip_forward``),
  ``--userland-proxy=false``; containers are run with ``--network none``;
- no systemd: ``--exec-opt native.cgroupdriver=cgroupfs``, and a ``--cgroup-parent`` of our
  own so this daemon's container cgroups are told apart from any other docker's;
- ``--add-runtime <name>=<path>`` for each extra OCI runtime (dockerd 20.10 syntax).

:func:`stop_dockerd` removes the containers, SIGTERMs dockerd by PID (SIGKILL after a timeout),
then makes sure no process mentioning the work directory is left (containerd, shims), unmounts
what is left below it (overlay2 rootfs, shm tmpfs, netns bind mounts, the data-root bind
mount dockerd makes), removes the cgroups it created and, if it created them and they are
empty, the shims' socket directory ``/run/containerd/s`` (hard-coded in containerd 1.6).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from testbed.podman import (
    cgroup_snapshot,
    processes_mentioning,
    remove_new_cgroups,
    unmount_under,
)

log = logging.getLogger(__name__)

DOCKERD_BIN = "/usr/sbin/dockerd"
#: The CLI that matches the daemon (docker.io 20.10); /usr/local/bin/docker is a newer one.
DOCKER_CLI = "/usr/bin/docker"
_LOG_TAIL_BYTES = 4000
#: containerd 1.6's shims put their sockets below here whatever containerd's own state dir is
#: (the path is compiled in); removed again, when empty, if a daemon of ours created it.
SHIM_SOCKET_DIRS = (Path("/run/containerd/s"), Path("/run/containerd"))

#: What keeps dockerd off the host's network (see the module docstring).
NO_NETWORK_FLAGS = ("--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
                    "--ip-forward=false", "--userland-proxy=false")

# Daemons we started, so stop_dockerd can reap them.
_children: dict[int, subprocess.Popen[bytes]] = {}


class DockerdError(RuntimeError):
    """dockerd could not be started, a docker command failed, or clean-up left something."""


@dataclass(frozen=True, slots=True)
class Dockerd:
    """A running dockerd: where its state lives and how to talk to it."""

    workdir: Path
    pid: int
    cgroup_parent: str  # e.g. "/dockyard-compat-1a2b3c4d"
    runtimes: Mapping[str, str]  # extra runtimes: name -> path
    env: Mapping[str, str] = field(repr=False)
    cgroups_before: frozenset[str] = field(repr=False, default=frozenset())
    #: which of SHIM_SOCKET_DIRS did not exist before this daemon started
    new_dirs: tuple[Path, ...] = field(repr=False, default=())

    @property
    def socket(self) -> Path:
        return self.workdir / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def data_root(self) -> Path:
        return self.workdir / "data"

    @property
    def exec_root(self) -> Path:
        return self.workdir / "exec"

    @property
    def log_path(self) -> Path:
        return self.workdir / "dockerd.log"

    def argv(self, *args: str, cli: str = DOCKER_CLI) -> list[str]:
        return [cli, "-H", self.host, *args]

    def run(
        self,
        *args: str,
        check: bool = False,
        timeout: float = 60,
        cli: str = DOCKER_CLI,
    ) -> subprocess.CompletedProcess[str]:
        """One docker CLI command against this daemon, output captured (the daemon and the
        shim hold the container's stdio, not the CLI, so pipes are safe)."""
        proc = subprocess.run(
            self.argv(*args, cli=cli),
            env=dict(self.env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise DockerdError(
                f"{' '.join(proc.args)} exited {proc.returncode}:\n{proc.stderr.strip()}"
            )
        return proc

    def load(self, docker_archive: Path) -> str:
        """``docker load -i``; returns the loaded image's name ("busybox:latest")."""
        out = self.run("load", "-q", "-i", str(docker_archive), check=True, timeout=120).stdout
        # "Loaded image: busybox:latest"
        return out.strip().splitlines()[-1].split(": ", 1)[-1].strip()

    def log_tail(self) -> str:
        return _tail(self.log_path)


def start_dockerd(
    workdir: Path | None = None,
    *,
    runtimes: Mapping[str, str] | None = None,
    timeout: float = 60,
    network_flags: Sequence[str] | None = None,
) -> Dockerd:
    """Starts dockerd with its state in ``workdir`` (a new temp dir by default); returns once
    ``GET /_ping`` answers. ``runtimes`` maps extra runtime names to binaries (--add-runtime).
    Raises DockerdError, with the tail of its log, if it exits or does not answer in time.
    ``network_flags`` replace the flags that keep dockerd off the host's network (a benchmark
    that gives it a bridge of its own: bench/network.py, which removes what it adds)."""
    if not os.path.exists(DOCKERD_BIN):
        raise DockerdError(f"{DOCKERD_BIN} not found (Debian package docker.io)")
    if workdir is None:
        # Short: the containerd and shim sockets live below it and AF_UNIX paths are limited.
        workdir = Path(tempfile.mkdtemp(prefix="dyd-", dir="/tmp"))
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    runtimes = dict(runtimes or {})
    cgroup_parent = f"/dockyard-compat-{secrets.token_hex(4)}"
    config = workdir / "daemon.json"
    config.write_text(json.dumps({"deprecated-key-path": str(workdir / "key.json")}) + "\n")
    (workdir / "cli").mkdir(exist_ok=True)
    argv = [
        DOCKERD_BIN,
        "--config-file", str(config),
        "--data-root", str(workdir / "data"),
        "--exec-root", str(workdir / "exec"),
        "--pidfile", str(workdir / "docker.pid"),
        "-H", f"unix://{workdir / 'docker.sock'}",
        *(NO_NETWORK_FLAGS if network_flags is None else network_flags),
        "--exec-opt", "native.cgroupdriver=cgroupfs",
        "--cgroup-parent", cgroup_parent,
        "--storage-driver", "overlay2",
        "--shutdown-timeout", "2",
        "--log-level", "debug",
    ]
    for name, path in sorted(runtimes.items()):
        argv += ["--add-runtime", f"{name}={path}"]
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("DOCKER_", "CONTAINERD_"))
    }
    cli_env = {**env, "DOCKER_CONFIG": str(workdir / "cli")}
    before = cgroup_snapshot()
    new_dirs = tuple(path for path in SHIM_SOCKET_DIRS if not path.exists())
    with open(workdir / "dockerd.log", "ab") as log_file:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env=env
        )
    _children[proc.pid] = proc
    daemon = Dockerd(workdir, proc.pid, cgroup_parent, runtimes, cli_env, before, new_dirs)
    try:
        _wait_ready(daemon, proc, timeout)
    except BaseException:
        with contextlib.suppress(DockerdError):
            stop_dockerd(daemon)
        raise
    return daemon


def _wait_ready(daemon: Dockerd, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    transport = httpx.HTTPTransport(uds=str(daemon.socket))
    with httpx.Client(transport=transport, base_url="http://docker", timeout=2.0) as client:
        while True:
            if proc.poll() is not None:
                raise DockerdError(
                    f"dockerd exited {proc.returncode} during startup; log tail:\n"
                    f"{daemon.log_tail()}"
                )
            if daemon.socket.exists():
                with contextlib.suppress(httpx.HTTPError):
                    if client.get("/_ping").status_code == 200:
                        return
            if time.monotonic() > deadline:
                raise DockerdError(
                    f"dockerd did not answer within {timeout:.0f}s; log tail:\n"
                    f"{daemon.log_tail()}"
                )
            time.sleep(0.1)


def stop_dockerd(daemon: Dockerd, *, timeout: float = 30) -> None:
    """Removes every container, stops dockerd by PID and removes every trace of it: its
    containerd and shims, mounts, cgroups and the work directory. Idempotent. Raises
    DockerdError, after doing all it can, if something had to be forced or could not go."""
    problems: list[str] = []
    proc = _children.get(daemon.pid)
    alive = proc.poll() is None if proc is not None else _is_our_dockerd(daemon)
    if alive:
        with contextlib.suppress(subprocess.TimeoutExpired):
            ids = daemon.run("ps", "-aq", timeout=timeout).stdout.split()
            if ids:
                removed = daemon.run("rm", "-f", *ids, timeout=timeout)
                if removed.returncode != 0:
                    problems.append(f"docker rm -f: {removed.stderr.strip()}")
        _terminate(daemon, proc, timeout)
    _children.pop(daemon.pid, None)
    problems += _kill_leftovers(daemon.workdir)
    problems += unmount_under(daemon.workdir)
    problems += remove_new_cgroups(
        daemon.cgroups_before, (daemon.cgroup_parent.strip("/"), "docker")
    )
    for path in daemon.new_dirs:  # deepest first; only if empty (another daemon may use it)
        with contextlib.suppress(OSError):
            path.rmdir()
    shutil.rmtree(daemon.workdir, ignore_errors=True)
    if daemon.workdir.exists():
        problems.append(f"could not remove {daemon.workdir}")
    if problems:
        raise DockerdError("dockerd clean-up: " + "; ".join(problems))


def _terminate(daemon: Dockerd, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(daemon.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(daemon, proc):
        if time.monotonic() > deadline:
            log.warning("dockerd pid %d ignored SIGTERM for %.0fs; killing", daemon.pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                os.kill(daemon.pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(0.05)
    if proc is not None:
        proc.wait()


def _alive(daemon: Dockerd, proc: subprocess.Popen[bytes] | None) -> bool:
    if proc is not None:
        return proc.poll() is None
    return _is_our_dockerd(daemon)


def _is_our_dockerd(daemon: Dockerd) -> bool:
    """Whether ``daemon.pid`` still names a dockerd serving this work directory (not a zombie
    and not a recycled PID)."""
    try:
        argv = Path(f"/proc/{daemon.pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{daemon.pid}/stat").read_text()
    except OSError:
        return False
    if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
        return False
    return argv.startswith(DOCKERD_BIN.encode()) and str(daemon.workdir).encode() in argv


def _kill_leftovers(workdir: Path, settle: float = 10.0) -> list[str]:
    """containerd and its shims name the work directory in their arguments; after dockerd's
    clean stop none should be left. Waits ``settle`` seconds for stragglers, then kills each
    remaining one by PID and reports it."""
    deadline = time.monotonic() + settle
    while True:
        left = list(processes_mentioning(str(workdir)))
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    problems = []
    for pid, argv in left:
        problems.append(f"left process {pid}: {' '.join(argv)[:200]}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return problems


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _LOG_TAIL_BYTES))
            return f.read().decode(errors="replace")
    except OSError:
        return ""
