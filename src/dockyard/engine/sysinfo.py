"""What the engine says about itself: docker's ``GET /version`` and ``GET /info`` documents.

:func:`version` and :func:`info` return exactly the JSON that the Docker Engine API 1.44 returns
for those two calls (``types.Version`` and ``system.Info``), so ``dockyard version/info`` and a
future REST front end render the same data. Everything is read from the host when asked: the
package's metadata, ``/proc``, ``/etc/os-release``, the cgroup mounts, the engine's config and
database. The one thing written is the engine's ID, made once and kept in ``<root>/engine-id``
(docker keeps its own in ``/var/lib/docker/engine-id``).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shutil
import sys
import time
from typing import TYPE_CHECKING, Any

from dockyard.errors import DockyardError
from dockyard.values import value

if TYPE_CHECKING:
    from dockyard.engine.config import EngineConfig
    from dockyard.engine.containers import ContainerService

API_VERSION = "1.44"
MIN_API_VERSION = "1.24"
PLATFORM_NAME = "Dockyard Engine"
DEFAULT_RUNTIME = "dockyard"
# Other OCI runtimes that ``run --runtime NAME`` finds on PATH, listed when present.
OTHER_RUNTIMES = ("runc", "crun")
# Log drivers that ``run --log-driver`` accepts.
LOG_DRIVERS = ("json-file", "local", "none")
ENGINE_ID_FILE = "engine-id"


@value
class BuildInfo:
    """Where this Dockyard comes from (docker's version, git commit, Go version, build time)."""

    version: str
    git_commit: str          # short commit of the source tree, "" when unknown
    build_time: float        # seconds since the epoch, 0 when unknown
    python_version: str      # "Python 3.11.2": what "Go version" is for docker
    os: str                  # "linux"
    arch: str                # GOARCH: "amd64", "arm64"


def build_info() -> BuildInfo:
    """The package's version from its installed metadata; the commit from its source tree."""
    import importlib.metadata

    try:
        dist: importlib.metadata.Distribution | None = importlib.metadata.distribution("dockyard")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        version = dist.version
    else:
        from dockyard import __version__ as version
    return BuildInfo(version=version, git_commit=_git_commit(), build_time=_installed_at(dist),
                     python_version=f"Python {platform.python_version()}", os=sys.platform,
                     arch=go_arch())


def go_arch() -> str:
    """The machine as Go's GOARCH names it (docker's OS/Arch)."""
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "ppc64le": "ppc64le", "s390x": "s390x"}.get(machine, machine)


