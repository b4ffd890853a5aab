"""docker's ``run`` options plus an image's config, turned into an OCI runtime spec (config.json)
the way moby v28 builds one (``daemon/oci_linux.go``, ``daemon/pkg/oci/defaults.go``,
``daemon/commit.go:merge``, ``moby/profiles/seccomp``).

Pure logic: what depends on the host (users in the rootfs, device nodes, the kernel's
capabilities, sysctls, /dev for ``--privileged``) comes in through small callables, each with a
real implementation here (:func:`rootfs_user_lookup`, :func:`stat_device`, ...).
"""

from __future__ import annotations

import os
import posixpath
import socket
import stat as _stat
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from dockyard.engine.runopts import DeviceMapping, SecurityOptions, Ulimit, parse_stop_signal
from dockyard.errors import DockyardError, InvalidArgument, NotFound
from dockyard.model.image import ContainerConfig, ImageConfig
from dockyard.values import field, value

DEFAULT_PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
# where docker bind-mounts its docker-init for --init (moby: daemon/oci_linux.go)
INIT_DESTINATION = "/sbin/docker-init"

DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)

DEFAULT_MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
DEFAULT_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# moby's DefaultLinuxSpec: deny everything, allow the devices every container gets, and deny
# /dev/fuse explicitly (runc would otherwise allow it through its own defaults).
DEFAULT_DEVICE_RULES: tuple[dict[str, Any], ...] = (
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
    {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
)

_SYSCTLS_FOR_PRIVATE_NET = (
    ("net.ipv4.ping_group_range", "0 2147483647"),   # ICMP echo sockets without CAP_NET_RAW
    ("net.ipv4.ip_unprivileged_port_start", "0"),    # ports < 1024 without NET_BIND_SERVICE
)

# The version docker and podman write into the specs they generate: every runc-compatible
# runtime accepts it (crun 1.8 refuses "1.3.0", dockyard-runc's own version), and what we
# generate uses nothing newer.
ENGINE_SPEC_VERSION = "1.0.2-dev"


# --- inputs -------------------------------------------------------------------------------


@value
class BindMount:
    """A bind mount the engine adds (volumes, /etc/hosts, ...): docker's container.Mount."""

    source: str
    destination: str
    writable: bool = True
    propagation: str = "rprivate"
    non_recursive: bool = False


@value
class RunOptions:
    """What ``docker run`` was asked, already parsed by :mod:`dockyard.engine.runopts`.

    ``entrypoint``: None keeps the image's; ``("",)`` (``--entrypoint ""``) clears it.
    ``env``: ``--env-file`` lines then ``-e`` values, in order; a bare ``K`` unsets K.
    ``network``: "default"/"bridge" (a private network namespace), "none", "host", a network's
    name, or "container:<id>" (another container's namespace, joined at start: engine/netjoin).
    ``oom_kill_disable``: docker sends False, and drops it where cgroup v2 cannot honour it.
    """

    command: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    workdir: str = ""
    user: str = ""
    hostname: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    read_only: bool = False
    tmpfs: tuple[tuple[str, str], ...] = ()
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    security: SecurityOptions = field(default_factory=SecurityOptions)
    devices: tuple[DeviceMapping, ...] = ()
    shm_size: int = 0
    ulimits: tuple[Ulimit, ...] = ()
    memory: int = 0
    memory_swap: int = 0
    memory_reservation: int = 0
    oom_kill_disable: bool | None = False
    nano_cpus: int = 0
    cpu_shares: int = 0
    cpu_period: int = 0
    cpu_quota: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    pids_limit: int | None = None
    oom_score_adj: int = 0
    stop_signal: str = ""
    network: str = "default"
    init: bool = False
    tty: bool = False
    stdin_open: bool = False
    console_size: tuple[int, int] | None = None    # (height, width), as docker's ConsoleSize
    sysctls: Mapping[str, str] = field(default_factory=dict)


@value
class ExecUser:
    uid: int
    gid: int
    sgids: tuple[int, ...] = ()
    home: str = ""


class UserLookup(Protocol):
    def __call__(self, spec: str) -> ExecUser: ...


@value
class DeviceInfo:
    """What ``stat`` says about a device node (containerd's DeviceFromPath)."""

    type: str          # "c", "b" or "p"
    major: int
    minor: int
    file_mode: int     # permission bits
    uid: int
    gid: int


StatDevice = Callable[[str], "DeviceInfo | None"]


# --- docker's config merge ----------------------------------------------------------------


@value
class MergedConfig:
    """The container's Config after docker merged the image's into it (what inspect shows)."""

    path: str
    args: tuple[str, ...]
    entrypoint: tuple[str, ...] | None
    cmd: tuple[str, ...] | None
    env: tuple[str, ...]
    working_dir: str
    user: str
    hostname: str
    labels: Mapping[str, str]
    stop_signal: str


def merge_config(image: ContainerConfig | ImageConfig | None, opts: RunOptions, *,
                 container_id: str,
                 host_hostname: Callable[[], str] = socket.gethostname) -> MergedConfig:
    """moby's ``merge`` + ``mergeAndVerifyConfig`` + ``getEntrypointAndArgs``."""
    img = image.config if isinstance(image, ImageConfig) else (image or ContainerConfig())
    user = opts.user or img.user
    env = list(opts.env)
    if env:
        keys = {e.partition("=")[0] for e in env}
        env += [e for e in img.env if e.partition("=")[0] not in keys]
    else:
        env = list(img.env)
    labels = dict(img.labels)
    labels.update(opts.labels)
    entrypoint = opts.entrypoint
    cmd: tuple[str, ...] | None = opts.command or None
    if not entrypoint:
        if not cmd:
            cmd = img.cmd
        if entrypoint is None:
            entrypoint = img.entrypoint
    if entrypoint == ("",):
        entrypoint = None
    if not entrypoint and not cmd:
        raise InvalidArgument("no command specified")
    if entrypoint:
        path, args = entrypoint[0], (*entrypoint[1:], *(cmd or ()))
    else:
        assert cmd
        path, args = cmd[0], tuple(cmd[1:])
    workdir = opts.workdir or img.working_dir
    if workdir:
        if not workdir.startswith("/"):
            raise InvalidArgument(f"the working directory '{workdir}' is invalid, it needs to "
                                  "be an absolute path")
        workdir = posixpath.normpath(workdir)
        if workdir.startswith("//"):
            workdir = workdir[1:]
    hostname = opts.hostname
    if not hostname:
        hostname = host_hostname() if opts.network == "host" else container_id[:12]
    return MergedConfig(path=path, args=args, entrypoint=entrypoint, cmd=cmd, env=tuple(env),
                        working_dir=workdir, user=user, hostname=hostname, labels=labels,
                        stop_signal=opts.stop_signal or img.stop_signal)


def daemon_environment(env: Sequence[str], hostname: str, tty: bool) -> list[str]:
    """moby's CreateDaemonEnvironment: PATH, HOSTNAME, TERM first, then the container's env
    replacing those by key or appended; a bare ``K`` removes K."""
    out = [f"PATH={DEFAULT_PATH_ENV}", f"HOSTNAME={hostname}"]
    if tty:
        out.append("TERM=xterm")
    index = {e.partition("=")[0]: i for i, e in enumerate(out)}
    removed: set[int] = set()
    for item in env:
        key, sep, _ = item.partition("=")
        if not sep:
            if item in index:
                removed.add(index[item])
            continue
        if key in index:
            out[index[key]] = item
            removed.discard(index[key])
        else:
            index[key] = len(out)
            out.append(item)
    return [e for i, e in enumerate(out) if i not in removed]


# --- capabilities -------------------------------------------------------------------------


def known_capabilities() -> tuple[str, ...]:
    """Every capability this kernel has (docker's GetAllCapabilities)."""
    from dockyard.runtime.capabilities import CAPS, last_cap

    return CAPS[: last_cap() + 1]


def tweak_capabilities(adds: Sequence[str], drops: Sequence[str], privileged: bool,
                       all_caps: Sequence[str]) -> list[str]:
    """moby's caps.TweakCapabilities over :data:`DEFAULT_CAPABILITIES`."""
    if privileged:
        return list(all_caps)
    if not adds and not drops:
        return list(DEFAULT_CAPABILITIES)
    cap_drop = _normalize_caps(drops, all_caps)
    cap_add = _normalize_caps(adds, all_caps)
    if "ALL" in cap_add:
        return [c for c in all_caps if c not in cap_drop]
    if "ALL" in cap_drop:
        return cap_add
    return [c for c in DEFAULT_CAPABILITIES if c not in cap_drop] + cap_add


def _normalize_caps(caps: Sequence[str], all_caps: Sequence[str]) -> list[str]:
    from dockyard.runtime.capabilities import CAPS

    out = []
    for given in caps:
        c = given.upper()
        if c == "ALL":
            out.append(c)
            continue
        if not c.startswith("CAP_"):
            c = "CAP_" + c
        if c not in CAPS:
            raise InvalidArgument(f'unknown capability: "{c}"')
        if c not in all_caps:
            raise InvalidArgument("capability not supported by your kernel or not available "
                                  f'in the current environment: "{c}"')
        out.append(c)
    return out


# --- users --------------------------------------------------------------------------------

_MAX_ID = (1 << 31) - 1


def _atoi(text: str) -> int | None:
    # strconv.Atoi: optional sign, decimal digits only.
    t = text[1:] if text[:1] in "+-" else text
    return int(text) if t.isdigit() and t.isascii() else None


def _parse_passwd(data: bytes | None) -> list[tuple[str, int, int, str]]:
    out = []
    for raw in (data or b"").splitlines():
        line = raw.strip()
        if not line:
            continue
        parts = line.decode("utf-8", "replace").split(":")
        parts += [""] * (7 - len(parts))
        out.append((parts[0], _atoi(parts[2]) or 0, _atoi(parts[3]) or 0, parts[5]))
    return out


def _parse_group(data: bytes | None) -> list[tuple[str, int, list[str]]]:
    out = []
    for raw in (data or b"").splitlines():
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        parts = line.decode("utf-8", "replace").split(":")
        parts += [""] * (4 - len(parts))
        out.append((parts[0], _atoi(parts[2]) or 0, parts[3].split(",") if parts[3] else []))
    return out


def exec_user(spec: str, passwd: bytes | None, group: bytes | None) -> ExecUser:
    """moby/sys/user GetExecUser with no defaults; ``None`` is a missing file."""
    parts = spec.split(":")
    user_arg = parts[0]
    group_arg = parts[1] if len(parts) > 1 else ""
    uid_arg, gid_arg = _atoi(user_arg), _atoi(group_arg)
    uid, gid, home = 0, 0, ""
    sgids: tuple[int, ...] = ()
    users = [u for u in _parse_passwd(passwd)
             if (u[1] == 0 if user_arg == "" else
                 u[1] == uid_arg if uid_arg is not None else u[0] == user_arg)]
    matched = ""
    if users:
        matched, uid, gid, home = users[0]
    elif user_arg:
        if uid_arg is None:
            raise NotFound(f"unable to find user {user_arg}: no matching entries in passwd file")
        if not 0 <= uid_arg <= _MAX_ID:
            raise InvalidArgument(f"uids and gids must be in range 0-{_MAX_ID}")
        uid = uid_arg
    if group_arg or matched:
        groups = [g for g in _parse_group(group)
                  if (matched in g[2] if group_arg == "" else
                      g[1] == gid_arg if gid_arg is not None else g[0] == group_arg)]
        if group_arg:
            if groups:
                gid = groups[0][1]
            else:
                if gid_arg is None:
                    raise NotFound(f"unable to find group {group_arg}: no matching entries in "
                                   "group file")
                if not 0 <= gid_arg <= _MAX_ID:
                    raise InvalidArgument(f"uids and gids must be in range 0-{_MAX_ID}")
                gid = gid_arg
        elif groups:
            sgids = tuple(g[1] for g in groups)
    return ExecUser(uid, gid, sgids, home)


def _read_in_rootfs(rootfs: str, path: str) -> bytes | None:
    """A file of the rootfs, its symlinks resolved inside the rootfs (never out of it)."""
    from dockyard.linux.paths import secure_join

    try:
        real = secure_join(rootfs, path)
    except DockyardError:
        return None
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not _stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def rootfs_user_lookup(rootfs: str) -> UserLookup:
    """Resolve ``-u`` against the rootfs's /etc/passwd and /etc/group."""
    def lookup(spec: str) -> ExecUser:
        return exec_user(spec, _read_in_rootfs(rootfs, "/etc/passwd"),
                         _read_in_rootfs(rootfs, "/etc/group"))
    return lookup


# --- host seams ---------------------------------------------------------------------------


def stat_device(path: str) -> DeviceInfo | None:
    """The device node at ``path`` (symlinks followed), None when it is not a device;
    OSError when it does not exist."""
    st = os.stat(path)
    mode = st.st_mode
    if _stat.S_ISCHR(mode):
        kind = "c"
    elif _stat.S_ISBLK(mode):
        kind = "b"
    elif _stat.S_ISFIFO(mode):
        kind = "p"
    else:
        return None
    return DeviceInfo(kind, os.major(st.st_rdev), os.minor(st.st_rdev), _stat.S_IMODE(mode),
                      st.st_uid, st.st_gid)


_HOST_DEV_SKIP_DIRS = frozenset({"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"})


def host_devices(root: str = "/dev") -> list[dict[str, Any]]:
    """Every device node under /dev, for ``--privileged`` (containerd's HostDevices)."""
    out: list[dict[str, Any]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == root:
            dirnames[:] = [d for d in dirnames if d not in _HOST_DEV_SKIP_DIRS]
        for name in sorted(filenames):
            if dirpath == root and name == "console":
                continue
            path = os.path.join(dirpath, name)
            try:
                if os.path.islink(path):
                    continue
                info = stat_device(path)
            except OSError:
                continue
            if info is not None and info.type != "p":
                out.append(_device_json(path, info))
    return out


def sysctl_exists(name: str) -> bool:
    return os.path.exists(os.path.join("/proc/sys", name.replace(".", "/")))


def default_masked_paths() -> list[str]:
    """docker's list plus each CPU's thermal_throttle directory that this host has."""
    out = list(DEFAULT_MASKED_PATHS)
    for cpu in _possible_cpus():
        path = f"/sys/devices/system/cpu/cpu{cpu}/thermal_throttle"
        if os.path.exists(path):
            out.append(path)
    return out


def _possible_cpus() -> list[int]:
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            text = f.read().strip()
    except OSError:
        return []
    cpus: list[int] = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


# --- seccomp ------------------------------------------------------------------------------

# GOARCH of the host -> libseccomp's name for it, and that name -> the OCI architecture.
_MACHINE_TO_NATIVE = {"x86_64": "amd64", "i686": "x86", "i386": "x86", "aarch64": "arm64",
                      "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
                      "riscv64": "riscv64", "mips64": "mips64"}
_NATIVE_TO_SECCOMP = {
    "x86": "SCMP_ARCH_X86", "amd64": "SCMP_ARCH_X86_64", "arm": "SCMP_ARCH_ARM",
    "arm64": "SCMP_ARCH_AARCH64", "mips64": "SCMP_ARCH_MIPS64",
    "mips64n32": "SCMP_ARCH_MIPS64N32", "mipsel64": "SCMP_ARCH_MIPSEL64",
    "mips3l64n32": "SCMP_ARCH_MIPSEL64N32", "mipsle": "SCMP_ARCH_MIPSEL", "ppc": "SCMP_ARCH_PPC",
    "ppc64": "SCMP_ARCH_PPC64", "ppc64le": "SCMP_ARCH_PPC64LE", "riscv64": "SCMP_ARCH_RISCV64",
    "s390": "SCMP_ARCH_S390", "s390x": "SCMP_ARCH_S390X",
}
_OCI_SECCOMP_KEYS = ("defaultAction", "defaultErrnoRet", "architectures", "flags",
                     "listenerPath", "listenerMetadata")


def host_seccomp_arch() -> str:
    """libseccomp's name for this machine ("amd64", "arm64", ...)."""
    machine = os.uname().machine
    return _MACHINE_TO_NATIVE.get(machine, machine)


def host_kernel_version() -> tuple[int, int]:
    return _kernel_version(os.uname().release)


def _kernel_version(text: str) -> tuple[int, int]:
    major, _, rest = text.partition(".")
    minor = ""
    for ch in rest:
        if not ch.isdigit():
            break
        minor += ch
    if not major.isdigit():
        raise InvalidArgument(f"invalid kernel version {text!r}")
    return int(major), int(minor or 0)


def seccomp_from_docker(profile: Mapping[str, Any], capabilities: Sequence[str], *,
                        arch: str | None = None,
                        kernel: tuple[int, int] | None = None) -> dict[str, Any] | None:
    """A docker-format seccomp profile (archMap, includes/excludes) made into the OCI
    ``linux.seccomp`` for this host and this capability set (moby/profiles setupSeccomp)."""
    if not isinstance(profile, Mapping):
        raise InvalidArgument("Decoding seccomp profile failed: not a JSON object")
    syscalls = profile.get("syscalls") or []
    if not profile.get("defaultAction") and not syscalls:
        return None
    if profile.get("architectures") and profile.get("archMap"):
        raise InvalidArgument("both 'architectures' and 'archMap' are specified in the seccomp "
                              "profile, use either 'architectures' or 'archMap'")
    native = arch or host_seccomp_arch()
    out: dict[str, Any] = {k: profile[k] for k in _OCI_SECCOMP_KEYS if k in profile}
    seccomp_arch = _NATIVE_TO_SECCOMP.get(native)
    if seccomp_arch is not None:
        for entry in profile.get("archMap") or []:
            if entry.get("architecture") == seccomp_arch:
                out["architectures"] = [*out.get("architectures", ()), seccomp_arch,
                                        *(entry.get("subArchitectures") or ())]
                break
    rules = []
    for call in syscalls:
        names = list(call.get("names") or ())
        if call.get("name"):
            if names:
                raise InvalidArgument("both 'name' and 'names' are specified in the seccomp "
                                      "profile, use either 'name' or 'names'")
            names = [call["name"]]
        if not _syscall_applies(call, native, capabilities, kernel):
            continue
        rule: dict[str, Any] = {"names": names, "action": call.get("action", "")}
        if call.get("errnoRet") is not None:
            rule["errnoRet"] = call["errnoRet"]
        if call.get("args"):
            rule["args"] = [{"index": a.get("index", 0), "value": a.get("value", 0),
                             "valueTwo": a.get("valueTwo", 0), "op": a.get("op", "")}
                            for a in call["args"]]
        rules.append(rule)
    if rules:
        out["syscalls"] = rules
    return out


def _kernel_at_least(want: str, kernel: tuple[int, int] | None) -> bool:
    have = kernel or host_kernel_version()
    return have >= _kernel_version(want)


def _syscall_applies(call: Mapping[str, Any], arch: str, caps: Sequence[str],
                     kernel: tuple[int, int] | None) -> bool:
    ex = call.get("excludes") or {}
    if arch in (ex.get("arches") or ()):
        return False
    if any(c in caps for c in ex.get("caps") or ()):
        return False
    if ex.get("minKernel") and _kernel_at_least(ex["minKernel"], kernel):
        return False
    inc = call.get("includes") or {}
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if any(c not in caps for c in inc.get("caps") or ()):
        return False
    return not (inc.get("minKernel") and not _kernel_at_least(inc["minKernel"], kernel))


def _load_profile(text: str) -> Mapping[str, Any]:
    import json

    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"Decoding seccomp profile failed: {exc}") from None
    if not isinstance(data, Mapping):
        raise InvalidArgument("Decoding seccomp profile failed: not a JSON object")
    return data


# --- the spec -----------------------------------------------------------------------------


def _device_json(path: str, info: DeviceInfo) -> dict[str, Any]:
    return {"path": path, "type": info.type, "major": info.major, "minor": info.minor,
            "fileMode": info.file_mode, "uid": info.uid, "gid": info.gid}


def _devices_from_path(mapping: DeviceMapping, permissions: str,
                       stat_dev: StatDevice) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """moby's oci.DevicesFromPath: one node, or every node under a directory."""
    host = mapping.path_on_host
    devs: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = []
    try:
        info = stat_dev(host)
    except OSError as exc:
        raise InvalidArgument("error gathering device information while adding custom device "
                              f'"{host}": {(exc.strerror or str(exc)).lower()}') from None
    if info is not None:
        devs.append(_device_json(mapping.path_in_container, info))
    elif os.path.isdir(host):
        for dirpath, _dirs, files in os.walk(host):
            for name in sorted(files):
                p = os.path.join(dirpath, name)
                try:
                    child = stat_dev(p)
                except OSError:
                    continue
                if child is not None:
                    devs.append(_device_json(p.replace(host, mapping.path_in_container, 1),
                                             child))
    if not devs:
        raise InvalidArgument("error gathering device information while adding custom device "
                              f'"{host}": not a device node')
    for d in devs:
        rules.append({"allow": True, "type": d["type"], "major": d["major"],
                      "minor": d["minor"], "access": permissions})
    return devs, rules


# mount(8) flag names and the MS_* bit each sets or clears (moby/sys/mount, for tmpfs merging).
_FLAG_KEYS = {
    "ro": 1, "rw": 1, "suid": 2, "nosuid": 2, "dev": 4, "nodev": 4, "exec": 8, "noexec": 8,
    "sync": 16, "async": 16, "remount": 32, "mand": 64, "nomand": 64, "dirsync": 128,
    "noatime": 1024, "atime": 1024, "nodiratime": 2048, "diratime": 2048,
    "relatime": 1 << 21, "norelatime": 1 << 21, "strictatime": 1 << 24,
    "nostrictatime": 1 << 24,
}
_PROPAGATION = frozenset({"bind", "rbind", "unbindable", "runbindable", "private", "rprivate",
                          "shared", "rshared", "slave", "rslave"})
_TMPFS_DATA = frozenset({"", "size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol"})


def merge_tmpfs_options(options: Sequence[str]) -> list[str]:
    """moby/sys/mount MergeTmpfsOptions: the last of each flag (and of each data key) wins."""
    seen_flags: set[int] = set()
    seen_data: set[str] = set()
    out: list[str] = []
    for option in reversed(options):
        if option == "defaults":
            continue
        if option in _PROPAGATION or option in _FLAG_KEYS:
            key = -1 if option in _PROPAGATION else _FLAG_KEYS[option]
            if key not in seen_flags:
                out.insert(0, option)
                seen_flags.add(key)
            continue
        name, sep, _ = option.partition("=")
        if not sep or name not in _TMPFS_DATA:
            shown = f'["{name}"]' if not sep else f'["{name}" "{option[len(name) + 1:]}"]'
            raise InvalidArgument(f"invalid tmpfs option {shown}")
        if name not in seen_data:
            out.insert(0, option)
            seen_data.add(name)
    return out


def _validate_tmpfs_destination(dest: str) -> None:
    if not dest.startswith("/"):
        raise InvalidArgument(f'invalid mount config for type "tmpfs": invalid mount path: '
                              f"'{dest}' mount path must be absolute")
    if posixpath.normpath(dest) == "/":
        raise InvalidArgument('invalid mount config for type "tmpfs": invalid specification: '
                              "destination can't be '/'")


def _check_resources(opts: RunOptions, host_cpus: int | None) -> None:
    """The daemon's verifyPlatformContainerResources checks that do not depend on the host's
    cgroup features."""
    min_memory = 6 * 1024 * 1024
    if opts.memory != 0 and opts.memory < min_memory:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if opts.memory > 0 and opts.memory_swap > 0 and opts.memory_swap < opts.memory:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, "
                              "see usage")
    if opts.memory == 0 and opts.memory_swap > 0:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap "
                              "limit, see usage")
    if opts.memory_reservation > 0 and opts.memory_reservation < min_memory:
        raise InvalidArgument("Minimum memory reservation allowed is 6MB")
    if 0 < opts.memory < opts.memory_reservation:
        raise InvalidArgument("Minimum memory limit can not be less than memory reservation "
                              "limit, see usage")
    if opts.nano_cpus > 0 and opts.cpu_period > 0:
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if opts.nano_cpus > 0 and opts.cpu_quota > 0:
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    if opts.nano_cpus != 0:
        nc = host_cpus if host_cpus is not None else (os.cpu_count() or 1)
        if opts.nano_cpus < 0 or opts.nano_cpus > nc * 1_000_000_000:
            raise InvalidArgument(f"range of CPUs is from 0.01 to {nc}.00, as there are only "
                                  f"{nc} CPUs available")
    if opts.cpu_period != 0 and not 1000 <= opts.cpu_period <= 1_000_000:
        raise InvalidArgument("CPU cfs period can not be less than 1ms (i.e. 1000) or larger "
                              "than 1s (i.e. 1000000)")
    if 0 < opts.cpu_quota < 1000:
        raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if opts.cpu_shares < 0:
        raise InvalidArgument(f"invalid CPU shares ({opts.cpu_shares}): value must be a "
                              "positive integer")
    if opts.shm_size < 0:
        raise InvalidArgument("SHM size can not be less than 0")
    for name, listed in (("cpus", opts.cpuset_cpus), ("mems", opts.cpuset_mems)):
        if listed and not _valid_uint_list(listed):
            raise InvalidArgument(f"Invalid value {listed} for cpuset {name}: invalid format: "
                                  f"{listed}")


