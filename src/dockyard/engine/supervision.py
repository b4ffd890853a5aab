"""The engine's side of supervision: what a container's supervision records in the database,
and how the monitor process (:mod:`dockyard.monitor.host`) is spawned for an engine root.

The monitor is forked from the command that needs it first, so it starts with the engine
already imported (no interpreter start); it records through :class:`EngineRecorder`, opening
the database per event (it must never hold a connection across the forks of its launches).
A multi-threaded process (the daemon) must not fork: it calls :func:`spawn_by_exec` once, and
its monitors are started as programs (engine/monitord.py) instead.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dockyard.db import open_database, transaction

if TYPE_CHECKING:
    from dockyard.engine.config import EngineConfig
    from dockyard.monitor.supervisor import Launch


class EngineRecorder:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config

    def _execute(self, sql: str, args: tuple[object, ...]) -> None:
        db = open_database(self.config.root)
        try:
            with transaction(db) as t:
                t.execute(sql, args)
        finally:
            db.close()

    def started(self, launch: Launch, init_pid: int) -> None:
        from dockyard.engine.containers import process_start

        me = os.getpid()
        self._execute("UPDATE containers SET state='running', pid=?, supervisor_pid=?,"
                      " supervisor_start=?, started_at=?, exit_code=0, error='',"
                      " finished_at=0 WHERE id=?",
                      (init_pid, me, process_start(me), time.time(), launch.container_id))
        self._event(launch, "start")

    def restarted(self, launch: Launch, init_pid: int, restarts: int) -> None:
        self._execute("UPDATE containers SET state='running', pid=?, restart_count=?,"
                      " started_at=? WHERE id=?",
                      (init_pid, restarts, time.time(), launch.container_id))
        self._event(launch, "start")

    def died(self, launch: Launch, code: int) -> None:
        self._event(launch, "die", exitCode=code)

    def health_status(self, launch: Launch, status: str) -> None:
        self._event(launch, f"health_status: {status}")

    def _event(self, launch: Launch, action: str, **extra: object) -> None:
        from dockyard.engine.containers import record_event

        record_event(self.config.root, launch.container_id, action, **extra)

    def exited(self, launch: Launch, code: int, error: str) -> None:
        """Record the exit, unmount the rootfs, remove the container for --rm; the row keeps
        the monitor's pid until then, so ``wait`` returns only once all that is done."""
        from dockyard.engine.containers import ContainerService
        from dockyard.engine.images import ImageService
        from dockyard.errors import NotFound

        cid = launch.container_id
        self._execute("UPDATE containers SET state='exited', pid=0, exit_code=?, error=?,"
                      " finished_at=? WHERE id=?", (code, error, time.time(), cid))
        images = ImageService(self.config)
        try:
            svc = ContainerService(self.config, images)
            svc._unmount_rootfs(cid)
            svc.release_network(cid)
            svc.release_volumes(cid)
            try:
                c = svc.get(cid)
            except NotFound:
                return
            if c.config.get("AutoRemove"):     # docker's --rm takes anonymous volumes too
                svc.remove(cid, force=True, volumes=True)
            else:
                with transaction(svc.db) as t:
                    t.execute("UPDATE containers SET supervisor_pid=0, supervisor_start=0"
                              " WHERE id=? AND state='exited'", (cid,))
        finally:
            images.close_db()


# The front end's command runner and its imports, which a monitor spawned from here serves as
# warm commands (monitor/worker.py). The CLI registers them; the engine never imports it.
_runner: list[Callable[[list[str]], int]] = []
_warm: list[Callable[[], None]] = []

DEFAULT_LINGER_S = 30.0

# How this process spawns a monitor: "fork" (a command) or "exec" (the daemon)
_spawn_mode: list[str] = ["fork"]


def spawn_by_exec() -> None:
    """From now on, start monitors with fork+exec (subprocess), never by forking this process
    (which has threads)."""
    _spawn_mode[0] = "exec"


def serve_commands(runner: Callable[[list[str]], int], warm: Callable[[], None]) -> None:
    _runner[:] = [runner]
    _warm[:] = [warm]


def linger(config: EngineConfig) -> float:
    """How long an idle monitor stays for warm commands (``monitor-linger``, seconds)."""
    raw = os.environ.get("DOCKYARD_MONITOR_LINGER")
    if raw is None:
        raw = config.settings.get("monitor-linger", DEFAULT_LINGER_S)
    try:
        return max(0.0, float(raw))
    except (TypeError, ValueError):
        return DEFAULT_LINGER_S


def monitor_connection(config: EngineConfig, run_dir: str) -> socket.socket:
    """A connection to this engine's monitor (spawned if none runs). The caller sends its
    request, then calls :func:`dockyard.monitor.host.release`."""
    from dockyard.monitor import host

    def spawn(listener: socket.socket) -> None:
        # Garbage that holds fds (an image service's database, say) is closed here, not in
        # the monitor, where a late collection would close whatever reused its fd numbers.
        import gc

        gc.collect()
        pid = os.fork()
        if pid:
            os.waitpid(pid, 0)
            return
        status = 0
        try:
            os.setsid()
            if os.fork() == 0:
                code = 0
                try:
                    host.keep_only([listener.fileno()])
                    host.serve(run_dir, listener, EngineRecorder(config),
                               runner=_runner[0] if _runner else None, linger=linger(config),
                               warm=_warm[0] if _warm else None)
                except BaseException as e:  # never unwind into the command's code
                    code = 1
                    host._note(run_dir, e)
                os._exit(code)
        except BaseException:
            status = 1
        os._exit(status)

    def spawn_exec(listener: socket.socket) -> None:
        import json
        import subprocess
        import sys

        fd = listener.fileno()
        # the program forks the monitor and exits at once: waiting for it reaps it
        subprocess.run([sys.executable, "-m", "dockyard.engine.monitord", config.root,
                        config.run_root, config.config_file, json.dumps(dict(config.settings)),
                        run_dir, str(fd)], pass_fds=[fd], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, check=False)

    return host.connect(run_dir, spawn_exec if _spawn_mode[0] == "exec" else spawn)
