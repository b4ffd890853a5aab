"""The engine's monitor: one process that supervises every running container of an engine root.

Why one process: a supervisor per container written in Python costs several MiB each (conmon,
in C, 0.4 MiB); one monitor costs its interpreter once, however many containers it holds.

What keeps it robust:

- It is forked (double fork, new session) by the first command that starts a container, and
  leaves by itself once it supervises nothing; every later command reaches it through
  ``<run root>/containers/monitor.sock``. A lock file orders "connect or spawn" against "idle,
  leave", so no request is ever lost between the two.
- It is the containers' subreaper, so it reads every init's exit status. If it dies anyway, its
  containers keep running (each in its own session and cgroup); the engine sees the monitor gone
  and records their exit as unknown (``ContainerService.refresh``).
- A fault in one container's supervision is caught, noted in that container's run directory
  and ends only that supervision; the others go on.
- It is single-threaded and never blocks on a container or a command: output to a slow command
  is queued and, past a bound, that command is dropped, not the container.

A command's connection (:mod:`.channel`) either starts a container (``start``: the command then
hears "started", and its output if attached), attaches to a running one (``attach``), or asks
for a warm command (``exec``, see :mod:`.worker`). To serve warm commands the monitor lingers
a while after its last container (the engine's ``monitor-linger`` setting); SIGTERM makes it
leave as soon as it supervises nothing.
"""

from __future__ import annotations

import errno
import fcntl
import gc
import os
import select
import signal
import socket
import sys
import time
from typing import Any

from dockyard.monitor import channel
from dockyard.monitor.keeper import Keeper
from dockyard.monitor.loop import IN, OUT, Loop
from dockyard.monitor.supervisor import Launch, Recorder, Supervision, null_stdio
from dockyard.monitor.worker import Runner

SOCKET = "monitor.sock"
LOCK = "monitor.lock"
PID_FILE = "monitor.pid"
KEEPER_PID_FILE = "monitor.keeper.pid"
MAX_QUEUED = 8 << 20       # bytes queued for a command that does not read before it is dropped


class Conn:
    """A command connected to the monitor."""

    def __init__(self, host: Host, sock: socket.socket) -> None:
        self.host = host
        self.sock = sock
        self.fd = sock.fileno()
        self.queue: list[bytes] = []
        self.queued = 0
        self.closing = False
        self.closed = False
        self.sup: Supervision | None = None
        self.worker = 0         # the warm command run for it, if any
        self.requested = False  # its first message (the request) was read
        sock.setblocking(False)
        host.loop.watch(self.fd, self.on_ready, IN, owner=self)

    def send(self, kind: int, payload: bytes | str) -> None:
        if self.closed:
            return
        data = channel.message(kind, payload)
        if not self.queue:
            try:
                self.sock.send(data)
                return
            except BlockingIOError:
                pass
            except OSError:
                self.close()
                return
        if self.queued + len(data) > MAX_QUEUED:
            self.close()        # it does not read: let it go rather than hold the container
            return
        self.queue.append(data)
        self.queued += len(data)
        self.host.loop.watch(self.fd, self.on_ready, IN | OUT, owner=self)

    def close_when_sent(self) -> None:
        self.closing = True
        self.sup = None
        if not self.queue:
            self.close()

    def on_ready(self, revents: int) -> None:
        if revents & OUT:
            self._flush()
        if self.closed:
            return
        if revents & (IN | select.POLLHUP | select.POLLERR):
            self._read()

    def _flush(self) -> None:
        while self.queue:
            try:
                self.sock.send(self.queue[0])
            except BlockingIOError:
                return
            except OSError:
                self.close()
                return
            self.queued -= len(self.queue.pop(0))
        if self.closing:
            self.close()
        else:
            self.host.loop.watch(self.fd, self.on_ready, IN, owner=self)

    def _read(self) -> None:
        if not self.requested and not self.closing:
            self.host.request(self)
            return
        try:
            message = channel.read(self.sock)
        except BlockingIOError:
            return
        if message is None:
            self.close()
            return
        kind, payload = message
        if self.sup is None:
            return
        if kind == channel.INPUT:
            self.sup.input(payload)
        elif kind == channel.RESIZE:
            rows, _, cols = payload.decode(errors="replace").partition(" ")
            if rows.isdigit() and cols.isdigit():
                self.sup.resize(int(rows), int(cols))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.sup is not None:
            self.sup.detach(self)
            self.sup = None
        self.host.loop.unwatch(self.fd)
        self.sock.close()
        self.host.forget(self)


