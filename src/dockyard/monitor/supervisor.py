"""The per-container supervisor (conmon's job): it starts the container through the OCI runtime,
owns its stdio, writes its log, records its exit and cleans up after it.

It is forked from the ``dockyard`` command that starts the container and detaches from it
(double fork, new session), so the command can exit; it is the container's subreaper, so the
container's init becomes its child when the runtime's intermediate process exits::

    dockyard run ──fork──▶ middle ──fork──▶ supervisor (setsid, subreaper)
         │                   exit            │ runtime create + start (library or binary)
         │◀──── "started <pid>" ─────────────│ status pipe
         │◀──── container output (attached) ─│ stdout/stderr pipes ─▶ log file
         │◀──── "exited <code>" ─────────────│ on the init's exit: record, delete, (--rm)

A supervisor that dies leaves its container running (the container is in its own session and
cgroup); the next command that looks at the container sees the supervisor gone and records
what it can (see :meth:`ContainerService.refresh`).
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

from dockyard.linux import libc as k
from dockyard.values import replace, value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dockyard.monitor.health import Checker

_READ = 65536


@value
class Launch:
    """Everything the supervisor needs, resolved before the fork."""

    container_id: str
    bundle: str
    runtime_root: str
    runtime: str            # "" = dockyard's own runtime, as a library; else a runc-like binary
    log_path: str
    log_max_size: int | None
    log_max_file: int
    log_driver: str         # "json-file" or "none"
    attach_stdout: int      # the starting command's fds to copy output to, or -1
    attach_stderr: int
    status_fd: int          # a pipe to the starting command: "started <pid>\n", "exited <n>\n"
    pid_file: str           # the supervisor's own pid, for stop/kill/refresh
    stdin_fd: int = -1           # the starting command's stdin for the container (run -i)
    tty: bool = False            # the container has a terminal: we hold its pty master
    restart_policy: str = "no"   # docker's: no, on-failure, always, unless-stopped
    restart_max: int = 0         # on-failure:N (0: no limit)
    stop_flag: str = ""          # exists once the user stopped or killed the container
    exec_prefix: tuple[str, ...] = ()    # runtime argv up to the command: [rt, --root, R, exec, id]
    health_command: tuple[str, ...] = ()  # the healthcheck's argv in the container, or ()
    health_interval: float = 30.0
    health_timeout: float = 30.0
    health_retries: int = 3
    health_start_period: float = 0.0
    health_file: str = ""
    on_health_status: Callable[[str], None] | None = None   # called with each new status


# docker's restart backoff: 100 ms, doubling, at most a minute; reset after 10 s of running.
RESTART_FIRST_DELAY_S = 0.1
RESTART_MAX_DELAY_S = 60.0
RESTART_RESET_AFTER_S = 10.0


def spawn(launch: Launch, on_exit: Callable[[int, int | None], None],
          on_started: Callable[[int, int], None],
          on_restarted: Callable[[int, int], None] | None = None, *,
          on_died: Callable[[int], None] | None = None) -> int:
    """Fork the supervisor; returns the middle process's pid (reaped here) once forked.

    ``on_started(init_pid, supervisor_pid)`` and ``on_exit(code, init_pid)`` run in the
    supervisor and record what happened (the engine's database writes); ``on_died(code)``
    runs each time the container's init exits, restarted or not.
    """
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return pid
    # the middle process: a new session, then the supervisor, then leave
    status = 0
    try:
        os.setsid()
        if os.fork() == 0:
            code = 0
            try:
                _supervise(launch, on_exit, on_started, on_restarted or (lambda _p, _n: None),
                           on_died or (lambda _c: None))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:  # the supervisor must never unwind into the CLI
                code = 1
                _crash_note(launch)
            os._exit(code)
    except BaseException:
        status = 1
    os._exit(status)


def _crash_note(launch: Launch) -> None:
    """A supervisor bug: leave the traceback beside its pid file for whoever looks."""
    import traceback

    try:
        with open(launch.pid_file + ".crash", "w") as f:
            traceback.print_exc(file=f)
    except OSError:
        pass


def _stdin(launch: Launch) -> None:
    """The container's stdin: the starting command's (run -i), else /dev/null. With a
    terminal the container reads the pty instead, and we forward the command's input."""
    if launch.stdin_fd >= 0 and not launch.tty:
        os.dup2(launch.stdin_fd, 0)
        os.close(launch.stdin_fd)
        return
    fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(fd, 0)
    os.close(fd)


def _null_output() -> None:
    """Our own stdout/stderr go nowhere: the starting command's terminal or pipes must not be
    held open by us (the command could not close its terminal)."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)


def _keep_only(launch: Launch) -> Launch:
    """Move the fds the supervisor keeps above stdio and close every other inherited fd
    (the starting command's database, sockets, files)."""
    def dup(fd: int) -> int:
        return os.dup(fd) if fd >= 0 else -1

    out, err, status = dup(launch.attach_stdout), dup(launch.attach_stderr), dup(launch.status_fd)
    stdin = dup(launch.stdin_fd)
    wanted = sorted(fd for fd in (out, err, status, stdin) if fd >= 0)
    low = 3
    for fd in wanted:
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)
    return replace(launch, attach_stdout=out, attach_stderr=err, status_fd=status,
                               stdin_fd=stdin)


def _supervise(launch: Launch, on_exit: Callable[[int, int | None], None],
               on_started: Callable[[int, int], None],
               on_restarted: Callable[[int, int], None],
               on_died: Callable[[int], None]) -> None:
    os.chdir("/")
    launch = _keep_only(launch)
    k.prctl(k.PR_SET_CHILD_SUBREAPER, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    with open(launch.pid_file, "w") as f:
        f.write(str(os.getpid()))
    _stdin(launch)
    _null_output()
    if launch.tty and launch.attach_stdout >= 0:
        # the attached command signals us when its window changes size
        signal.signal(signal.SIGWINCH, lambda _s, _f: _resize(launch))
    writer = _open_log(launch)
    restarts = 0
    backoff = 0
    first = True
    while True:
        started = time.monotonic()
        try:
            init_pid, pipes = _launch_container(launch)
        except BaseException as e:
            _report(launch.status_fd, f"error {_one_line(e)}")
            on_exit(-1, None)
            raise SystemExit(1) from None
        if first:
            on_started(init_pid, os.getpid())
            _report(launch.status_fd, f"started {init_pid} {os.getpid()}")
            first = False
        else:
            on_restarted(init_pid, restarts)
        code, launch = _pump(launch, init_pid, pipes, writer)   # a detach drops fds
        on_died(code)
        _delete_runtime_state(launch)
        if not _should_restart(launch, code, restarts):
            break
        if time.monotonic() - started > RESTART_RESET_AFTER_S:
            backoff = 0     # it ran a good while: the backoff starts afresh
        restarts += 1
        delay = min(RESTART_FIRST_DELAY_S * 2 ** backoff, RESTART_MAX_DELAY_S)
        backoff += 1
        if _wait_or_stopped(launch, delay):
            break
    if writer is not None:
        writer.close()
    on_exit(code, init_pid)
    _report(launch.status_fd, f"exited {code}")


def _launch_container(launch: Launch) -> tuple[int, dict[int, str]]:
    """Create and start the container with fresh output pipes; (init pid, pipes to read).

    With a terminal, the "pipes" are the pty master alone (it carries both streams)."""
    if launch.tty:
        return _launch_with_terminal(launch)
    # The runtime passes our fds 0-2 to the init, so the pipes go there for the moment of
    # creation; afterwards our own output goes nowhere.
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.close(out_w)
    os.close(err_w)
    try:
        init_pid = _create_and_start(launch)
    except BaseException:
        os.close(out_r)
        os.close(err_r)
        raise
    finally:
        _null_output()
    return init_pid, {out_r: "stdout", err_r: "stderr"}


def _launch_with_terminal(launch: Launch) -> tuple[int, dict[int, str]]:
    import socket

    from dockyard.runtime import console

    if launch.runtime:
        path = os.path.join(os.path.dirname(launch.pid_file), "console.sock")
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        listener.settimeout(60)
        try:
            init_pid = _create_and_start(launch, console_socket=path, accept=listener)
        finally:
            listener.close()
            os.unlink(path)
        master = launch_master.pop()
    else:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            init_pid = _create_and_start(launch, console_fd=theirs.fileno(), console_sock=ours)
        finally:
            theirs.close()
            ours.close()
        master = launch_master.pop()
    if launch.attach_stdout >= 0 and os.isatty(launch.attach_stdout):
        console.copy_size(launch.attach_stdout, master)
    current_master[:] = [master]
    return init_pid, {master: "stdout"}


# The pty master handed over by the runtime during create (set by _create_and_start), and
# the one in use (for window size changes).
launch_master: list[int] = []
current_master: list[int] = []


def _resize(launch: Launch) -> None:
    from dockyard.runtime import console

    for fd in current_master:
        console.copy_size(launch.attach_stdout, fd)


def _should_restart(launch: Launch, code: int, restarts: int) -> bool:
    """docker's policies; a container stopped or killed by the user is not brought back."""
    policy = launch.restart_policy
    if policy in ("", "no") or os.path.exists(launch.stop_flag):
        return False
    if policy == "on-failure":
        return code != 0 and (launch.restart_max <= 0 or restarts < launch.restart_max)
    return policy in ("always", "unless-stopped")


def _wait_or_stopped(launch: Launch, delay: float) -> bool:
    """Sleep ``delay`` before a restart; True if the user stopped the container meanwhile."""
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        if os.path.exists(launch.stop_flag):
            return True
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    return os.path.exists(launch.stop_flag)


def _one_line(e: BaseException) -> str:
    return str(e).replace("\n", " ").strip() or type(e).__name__


def _report(fd: int, line: str) -> None:
    if fd < 0:
        return
    try:
        os.write(fd, (line + "\n").encode(errors="replace"))
    except OSError:
        pass  # the starting command went away: nothing to tell


def _open_log(launch: Launch) -> _LogSink | None:
    if launch.log_driver == "none":
        return None
    from dockyard.monitor.logfile import LogWriter

    return LogWriter(launch.log_path, max_size=launch.log_max_size,
                     max_file=launch.log_max_file)


class _LogSink(Protocol):
    def write(self, stream: str, data: bytes, ts_ns: int | None = None) -> None: ...

    def close(self) -> None: ...


def _create_and_start(launch: Launch, *, console_socket: str = "", accept: Any = None,
                      console_fd: int | None = None, console_sock: Any = None) -> int:
    from dockyard.runtime import console

    if launch.runtime:
        import subprocess

        base = [launch.runtime, "--root", launch.runtime_root]
        pid_file = os.path.join(os.path.dirname(launch.pid_file), "init.pid")
        extra = ["--console-socket", console_socket] if console_socket else []
        proc = subprocess.Popen([*base, "create", "--bundle", launch.bundle, "--pid-file",
                                 pid_file, *extra, launch.container_id], stdin=0, stdout=1,
                                stderr=2, close_fds=True)
        if accept is not None:
            try:
                conn, _ = accept.accept()
            except OSError:
                proc.kill()
                proc.wait()
                raise
            with conn:
                launch_master.append(console.recv_master(conn))
        if proc.wait() != 0:
            raise RuntimeError(f"{launch.runtime} create exited {proc.returncode}")
        with open(pid_file) as f:
            init_pid = int(f.read().strip())
        subprocess.run([*base, "start", launch.container_id], check=True, stdin=0, stdout=1,
                       stderr=2)
        return init_pid
    from dockyard.runtime import create as create_mod
    from dockyard.runtime import delete as delete_mod
    from dockyard.runtime import start as start_mod

    rec = create_mod.create(launch.runtime_root, launch.container_id, launch.bundle,
                            console_fd=console_fd)
    if console_sock is not None:
        launch_master.append(console.recv_master(console_sock))
    try:
        start_mod.start(launch.runtime_root, launch.container_id)
    except BaseException:
        delete_mod.delete(launch.runtime_root, launch.container_id, force=True)
        raise
    return rec.pid


DETACH_KEYS = b"\x10\x11"   # docker's default: ctrl-p ctrl-q


def _pump(launch: Launch, init_pid: int, pipes: dict[int, str], writer: _LogSink | None
          ) -> tuple[int, Launch]:
    """Copy output to the log (and the attached command) until the init exits; its status.

    With a terminal, the attached command's input goes to the pty master too, until it types
    the detach keys (then it is told "detached" and let go: the returned Launch no longer
    has the command's fds)."""
    attach = {"stdout": launch.attach_stdout, "stderr": launch.attach_stderr}
    poller = select.poll()
    for fd in pipes:
        poller.register(fd, select.POLLIN)
    pidfd = os.pidfd_open(init_pid)
    poller.register(pidfd, select.POLLIN)
    master = next(iter(pipes)) if launch.tty else -1
    keyboard = launch.stdin_fd if launch.tty else -1
    if keyboard >= 0:
        poller.register(keyboard, select.POLLIN)
    held = b""      # a possible start of the detach sequence, not yet forwarded
    code: int | None = None
    open_pipes = dict(pipes)
    health = _checker(launch)
    while open_pipes or code is None:
        # While the container runs, only its pidfd, its output or a healthcheck wake us.
        wait: float | None = None if code is None else 0.05
        if health is not None and code is None:
            if health.due():
                health.start_check()
                if health.pid:
                    poller.register(health.pidfd, select.POLLIN)
                    poller.register(health.out, select.POLLIN)
            elif health.overdue():
                poller.unregister(health.pidfd)
                poller.unregister(health.out)
                health.finish(timed_out=True)
            wait = health.timeout()
        for fd, _ in poller.poll(None if wait is None else wait * 1000):
            if health is not None and health.pid and fd in (health.pidfd, health.out):
                if fd == health.out:
                    health.read_output()
                else:
                    poller.unregister(health.pidfd)
                    poller.unregister(health.out)
                    health.finish()
                continue
            if fd == pidfd:
                code = _reap(init_pid)
                poller.unregister(pidfd)
                os.close(pidfd)
                continue
            if fd == keyboard:
                data = _read(fd)
                if not data:
                    poller.unregister(fd)
                    keyboard = -1
                    continue
                data, held, detach = _scan_detach(held + data)
                if data:
                    _write_all(master, data)
                if detach:
                    # Let go of the command's terminal entirely, or it could not close.
                    poller.unregister(fd)
                    _report(launch.status_fd, "detached")
                    for held_fd in {keyboard, *attach.values(), launch.status_fd}:
                        if held_fd >= 0:
                            os.close(held_fd)
                    keyboard = -1
                    attach = {"stdout": -1, "stderr": -1}
                    launch = replace(launch, status_fd=-1, stdin_fd=-1,
                                                 attach_stdout=-1, attach_stderr=-1)
                continue
            data = _read(fd)
            stream = open_pipes.get(fd)
            if stream is None:
                continue
            if not data:
                poller.unregister(fd)
                os.close(fd)
                del open_pipes[fd]
                continue
            if writer is not None:
                writer.write(stream, data)
            target = attach[stream]
            if target >= 0:
                try:
                    _write_all(target, data)
                except OSError:
                    attach[stream] = -1     # the attached command went away
        if code is not None and open_pipes:
            # The init is gone; whatever still holds the pipes (a daemonised grandchild)
            # died with the pid namespace. Drain what is buffered, then stop.
            ready = {fd for fd, _ in poller.poll(0)}
            if not ready:
                break
    for fd in open_pipes:
        os.close(fd)
    if health is not None:
        health.close()
    return (code if code is not None else 255), launch


def _checker(launch: Launch) -> Checker | None:
    if not launch.health_command or not launch.exec_prefix:
        return None
    from dockyard.monitor.health import Checker, HealthConfig

    return Checker(HealthConfig(launch.health_command, launch.health_interval,
                                launch.health_timeout, launch.health_retries,
                                launch.health_start_period),
                   launch.exec_prefix, launch.health_file, on_status=launch.on_health_status)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, _READ)
    except OSError:     # EIO: a pty master whose other side is closed for good
        return b""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _scan_detach(data: bytes) -> tuple[bytes, bytes, bool]:
    """(bytes to forward, bytes held back as a possible detach prefix, detach typed?)."""
    at = data.find(DETACH_KEYS)
    if at >= 0:
        return data[:at], b"", True
    for n in range(len(DETACH_KEYS) - 1, 0, -1):
        if data.endswith(DETACH_KEYS[:n]):
            return data[:-n], data[-n:], False
    return data, b"", False


def _reap(init_pid: int) -> int:
    code = 255
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if code != 255 or not _alive(init_pid):
                break
            continue
        if pid == init_pid:
            code = os.waitstatus_to_exitcode(status)
            if code < 0:
                code = 128 - code    # killed by a signal: docker reports 128 + signo
    return code


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _delete_runtime_state(launch: Launch) -> None:
    try:
        if launch.runtime:
            import subprocess

            subprocess.run([launch.runtime, "--root", launch.runtime_root, "delete", "--force",
                            launch.container_id], check=False, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            from dockyard.runtime import delete as delete_mod

            delete_mod.delete(launch.runtime_root, launch.container_id, force=True)
    except Exception as e:  # recorded, not fatal: the exit status must still be recorded
        print(f"dockyard supervisor: runtime delete failed: {e}", file=sys.stderr)
