"""The OCI runtime specification's config.json as frozen dataclasses.

JSON is parsed into these at the edge (:func:`parse_spec`); nothing past the edge sees a raw
dict. Fields the runtime does not act on yet are still parsed so that a typo or a wrong type is
reported with its JSON path instead of being silently ignored.
"""

from __future__ import annotations

from dockyard.errors import InvalidArgument
from dockyard.values import field, value

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

if TYPE_CHECKING:
    from dockyard.model.resources import Resources
    from dockyard.model.seccomp import Seccomp

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")


@value
class User:
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    umask: int | None = None


@value
class Capabilities:
    bounding: tuple[str, ...] = ()
    effective: tuple[str, ...] = ()
    inheritable: tuple[str, ...] = ()
    permitted: tuple[str, ...] = ()
    ambient: tuple[str, ...] = ()


@value
class Rlimit:
    type: str
    hard: int
    soft: int


@value
class IOPriority:
    io_class: str            # IOPRIO_CLASS_RT, IOPRIO_CLASS_BE, IOPRIO_CLASS_IDLE
    priority: int = 0


@value
class Scheduler:
    policy: str              # SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, ...
    nice: int = 0
    priority: int = 0
    flags: tuple[str, ...] = ()
    runtime: int = 0
    deadline: int = 0
    period: int = 0


IO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
SCHED_POLICIES = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3,
                  "SCHED_ISO": 4, "SCHED_IDLE": 5, "SCHED_DEADLINE": 6}
SCHED_FLAGS = {"SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02,
               "SCHED_FLAG_DL_OVERRUN": 0x04, "SCHED_FLAG_KEEP_POLICY": 0x08,
               "SCHED_FLAG_KEEP_PARAMS": 0x10, "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
               "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40}


@value
class Process:
    args: tuple[str, ...]
    cwd: str = "/"
    env: tuple[str, ...] = ()
    terminal: bool = False
    user: User = field(default_factory=User)
    capabilities: Capabilities | None = None
    rlimits: tuple[Rlimit, ...] = ()
    no_new_privileges: bool = False
    console_size: tuple[int, int] | None = None   # (rows, columns)
    oom_score_adj: int | None = None
    apparmor_profile: str | None = None
    selinux_label: str | None = None
    io_priority: IOPriority | None = None
    scheduler: Scheduler | None = None


@value
class Root:
    path: str
    readonly: bool = False


@value
class Mount:
    destination: str
    type: str | None = None
    source: str | None = None
    options: tuple[str, ...] = ()


@value
class Namespace:
    type: str
    path: str | None = None


@value
class Device:
    """A device node to create in the container (``linux.devices``)."""

    path: str
    type: str               # c, b, u (unbuffered char), p (fifo)
    major: int = 0
    minor: int = 0
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None


@value
class Hook:
    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    timeout: int | None = None


HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
              "poststop")


@value
class Hooks:
    prestart: tuple[Hook, ...] = ()
    create_runtime: tuple[Hook, ...] = ()
    create_container: tuple[Hook, ...] = ()
    start_container: tuple[Hook, ...] = ()
    poststart: tuple[Hook, ...] = ()
    poststop: tuple[Hook, ...] = ()


@value
class IdMapping:
    container_id: int
    host_id: int
    size: int


@value
class Linux:
    namespaces: tuple[Namespace, ...] = ()
    uid_mappings: tuple[IdMapping, ...] = ()
    gid_mappings: tuple[IdMapping, ...] = ()
    devices: tuple[Device, ...] = ()
    masked_paths: tuple[str, ...] = ()
    readonly_paths: tuple[str, ...] = ()
    sysctl: tuple[tuple[str, str], ...] = ()
    rootfs_propagation: str | None = None
    cgroups_path: str | None = None
    resources: Resources | None = None
    seccomp: Seccomp | None = None
    mount_label: str | None = None
    #: (clock, seconds, nanoseconds) for the time namespace: monotonic, boottime
    time_offsets: tuple[tuple[str, int, int], ...] = ()

    def namespace(self, ns_type: str) -> Namespace | None:
        for ns in self.namespaces:
            if ns.type == ns_type:
                return ns
        return None