class Host:
    def __init__(self, run_dir: str, listener: socket.socket, recorder: Recorder, *,
                 runner: Runner | None = None, linger: float = 0.0,
                 warm: Any = None) -> None:
        self.run_dir = run_dir
        self.listener = listener
        self.recorder = recorder
        self.runner = runner
        self.linger = linger
        self.warm = warm
        self.idle_since = time.monotonic()
        self.leaving = False    # SIGTERM: leave as soon as idle, without lingering
        self.exiting = False    # leaving now: a keeper that goes is not replaced
        self.keeper: Keeper | None = None
        self.loop = Loop(self._on_error)
        self.sups: dict[str, Supervision] = {}
        self.conns: set[Conn] = set()     # connected commands
        try:    # the socket file is ours now (made under the lock just before the fork)
            self.sock_ino = os.stat(os.path.join(run_dir, SOCKET)).st_ino
        except OSError:
            self.sock_ino = -1
        listener.setblocking(False)
        self.loop.watch(listener.fileno(), self._accept, owner=self)

    # --- connections -------------------------------------------------------------------------

    def _accept(self, _revents: int) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    return
                raise
            self.conns.add(Conn(self, sock))

    def forget(self, conn: Conn) -> None:
        self.conns.discard(conn)

    def request(self, conn: Conn) -> None:
        """A connection's first message: start a container, or attach to a running one."""
        conn.requested = True
        try:
            got = channel.recv_request(conn.sock)
        except BlockingIOError:
            conn.requested = False
            return
        except OSError:
            got = None
        if got is None:
            conn.close()
            return
        req, fds = got
        op = req.get("op")
        if op == "start":
            self._start(conn, req, fds)
        elif op == "exec":
            self._exec(conn, req, fds)
        elif op == "attach":
            for fd in fds:
                os.close(fd)
            sup = self.sups.get(str(req.get("id")))
            if sup is None or sup.ended:
                conn.send(channel.STATUS, "error the container is not running")
                conn.close_when_sent()
                return
            conn.sup = sup
            sup.attach(conn, output=True)
            conn.send(channel.STATUS, f"attached {sup.init_pid} {os.getpid()}")
            size = req.get("size")
            if isinstance(size, list) and len(size) == 2:
                sup.resize(int(size[0]), int(size[1]))
        else:
            for fd in fds:
                os.close(fd)
            conn.send(channel.STATUS, f"error unknown request {op!r}")
            conn.close_when_sent()

    def _start(self, conn: Conn, req: dict[str, Any], fds: list[int]) -> None:
        stdin_fd = fds[0] if fds else -1
        for fd in fds[1:]:
            os.close(fd)
        try:
            launch = Launch.from_json(dict(req["launch"]))
        except (KeyError, TypeError, ValueError) as e:
            if stdin_fd >= 0:
                os.close(stdin_fd)
            conn.send(channel.STATUS, f"error bad request: {e}")
            conn.close_when_sent()
            return
        if launch.container_id in self.sups:
            if stdin_fd >= 0:
                os.close(stdin_fd)
            conn.send(channel.STATUS, "error the container is already running")
            conn.close_when_sent()
            return
        sup = Supervision(self.loop, launch, self.recorder, self._ended, self.keeper)
        self.sups[launch.container_id] = sup
        conn.sup = sup
        sup.attach(conn, output=bool(req.get("attach")))
        size = req.get("size")
        sup.begin(stdin_fd, (int(size[0]), int(size[1]))
                  if isinstance(size, list) and len(size) == 2 else None)

    def _exec(self, conn: Conn, req: dict[str, Any], fds: list[int]) -> None:
        """A warm command for a client of our own user: fork it, tell its pid, and its exit
        status once it is reaped."""
        if self.runner is None or len(fds) != 4 or channel.peer_uid(conn.sock) != os.geteuid():
            for fd in fds:
                os.close(fd)
            conn.send(channel.STATUS, "error no warm commands here")
            conn.close_when_sent()
            return
        runner = self.runner
        gc.collect()    # a late collection in the worker would close fds it reused
        pid = os.fork()
        if pid == 0:
            from dockyard.monitor import worker

            worker.run(req, fds, runner, conn.fd)    # never returns
        for fd in fds:
            os.close(fd)
        conn.worker = pid
        pidfd = os.pidfd_open(pid)

        def reaped(_revents: int) -> None:
            self.loop.unwatch(pidfd)
            os.close(pidfd)
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
            conn.send(channel.STATUS, f"exit {128 - code if code < 0 else code}")
            conn.close_when_sent()

        self.loop.watch(pidfd, reaped, owner=self)
        conn.send(channel.STATUS, f"pid {pid}")

    def _ended(self, sup: Supervision) -> None:
        if self.sups.get(sup.launch.container_id) is sup:
            del self.sups[sup.launch.container_id]

    def _on_error(self, owner: object, error: BaseException) -> None:
        if isinstance(owner, Supervision):
            owner.crash(error)
            self._ended(owner)
        elif isinstance(owner, Conn):
            owner.close()
        else:
            _note(self.run_dir, error)

    # --- the loop ----------------------------------------------------------------------------

    def start_keeper(self) -> None:
        """Fork the keeper (again, if it died: then it gets copies of every running
        container's fds once more)."""
        self.keeper = Keeper()
        with open(os.path.join(self.run_dir, KEEPER_PID_FILE), "w") as f:
            f.write(str(self.keeper.pid))
        pidfd = os.pidfd_open(self.keeper.pid)
        keeper = self.keeper

        def gone(_revents: int) -> None:
            self.loop.unwatch(pidfd)
            os.close(pidfd)
            os.waitpid(keeper.pid, 0)
            keeper.close()
            if self.keeper is keeper and not self.exiting:
                self.start_keeper()
                for sup in self.sups.values():
                    sup.keeper = self.keeper
                    sup.keep()

        self.loop.watch(pidfd, gone, owner=self)

    def run(self) -> None:
        self.start_keeper()
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)    # a signal wakes the loop's poll
        signal.signal(signal.SIGTERM, self._on_term)
        self.loop.watch(wake_r, lambda _ev: _drain(wake_r), owner=self)
        if self.warm is not None:
            self.loop.call_later(0.0, self._warm, owner=self)
        while True:
            busy = bool(self.sups or self.conns)
            if busy:
                self.idle_since = 0.0
                self.loop.run_once(None)
                continue
            now = time.monotonic()
            if not self.idle_since:
                self.idle_since = now
            left = 0.0 if self.leaving else self.idle_since + self.linger - now
            if left > 0:
                self.loop.run_once(left)
                continue
            if self._leave():
                return
            self.loop.run_once(0.02)    # a command holds the lock: it is connecting

    def _warm(self) -> None:
        """Import what warm commands need, once the first request is served."""
        warm, self.warm = self.warm, None
        if warm is not None:
            warm()
        # What is imported now stays: collections from here on look only at what is new, so
        # the collection before each fork is cheap (and the frozen pages stay shared).
        gc.collect()
        gc.freeze()

    def _on_term(self, _signum: int, _frame: object) -> None:
        self.leaving = True

    def _leave(self) -> bool:
        """Idle: leave, unless a command is connecting (it holds the lock while it does)."""
        lock = os.open(os.path.join(self.run_dir, LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                       0o600)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            if select.select([self.listener], [], [], 0)[0]:
                return False        # a connection is waiting to be accepted
            path = os.path.join(self.run_dir, SOCKET)
            try:
                if os.stat(path).st_ino == self.sock_ino:
                    os.unlink(path)
            except OSError:
                pass
            self.exiting = True
            if self.keeper is not None:
                self.keeper.close()     # it holds nothing: it leaves too
            for name in (PID_FILE, KEEPER_PID_FILE):
                try:
                    os.unlink(os.path.join(self.run_dir, name))
                except OSError:
                    pass
            self.listener.close()
            return True
        finally:
            os.close(lock)


def serve(run_dir: str, listener: socket.socket, recorder: Recorder, *,
          runner: Runner | None = None, linger: float = 0.0, warm: Any = None) -> None:
    """The monitor process's life (called in the forked child)."""
    os.chdir("/")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    from dockyard.linux import libc as k

    k.prctl(k.PR_SET_CHILD_SUBREAPER, 1)
    with open(os.path.join(run_dir, PID_FILE), "w") as f:
        f.write(str(os.getpid()))
    Host(run_dir, listener, recorder, runner=runner, linger=linger, warm=warm).run()


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 64):
            pass
    except BlockingIOError:
        pass


