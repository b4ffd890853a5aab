"""``create``: make a container's namespaces and rootfs and leave its init blocked until start.

Everything is resolved before the first fork (:class:`InitConfig`); the children only run
straight-line syscalls and report back over a SOCK_SEQPACKET pair, because the init's stderr
already belongs to the container. No re-exec: the children are forks of this process.

::

    create (parent)               intermediate                    init (pid 1 of the new pid ns)
      |-- fork ------------------>|
      |                           |-- setns(path) / unshare(flags)
      |                           |-- fork ----------------------->|
      |<-- {"pid": N} ------------|                                |
      |   waitpid(intermediate)   x (exit 0)                       |-- mounts, devices,
      |                                                            |   pivot_root, sysctl,
      |                                                            |   masked/readonly paths,
      |                                                            |   hostname, rlimits,
      |                                                            |   user, capabilities
      |<-- {"ready": true} or {"error": "..."} --------------------|
      |-- write state.json, pid file; exit                         |-- open(exec.fifo, O_WRONLY)
                                                                   |   ...blocks until start...
    start: open(exec.fifo, O_RDONLY) and read one byte ----------->|-- execve(process.args)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import resource
import shutil
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import DockyardError, InvalidArgument, NotFound
from dockyard.linux import libc as k
from dockyard.model.oci import Spec, parse_spec
from dockyard.runtime import capabilities, rootfs, state
from dockyard.runtime.mountopts import propagation_flags
from dockyard.runtime.rootfs import Step

_NS_FLAGS = {
    "pid": k.CLONE_NEWPID, "network": k.CLONE_NEWNET, "mount": k.CLONE_NEWNS,
    "ipc": k.CLONE_NEWIPC, "uts": k.CLONE_NEWUTS, "user": k.CLONE_NEWUSER,
    "cgroup": k.CLONE_NEWCGROUP, "time": k.CLONE_NEWTIME,
}
# setns order: the user namespace first (it grants the rights to join the others), mount last.
_JOIN_ORDER = ("user", "pid", "network", "ipc", "uts", "cgroup", "time", "mount")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True, slots=True)
class InitConfig:
    """Everything the children need, resolved and validated before the first fork."""

    rootfs: str
    spec: Spec
    steps: tuple[Step, ...]
    propagation: int
    clone_flags: int
    joins: tuple[tuple[str, str], ...]
    fifo: str
    no_pivot: bool
    caps: capabilities.CapSets | None
    rlimits: tuple[tuple[int, int, int], ...]
    preserve_fds: int


def load_bundle(bundle: Path) -> Spec:
    try:
        raw = (bundle / "config.json").read_text()
    except FileNotFoundError:
        raise NotFound(f"bundle {bundle}: config.json not found") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"bundle {bundle}: config.json is not valid JSON: {exc}") from None
    return parse_spec(data)


def _rlimits(spec: Spec) -> tuple[tuple[int, int, int], ...]:
    out = []
    for rl in spec.process.rlimits if spec.process else ():
        name = rl.type.upper()
        if not name.startswith("RLIMIT_") or not hasattr(resource, name):
            raise InvalidArgument(f"config.json: unknown rlimit type {rl.type!r}")
        out.append((int(getattr(resource, name)), rl.soft, rl.hard))
    return tuple(out)


def resolve(spec: Spec, bundle: Path, fifo: str, *, no_pivot: bool,
            preserve_fds: int) -> InitConfig:
    if spec.process is None:
        raise InvalidArgument("config.json: process is required to create a container")
    root = spec.root.path
    rootfs_path = os.path.realpath(root if os.path.isabs(root) else bundle / root)
    if not os.path.isdir(rootfs_path):
        raise NotFound(f"rootfs {rootfs_path} does not exist")
    if spec.process.terminal:
        raise InvalidArgument("cannot allocate tty if dockyard-runc will detach without "
                              "setting console socket (set process.terminal to false)")
    if spec.linux.namespace("user") is not None:
        raise InvalidArgument("user namespaces are not supported by this runtime yet")
    if spec.linux.namespace("mount") is None:
        raise InvalidArgument("a mount namespace is required")
    clone_flags = 0
    joins = []
    for ns in spec.linux.namespaces:
        if ns.path:
            if not os.path.exists(ns.path):
                raise NotFound(f"namespace {ns.type} path {ns.path} does not exist")
            joins.append((ns.type, ns.path))
        else:
            clone_flags |= _NS_FLAGS[ns.type]
    if spec.hostname and spec.linux.namespace("uts") is None:
        raise InvalidArgument("unable to set hostname without a private UTS namespace")
    joins.sort(key=lambda j: _JOIN_ORDER.index(j[0]))
    propagation = propagation_flags(spec.linux.rootfs_propagation or "rslave")
    return InitConfig(
        rootfs=rootfs_path, spec=spec, steps=rootfs.plan(spec), propagation=propagation,
        clone_flags=clone_flags, joins=tuple(joins), fifo=fifo, no_pivot=no_pivot,
        caps=capabilities.resolve(spec.process.capabilities), rlimits=_rlimits(spec),
        preserve_fds=preserve_fds)


def _send(sock: socket.socket, msg: dict[str, object]) -> None:
    sock.send(json.dumps(msg).encode())


def _recv(sock: socket.socket) -> dict[str, object]:
    raw = sock.recv(65536)
    if not raw:
        raise DockyardError("container init exited before it was ready")
    msg: dict[str, object] = json.loads(raw)
    if "error" in msg:
        raise DockyardError(str(msg["error"]))
    return msg


def _find_executable(name: str, env: tuple[str, ...]) -> str:
    if "/" in name:
        if not os.access(name, os.X_OK) or os.path.isdir(name):
            raise NotFound(f'exec: "{name}": permission denied or not found')
        return name
    path = next((e[5:] for e in env if e.startswith("PATH=")), DEFAULT_PATH)
    for d in path.split(":"):
        candidate = os.path.join(d or ".", name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    raise NotFound(f'exec: "{name}": executable file not found in $PATH')


def _init(cfg: InitConfig, sock: socket.socket) -> None:
    """The container's init, before exec. Never returns."""
    proc = cfg.spec.process
    assert proc is not None
    try:
        if cfg.clone_flags & k.CLONE_NEWNET:
            from dockyard.linux.netdev import set_up

            set_up("lo")
        rootfs.prepare_root(cfg.rootfs, cfg.propagation)
        rootfs.apply(cfg.rootfs, cfg.steps)
        fifo_fd = os.open(cfg.fifo, os.O_PATH | os.O_CLOEXEC)
        if cfg.no_pivot:
            rootfs.move_root(cfg.rootfs)
        else:
            rootfs.pivot(cfg.rootfs)
        for key, value in cfg.spec.linux.sysctl:
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(value)
        rootfs.readonly_paths(cfg.spec.linux.readonly_paths)
        rootfs.mask_paths(cfg.spec.linux.masked_paths)
        if cfg.spec.root.readonly:
            rootfs.readonly_root()
        if cfg.spec.hostname is not None and cfg.clone_flags & k.CLONE_NEWUTS:
            k.sethostname(cfg.spec.hostname)
        if cfg.spec.domainname is not None and cfg.clone_flags & k.CLONE_NEWUTS:
            k.setdomainname(cfg.spec.domainname)
        os.chdir(proc.cwd)
        exe = _find_executable(proc.args[0], proc.env)
        for res, soft, hard in cfg.rlimits:
            resource.setrlimit(res, (soft, hard))
        if proc.user.umask is not None:
            os.umask(proc.user.umask)
        if cfg.caps is not None:
            capabilities.drop_bounding(cfg.caps)
        k.prctl(k.PR_SET_KEEPCAPS, 1)
        os.setgroups(list(proc.user.additional_gids))
        os.setgid(proc.user.gid)
        os.setuid(proc.user.uid)
        if cfg.caps is not None:
            capabilities.apply_sets(cfg.caps)
        if proc.no_new_privileges:
            k.prctl(k.PR_SET_NO_NEW_PRIVS, 1)
        _send(sock, {"ready": True})
        sock.close()
        fd = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
        os.write(fd, b"0")
        os.close(fd)
        os.close(fifo_fd)
        for fd in range(3, 3 + cfg.preserve_fds):
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, True)
        os.execve(exe, list(proc.args), dict(_env_pairs(proc.env)))
    except BaseException as exc:
        with contextlib.suppress(OSError):
            _send(sock, {"error": str(exc)})
        with contextlib.suppress(OSError):
            os.write(2, f"dockyard-runc init: {exc}\n".encode())
        os._exit(127)