def _valid_uint_list(text: str) -> bool:
    for part in text.split(","):
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and (not hi.isdigit() or int(hi) < int(lo))):
            return False
    return True


def _resources(opts: RunOptions) -> dict[str, Any]:
    res: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    if opts.memory > 0:
        memory["limit"] = opts.memory
    if opts.memory_reservation > 0:
        memory["reservation"] = opts.memory_reservation
    swap = opts.memory_swap
    if opts.memory > 0 and swap == 0:
        swap = opts.memory * 2   # docker's default: as much swap as memory
    if swap > 0:
        memory["swap"] = swap
    if opts.oom_kill_disable is not None:
        memory["disableOOMKiller"] = opts.oom_kill_disable
    if memory:
        res["memory"] = memory
    cpu: dict[str, Any] = {}
    if opts.cpu_shares:
        cpu["shares"] = opts.cpu_shares
    if opts.nano_cpus > 0:
        cpu["quota"] = opts.nano_cpus * 100_000 // 1_000_000_000
        cpu["period"] = 100_000
    if opts.cpu_period:
        cpu["period"] = opts.cpu_period
    if opts.cpu_quota:
        cpu["quota"] = opts.cpu_quota
    if opts.cpuset_cpus:
        cpu["cpus"] = opts.cpuset_cpus
    if opts.cpuset_mems:
        cpu["mems"] = opts.cpuset_mems
    if cpu:
        res["cpu"] = cpu
    # The API turns 0 and negative limits into "no limit" before the daemon sees them.
    if opts.pids_limit is not None and opts.pids_limit > 0:
        res["pids"] = {"limit": opts.pids_limit}
    res["blockIO"] = {}
    return res


