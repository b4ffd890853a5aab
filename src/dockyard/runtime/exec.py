"""``exec``: run another process inside a running container.

::

    exec (parent, subreaper)        joiner                          process
      |-- open /proc/<init>/ns/*    |
      |-- fork ------------------->|-- PR_SET_DUMPABLE 0, setns(each)
      |                            |-- fork ------------------------>|
      |<-- {"pid": N} -------------|   exit                          |-- cwd, console,
      |                                                              |   identity, fd sweep
      |<-- {"ready": true} or {"error": ...} ------------------------|-- execve
      |   (foreground: proxy the tty / wait for N and return its status)

The joiner makes itself non-dumpable before it joins anything, so no container process can
reach the host's Python through /proc while we are inside (the CVE-2019-5736 class); the
parent never joins the container's namespaces, so its lazy imports keep working.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys

from dockyard.errors import FailedPrecondition, InvalidArgument
from dockyard.linux import libc as k
from dockyard.model.oci import Process, User
from dockyard.runtime import console, create, process, state
from dockyard.values import replace

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from _typeshed import StrPath

    from dockyard.cgroups import CgroupManager

_NS_FILES = (("user", "user"), ("ipc", "ipc"), ("uts", "uts"), ("network", "net"),
             ("pid", "pid"), ("cgroup", "cgroup"), ("time", "time_for_children"),
             ("mount", "mnt"))


def parse_user(text: str) -> User:
    uid, _, gid = text.partition(":")
    try:
        return User(uid=int(uid), gid=int(gid) if gid else 0)
    except ValueError:
        raise InvalidArgument(f"--user {text!r}: expected uid[:gid] as numbers") from None


def build_process(base: Process, args: tuple[str, ...], *, env: tuple[str, ...] = (),
                  cwd: str | None = None, user: User | None = None,
                  additional_gids: tuple[int, ...] = (), caps: tuple[str, ...] = (),
                  no_new_privs: bool = False, tty: bool = False) -> Process:
    """runc's rule: start from the container's own process, then apply the flags."""
    if not args:
        raise InvalidArgument("exec: no command given (args or --process)")
    proc = replace(base, args=args, env=base.env + env, terminal=tty)
    if cwd is not None:
        if not cwd.startswith("/"):
            raise InvalidArgument("--cwd must be an absolute path")
        proc = replace(proc, cwd=cwd)
    if user is not None:
        proc = replace(proc, user=replace(user, additional_gids=additional_gids
                                          or base.user.additional_gids))
    elif additional_gids:
        proc = replace(proc, user=replace(proc.user, additional_gids=additional_gids))
    if caps and proc.capabilities is not None:
        c = proc.capabilities
        proc = replace(proc, capabilities=replace(
            c, bounding=c.bounding + caps, effective=c.effective + caps,
            permitted=c.permitted + caps, ambient=c.ambient + caps))
    if no_new_privs:
        proc = replace(proc, no_new_privileges=True)
    return proc


def _process_main(prepared: process.Prepared, sock: socket.socket,
                  cons: create.Console | None) -> None:
    proc = prepared.process
    try:
        os.chdir(proc.cwd)  # resolved inside the container: we are in its mount namespace
        exe = process.find_executable(proc.args[0], proc.env)
        if cons is not None:
            csock = (socket.socket(fileno=cons.fd) if cons.fd is not None
                     else console.connect(str(cons.path)))
            console.make_pty_and_send(csock, proc.user.uid, proc.user.gid, proc.console_size)
        process.apply_identity(prepared)
        create.send(sock, {"ready": True})
        sock.close()
        process.sweep_fds(prepared.preserve_fds)
        if proc.apparmor_profile or proc.selinux_label:
            from dockyard.runtime import lsm

            lsm.apply_on_exec(proc.apparmor_profile, proc.selinux_label)
        process.reset_signals()
        os.execve(exe, list(proc.args), process.env_dict(proc.env))
    except BaseException as exc:
        create.report_and_exit(sock, exc, 127)


def _joiner(ns_fds: list[tuple[str, int]], prepared: process.Prepared, sock: socket.socket,
            cons: create.Console | None, cgroup: CgroupManager | None) -> None:
    try:
        k.prctl(k.PR_SET_DUMPABLE, 0)
        if cgroup is not None:  # the container's cgroup, before its cgroup namespace
            cgroup.add_pid(os.getpid())
        for ns_type, fd in ns_fds:
            k.setns(fd, create.NS_FLAGS[ns_type])
            os.close(fd)
        pid = os.fork()
        if pid == 0:
            _process_main(prepared, sock, cons)
        create.send(sock, {"pid": pid})
        os._exit(0)
    except BaseException as exc:
        create.report_and_exit(sock, exc, 1)


def _namespace_fds(init_pid: int) -> list[tuple[str, int]]:
    """The container's namespaces that differ from ours, opened before the fork."""
    out = []
    for ns_type, name in _NS_FILES:
        theirs = f"/proc/{init_pid}/ns/{name}"
        try:
            if os.readlink(theirs) == os.readlink(f"/proc/self/ns/{name}"):
                continue
            out.append((ns_type, os.open(theirs, os.O_RDONLY | os.O_CLOEXEC)))
        except FileNotFoundError:
            continue
    return out