def _env_pairs(env: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(e.partition("=")[0], e.partition("=")[2]) for e in env]


def _intermediate(cfg: InitConfig, sock: socket.socket) -> None:
    """Join or create the namespaces, then fork the init into them. Never returns."""
    try:
        for ns_type, path in cfg.joins:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                k.setns(fd, _NS_FLAGS[ns_type])
            finally:
                os.close(fd)
        k.unshare(cfg.clone_flags)
        pid = os.fork()
        if pid == 0:
            _init(cfg, sock)
        _send(sock, {"pid": pid})
        os._exit(0)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            _send(sock, {"error": str(exc)})
        os._exit(1)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def create(root: Path, container_id: str, bundle: Path, *, pid_file: Path | None = None,
           no_pivot: bool = False, preserve_fds: int = 0) -> state.Record:
    bundle = bundle.resolve()
    spec = load_bundle(bundle)
    state.validate_id(container_id)
    state_dir = state.reserve(root, container_id)
    init_pid = 0
    try:
        fifo = str(state_dir / state.FIFO_NAME)
        os.mkfifo(fifo, 0o622)
        cfg = resolve(spec, bundle, fifo, no_pivot=no_pivot, preserve_fds=preserve_fds)
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sys.stdout.flush()
        sys.stderr.flush()
        mid = os.fork()
        if mid == 0:
            parent_sock.close()
            _intermediate(cfg, child_sock)
        child_sock.close()
        with parent_sock:
            try:
                init_pid = int(str(_recv(parent_sock)["pid"]))
            finally:
                os.waitpid(mid, 0)
            _recv(parent_sock)
        start_time = state.process_start_time(init_pid)
        if start_time is None:
            raise DockyardError("container init exited before it was ready")
        rec = state.Record(id=container_id, pid=init_pid, pid_start_time=start_time,
                           bundle=str(bundle), rootfs=cfg.rootfs, created=_now(),
                           annotations=spec.annotations)
        state.save(root, rec)
        if pid_file is not None:
            tmp = pid_file.with_name(pid_file.name + ".tmp")
            tmp.write_text(str(init_pid))
            os.replace(tmp, pid_file)
        return rec
    except BaseException:
        if init_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(init_pid, signal.SIGKILL)
        shutil.rmtree(state_dir, ignore_errors=True)
        raise
