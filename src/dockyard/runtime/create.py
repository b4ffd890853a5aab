"""``create``: make a container's namespaces and rootfs and leave its init blocked until start.

Everything is resolved before the first fork (:class:`InitConfig`); the children only run
straight-line syscalls and report back over a SOCK_SEQPACKET pair, because the init's stderr
already belongs to the container. No re-exec: the children are forks of this process.

Most containers (no new user or time namespace, no pid or user namespace joined by path) get
no middle child, as in crun: the parent clones the init straight into its pid namespace and
its cgroup v2 directory, then makes the rest of the cgroups and sets the limits while the
init makes its other namespaces and mounts up to its first cgroup mount::

    create (parent)                                   init (pid 1 of the new pid ns)
      |-- mkdir the cgroup v2 dir (clone_dir)
      |-- clone3(CLONE_NEWPID | CLONE_INTO_CGROUP) --->|
      |-- finish_cgroup: v1 dirs, cpuset, limits       |-- setns(path) / unshare(net, mnt,
      |                                                |   ipc, uts), lo up, mounts before
      |                                                |   the first cgroup one (proc, dev,
      |                                                |   sysfs, ...)
      |-- {"cgroup": true} --------------------------->|-- join the cgroups (v1: tasks <- 0),
      |                                                |   unshare(CLONE_NEWCGROUP)
      |                                                |-- cgroup mounts, devices,
      |                                                |   pivot_root, sysctl, masked/
      |                                                |   readonly paths, hostname,
      |                                                |   rlimits, user, capabilities
      |<-- {"ready": true} or {"error": "..."} --------|
      |-- write state.json, pid file; exit             |-- open(exec.fifo, O_WRONLY)
                                                       |   ...blocks until start...
    start: open(exec.fifo, O_RDONLY) and read one byte -->|-- execve(process.args)

(Unprivileged, the cgroup is complete before the clone, as :func:`make_cgroup` may go without
one; {"cgroup": true} then follows the clone at once.) If ``finish_cgroup`` fails, the parent
SIGKILLs and reaps the init, then removes the cgroup and the state directory; an init that
finds the socket closed while it waits for {"cgroup": true} exits without a word (its parent
gave up). If the init fails first, the parent's {"cgroup": true} may meet a closed socket:
the init's {"error"} is read after it.

Otherwise (or where clone3 fails: Linux < 5.3, or < 5.7 with a cgroup v2 directory) the cgroup
is complete before the first fork and a middle child joins it, makes the namespaces, then
forks the init into them::

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

A new user namespace adds a round before the middle child's unshare: {"userns": true} ->
the parent writes the id maps -> {"maps": true}. With hooks, either init stops once before
pivot_root: {"hooks": true} -> the parent runs prestart/createRuntime -> {"continue": true,
"state": {...}}.
"""

from __future__ import annotations

import _socket  # not socket.py: that costs ~4 ms of imports on every start
import os
import sys
import time

from dockyard import fastjson
from dockyard.errors import DockyardError, InvalidArgument, NotFound, PermissionDenied
from dockyard.linux import libc as k
from dockyard.model.oci import Spec, parse_spec
from dockyard.runtime import fastpath, process, rootfs, state, userns
from dockyard.runtime.mountopts import propagation_flags
from dockyard.runtime.rootfs import Step
from dockyard.values import replace, value

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    import signal
    import socket
    from collections.abc import Callable

    from _typeshed import StrPath

    from dockyard.cgroups import CgroupManager
    from dockyard.model.resources import Resources
else:
    import _signal as signal  # not signal.py: it imports enum (~5 ms)