def exec_process(root: StrPath, container_id: str, proc: Process, *, detach: bool = False,
                 pid_file: StrPath | None = None, console_socket: str | None = None,
                 preserve_fds: int = 0, ignore_paused: bool = False) -> int:
    """Start ``proc`` in the container; unless detached, wait and return its exit status."""
    rec = state.load(root, container_id)
    status = state.status_of(root, rec)
    if status is state.Status.PAUSED and not ignore_paused:
        raise FailedPrecondition("cannot exec in a paused container (use --ignore-paused)")
    if not status.can_exec and status is not state.Status.PAUSED:
        raise FailedPrecondition(f"cannot exec in a {status.value} container")
    cgroup = state.cgroup_of(rec)
    proxy_sock: socket.socket | None = None
    cons: create.Console | None = None
    if proc.terminal and console_socket is None:
        if detach:
            raise InvalidArgument("cannot allocate tty if dockyard-runc will detach without "
                                  "setting console socket")
        proxy_sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        cons = create.Console(fd=theirs.detach())
    elif console_socket is not None:
        create.check_console(proc.terminal, create.Console(path=console_socket))
        cons = create.Console(path=console_socket)
    # runc's rule: an exec'd process gets the container's seccomp profile too
    prepared = process.prepare(proc, preserve_fds, state.load_config(root, container_id)
                               .linux.seccomp, os.path.join(root, create.SECCOMP_CACHE))
    if not detach:
        k.prctl(k.PR_SET_CHILD_SUBREAPER, 1)
    ns_fds = _namespace_fds(rec.pid)
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sys.stdout.flush()
    sys.stderr.flush()
    mid = os.fork()
    if mid == 0:
        parent_sock.close()
        _joiner(ns_fds, prepared, child_sock, cons, cgroup)
    child_sock.close()
    for _, fd in ns_fds:
        os.close(fd)
    if cons is not None and cons.fd is not None:
        os.close(cons.fd)
    pids: list[int] = []
    try:
        pid = create.collect(parent_sock, mid, pids)
    except BaseException:
        for stray in pids:
            # It was re-parented to us (a subreaper unless detached): reap it, or a zombie in
            # the container's pid namespace would hold up that namespace's teardown.
            with contextlib.suppress(ProcessLookupError):
                os.kill(stray, 9)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(stray, 0)
        raise
    if pid_file is not None:
        create.write_pid_file(pid_file, pid)
    if detach:
        return 0
    from dockyard.runtime.run import wait_for

    master = console.recv_master(proxy_sock) if proxy_sock is not None else None
    return wait_for(pid, master)