@value
class Spec:
    oci_version: str
    root: Root
    process: Process | None = None
    hostname: str | None = None
    domainname: str | None = None
    mounts: tuple[Mount, ...] = ()
    hooks: Hooks = field(default_factory=Hooks)
    linux: Linux = field(default_factory=Linux)
    annotations: tuple[tuple[str, str], ...] = ()


# --- parsing ---------------------------------------------------------------------------------

class _Reader:
    """Typed access to one JSON object, reporting errors with their JSON path."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, dict):
            raise InvalidArgument(f"config.json: {path} must be an object")
        self.data: Mapping[str, Any] = data
        self.path = path

    def _bad(self, key: str, what: str) -> InvalidArgument:
        return InvalidArgument(f"config.json: {self.path}.{key} must be {what}")

    def opt_str(self, key: str, default: str | None = None) -> str | None:
        v = self.data.get(key, default)
        if v is not None and not isinstance(v, str):
            raise self._bad(key, "a string")
        return v

    def req_str(self, key: str) -> str:
        v = self.opt_str(key)
        if v is None:
            raise InvalidArgument(f"config.json: {self.path}.{key} is required")
        return v

    def flag(self, key: str) -> bool:
        v = self.data.get(key, False)
        if not isinstance(v, bool):
            raise self._bad(key, "true or false")
        return v

    def opt_int(self, key: str, default: int | None = None) -> int | None:
        v = self.data.get(key, default)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise self._bad(key, "an integer")
        return v

    def strs(self, key: str) -> tuple[str, ...]:
        v = self.data.get(key) or []
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            raise self._bad(key, "an array of strings")
        return tuple(v)

    def objs(self, key: str) -> list[_Reader]:
        v = self.data.get(key) or []
        if not isinstance(v, list):
            raise self._bad(key, "an array")
        return [_Reader(o, f"{self.path}.{key}[{i}]") for i, o in enumerate(v)]

    def obj(self, key: str) -> _Reader | None:
        v = self.data.get(key)
        return None if v is None else _Reader(v, f"{self.path}.{key}")

    def str_map(self, key: str) -> tuple[tuple[str, str], ...]:
        v = self.data.get(key) or {}
        if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
            raise self._bad(key, "an object of strings")
        return tuple(sorted(v.items()))


def _user(r: _Reader | None) -> User:
    if r is None:
        return User()
    gids = r.data.get("additionalGids") or []
    if not isinstance(gids, list) or not all(isinstance(g, int) for g in gids):
        raise InvalidArgument(f"config.json: {r.path}.additionalGids must be integers")
    return User(uid=r.opt_int("uid", 0) or 0, gid=r.opt_int("gid", 0) or 0,
                additional_gids=tuple(gids), umask=r.opt_int("umask"))


def _process(r: _Reader) -> Process:
    args = r.strs("args")
    if not args:
        raise InvalidArgument("config.json: process.args must name the program to run")
    caps_r = r.obj("capabilities")
    caps = None
    if caps_r is not None:
        caps = Capabilities(bounding=caps_r.strs("bounding"), effective=caps_r.strs("effective"),
                            inheritable=caps_r.strs("inheritable"),
                            permitted=caps_r.strs("permitted"), ambient=caps_r.strs("ambient"))
    rlimits = tuple(Rlimit(type=o.req_str("type"), hard=o.opt_int("hard", 0) or 0,
                           soft=o.opt_int("soft", 0) or 0) for o in r.objs("rlimits"))
    cwd = r.opt_str("cwd", "/") or "/"
    if not cwd.startswith("/"):
        raise InvalidArgument("config.json: process.cwd must be an absolute path")
    size_r = r.obj("consoleSize")
    size = None
    if size_r is not None:
        size = (size_r.opt_int("height", 0) or 0, size_r.opt_int("width", 0) or 0)
    return Process(args=args, cwd=cwd, env=r.strs("env"), terminal=r.flag("terminal"),
                   user=_user(r.obj("user")), capabilities=caps, rlimits=rlimits,
                   no_new_privileges=r.flag("noNewPrivileges"), console_size=size,
                   oom_score_adj=r.opt_int("oomScoreAdj"),
                   apparmor_profile=r.opt_str("apparmorProfile") or None,
                   selinux_label=r.opt_str("selinuxLabel") or None,
                   io_priority=_io_priority(r.obj("ioPriority")),
                   scheduler=_scheduler(r.obj("scheduler")))


def _io_priority(r: _Reader | None) -> IOPriority | None:
    if r is None:
        return None
    io_class = r.req_str("class")
    if io_class not in IO_CLASSES:
        raise InvalidArgument(f"config.json: {r.path}.class: unknown class {io_class!r}")
    level = r.opt_int("priority", 0) or 0
    if not 0 <= level <= 7:
        raise InvalidArgument(f"config.json: {r.path}.priority must be 0..7")
    return IOPriority(io_class, level)


def _scheduler(r: _Reader | None) -> Scheduler | None:
    if r is None:
        return None
    policy = r.req_str("policy")
    if policy not in SCHED_POLICIES:
        raise InvalidArgument(f"config.json: {r.path}.policy: unknown policy {policy!r}")
    flags = r.strs("flags")
    for flag in flags:
        if flag not in SCHED_FLAGS:
            raise InvalidArgument(f"config.json: {r.path}.flags: unknown flag {flag!r}")
    return Scheduler(policy=policy, nice=r.opt_int("nice", 0) or 0,
                     priority=r.opt_int("priority", 0) or 0, flags=flags,
                     runtime=r.opt_int("runtime", 0) or 0,
                     deadline=r.opt_int("deadline", 0) or 0,
                     period=r.opt_int("period", 0) or 0)


def _linux(r: _Reader | None) -> Linux:
    if r is None:
        return Linux()
    namespaces = []
    seen = set()
    for o in r.objs("namespaces"):
        ns_type = o.req_str("type")
        if ns_type not in NAMESPACE_TYPES:
            raise InvalidArgument(f"config.json: {o.path}.type: unknown namespace {ns_type!r}")
        if ns_type in seen:
            raise InvalidArgument(f"config.json: namespace {ns_type!r} is listed twice")
        seen.add(ns_type)
        namespaces.append(Namespace(type=ns_type, path=o.opt_str("path")))
    devices = []
    for o in r.objs("devices"):
        dev_path = o.req_str("path")
        dev_type = o.req_str("type")
        if dev_type not in ("c", "b", "u", "p"):
            raise InvalidArgument(f"config.json: {o.path}.type must be c, b, u or p")
        if not dev_path.startswith("/dev/") or ".." in dev_path.split("/"):
            raise InvalidArgument(f"config.json: {o.path}.path must be a path under /dev")
        devices.append(Device(path=dev_path, type=dev_type, major=o.opt_int("major", 0) or 0,
                              minor=o.opt_int("minor", 0) or 0,
                              file_mode=o.opt_int("fileMode"), uid=o.opt_int("uid"),
                              gid=o.opt_int("gid")))
    return Linux(namespaces=tuple(namespaces), devices=tuple(devices),
                 uid_mappings=_id_mappings(r, "uidMappings"),
                 gid_mappings=_id_mappings(r, "gidMappings"),
                 masked_paths=r.strs("maskedPaths"),
                 readonly_paths=r.strs("readonlyPaths"), sysctl=r.str_map("sysctl"),
                 rootfs_propagation=r.opt_str("rootfsPropagation"),
                 cgroups_path=r.opt_str("cgroupsPath"),
                 resources=_resources(r), seccomp=_seccomp(r),
                 mount_label=r.opt_str("mountLabel") or None,
                 time_offsets=_time_offsets(r.obj("timeOffsets")))


def _time_offsets(r: _Reader | None) -> tuple[tuple[str, int, int], ...]:
    if r is None:
        return ()
    out = []
    for clock in sorted(r.data):
        if clock not in ("monotonic", "boottime"):
            raise InvalidArgument(f"config.json: {r.path}: unknown clock {clock!r}")
        o = r.obj(clock)
        assert o is not None
        out.append((clock, o.opt_int("secs", 0) or 0, o.opt_int("nanosecs", 0) or 0))
    return tuple(out)


def _resources(r: _Reader) -> Resources | None:
    raw = r.data.get("resources")
    if raw is None:
        return None
    from dockyard.model.resources import parse_resources

    return parse_resources(raw, where=f"config.json: {r.path}.resources")


def _seccomp(r: _Reader) -> Seccomp | None:
    raw = r.data.get("seccomp")
    if raw is None:
        return None
    from dockyard.model.seccomp import parse_seccomp

    return parse_seccomp(raw, f"{r.path}.seccomp")


def _id_mappings(r: _Reader, key: str) -> tuple[IdMapping, ...]:
    out = []
    for o in r.objs(key):
        values = [o.opt_int(k) for k in ("containerID", "hostID", "size")]
        if any(v is None or v < 0 for v in values):
            raise InvalidArgument(f"config.json: {o.path} needs containerID, hostID and size "
                                  "as non-negative integers")
        out.append(IdMapping(*(int(v or 0) for v in values)))
    return tuple(out)


def _hooks(r: _Reader | None) -> Hooks:
    if r is None:
        return Hooks()
    unknown = set(r.data) - set(HOOK_KINDS)
    if unknown:
        raise InvalidArgument(f"config.json: hooks: unknown hook kind {sorted(unknown)[0]!r}")
    lists = []
    for kind in HOOK_KINDS:
        hooks = []
        for o in r.objs(kind):
            timeout = o.opt_int("timeout")
            if timeout is not None and timeout <= 0:
                raise InvalidArgument(f"config.json: {o.path}.timeout must be positive")
            path = o.req_str("path")
            if not path.startswith("/"):
                raise InvalidArgument(f"config.json: {o.path}.path must be absolute")
            hooks.append(Hook(path=path, args=o.strs("args"), env=o.strs("env"),
                              timeout=timeout))
        lists.append(tuple(hooks))
    return Hooks(*lists)


def parse_spec(data: object) -> Spec:
    """Parse a decoded config.json; raise InvalidArgument naming the offending field."""
    r = _Reader(data, "$")
    root_r = r.obj("root")
    if root_r is None:
        raise InvalidArgument("config.json: root is required")
    proc_r = r.obj("process")
    mounts = []
    for o in r.objs("mounts"):
        dest = o.req_str("destination")
        if not dest.startswith("/"):
            raise InvalidArgument(f"config.json: {o.path}.destination must be absolute")
        if ".." in dest.split("/"):
            raise InvalidArgument(f"config.json: {o.path}.destination {dest!r} must not "
                                  "contain '..'")
        mounts.append(Mount(destination=dest, type=o.opt_str("type"), source=o.opt_str("source"),
                            options=o.strs("options")))
    return Spec(
        oci_version=r.req_str("ociVersion"),
        root=Root(path=root_r.req_str("path"), readonly=root_r.flag("readonly")),
        process=None if proc_r is None else _process(proc_r),
        hostname=r.opt_str("hostname"),
        domainname=r.opt_str("domainname"),
        mounts=tuple(mounts),
        hooks=_hooks(r.obj("hooks")),
        linux=_linux(r.obj("linux")),
        annotations=r.str_map("annotations"),
    )


def parse_process(data: object) -> Process:
    """Parse a process.json (``exec --process``): the ``process`` object of a config.json."""
    return _process(_Reader(data, "process"))