NS_FLAGS = {
    "pid": k.CLONE_NEWPID, "network": k.CLONE_NEWNET, "mount": k.CLONE_NEWNS,
    "ipc": k.CLONE_NEWIPC, "uts": k.CLONE_NEWUTS, "user": k.CLONE_NEWUSER,
    "cgroup": k.CLONE_NEWCGROUP, "time": k.CLONE_NEWTIME,
}
#: compiled seccomp programs, keyed by a hash of the profile, under the runtime root
SECCOMP_CACHE = "seccomp-cache"
# setns order: the user namespace first (it grants the rights to join the others), mount last.
JOIN_ORDER = ("user", "pid", "network", "ipc", "uts", "cgroup", "time", "mount")


@value
class Console:
    """Where the init sends its pty master: a socket path (``--console-socket``) or an
    inherited socket (``run`` in the foreground, which proxies the terminal itself)."""

    path: str | None = None
    fd: int | None = None


@value
class InitConfig:
    """Everything the children need, resolved and validated before the first fork."""

    rootfs: str
    spec: Spec
    steps: tuple[Step, ...]
    propagation: int
    clone_flags: int
    joins: tuple[tuple[str, str], ...]
    fifo: str
    #: an O_PATH fd of the fifo, opened by the parent: a user-namespaced init may not be able
    #: to walk the state directory's path, but it can reopen this fd through /proc/self/fd
    fifo_fd: int
    no_pivot: bool
    proc: process.Prepared
    console: Console | None
    #: a new user namespace: the middle child makes it first, the parent writes its maps
    new_userns: bool = False
    #: the container's cgroup, made by the parent; the middle child joins it before unshare,
    #: a directly cloned init before its cgroup namespace
    cgroup: CgroupManager | None = None
    #: no middle child: the parent clones the init into its pid namespace; the init makes or
    #: joins the others, and joins its cgroups once the parent says they are complete
    direct: bool = False
    container_id: str = ""
    new_keyring: bool = True


@value
class Bundle:
    """A bundle's config.json, parsed (``spec``) and as written (``raw``, saved with the state)."""

    spec: Spec
    raw: str


def load_bundle(bundle: StrPath) -> Bundle:
    try:
        with open(os.path.join(bundle, "config.json")) as f:
            raw = f.read()
    except FileNotFoundError:
        raise NotFound(f"bundle {bundle}: config.json not found") from None
    try:
        data = fastjson.loads(raw)
    except ValueError as exc:  # json.JSONDecodeError
        raise InvalidArgument(f"bundle {bundle}: config.json is not valid JSON: {exc}") from None
    return Bundle(parse_spec(data), raw)


def check_console(terminal: bool, cons: Console | None) -> None:
    if terminal and cons is None:
        raise InvalidArgument("cannot allocate tty if dockyard-runc will detach without "
                              "setting console socket")
    if not terminal and cons is not None and cons.path is not None:
        raise InvalidArgument("cannot use console socket if dockyard-runc will not detach "
                              "or allocate tty")
    if cons is not None and cons.path is not None and not os.path.exists(cons.path):
        raise NotFound(f"console socket {cons.path} does not exist")