def _note(run_dir: str, error: BaseException) -> None:
    import traceback

    try:
        with open(os.path.join(run_dir, "monitor.crash"), "a") as f:
            traceback.print_exception(error, file=f)
    except OSError:
        print(error, file=sys.stderr)


def connect(run_dir: str, spawn: Any) -> socket.socket:
    """A connection to the engine's monitor, spawning it first if none runs.

    ``spawn(listener)`` forks the monitor around the listening socket (the engine's job: it
    knows the recorder). The lock is held until the caller's request is sent, so the monitor
    cannot leave in between: call :func:`release` right after sending."""
    os.makedirs(run_dir, exist_ok=True)
    lock = os.open(os.path.join(run_dir, LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    _held.append(lock)
    path = os.path.join(run_dir, SOCKET)
    try:
        return channel.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        pass
    try:
        os.unlink(path)     # a monitor that died without cleaning up
    except FileNotFoundError:
        pass
    listener = channel.listen(path)
    try:
        spawn(listener)
    finally:
        listener.close()
    return channel.connect(path)


_held: list[int] = []


def release() -> None:
    while _held:
        os.close(_held.pop())


def keep_only(keep: list[int]) -> None:
    """Close every inherited fd above stdio but ``keep`` (in a freshly forked monitor)."""
    _held.clear()       # the spawning command's lock: closed below, and not ours to release
    low = 3
    for fd in sorted(keep):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)
    null_stdio()