def generate_spec(
    image: ContainerConfig | ImageConfig | None,
    opts: RunOptions,
    *,
    container_id: str,
    rootfs: str,
    cgroups_path: str,
    user_lookup: UserLookup | None = None,
    cgroupns: str = "host",
    seccomp_profile: Mapping[str, Any] | None = None,
    init_path: str | None = None,
    init_destination: str = INIT_DESTINATION,
    binds: Sequence[BindMount] = (),
    stat_dev: StatDevice = stat_device,
    list_host_devices: Callable[[], list[dict[str, Any]]] = host_devices,
    all_caps: Sequence[str] | None = None,
    masked_paths: Sequence[str] | None = None,
    has_sysctl: Callable[[str], bool] = sysctl_exists,
    apparmor: bool = False,
    seccomp_arch: str | None = None,
    kernel: tuple[int, int] | None = None,
    host_cpus: int | None = None,
    host_hostname: Callable[[], str] = socket.gethostname,
) -> dict[str, Any]:
    """config.json for ``docker run`` as moby's createSpec builds it.

    ``seccomp_profile``: docker's default profile in docker's format (None: no default
    profile); ``cgroupns``: "host" (docker's default on cgroup v1) or "private" (v2).
    ``init_path``: the host's init binary, bind-mounted at ``init_destination`` for ``--init``.
    """
    if len(container_id) != 64 or not all(c in "0123456789abcdef" for c in container_id):
        raise InvalidArgument(f"invalid container id {container_id!r} (want 64 hex digits)")
    if cgroupns not in ("host", "private"):
        raise InvalidArgument(f"invalid cgroup namespace mode: {cgroupns}")
    _check_resources(opts, host_cpus)
    merged = merge_config(image, opts, container_id=container_id, host_hostname=host_hostname)
    if merged.stop_signal:
        parse_stop_signal(merged.stop_signal)
    caps_all = list(all_caps) if all_caps is not None else list(known_capabilities())
    sec = opts.security
    lookup = user_lookup or rootfs_user_lookup(rootfs)
    user = lookup(merged.user)

    # process
    args = [merged.path, *merged.args]
    mounts: list[dict[str, Any]] = _default_mounts()
    if opts.init:
        if not init_path:
            raise InvalidArgument("--init: no init binary configured")
        args = [init_destination, "--", *args]
        mounts.append({"destination": init_destination, "type": "bind", "source": init_path,
                       "options": ["bind", "ro"]})
    capabilities = tweak_capabilities(opts.cap_add, opts.cap_drop, opts.privileged, caps_all)
    process: dict[str, Any] = {"terminal": opts.tty}
    if opts.tty and opts.console_size and opts.console_size != (0, 0):
        process["consoleSize"] = {"height": opts.console_size[0],
                                  "width": opts.console_size[1]}
    process["user"] = {"uid": user.uid, "gid": user.gid,
                       "additionalGids": [user.gid, *user.sgids]}
    process["args"] = args
    process["env"] = daemon_environment(merged.env, merged.hostname, opts.tty)
    process["cwd"] = merged.working_dir or "/"
    process["capabilities"] = {"bounding": capabilities, "effective": list(capabilities),
                               "permitted": list(capabilities)}
    if opts.ulimits:
        process["rlimits"] = [
            {"type": u.rlimit_type, "hard": u.hard & ((1 << 64) - 1),
             "soft": u.soft & ((1 << 64) - 1)}
            for u in sorted({u.name: u for u in opts.ulimits}.values(), key=lambda u: u.name)]
    if sec.no_new_privileges:
        process["noNewPrivileges"] = True
    if apparmor:
        process["apparmorProfile"] = sec.apparmor_profile or (
            "unconfined" if opts.privileged else "docker-default")
    process["oomScoreAdj"] = opts.oom_score_adj

    # linux
    linux: dict[str, Any] = {}
    sysctl: dict[str, str] = {}
    if opts.network != "host":
        for name, value in _SYSCTLS_FOR_PRIVATE_NET:
            if has_sysctl(name):
                sysctl[name] = value
    sysctl.update(opts.sysctls)
    if sysctl:
        linux["sysctl"] = sysctl
    resources = _resources(opts)
    device_rules = [dict(r) for r in DEFAULT_DEVICE_RULES]
    devices: list[dict[str, Any]] = []
    if opts.privileged:
        devices.extend(list_host_devices())
        for d in opts.devices:
            if d.path_on_host == d.path_in_container:
                continue   # already there: privileged containers see all of the host's /dev
            devs, _ = _devices_from_path(d, "rwm", stat_dev)
            devices.extend(devs)
        device_rules = [{"allow": True, "access": "rwm"}]
    else:
        for d in opts.devices:
            devs, rules = _devices_from_path(d, d.cgroup_permissions, stat_dev)
            devices.extend(devs)
            device_rules.extend(rules)
    linux["resources"] = {"devices": device_rules, **resources}
    linux["cgroupsPath"] = cgroups_path
    namespaces = [{"type": "mount"}, {"type": "network"}, {"type": "uts"}, {"type": "pid"},
                  {"type": "ipc"}]
    if opts.network == "host":
        namespaces = [n for n in namespaces if n["type"] != "network"]
    if cgroupns == "private":
        namespaces.append({"type": "cgroup"})
    linux["namespaces"] = namespaces
    if devices:
        linux["devices"] = devices
    seccomp = _seccomp(sec, opts.privileged, seccomp_profile, capabilities, arch=seccomp_arch,
                       kernel=kernel)
    if seccomp is not None:
        linux["seccomp"] = seccomp
    if not opts.privileged:
        linux["maskedPaths"] = list(masked_paths if masked_paths is not None
                                    else default_masked_paths())
        linux["readonlyPaths"] = list(DEFAULT_READONLY_PATHS)

    mounts = _with_user_mounts(mounts, opts, binds)

    spec: dict[str, Any] = {"ociVersion": ENGINE_SPEC_VERSION, "process": process}
    root: dict[str, Any] = {"path": rootfs}
    if opts.read_only:
        root["readonly"] = True
    spec["root"] = root
    spec["hostname"] = merged.hostname
    spec["mounts"] = mounts
    spec["linux"] = linux
    return spec