def resolve(spec: Spec, bundle: StrPath, fifo: str, *, no_pivot: bool, preserve_fds: int,
            cons: Console | None, seccomp_cache: StrPath | None = None,
            mountinfo: str | None = None) -> InitConfig:
    if spec.process is None:
        raise InvalidArgument("config.json: process is required to create a container")
    root = spec.root.path
    rootfs_path = os.path.realpath(os.path.join(bundle, root))
    if not os.path.isdir(rootfs_path):
        raise NotFound(f"rootfs {rootfs_path} does not exist")
    check_console(spec.process.terminal, cons)
    user_ns = spec.linux.namespace("user")
    new_userns = user_ns is not None and not user_ns.path
    if new_userns and not (spec.linux.uid_mappings and spec.linux.gid_mappings):
        raise InvalidArgument("a new user namespace needs linux.uidMappings and "
                              "linux.gidMappings")
    if not new_userns and (spec.linux.uid_mappings or spec.linux.gid_mappings):
        raise InvalidArgument("linux.uidMappings/gidMappings need a new user namespace")
    if spec.linux.namespace("mount") is None:
        raise InvalidArgument("a mount namespace is required")
    clone_flags = 0
    joins = []
    for ns in spec.linux.namespaces:
        if ns.path:
            if not os.path.exists(ns.path):
                raise NotFound(f"namespace {ns.type} path {ns.path} does not exist")
            joins.append((ns.type, ns.path))
        elif ns.type != "user":  # the user namespace is made on its own, first
            clone_flags |= NS_FLAGS[ns.type]
    if spec.hostname and spec.linux.namespace("uts") is None:
        raise InvalidArgument("unable to set hostname without a private UTS namespace")
    joins.sort(key=lambda j: JOIN_ORDER.index(j[0]))
    # A middle child is needed when something must happen between making the namespaces and
    # the init's birth: the id maps of a new user namespace, time offsets (before any process
    # enters), or a setns into a pid namespace (it only applies to children) or user one
    # (it grants the rights to join the rest, so it comes first).
    direct = not new_userns and not clone_flags & k.CLONE_NEWTIME and not any(
        t in ("pid", "user") for t, _ in joins)
    if spec.linux.time_offsets and not clone_flags & k.CLONE_NEWTIME:
        raise InvalidArgument("linux.timeOffsets need a new time namespace")
    from dockyard.runtime import lsm

    lsm.check(spec)
    _preload_child_modules(spec, clone_flags)
    propagation = propagation_flags(spec.linux.rootfs_propagation or "rslave")
    return InitConfig(
        rootfs=rootfs_path, spec=spec, steps=rootfs.plan(spec, mountinfo=mountinfo),
        propagation=propagation,
        clone_flags=clone_flags, joins=tuple(joins), fifo=fifo,
        fifo_fd=os.open(fifo, os.O_PATH | os.O_CLOEXEC), no_pivot=no_pivot,
        proc=process.prepare(spec.process, preserve_fds, spec.linux.seccomp, seccomp_cache),
        console=cons,
        new_userns=new_userns, direct=direct)


def _preload_child_modules(spec: Spec, clone_flags: int) -> None:
    """Import here what the children will need. After it enters a user namespace the init
    may no longer be able to read the interpreter's library (here it lives under /root,
    0700), so nothing may be imported there for the first time."""
    h = spec.hooks
    needed = []
    if clone_flags & k.CLONE_NEWNET:
        needed.append("dockyard.linux.netdev")
    if h.create_container or h.start_container or h.prestart or h.create_runtime:
        needed.append("dockyard.runtime.hooks")
    if spec.process is not None and spec.process.terminal:
        needed += ["socket", "dockyard.runtime.console"]
    for name in needed:
        __import__(name)


def send(sock: _socket.socket, msg: dict[str, object]) -> None:
    sock.send(fastjson.dumps(msg).encode())


def recv(sock: _socket.socket) -> dict[str, object]:
    raw = sock.recv(65536)
    if not raw:
        raise DockyardError("container init exited before it was ready")
    msg: dict[str, object] = fastjson.loads(raw.decode())
    if "error" in msg:
        raise DockyardError(str(msg["error"]))
    return msg


def handshake(sock: _socket.socket, pids: list[int],
              on_hooks: Callable[[int], dict[str, object]] | None = None,
              on_userns: Callable[[], None] | None = None) -> int:
    """Collect the grandchild's pid (from the middle child) and its "ready" (from itself).

    Two processes write to one socket, so the messages may come in any order; the pid is
    appended to ``pids`` as soon as it is known, so a caller can clean up after an error.
    An init with hooks stops once before pivot_root ({"hooks": true}): ``on_hooks`` runs the
    runtime-side hooks and returns the state document the init's own hooks will read.
    """
    ready = False
    while not pids or not ready:
        msg = recv(sock)
        if "pid" in msg:
            pids.append(int(str(msg["pid"])))
        if msg.get("userns"):
            if on_userns is None:
                raise DockyardError("unexpected user namespace request")
            on_userns()
            send(sock, {"maps": True})
        if msg.get("hooks"):
            while not pids:  # the pid comes from the middle child; it may still be on its way
                msg = recv(sock)
                if "pid" in msg:
                    pids.append(int(str(msg["pid"])))
            doc = on_hooks(pids[0]) if on_hooks is not None else {}
            send(sock, {"continue": True, "state": doc})
        if msg.get("ready"):
            ready = True
    return pids[0]


