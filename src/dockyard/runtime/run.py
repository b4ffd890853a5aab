"""``run``: create + start, then (unless detached) wait for the init as its subreaper and delete.

The run process makes itself a child subreaper before creating, so the init is its child
(cloned by it directly) or re-parents to it when the intermediate child exits; either way it
can wait for the container's exit status.
With ``process.terminal`` and no console socket, run keeps the pty master itself and copies
bytes between it and its own stdio (runc's behaviour).
"""

from __future__ import annotations

import os

from dockyard.errors import InvalidArgument
from dockyard.linux import libc as k
from dockyard.runtime import create as create_mod
from dockyard.runtime import delete as delete_mod
from dockyard.runtime import start as start_mod

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import signal
    import socket

    from _typeshed import StrPath
else:
    import _signal as signal  # not signal.py: it imports enum (~5 ms)

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
              signal.SIGUSR2)


def run(root: StrPath, container_id: str, bundle: StrPath, *, detach: bool = False,
        pid_file: StrPath | None = None, no_pivot: bool = False, preserve_fds: int = 0,
        console_socket: str | None = None, systemd_cgroup: bool = False,
        no_new_keyring: bool = False) -> int:
    proxy_sock: socket.socket | None = None
    console_fd: int | None = None
    loaded = create_mod.load_bundle(os.path.realpath(bundle))
    if console_socket is None:
        spec = loaded.spec
        if spec.process is not None and spec.process.terminal:
            if detach:
                raise InvalidArgument("cannot allocate tty if dockyard-runc will detach "
                                      "without setting console socket")
            import socket  # only with a terminal

            proxy_sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            console_fd = theirs.detach()
    if not detach:
        k.prctl(k.PR_SET_CHILD_SUBREAPER, 1)
    try:
        rec, cgroup = create_mod.create_container(
            root, container_id, bundle, pid_file=pid_file, no_pivot=no_pivot,
            preserve_fds=preserve_fds, console_socket=console_socket, console_fd=console_fd,
            systemd_cgroup=systemd_cgroup, no_new_keyring=no_new_keyring, loaded=loaded)
    finally:
        if console_fd is not None:
            os.close(console_fd)
    master = None
    if proxy_sock is not None:
        from dockyard.runtime import console

        master = console.recv_master(proxy_sock)
    try:
        start_mod.start(root, container_id)
    except BaseException:
        delete_mod.delete(root, container_id, force=True)
        raise
    if detach:
        return 0
    try:
        return wait_for(rec.pid, master)
    finally:
        delete_mod.remove(root, rec, cgroup, force=True)


def wait_for(pid: int, master: int | None = None) -> int:
    """Forward signals to ``pid``, proxy its terminal if it has one, reap it, and return its
    status the shell way (128+signal)."""

    def forward(signum: int, _frame: object) -> None:
        os.kill(pid, signum)

    import gc

    gc.enable()  # the CLI runs without cyclic GC; a foreground run lives as long as its container
    for sig in _FORWARDED:
        signal.signal(sig, forward)
    try:
        if master is not None:
            from dockyard.runtime import console

            pidfd = os.pidfd_open(pid)
            try:
                console.proxy(master, pidfd)
            finally:
                os.close(pidfd)
                os.close(master)
        return _wait(pid)
    finally:
        for sig in _FORWARDED:
            signal.signal(sig, signal.SIG_DFL)


def _wait(pid: int) -> int:
    """Reap children until ``pid`` exits."""
    while True:
        try:
            reaped, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        if reaped == pid:
            if os.WIFEXITED(status):
                return os.WEXITSTATUS(status)
            return 128 + os.WTERMSIG(status)
