"""A podman of our own: isolated storage and configuration, for compat tests and benchmarks.

Owns running Debian's podman (4.3) against a work directory instead of the machine's
``/var/lib/containers`` and ``/etc/containers``, and removing every trace of it afterwards.
Nothing on the host is configured: podman reads its configuration from the files named by
``CONTAINERS_CONF``, ``CONTAINERS_STORAGE_CONF`` and ``CONTAINERS_REGISTRIES_CONF``, which point
into the work directory, and every command also gets ``--root``/``--runroot``/``--tmpdir``.

What it took on this machine (shared/ANCHORS.md): no systemd, so ``cgroup_manager = cgroupfs``
and ``events_logger = file``; no ``CAP_SYS_RESOURCE``, so ``default_ulimits`` at the host's hard
limits; no network, so ``netns = none`` (no CNI bridge, no iptables); file locks under the work
directory instead of the shared ``/dev/shm/libpod_lock``; ``skip_mount_home`` so the overlay
driver does not bind-mount its home onto itself.

Layout of a work directory::

    containers.conf  storage.conf  registries.conf
    root/            graphroot (images, layers, the libpod database, volumes)
    runroot/         storage's runroot (per-container userdata, /dev/shm tmpfs mounts)
    tmp/             libpod's tmp_dir (locks, events log, exit files)
    networks/        network_config_dir (stays empty: netns = none)

:func:`remove_podman` stops and removes every container, unmounts whatever podman left
mounted under the work directory (overlay rootfs, shm tmpfs), removes the cgroups podman's
cgroupfs manager created (``libpod_parent/...``) and deletes the work directory.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

PODMAN_BIN = "/usr/bin/podman"
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: The cgroup parent podman's cgroupfs manager uses when a container names none.
DEFAULT_CGROUP_PARENT = "libpod_parent"
#: The overlay driver's options. skip_mount_home: no bind mount of the driver's home onto itself.
STORAGE_OPTS = ("overlay.mountopt=nodev", "overlay.skip_mount_home=true")


class PodmanError(RuntimeError):
    """podman could not be set up, a podman command failed, or its clean-up left something."""


@dataclass(frozen=True, slots=True)
class Podman:
    """One isolated podman: its work directory and the environment its commands need."""

    workdir: Path
    env: Mapping[str, str] = field(repr=False)
    #: cgroup directories (relative to each hierarchy) that existed before this podman ran,
    #: so clean-up removes only the ones it created.
    cgroups_before: frozenset[str] = field(repr=False, default=frozenset())

    @property
    def root(self) -> Path:
        return self.workdir / "root"

    @property
    def runroot(self) -> Path:
        return self.workdir / "runroot"

    @property
    def tmpdir(self) -> Path:
        return self.workdir / "tmp"

    def argv(self, *args: str, runtime: str | None = None) -> list[str]:
        """``podman`` with this instance's global flags, then ``args``."""
        flags = [
            PODMAN_BIN,
            "--root", str(self.root),
            "--runroot", str(self.runroot),
            "--tmpdir", str(self.tmpdir),
            # With --root, podman drops storage.conf's driver options: repeat them here.
            "--storage-driver", "overlay",
            *(f"--storage-opt={opt}" for opt in STORAGE_OPTS),
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "file",
        ]
        if runtime is not None:
            flags += ["--runtime", runtime]
        return [*flags, *args]

    def run(
        self,
        *args: str,
        runtime: str | None = None,
        check: bool = False,
        timeout: float = 60,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Runs one podman command, capturing its output (podman holds no container's stdio
        open after it returns: conmon does, so pipes are safe here, unlike with ``runc``)."""
        proc = subprocess.run(
            self.argv(*args, runtime=runtime),
            env=dict(self.env),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise PodmanError(
                f"{' '.join(proc.args)} exited {proc.returncode}:\n{proc.stderr.strip()}"
            )
        return proc

    def load(self, docker_archive: Path) -> str:
        """``podman load -i`` a docker archive; returns the name podman gave the image."""
        out = self.run("load", "-q", "-i", str(docker_archive), check=True, timeout=120).stdout
        # "Loaded image: docker.io/library/busybox:latest" (or "Loaded image(s): ...")
        name = out.strip().splitlines()[-1].split(": ", 1)[-1].split(",")[0]
        return name.strip()


def hard_limit(which: int) -> int:
    """The host's hard rlimit, with infinity as podman spells it (-1)."""
    hard = resource.getrlimit(which)[1]
    return -1 if hard == resource.RLIM_INFINITY else hard


def nproc_limit() -> int:
    """The highest RLIMIT_NPROC a container can get from podman here: podman lowers its own
    limit to ``kernel.pid_max`` at start, so anything above that fails with EPERM in the
    runtime ("error setting rlimit type 6") even when it is within the host's hard limit."""
    hard = hard_limit(resource.RLIMIT_NPROC)
    try:
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return hard
    return pid_max if hard < 0 else min(hard, pid_max)


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _write_configs(workdir: Path, insecure_registries: Sequence[str]) -> dict[str, str]:
    nofile = hard_limit(resource.RLIMIT_NOFILE)
    nproc = nproc_limit()
    q = _toml_string
    (workdir / "containers.conf").write_text(
        "[containers]\n"
        'netns = "none"\n'
        f"default_ulimits = [{q(f'nofile={nofile}:{nofile}')}, {q(f'nproc={nproc}:{nproc}')}]\n"
        'log_driver = "k8s-file"\n'
        "\n[engine]\n"
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f"events_logfile_path = {q(str(workdir / 'tmp' / 'events.log'))}\n"
        f"tmp_dir = {q(str(workdir / 'tmp'))}\n"
        f"static_dir = {q(str(workdir / 'root' / 'libpod'))}\n"
        f"volume_path = {q(str(workdir / 'root' / 'volumes'))}\n"
        'lock_type = "file"\n'
        'runtime = "runc"\n'
        "\n[network]\n"
        f"network_config_dir = {q(str(workdir / 'networks'))}\n"
    )
    (workdir / "storage.conf").write_text(
        "[storage]\n"
        'driver = "overlay"\n'
        f"graphroot = {q(str(workdir / 'root'))}\n"
        f"runroot = {q(str(workdir / 'runroot'))}\n"
        "\n[storage.options.overlay]\n"
        + "".join(f'{key.split(".", 1)[1]} = {q(value)}\n'
                  for key, value in (opt.split("=", 1) for opt in STORAGE_OPTS))
    )
    registries = 'unqualified-search-registries = []\nshort-name-mode = "disabled"\n'
    for host in insecure_registries:
        registries += f"\n[[registry]]\nlocation = {q(host)}\ninsecure = true\n"
    (workdir / "registries.conf").write_text(registries)
    (workdir / "auth.json").write_text('{"auths": {}}\n')
    for sub in ("root", "runroot", "tmp", "networks"):
        (workdir / sub).mkdir(exist_ok=True)
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("CONTAINERS_", "XDG_", "REGISTRY_AUTH_FILE"))
    }
    env.update(
        CONTAINERS_CONF=str(workdir / "containers.conf"),
        CONTAINERS_STORAGE_CONF=str(workdir / "storage.conf"),
        CONTAINERS_REGISTRIES_CONF=str(workdir / "registries.conf"),
        REGISTRY_AUTH_FILE=str(workdir / "auth.json"),
    )
    return env