def collect(sock: _socket.socket, mid: int, pids: list[int],
            on_hooks: Callable[[int], dict[str, object]] | None = None,
            on_userns: Callable[[], None] | None = None) -> int:
    """The parent's side of the handshake, then the middle child reaped; closes ``sock``."""
    try:
        return handshake(sock, pids, on_hooks, on_userns)
    except BaseException:
        # the middle child may be waiting for us (its id maps): don't wait for it
        try:
            os.kill(mid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        raise
    finally:
        sock.close()
        os.waitpid(mid, 0)


def report_and_exit(sock: _socket.socket, exc: BaseException, status: int) -> None:
    """The last thing a child does when it fails: tell the parent (who prints it), or, if the
    parent is gone, stderr."""
    try:
        send(sock, {"error": str(exc)})
    except OSError:
        try:
            os.write(2, f"dockyard-runc: {exc}\n".encode())
        except OSError:
            pass
    os._exit(status)


def _console_socket(cfg: InitConfig) -> socket.socket | None:
    if cfg.console is None:
        return None
    import socket

    from dockyard.runtime import console

    if cfg.console.fd is not None:
        return socket.socket(fileno=cfg.console.fd)
    assert cfg.console.path is not None
    return console.connect(cfg.console.path)


def _init(cfg: InitConfig, sock: _socket.socket,
          before_cgroup: Callable[[], None] | None = None) -> None:
    """The container's init, before exec. ``before_cgroup``: see :func:`rootfs.apply`. Never
    returns."""
    proc = cfg.proc.process
    try:
        k.prctl(k.PR_SET_DUMPABLE, 0)
        if cfg.clone_flags & k.CLONE_NEWNET:
            from dockyard.linux.netdev import set_up

            set_up("lo")
        csock = _console_socket(cfg)  # a host path: connect before pivot_root
        rootfs.prepare_root(cfg.rootfs, cfg.propagation)
        rootfs.apply(cfg.rootfs, cfg.steps, before_cgroup)
        hook_doc = _init_hooks(cfg, sock)
        fifo_fd = cfg.fifo_fd
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
        if cfg.new_keyring:
            _new_session_keyring(cfg.container_id)
        os.chdir(proc.cwd)
        exe = process.find_executable(proc.args[0], proc.env)
        if csock is not None:
            from dockyard.runtime import console

            console.make_pty_and_send(csock, proc.user.uid, proc.user.gid, proc.console_size)
            console.bind_console()
        if proc.oom_score_adj is not None:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(proc.oom_score_adj))
        process.apply_identity(cfg.proc)
        send(sock, {"ready": True})
        sock.close()
        fd = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
        os.write(fd, b"0")
        os.close(fd)
        os.close(fifo_fd)
        if cfg.spec.hooks.start_container:  # as runc: after start was released, before exec
            from dockyard.runtime import hooks

            hooks.run_all(cfg.spec.hooks.start_container, {**hook_doc, "status": "created"})
        process.sweep_fds(cfg.proc.preserve_fds)
        if proc.apparmor_profile or proc.selinux_label:
            from dockyard.runtime import lsm

            lsm.apply_on_exec(proc.apparmor_profile, proc.selinux_label)
        process.reset_signals()
        os.execve(exe, list(proc.args), process.env_dict(proc.env))
    except BaseException as exc:
        report_and_exit(sock, exc, 127)