def _git_commit() -> str:
    """The short commit of the checkout this package runs from (an editable install), if any.

    Only a tree that is this package's own (``<top>/src/dockyard`` with ``<top>/.git``) counts,
    so a virtualenv that happens to sit inside another repository reports nothing.
    """
    import subprocess

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # .../dockyard
    top = os.path.dirname(os.path.dirname(package))
    if not os.path.exists(os.path.join(top, ".git")) or \
            not os.path.isfile(os.path.join(top, "src", "dockyard", "__init__.py")):
        return ""
    try:
        done = subprocess.run(["git", "-C", top, "rev-parse", "--short=7", "HEAD"],
                              capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _installed_at(dist: Any) -> float:
    """When the package was installed (its metadata file's mtime): our build time."""
    if dist is None:
        return 0.0
    for f in dist.files or ():
        if f.name == "METADATA":
            try:
                return os.stat(str(f.locate())).st_mtime
            except OSError:
                return 0.0
    return 0.0


def rfc3339(ts: float) -> str:
    """Go's time.RFC3339Nano as the daemon sends BuildTime ("" for an unknown time)."""
    if not ts:
        return ""
    t = _dt.datetime.fromtimestamp(ts, _dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond * 1000:09d}+00:00"


# --- GET /version -------------------------------------------------------------------------------


def version(build: BuildInfo | None = None) -> dict[str, Any]:
    """docker's ``GET /version`` body (``types.Version``) for this engine."""
    b = build or build_info()
    kernel = os.uname().release
    details = {"ApiVersion": API_VERSION, "Arch": b.arch, "BuildTime": rfc3339(b.build_time),
               "Experimental": "false", "GitCommit": b.git_commit, "GoVersion": b.python_version,
               "KernelVersion": kernel, "MinAPIVersion": MIN_API_VERSION, "Os": b.os}
    return {
        "Platform": {"Name": PLATFORM_NAME},
        "Components": [
            {"Name": "Engine", "Version": b.version, "Details": details},
            {"Name": "dockyard-runc", "Version": b.version,
             "Details": {"GitCommit": b.git_commit}},
        ],
        "Version": b.version,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": b.git_commit,
        "GoVersion": b.python_version,
        "Os": b.os,
        "Arch": b.arch,
        "KernelVersion": kernel,
        "BuildTime": rfc3339(b.build_time),
    }


# --- GET /info ----------------------------------------------------------------------------------


def info(svc: ContainerService, *, debug: bool = False, build: BuildInfo | None = None
         ) -> dict[str, Any]:
    """docker's ``GET /info`` body (``system.Info``) for the engine behind ``svc``."""
    b = build or build_info()
    config = svc.config
    containers = svc.containers()
    running = [c for c in containers if c.running]
    paused = sum(1 for c in running if _paused(svc, c))
    driver = svc.images.storage_driver
    cgroup_version = host_cgroup_version()
    insecure_cidrs, insecure_hosts, mirrors = _registry_settings(config)
    os_release = read_os_release()
    return {
        "ID": engine_id(config.root),
        "Containers": len(containers),
        "ContainersRunning": len(running) - paused,
        "ContainersPaused": paused,
        "ContainersStopped": len(containers) - len(running),
        "Images": len(svc.images.images()),
        "Driver": driver,
        "DriverStatus": _driver_status(driver, config.root),
        "Plugins": {"Volume": ["local"], "Network": ["host", "null"], "Authorization": None,
                    "Log": list(LOG_DRIVERS)},
        "MemoryLimit": True,
        "SwapLimit": _swap_limit(cgroup_version),
        "CpuCfsPeriod": True,
        "CpuCfsQuota": True,
        "CPUShares": True,
        "CPUSet": True,
        "PidsLimit": True,
        "IPv4Forwarding": _read_first("/proc/sys/net/ipv4/ip_forward") == "1",
        "Debug": debug,
        "NFd": _count_fds(),
        "OomKillDisable": cgroup_version == "1",
        "NGoroutines": _threads(),
        "SystemTime": _now_rfc3339(),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version,
        "NEventsListener": 0,
        "KernelVersion": os.uname().release,
        "OperatingSystem": os_release.get("PRETTY_NAME", "Linux"),
        "OSVersion": os_release.get("VERSION_ID", ""),
        "OSType": "linux",
        "Architecture": platform.machine(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "InsecureRegistryCIDRs": insecure_cidrs,
            "IndexConfigs": {
                "docker.io": {"Name": "docker.io", "Mirrors": mirrors, "Secure": True,
                              "Official": True},
                **{h: {"Name": h, "Mirrors": [], "Secure": False, "Official": False}
                   for h in insecure_hosts},
            },
            "Mirrors": mirrors,
        },
        "NCPU": len(os.sched_getaffinity(0)),
        "MemTotal": mem_total(),
        "GenericResources": None,
        "DockerRootDir": config.root,
        "HttpProxy": os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy") or "",
        "HttpsProxy": os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or "",
        "NoProxy": os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or "",
        "Name": os.uname().nodename,
        "Labels": [str(x) for x in config.settings.get("labels") or []],
        "ExperimentalBuild": False,
        "ServerVersion": b.version,
        "Runtimes": runtimes(),
        "DefaultRuntime": DEFAULT_RUNTIME,
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                  "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True,     # containers outlive every dockyard command
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": ""},
        "InitCommit": {"ID": ""},
        "SecurityOptions": _security_options(cgroup_version),
        "CDISpecDirs": [],
        "Warnings": None,
    }


def _paused(svc: ContainerService, c: Any) -> bool:
    try:
        return svc.paused(c)
    except (DockyardError, OSError):
        return False


def runtimes() -> dict[str, dict[str, str]]:
    """The runtimes ``run --runtime`` accepts by name: ours, and runc/crun where installed."""
    ours = os.path.join(os.path.dirname(sys.executable), "dockyard-runc")
    if not os.access(ours, os.X_OK):
        ours = shutil.which("dockyard-runc") or "dockyard-runc"
    out = {DEFAULT_RUNTIME: {"path": ours}}
    for name in OTHER_RUNTIMES:
        found = shutil.which(name)
        if found is not None:
            out[name] = {"path": found}
    return out


def host_cgroup_version() -> str:
    """ "2" on a pure cgroup v2 host (``/sys/fs/cgroup`` is cgroup2), else "1" (v1 or hybrid),
    as docker reports it."""
    from dockyard.cgroups.layout import cgroup_mounts

    try:
        mounts = cgroup_mounts()
    except OSError:
        return "1"
    at_root = [m for m in mounts if m.mountpoint == "/sys/fs/cgroup"]
    return "2" if at_root and at_root[-1].fstype == "cgroup2" else "1"


def read_os_release(path: str = "/etc/os-release") -> dict[str, str]:
    """``/etc/os-release`` as a dict (``/usr/lib/os-release`` when the first is missing)."""
    for candidate in (path, "/usr/lib/os-release"):
        try:
            with open(candidate, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        out: dict[str, str] = {}
        for line in text.splitlines():
            key, eq, val = line.strip().partition("=")
            if eq and key and not key.startswith("#"):
                val = val.strip()
                if len(val) >= 2 and val[0] == val[-1] and val[0] in "\"'":
                    val = val[1:-1]
                out[key] = val
        return out
    return {}


def mem_total() -> int:
    """Bytes of RAM (``MemTotal`` in ``/proc/meminfo``)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def engine_id(root: str) -> str:
    """This engine root's ID: a UUID made the first time it is asked for, then kept."""
    import uuid

    from dockyard.engine.config import recorded

    return recorded(root, ENGINE_ID_FILE, str(uuid.uuid4()))


def _registry_settings(config: EngineConfig) -> tuple[list[str], list[str], list[str]]:
    """(insecure CIDRs, insecure host names, mirrors) as the engine config sets them, on top of
    the loopback default (image/hosts.py)."""
    import ipaddress

    from dockyard.image.hosts import DEFAULT_INSECURE

    cidrs: list[str] = []
    hosts: list[str] = []
    for entry in (*DEFAULT_INSECURE, *(config.settings.get("insecure-registries") or [])):
        if "/" not in str(entry):
            hosts.append(str(entry))
            continue
        try:
            cidrs.append(str(ipaddress.ip_network(str(entry), strict=False)))
        except ValueError:
            continue        # the registry client refuses it with a clear message
    mirrors = [str(m) for m in config.settings.get("registry-mirrors") or []]
    return cidrs, hosts, mirrors


def _driver_status(driver: str, root: str) -> list[list[str]]:
    status = [["Backing Filesystem", _backing_fs(root)]]
    if driver == "overlay2":
        status += [["Supports d_type", "true"], ["Using metacopy", "false"],
                   ["Native Overlay Diff", "true"], ["userxattr", "false"]]
    return status


def _backing_fs(path: str) -> str:
    """The filesystem type under ``path`` (the longest mount point above it in mountinfo)."""
    path = os.path.realpath(path)
    best, fstype = "", "unknown"
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return fstype
    for line in lines:
        pre, sep, post = line.partition(" - ")
        fields = pre.split()
        if not sep or len(fields) < 5:
            continue
        mnt = fields[4].replace("\\040", " ")
        inside = path == mnt or path.startswith(mnt.rstrip("/") + "/")
        if inside and len(mnt) >= len(best):
            best, fstype = mnt, post.split()[0]
    return {"ext4": "extfs", "ext3": "extfs", "ext2": "extfs"}.get(fstype, fstype)


def _swap_limit(cgroup_version: str) -> bool:
    if cgroup_version == "2":
        return True
    return os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")


def _security_options(cgroup_version: str) -> list[str]:
    out = ["name=seccomp,profile=builtin"]
    if os.geteuid() != 0:
        out.append("name=rootless")
    if cgroup_version == "2":
        out.append("name=cgroupns")
    return out


def _read_first(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _count_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def _threads() -> int:
    import threading

    return threading.active_count()


def _now_rfc3339() -> str:
    ns = time.time_ns()
    t = _dt.datetime.fromtimestamp(ns // 1_000_000_000, _dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ns % 1_000_000_000:09d}Z"