def start_podman(workdir: Path | None = None, *, insecure_registries: Sequence[str] = ()) -> Podman:
    """Writes the configuration into ``workdir`` (a new temp dir by default) and checks that
    podman answers with it. ``insecure_registries`` ("127.0.0.1:PORT") may be plain HTTP."""
    if not os.path.exists(PODMAN_BIN):
        raise PodmanError(f"{PODMAN_BIN} not found (Debian package podman; run bench/setup)")
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="dockyard-podman-"))
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    podman = Podman(workdir, _write_configs(workdir, insecure_registries), _cgroup_dirs())
    try:
        info = podman.run("info", "--format", "{{.Store.GraphRoot}}", check=True)
    except BaseException:
        remove_podman(podman)
        raise
    if Path(info.stdout.strip()) != podman.root:
        remove_podman(podman)
        raise PodmanError(f"podman ignored its config: graphroot is {info.stdout.strip()!r}")
    return podman


def remove_podman(podman: Podman, *, timeout: float = 60) -> None:
    """Removes every container, mount, cgroup and file of ``podman``. Raises PodmanError,
    after doing all it can, if something could not be removed."""
    problems: list[str] = []
    if podman.root.is_dir():
        # -t 0: busybox's sh or sleep as PID 1 ignores SIGTERM; waiting 10 s for nothing.
        for args in (("rm", "--all", "--force", "--time", "0"), ("unmount", "--all", "--force")):
            try:
                proc = podman.run(*args, timeout=timeout)
            except subprocess.TimeoutExpired:
                problems.append(f"podman {' '.join(args)} timed out")
                continue
            if proc.returncode != 0:
                problems.append(f"podman {' '.join(args)}: {proc.stderr.strip()}")
    problems += _kill_conmons(podman.workdir)
    problems += unmount_under(podman.workdir)
    problems += remove_new_cgroups(podman.cgroups_before, (DEFAULT_CGROUP_PARENT,))
    shutil.rmtree(podman.workdir, ignore_errors=True)
    if podman.workdir.exists():
        problems.append(f"could not remove {podman.workdir}")
    if problems:
        raise PodmanError("podman clean-up: " + "; ".join(problems))