def _new_session_keyring(container_id: str) -> None:
    """As runc: the container gets a session keyring of its own, not the caller's (whose keys
    it could otherwise read). Kernels without keyrings (ENOSYS) are let be."""
    import errno

    try:
        serial = k.join_session_keyring(f"_ses.{container_id}")
        # possessor: all; user: view, read, write, search, link (runc's 0x3f3f0000 | 0x080000)
        k.keyring_setperm(serial, 0x3F3F0000 | 0x080000)
    except DockyardError as exc:
        if getattr(exc, "errno", None) != errno.ENOSYS:
            raise


def _init_hooks(cfg: InitConfig, sock: _socket.socket) -> dict[str, object]:
    """With hooks: let the parent run prestart/createRuntime (in the runtime's namespaces),
    then run createContainer here (container namespaces, before pivot_root)."""
    h = cfg.spec.hooks
    if not (h.prestart or h.create_runtime or h.create_container or h.start_container):
        return {}
    send(sock, {"hooks": True})
    while True:
        msg = recv(sock)
        if msg.get("continue"):
            break
    doc = msg.get("state")
    state_doc: dict[str, object] = dict(doc) if isinstance(doc, dict) else {}
    if h.create_container:
        from dockyard.runtime import hooks

        hooks.run_all(h.create_container, state_doc)
    return state_doc


def _join_namespaces(joins: tuple[tuple[str, str], ...]) -> None:
    for ns_type, path in joins:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            k.setns(fd, NS_FLAGS[ns_type])
        finally:
            os.close(fd)


