"""One container's supervision (conmon's job), inside the engine's monitor process: it starts
the container through the OCI runtime, reads its output into the log and to the attached
commands, records its exit, applies its restart policy and runs its healthchecks.

Nothing here blocks on the container: every fd is watched by the monitor's loop and every wait
is a timer, so one process supervises all of an engine's containers (see :mod:`.host`)::

    begin ──▶ launch (runtime create + start) ──▶ running ──pidfd──▶ draining (50 ms)
                 │ error: "error <why>", exited(-1)                      │
                 ▼                                                       ▼
               ended ◀── no restart ── finished (runtime delete) ── restart policy
                                                   ▲                     │ backoff timer
                                                   └──── relaunch ◀──────┘

The container's init is our child once the runtime's intermediate process exits (the monitor is
a subreaper), so its exit status reaches us however it ends.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from dockyard.monitor import channel
from dockyard.monitor.loop import IN, OUT, Loop, Timer
from dockyard.values import value

if TYPE_CHECKING:
    from dockyard.monitor.health import Checker

_READ = 65536
DRAIN_S = 0.05          # output still buffered after the init's exit is read this long
STOP_POLL_S = 0.1       # how often a pending restart checks whether the user stopped it

# docker's restart backoff: 100 ms, doubling, at most a minute; reset after 10 s of running.
RESTART_FIRST_DELAY_S = 0.1
RESTART_MAX_DELAY_S = 60.0
RESTART_RESET_AFTER_S = 10.0


@value
class Launch:
    """Everything a supervision needs, resolved by the engine (it crosses the monitor's socket
    as JSON)."""

    container_id: str
    bundle: str
    runtime_root: str
    runtime: str            # "" = dockyard's own runtime, as a library; else a runc-like binary
    run_dir: str            # the container's directory under the engine's run root
    log_path: str
    log_max_size: int | None
    log_max_file: int
    log_driver: str         # "json-file", "local" or "none"
    tty: bool = False            # the container has a terminal: we hold its pty master
    open_stdin: bool = False     # -i without a terminal: we hold its stdin open (docker's
                                 # OpenStdin) and attached commands write to it
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

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Launch:
        for key in ("exec_prefix", "health_command"):
            data[key] = tuple(data.get(key) or ())
        return cls(**data)


class Recorder(Protocol):
    """The engine's side: what happened, into its database (and the clean-up after an exit)."""

    def started(self, launch: Launch, init_pid: int) -> None: ...

    def restarted(self, launch: Launch, init_pid: int, restarts: int) -> None: ...

    def died(self, launch: Launch, code: int) -> None: ...      # each exit of the init

    def health_status(self, launch: Launch, status: str) -> None: ...

    def exited(self, launch: Launch, code: int, error: str) -> None: ...


class Peer(Protocol):
    """A command connected to the monitor (see :class:`.host.Conn`)."""

    def send(self, kind: int, payload: bytes | str) -> None: ...

    def close_when_sent(self) -> None: ...


class Keeps(Protocol):
    """Where copies of a container's output fds are kept (see :mod:`.keeper`)."""

    def keep(self, cid: str, init_pid: int, fds: list[int], log: dict[str, Any]) -> None: ...

    def drop(self, cid: str) -> None: ...