# --------------------------------------------------------------------------- shared clean-up


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``, deepest first, from /proc/self/mountinfo."""
    prefix = str(path)
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape_mountinfo(line.split()[4])
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def _unescape_mountinfo(field_: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal
    if "\\" not in field_:
        return field_
    out = bytearray()
    raw = field_.encode()
    i = 0
    while i < len(raw):
        if raw[i : i + 1] == b"\\" and raw[i + 1 : i + 4].isdigit():
            out.append(int(raw[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return out.decode(errors="surrogateescape")


def unmount_under(path: Path) -> list[str]:
    """Unmounts everything at or below ``path`` (deepest first, lazily if busy); returns what
    could not be unmounted."""
    left = []
    for _attempt in range(3):
        points = mounts_under(path)
        if not points:
            return []
        for point in points:
            log.warning("unmounting leftover %s", point)
            proc = subprocess.run(["umount", point], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        left = mounts_under(path)
    return [f"still mounted: {point}" for point in left]


def _cgroup_dirs() -> frozenset[str]:
    """Every cgroup directory of every hierarchy, as '<hierarchy>/<relative path>'."""
    out: set[str] = set()
    if not CGROUP_ROOT.is_dir():
        return frozenset()
    for hierarchy in CGROUP_ROOT.iterdir():
        if not hierarchy.is_dir() or hierarchy.is_symlink():
            continue
        for dirpath, _dirs, _files in os.walk(hierarchy):
            out.add(os.path.relpath(dirpath, CGROUP_ROOT))
    return frozenset(out)


def cgroup_snapshot() -> frozenset[str]:
    return _cgroup_dirs()


def remove_new_cgroups(before: frozenset[str], names: Sequence[str]) -> list[str]:
    """Removes cgroup directories that did not exist in ``before`` and lie below a component
    named in ``names`` (e.g. ``libpod_parent``, ``docker``), deepest first. A cgroup that still
    has processes cannot be removed (EBUSY) and is reported."""
    wanted = set(names)
    new = [
        rel for rel in _cgroup_dirs() - before
        if wanted & set(Path(rel).parts[1:])
    ]
    problems = []
    for rel in sorted(new, key=lambda r: r.count("/"), reverse=True):
        try:
            os.rmdir(CGROUP_ROOT / rel)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if exc.errno == errno.ENOTEMPTY:
                continue  # a child we could not remove is already reported
            problems.append(f"cannot remove cgroup {rel}: {exc.strerror}")
    return problems


def _kill_conmons(workdir: Path) -> list[str]:
    """conmon processes whose arguments name ``workdir``: they should be gone after ``rm -af``.
    Kills the ones that are not (by PID) and reports them."""
    problems = []
    for pid, argv in processes_mentioning(str(workdir)):
        problems.append(f"left process {pid}: {' '.join(argv)[:200]}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    return problems


def processes_mentioning(text: str) -> list[tuple[int, list[str]]]:
    """Live (not zombie) processes other than this one whose command line contains ``text``:
    with a unique work directory in it, the processes an engine we started left running."""
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X") and text.encode() in raw:
            argv = [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]
            found.append((int(entry.name), argv))
    return found