def _clone(cgroup: CgroupManager | None, flags: int) -> tuple[int, bool] | None:
    """Clone a child with ``flags`` (e.g. CLONE_NEWPID) into the cgroup v2 directory, if there
    is one (CLONE_INTO_CGROUP: no wait on the kernel's threadgroup lock). Returns (pid, cloned
    into the cgroup), or None when the kernel cannot (no clone3 or CLONE_INTO_CGROUP): the
    caller takes another way."""
    clone_dir = cgroup.clone_dir if cgroup is not None else None
    try:
        if clone_dir is None:
            return k.clone(flags), False
        fd = os.open(clone_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return k.clone(flags, fd), True
        finally:
            os.close(fd)
    except (OSError, DockyardError):
        return None


def _direct_init(cfg: InitConfig, sock: _socket.socket, cloned: bool) -> None:
    """The init the parent cloned itself (pid 1 already, with a new pid namespace): it makes
    or joins the other namespaces, then runs :func:`_init`, which joins the cgroups before its
    first cgroup mount. Never returns."""
    try:
        k.prctl(k.PR_SET_DUMPABLE, 0)
        _join_namespaces(cfg.joins)
        # the cgroup namespace later, once the init is in its cgroups: it is rooted there
        flags = cfg.clone_flags & ~(k.CLONE_NEWPID | k.CLONE_NEWCGROUP)
        if flags:
            k.unshare(flags)
    except BaseException as exc:
        report_and_exit(sock, exc, 127)
    _init(cfg, sock, lambda: _enter_cgroup(cfg, sock, cloned))


def _enter_cgroup(cfg: InitConfig, sock: _socket.socket, cloned: bool) -> None:
    """In the init: wait until the parent has made every cgroup directory and set the limits,
    join them, then make the cgroup namespace (rooted at the container's cgroup)."""
    try:
        raw = sock.recv(65536)
    except OSError:
        raw = b""
    if not raw:  # the parent failed (and kills us) or died: there is nobody to report to
        os._exit(1)
    if not fastjson.loads(raw.decode()).get("cgroup"):
        raise DockyardError(f"unexpected message while waiting for the cgroup: {raw!r}")
    if cfg.cgroup is not None:
        cfg.cgroup.add_self(cloned=cloned)
    if cfg.clone_flags & k.CLONE_NEWCGROUP:
        k.unshare(k.CLONE_NEWCGROUP)


def _collect_direct(sock: _socket.socket, pids: list[int], unfinished: CgroupManager | None,
                    spec: Spec, on_hooks: Callable[[int], dict[str, object]]) -> int:
    """The parent's side with a directly cloned init (in ``pids``): the rest of the
    ``unfinished`` cgroup while the init sets up, {"cgroup": true}, then the handshake;
    closes ``sock``."""
    try:
        if unfinished is not None:
            finish_cgroup(unfinished, spec)
        try:
            send(sock, {"cgroup": True})
        except OSError:  # the init failed already: its {"error"} is waiting in the socket
            pass
        return handshake(sock, pids, on_hooks)
    finally:
        sock.close()


def _fork_middle(cgroup: CgroupManager | None) -> tuple[int, bool]:
    """Fork the middle child, cloned into the container's cgroup v2 directory where there is
    one. Returns (pid, cloned into the cgroup); a plain fork otherwise, or where the kernel
    cannot clone into it."""
    if cgroup is not None and cgroup.clone_dir is not None:
        cloned = _clone(cgroup, 0)
        if cloned is not None:
            return cloned
    return os.fork(), False


def _intermediate(cfg: InitConfig, sock: _socket.socket, cloned: bool = False) -> None:
    """Join or create the namespaces, then fork the init into them. Never returns."""
    try:
        k.prctl(k.PR_SET_DUMPABLE, 0)
        _join_namespaces(cfg.joins)
        if cfg.cgroup is not None:  # before the cgroup namespace: it is rooted here
            cfg.cgroup.add_self(cloned=cloned)
        if cfg.new_userns:
            k.unshare(k.CLONE_NEWUSER)
            rootless = os.geteuid() != 0
            if rootless:  # an unprivileged parent can only write the maps of a dumpable child
                k.prctl(k.PR_SET_DUMPABLE, 1)
            send(sock, {"userns": True})  # the parent writes our uid/gid maps
            while not recv(sock).get("maps"):
                pass
            if rootless:
                k.prctl(k.PR_SET_DUMPABLE, 0)
            k.prctl(k.PR_SET_KEEPCAPS, 1)
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        k.unshare(cfg.clone_flags)  # now owned by the user namespace, if there is one
        if cfg.spec.linux.time_offsets:  # before any process enters the time namespace
            with open("/proc/self/timens_offsets", "w") as f:
                f.write("".join(f"{clock} {secs} {nsecs}\n"
                                for clock, secs, nsecs in cfg.spec.linux.time_offsets))
        pid = os.fork()
        if pid == 0:
            _init(cfg, sock)
        send(sock, {"pid": pid})
        os._exit(0)
    except BaseException as exc:
        report_and_exit(sock, exc, 1)


def now() -> str:
    """The time in RFC 3339, UTC, to the microsecond (without datetime: ~2 ms to import)."""
    ns = time.time_ns()
    y, mo, d, h, mi, s = time.gmtime(ns // 1_000_000_000)[:6]
    return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.{ns // 1000 % 1_000_000:06d}Z"


def write_pid_file(pid_file: StrPath, pid: int) -> None:
    tmp = os.fspath(pid_file) + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.replace(tmp, pid_file)


def container_resources(spec: Spec) -> Resources:
    """The spec's resources plus what runc adds to the device rules: an allow rule for each
    of linux.devices, then the devices every container may use."""
    from dockyard.cgroups.devices import RUNC_DEFAULT_ALLOWED
    from dockyard.model.resources import DeviceRule, Resources
    from dockyard.values import replace

    base = spec.linux.resources or Resources()
    own = tuple(DeviceRule(True, "b" if d.type == "b" else "c", d.major, d.minor, "rwm")
                for d in spec.linux.devices if d.type != "p")
    return replace(base, devices=base.devices + own + RUNC_DEFAULT_ALLOWED)


def make_cgroup(spec: Spec, container_id: str, systemd: bool = False,
                mountinfo: str | None = None, *, complete: bool = True
                ) -> CgroupManager | None:
    """Create the container's cgroup and apply its limits (before any process joins).

    ``complete=False`` (as root only): only the directory the init can be cloned into is
    made; :func:`finish_cgroup` does the rest while the init sets itself up.
    Unprivileged (rootless), a cgroup that cannot be made is done without, as runc does, as
    long as the spec asks for no limits; device rules are not ours to enforce there."""
    import errno

    from dockyard import cgroups
    from dockyard.cgroups.layout import cgroup_mounts
    from dockyard.model.resources import Resources

    mgr = cgroups.manager_for(spec.linux.cgroups_path, container_id, systemd=systemd,
                              hierarchies=cgroup_mounts(mountinfo))
    rootless = os.geteuid() != 0
    if not complete and not rootless:
        mgr.create_clone_dir()
        return mgr
    resources = container_resources(spec)
    if rootless:
        resources = replace(resources, devices=())
    try:
        mgr.apply(None, resources)
    except DockyardError as exc:
        denied = getattr(exc, "errno", None) in (errno.EACCES, errno.EPERM, errno.EROFS)
        if rootless and denied and resources == Resources():  # no limits asked for
            return None
        if rootless and denied:
            raise PermissionDenied(f"cannot create the container's cgroup as an unprivileged "
                                   f"user, and linux.resources asks for limits: {exc}",
                                   hint="run as root, or drop linux.resources") from None
        raise
    try:
        mgr.set(resources)
    except BaseException:
        mgr.destroy(kill=True)
        raise
    return mgr


def finish_cgroup(mgr: CgroupManager, spec: Spec) -> None:
    """What ``make_cgroup(complete=False)`` left: every directory (v1 cpuset and real-time
    budget first), then the limits. The caller destroys the cgroup if this fails."""
    resources = container_resources(spec)
    mgr.apply(None, resources)
    mgr.set(resources)


def _hook_kinds(spec: Spec) -> tuple[str, ...]:
    h = spec.hooks
    present = (("prestart", h.prestart), ("createRuntime", h.create_runtime),
               ("createContainer", h.create_container), ("startContainer", h.start_container),
               ("poststart", h.poststart), ("poststop", h.poststop))
    return tuple(kind for kind, hooks in present if hooks)


def create(root: StrPath, container_id: str, bundle: StrPath, *,
           pid_file: StrPath | None = None,
           no_pivot: bool = False, preserve_fds: int = 0, console_socket: str | None = None,
           console_fd: int | None = None, systemd_cgroup: bool = False,
           no_new_keyring: bool = False, loaded: Bundle | None = None) -> state.Record:
    """``loaded``: the bundle's config, when the caller has read it already (``run``)."""
    return create_container(root, container_id, bundle, pid_file=pid_file, no_pivot=no_pivot,
                            preserve_fds=preserve_fds, console_socket=console_socket,
                            console_fd=console_fd, systemd_cgroup=systemd_cgroup,
                            no_new_keyring=no_new_keyring, loaded=loaded)[0]


def create_container(root: StrPath, container_id: str, bundle: StrPath, *,
                     pid_file: StrPath | None = None, no_pivot: bool = False,
                     preserve_fds: int = 0, console_socket: str | None = None,
                     console_fd: int | None = None, systemd_cgroup: bool = False,
                     no_new_keyring: bool = False, loaded: Bundle | None = None
                     ) -> tuple[state.Record, CgroupManager | None]:
    """:func:`create`, also returning the container's cgroup manager (``run`` removes the
    cgroup with it, without reading the mount table again)."""
    bundle = os.path.realpath(bundle)
    if loaded is None:
        loaded = load_bundle(bundle)
    spec, raw_config = loaded.spec, loaded.raw
    state.validate_id(container_id)
    cons = None
    if console_socket is not None or console_fd is not None:
        cons = Console(path=console_socket, fd=console_fd)
    state_dir = state.reserve(root, container_id)
    pids: list[int] = []
    own_child: int | None = None   # a directly cloned init: reaped here if create fails
    cgroup: CgroupManager | None = None
    try:
        state.save_config(state_dir, raw_config)
        fifo = os.path.join(state_dir, fastpath.FIFO_NAME)
        os.mkfifo(fifo, 0o622)
        # past the umask: the init reopens it after dropping to the process user, who may be
        # "other" to it (a non-root user, or root in a user namespace), as runc does
        os.chmod(fifo, 0o622)  # noqa: S103
        hook_kinds = _hook_kinds(spec)
        created = now()

        def on_hooks(init_pid: int) -> dict[str, object]:
            from dockyard.runtime import hooks

            doc = state.hook_state(_record(init_pid, 0), state.Status.CREATING)
            hooks.run_all(spec.hooks.prestart + spec.hooks.create_runtime, doc)
            return doc

        def _record(init_pid: int, start_time: int) -> state.Record:
            return state.Record(id=container_id, pid=init_pid, pid_start_time=start_time,
                                bundle=str(bundle), rootfs=cfg.rootfs, created=created,
                                annotations=spec.annotations, hooks=hook_kinds,
                                cgroup_paths=tuple(sorted(cgroup.paths.items()))
                                if cgroup is not None else ())

        with open("/proc/self/mountinfo") as f:  # read once, for the plan and the cgroups
            mountinfo = f.read()
        cfg = resolve(spec, bundle, fifo, no_pivot=no_pivot, preserve_fds=preserve_fds,
                      mountinfo=mountinfo,
                      cons=cons, seccomp_cache=os.path.join(root, SECCOMP_CACHE))
        parallel = cfg.direct and os.geteuid() == 0  # the cgroup's limits while the init sets up
        cgroup = make_cgroup(spec, container_id, systemd_cgroup, mountinfo,
                             complete=not parallel)
        cfg = replace(cfg, cgroup=cgroup, container_id=container_id,
                      new_keyring=not no_new_keyring)
        parent_sock, child_sock = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        sys.stdout.flush()
        sys.stderr.flush()
        cloned_init = _clone(cgroup, cfg.clone_flags & k.CLONE_NEWPID) if cfg.direct else None
        if cloned_init is not None:
            pid, cloned = cloned_init
            if pid == 0:
                parent_sock.close()
                _direct_init(cfg, child_sock, cloned)
            own_child = pid
            pids.append(pid)
            child_sock.close()
            os.close(cfg.fifo_fd)
            init_pid = _collect_direct(parent_sock, pids, cgroup if parallel else None, spec,
                                       on_hooks)
        else:
            if parallel and cgroup is not None:
                finish_cgroup(cgroup, spec)
            cfg = replace(cfg, direct=False)
            mid, cloned = _fork_middle(cgroup)
            if mid == 0:
                parent_sock.close()
                _intermediate(cfg, child_sock, cloned)
            child_sock.close()
            os.close(cfg.fifo_fd)
            init_pid = collect(parent_sock, mid, pids, on_hooks,
                               lambda: userns.write_maps(mid, spec.linux))
        start_time = fastpath.process_start_time(init_pid)
        if start_time is None:
            raise DockyardError("container init exited before it was ready")
        rec = _record(init_pid, start_time)
        state.save(root, rec)
        if pid_file is not None:
            write_pid_file(pid_file, init_pid)
        return rec, cgroup
    except BaseException:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if own_child is not None:  # before the cgroup goes: it may still be in it
            try:
                os.waitpid(own_child, 0)
            except ChildProcessError:
                pass
        if cgroup is not None:
            try:
                cgroup.destroy(kill=True)
            except DockyardError:
                pass
        state.remove_dir(state_dir)
        raise