def _default_mounts() -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777"]},
    ]


def _with_user_mounts(defaults: list[dict[str, Any]], opts: RunOptions,
                      binds: Sequence[BindMount]) -> list[dict[str, Any]]:
    """moby's withMounts: user mounts replace defaults at the same place, sorted by depth."""
    tmpfs = dict(opts.tmpfs)  # docker keeps --tmpfs in a map: the last one per path wins
    user: list[tuple[str, dict[str, Any]]] = []
    for dest, data in tmpfs.items():
        _validate_tmpfs_destination(dest)
        options = ["noexec", "nosuid", "nodev", "rprivate"]
        if data:
            options += data.split(",")
        user.append((dest, {"destination": dest, "type": "tmpfs", "source": "tmpfs",
                            "options": merge_tmpfs_options(options)}))
    for b in binds:
        bind_opts = ["bind" if b.non_recursive else "rbind"]
        if not b.writable:
            bind_opts.append("ro")
        if b.propagation:
            bind_opts.append(b.propagation)
        user.append((b.destination, {"destination": b.destination, "type": "bind",
                                     "source": b.source, "options": bind_opts}))
    # sort.Sort on so few elements is an insertion sort, hence stable.
    user.sort(key=lambda item: posixpath.normpath(item[0]).count("/"))
    user_dests = {dest for dest, _ in user}
    out: list[dict[str, Any]] = []
    for default in defaults:
        dest = default["destination"]
        if dest in user_dests:
            continue
        if "/dev" in user_dests and dest.startswith("/dev/"):
            continue
        m = dict(default)
        if dest == "/dev/shm":
            m["options"] = [*m["options"], f"size={opts.shm_size or DEFAULT_SHM_SIZE}"]
        out.append(m)
    out += [m for _, m in user]
    if opts.read_only:
        for m in out:
            if m["destination"] in ("/proc", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev"):
                continue
            if m["destination"] not in user_dests and "ro" not in m["options"]:
                m["options"] = [*m["options"], "ro"]
    writable_cgroups = opts.privileged
    if opts.security.writable_cgroups is not None:
        writable_cgroups = opts.security.writable_cgroups
    for m in out:
        if (opts.privileged and m["destination"] == "/sys") or (
                writable_cgroups and m["type"] == "cgroup"):
            m["options"] = [o for o in m["options"] if o != "ro"]
    return out


def _seccomp(sec: SecurityOptions, privileged: bool, default: Mapping[str, Any] | None,
             caps: Sequence[str], *, arch: str | None,
             kernel: tuple[int, int] | None) -> dict[str, Any] | None:
    """moby's WithSeccomp: unconfined or privileged -> none, unless a profile was named."""
    wanted = sec.seccomp_profile
    if wanted == "unconfined":
        return None
    if privileged and not wanted:
        return None
    profile = default if wanted in ("", "builtin") else _load_profile(wanted)
    if profile is None:
        return None
    return seccomp_from_docker(profile, caps, arch=arch, kernel=kernel)