class Supervision:
    def __init__(self, loop: Loop, launch: Launch, recorder: Recorder,
                 on_end: Any, keeper: Keeps | None = None) -> None:
        self.loop = loop
        self.keeper = keeper
        self.launch = launch
        self.recorder = recorder
        self.on_end = on_end
        self.init_pid = 0
        self.code: int | None = None
        self.restarts = 0
        self.backoff = 0
        self.started = 0.0
        self.pipes: dict[int, int] = {}      # fd -> channel.STDOUT / STDERR
        self.pidfd = -1
        self.master = -1                     # the pty master (tty containers)
        self.master_out = bytearray()        # keyboard input not yet taken by the pty
        self.stdin_w = -1                    # the open stdin's pipe (open_stdin containers)
        self.stdin_out = bytearray()         # input not yet taken by that pipe
        self.peers: dict[Peer, bool] = {}    # attached command -> wants the output
        self.health: Checker | None = None
        self.health_timer: Timer | None = None
        self.timer: Timer | None = None
        self.last_code = 0      # the previous run's, while a restart is pending
        self.restart_at = 0.0
        self.ended = False
        self.writer = _open_log(launch)

    # --- peers -------------------------------------------------------------------------------

    def attach(self, peer: Peer, *, output: bool) -> None:
        self.peers[peer] = output

    def detach(self, peer: Peer) -> None:
        self.peers.pop(peer, None)

    def input(self, data: bytes) -> None:
        """Bytes from an attached command: for the container's terminal, or its open stdin."""
        if not data:
            return
        if self.master >= 0:
            self.master_out += data
            self._flush_master()
        elif self.stdin_w >= 0:
            self.stdin_out += data
            self._flush_stdin()

    def _flush_stdin(self, _revents: int = 0) -> None:
        if self.stdin_w < 0:
            return
        try:
            while self.stdin_out:
                n = os.write(self.stdin_w, self.stdin_out[:_READ])
                del self.stdin_out[:n]
        except BlockingIOError:
            pass
        except OSError:     # EPIPE: the container closed its stdin
            self._close_stdin()
            return
        if self.stdin_out:
            self.loop.watch(self.stdin_w, self._flush_stdin, OUT, owner=self)
        else:
            self.loop.unwatch(self.stdin_w)

    def _close_stdin(self) -> None:
        if self.stdin_w >= 0:
            self.loop.unwatch(self.stdin_w)
            os.close(self.stdin_w)
            self.stdin_w = -1
        self.stdin_out.clear()

    def resize(self, rows: int, cols: int) -> None:
        if self.master >= 0 and rows > 0 and cols > 0:
            from dockyard.runtime import console

            console.set_size(self.master, rows, cols)

    def _tell(self, line: str) -> None:
        for peer in list(self.peers):
            peer.send(channel.STATUS, line)

    # --- the container's life ----------------------------------------------------------------

    def begin(self, stdin_fd: int = -1, size: tuple[int, int] | None = None) -> None:
        """Create and start the container (the command's stdin as its own, for run -i)."""
        try:
            self._launch(stdin_fd)
        except Exception as e:
            self._tell(f"error {_one_line(e)}")
            self._end(-1, _one_line(e))
            return
        finally:
            if stdin_fd >= 0:
                os.close(stdin_fd)
        if size is not None:
            self.resize(*size)
        self.recorder.started(self.launch, self.init_pid)
        self._tell(f"started {self.init_pid} {os.getpid()}")
        self._watch_running()

    def _launch(self, stdin_fd: int = -1) -> None:
        import gc

        gc.collect()    # the runtime forks: no garbage holding fds may be collected in a child
        self.started = time.monotonic()
        self.code = None
        if self.launch.tty:
            self.init_pid, self.master = _launch_with_terminal(self.launch)
            os.set_blocking(self.master, False)
            self.pipes = {self.master: channel.STDOUT}
        else:
            self._close_stdin()     # a restart's container gets a stdin of its own
            own = -1
            if stdin_fd < 0 and self.launch.open_stdin:
                own, self.stdin_w = os.pipe2(os.O_CLOEXEC)
                os.set_blocking(self.stdin_w, False)
            try:
                self.init_pid, self.pipes = _launch_with_pipes(self.launch,
                                                               stdin_fd if own < 0 else own)
            except BaseException:
                self._close_stdin()
                raise
            finally:
                if own >= 0:
                    os.close(own)
        self.pidfd = os.pidfd_open(self.init_pid)
        self.keep()

    def keep(self) -> None:
        """Give the keeper copies of the output fds (again, to a new keeper)."""
        if self.keeper is not None and self.pipes:
            launch = self.launch
            self.keeper.keep(launch.container_id, self.init_pid, list(self.pipes),
                             {"driver": launch.log_driver, "path": launch.log_path,
                              "max_size": launch.log_max_size, "max_file": launch.log_max_file})

    def _unkeep(self) -> None:
        if self.keeper is not None:
            self.keeper.drop(self.launch.container_id)

    def _watch_running(self) -> None:
        for fd in self.pipes:
            if fd == self.master:
                self.loop.watch(fd, self._on_master, IN | (OUT if self.master_out else 0),
                                owner=self)
            else:
                self.loop.watch(fd, self._reader(fd), owner=self)
        self.loop.watch(self.pidfd, self._on_init_exit, owner=self)
        if self.launch.health_command and self.launch.exec_prefix:
            from dockyard.monitor.health import Checker, HealthConfig

            launch = self.launch
            self.health = Checker(HealthConfig(launch.health_command, launch.health_interval,
                                               launch.health_timeout, launch.health_retries,
                                               launch.health_start_period),
                                  launch.exec_prefix, launch.health_file,
                                  on_status=self._health_status)
            self.health_timer = self.loop.call_later(self.health.timeout(), self._health_due,
                                                     owner=self)

    def _on_master(self, revents: int) -> None:
        if revents & OUT:
            self._flush_master()
        if revents & ~OUT:
            self._read_output(self.master)

    def _reader(self, fd: int) -> Callable[[int], None]:
        def on_output(_revents: int) -> None:
            self._read_output(fd)
        return on_output

    def _flush_master(self) -> None:
        if self.master < 0:
            return
        try:
            while self.master_out:
                n = os.write(self.master, self.master_out[:4096])
                del self.master_out[:n]
        except BlockingIOError:
            pass
        except OSError:
            self.master_out.clear()
        if self.loop.watching(self.master):
            self.loop.watch(self.master, self._on_master, IN | (OUT if self.master_out else 0),
                            owner=self)

    def _read_output(self, fd: int) -> bool:
        """Read what ``fd`` has for the log and the attached commands; False once there is
        nothing more now (the pipe closed, or it would block)."""
        try:
            data = os.read(fd, _READ)
        except BlockingIOError:
            return False
        except OSError:     # EIO: a pty master whose other side is closed for good
            data = b""
        if not data:
            self._close_pipe(fd)
            return False
        kind = self.pipes[fd]
        if self.writer is not None:
            self.writer.write("stdout" if kind == channel.STDOUT else "stderr", data)
        for peer, output in list(self.peers.items()):
            if output:
                peer.send(kind, data)
        return True

    def _close_pipe(self, fd: int) -> None:
        self.loop.unwatch(fd)
        self.pipes.pop(fd, None)
        os.close(fd)
        if fd == self.master:
            self.master = -1
            self.master_out.clear()
        if self.code is not None and not self.pipes:
            self._finish_run()

    def _on_init_exit(self, _revents: int) -> None:
        self.loop.unwatch(self.pidfd)
        os.close(self.pidfd)
        self.pidfd = -1
        self.code = _reap(self.init_pid)
        self._close_stdin()
        self._stop_health()
        self.recorder.died(self.launch, self.code)
        if not self.pipes:
            self._finish_run()
            return
        # Whatever still holds the pipes (a daemonised grandchild) died with the pid namespace:
        # read what is buffered a moment longer, then stop.
        self.timer = self.loop.call_later(DRAIN_S, self._drained, owner=self)

    def _drained(self) -> None:
        self.timer = None
        for fd in list(self.pipes):
            os.set_blocking(fd, False)
            while fd in self.pipes and self._read_output(fd):
                pass
            if fd in self.pipes:
                self._close_pipe(fd)     # the last one finishes the run

    def _finish_run(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.ended or self.code is None:
            return
        self._unkeep()
        _delete_runtime_state(self.launch)
        code = self.code
        if not self._should_restart(code):
            self._end(code, "")
            return
        if time.monotonic() - self.started > RESTART_RESET_AFTER_S:
            self.backoff = 0     # it ran a good while: the backoff starts afresh
        self.restarts += 1
        delay = min(RESTART_FIRST_DELAY_S * 2 ** self.backoff, RESTART_MAX_DELAY_S)
        self.backoff += 1
        self.last_code, self.code = code, None
        self.restart_at = time.monotonic() + delay
        self.timer = self.loop.call_later(min(delay, STOP_POLL_S), self._restart_tick,
                                          owner=self)

    def _restart_tick(self) -> None:
        self.timer = None
        if os.path.exists(self.launch.stop_flag):
            self._end(self.last_code, "")
            return
        left = self.restart_at - time.monotonic()
        if left > 0:
            self.timer = self.loop.call_later(min(left, STOP_POLL_S), self._restart_tick,
                                              owner=self)
            return
        try:
            self._launch()
        except Exception as e:
            self._end(-1, _one_line(e))
            return
        self.recorder.restarted(self.launch, self.init_pid, self.restarts)
        self._watch_running()

    def _should_restart(self, code: int) -> bool:
        """docker's policies; a container stopped or killed by the user is not brought back."""
        policy = self.launch.restart_policy
        if policy in ("", "no") or os.path.exists(self.launch.stop_flag):
            return False
        if policy == "on-failure":
            return code != 0 and (self.launch.restart_max <= 0
                                  or self.restarts < self.launch.restart_max)
        return policy in ("always", "unless-stopped")

    def _end(self, code: int, error: str) -> None:
        if self.ended:
            return
        self.ended = True
        self._stop_health()
        if self.timer is not None:
            self.timer.cancel()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        try:
            self.recorder.exited(self.launch, code, error)
        finally:
            self._tell(f"exited {code}")
            for peer in list(self.peers):
                peer.close_when_sent()
            self.peers.clear()
            self.on_end(self)

    def crash(self, error: BaseException) -> None:
        """A bug in this supervision: note it, let go of the container's fds, and record the
        exit as unknown (the container itself is left alone; it keeps running)."""
        _crash_note(self.launch, error)
        self._unkeep()      # the keeper's copies keep the container alive from here
        self._close_stdin()
        for fd in list(self.pipes):
            self.loop.unwatch(fd)
            os.close(fd)
        self.pipes.clear()
        if self.pidfd >= 0:
            self.loop.unwatch(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = -1
        if not self.ended:
            try:
                self._end(255, f"supervisor error: {_one_line(error)}")
            except Exception:
                self.ended = True
                self.on_end(self)

    # --- healthchecks ------------------------------------------------------------------------

    def _health_status(self, status: str) -> None:
        self.recorder.health_status(self.launch, status)

    def _health_due(self) -> None:
        health = self.health
        self.health_timer = None
        if health is None:
            return
        if health.pid:      # a check that outlived its timeout
            self.loop.unwatch(health.pidfd)
            self.loop.unwatch(health.out)
            health.finish(timed_out=True)
        elif health.due():
            health.start_check()
            if health.pid:
                self.loop.watch(health.pidfd, self._health_exit, owner=self)
                self.loop.watch(health.out, self._health_output, owner=self)
        self.health_timer = self.loop.call_later(health.timeout(), self._health_due, owner=self)

    def _health_output(self, _revents: int) -> None:
        if self.health is not None and self.health.pid:
            self.health.read_output()

    def _health_exit(self, _revents: int) -> None:
        health = self.health
        if health is None or not health.pid:
            return
        self.loop.unwatch(health.pidfd)
        self.loop.unwatch(health.out)
        health.finish()
        if self.health_timer is not None:
            self.health_timer.cancel()
        self.health_timer = self.loop.call_later(health.timeout(), self._health_due, owner=self)

    def _stop_health(self) -> None:
        if self.health_timer is not None:
            self.health_timer.cancel()
            self.health_timer = None
        health, self.health = self.health, None
        if health is not None:
            if health.pid:
                self.loop.unwatch(health.pidfd)
                self.loop.unwatch(health.out)
            health.close()


def _launch_with_pipes(launch: Launch, stdin_fd: int) -> tuple[int, dict[int, int]]:
    """Create and start the container with fresh output pipes; (init pid, pipes to read).

    The runtime passes our fds 0-2 to the init, so the pipes (and the command's stdin, for
    run -i) go there for the moment of creation; afterwards they are /dev/null again."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    if stdin_fd >= 0:
        os.dup2(stdin_fd, 0)
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
        null_stdio()
    return init_pid, {out_r: channel.STDOUT, err_r: channel.STDERR}


def _launch_with_terminal(launch: Launch) -> tuple[int, int]:
    """Create and start a container with a terminal; (init pid, pty master)."""
    import socket

    from dockyard.runtime import console

    masters: list[int] = []
    if launch.runtime:
        path = os.path.join(launch.run_dir, "console.sock")
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        listener.settimeout(60)
        try:
            init_pid = _create_and_start(launch, console_socket=path, accept=listener,
                                         masters=masters)
        finally:
            listener.close()
            os.unlink(path)
    else:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            init_pid = _create_and_start(launch, console_fd=theirs.fileno(), console_sock=ours,
                                         masters=masters)
        finally:
            theirs.close()
            ours.close()
    if not masters:
        raise RuntimeError("the runtime sent no terminal")
    _ = console
    return init_pid, masters[0]


def _create_and_start(launch: Launch, *, console_socket: str = "", accept: Any = None,
                      console_fd: int | None = None, console_sock: Any = None,
                      masters: list[int] | None = None) -> int:
    from dockyard.runtime import console

    if launch.runtime:
        import subprocess

        log_file = os.path.join(launch.run_dir, "runtime.log")
        base = [launch.runtime, "--root", launch.runtime_root, "--log", log_file]
        pid_file = os.path.join(launch.run_dir, "init.pid")
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
                assert masters is not None
                masters.append(console.recv_master(conn))
        if proc.wait() != 0:
            raise RuntimeError(f"{launch.runtime} create: {_last_error(log_file)}"
                               f" (exit {proc.returncode})")
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
        assert masters is not None
        masters.append(console.recv_master(console_sock))
    try:
        start_mod.start(launch.runtime_root, launch.container_id)
    except BaseException:
        delete_mod.delete(launch.runtime_root, launch.container_id, force=True)
        raise
    return rec.pid


def _last_error(log_file: str) -> str:
    """The last thing a runc-like runtime logged (its error), from its --log file."""
    try:
        with open(log_file, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return "failed"
    if not lines:
        return "failed"
    last = lines[-1]
    if last.startswith("{"):
        import json

        try:
            return str(json.loads(last).get("msg") or last)
        except ValueError:
            return last
    _, found, msg = last.partition("msg=")
    return msg.strip('"') if found else last


def null_stdio() -> None:
    """fds 0-2 on /dev/null: the monitor must not hold any command's terminal or pipes."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _reap(init_pid: int) -> int:
    """The init's exit status, docker's way (128 + signo when a signal killed it)."""
    try:    # (Python retries an interrupted waitpid itself)
        _, status = os.waitpid(init_pid, 0)
    except OSError:
        return 255      # not ours to reap (it was never our child): unknown
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _one_line(e: BaseException) -> str:
    return str(e).replace("\n", " ").strip() or type(e).__name__


def _crash_note(launch: Launch, error: BaseException) -> None:
    """A supervision bug: leave the traceback in the container's run directory."""
    import traceback

    try:
        with open(os.path.join(launch.run_dir, "supervisor.crash"), "a") as f:
            traceback.print_exception(error, file=f)
    except OSError:
        pass


class _LogSink(Protocol):
    def write(self, stream: str, data: bytes, ts_ns: int | None = None) -> None: ...

    def close(self) -> None: ...


def _open_log(launch: Launch) -> _LogSink | None:
    if launch.log_driver == "none":
        return None
    if launch.log_driver == "local":
        from dockyard.monitor.locallog import LocalLogWriter

        return LocalLogWriter(launch.log_path, max_size=launch.log_max_size,
                              max_file=launch.log_max_file)
    from dockyard.monitor.logfile import LogWriter

    return LogWriter(launch.log_path, max_size=launch.log_max_size,
                     max_file=launch.log_max_file)


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
    except Exception as e:  # noted, not fatal: the exit status must still be recorded
        _crash_note(launch, e)
