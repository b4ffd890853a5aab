"""The container service: containers as rows in the engine database, their bundles on disk,
and their lifecycle (create, start, stop, kill, wait, remove) with docker's semantics.

Layout of one container::

    <root>/containers/<id>/config.json     the OCI spec (rootfs at ./rootfs)
    <root>/containers/<id>/rootfs/         mount point of its snapshot while it runs
    <root>/containers/<id>/<id>-json.log   its log (docker's json-file format), or
    <root>/containers/<id>/local-logs/container.log   with --log-driver local (docker's format)
    <run_root>/containers/<id>/            stop flag, health state (gone at reboot)
    <run_root>/containers/monitor.sock     the engine's monitor, which supervises them all
    <run_root>/runtime/                    the OCI runtime's --root

State changes are written by whoever observes them: the starting command (created),
the monitor (running, exited; engine/supervision.py), ``rm``. A monitor that died without
recording an exit is noticed by :meth:`refresh`, which every read goes through.
"""

from __future__ import annotations

import functools
import json
import os
import signal as _signal
import socket
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from dockyard.db import ensure_schema, open_database, transaction
from dockyard.engine import events
from dockyard.errors import (
    AlreadyExists,
    DockyardError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from dockyard.logs import get_logger
from dockyard.values import asdict, field, value

if TYPE_CHECKING:
    from dockyard.engine.config import EngineConfig
    from dockyard.engine.images import ImageService
    from dockyard.engine.networks import NetworkService
    from dockyard.engine.prunefilter import PruneFilter
    from dockyard.engine.volumes import VolumeService
    from dockyard.monitor.supervisor import Launch

log = get_logger(__name__)

_MIGRATIONS: list[list[str]] = [[
    """CREATE TABLE containers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        image_id TEXT NOT NULL,
        image_name TEXT NOT NULL,
        created REAL NOT NULL,
        config TEXT NOT NULL,
        state TEXT NOT NULL,
        pid INTEGER NOT NULL DEFAULT 0,
        supervisor_pid INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT '',
        started_at REAL NOT NULL DEFAULT 0,
        finished_at REAL NOT NULL DEFAULT 0,
        restart_count INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX containers_by_image ON containers(image_id)",
], [
    # a pid alone can be recycled: the process's start time (/proc/<pid>/stat) pins it
    "ALTER TABLE containers ADD COLUMN supervisor_start INTEGER NOT NULL DEFAULT 0",
], [
    # stopped or killed by the user: unless-stopped containers stay down after a reboot
    "ALTER TABLE containers ADD COLUMN stopped_by_user INTEGER NOT NULL DEFAULT 0",
]]

_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_ADJECTIVES = ("brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid",
               "merry", "nifty", "proud", "quirky", "sharp", "sleepy", "tender", "witty", "zen")
_NOUNS = ("anchor", "barge", "buoy", "crane", "dock", "ferry", "harbor", "hull", "keel",
          "mast", "pier", "quay", "rudder", "sail", "skiff", "tug", "wharf", "yard")


@value
class Container:
    id: str
    name: str
    image_id: str
    image_name: str
    created: float
    config: dict[str, Any]          # what the container was created with (docker's shapes)
    state: str                      # created | running | exited | removing
    pid: int = 0
    supervisor_pid: int = 0
    exit_code: int = 0
    error: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    restart_count: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    supervisor_start: int = 0

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def running(self) -> bool:
        return self.state == "running"


class ContainerService:
    def __init__(self, config: EngineConfig, images: ImageService) -> None:
        self.config = config
        self.images = images
        self.root = config.root
        ensure_schema(self.db, "containers", _MIGRATIONS)
        self.dir = os.path.join(self.root, "containers")
        run_root = _recorded_run_root(self.root, config.run_root)
        self.run_dir = os.path.join(run_root, "containers")
        self.runtime_root = os.path.join(run_root, "runtime")
        # Each container's cgroup is <parent>/<id>. docker's parent is /docker; ours /dockyard,
        # left in place like docker's. A relative parent (or "") is relative to the cgroup of
        # the container's supervisor, as the runtime reads a relative cgroupsPath.
        self.cgroup_parent = str(config.settings.get("cgroup-parent", "/dockyard"))
        images.users = self.users_of_image
        images.layers_in_use = self.layers_in_use

    @property
    def db(self) -> sqlite3.Connection:
        return self.images.db

    # --- names and lookups -------------------------------------------------------------------

    def users_of_image(self, image_id: str) -> list[tuple[str, bool]]:
        rows = self.db.execute("SELECT id, state FROM containers WHERE image_id = ?",
                               (image_id,)).fetchall()
        return [(str(r[0]), str(r[1]) == "running") for r in rows]

    def layers_in_use(self) -> set[str]:
        """Every layer a container's snapshot stacks on (kept even if its image goes)."""
        out: set[str] = set()
        for (config,) in self.db.execute("SELECT config FROM containers"):
            out.update(json.loads(config).get("Layers") or [])
        return out

    def get(self, ref: str) -> Container:
        """A container by full id, unique id prefix or name (docker's lookup order)."""
        row = self.db.execute("SELECT * FROM containers WHERE id = ? OR name = ?",
                              (ref, ref.lstrip("/"))).fetchone()
        if row is None and ref and all(c in "0123456789abcdef" for c in ref):
            rows = self.db.execute("SELECT * FROM containers WHERE id LIKE ?",
                                   (ref + "%",)).fetchall()
            if len(rows) > 1:
                raise InvalidArgument(f"multiple containers match id prefix {ref!r}")
            row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"No such container: {ref}")
        return self.refresh(container_from_row(row))

    def containers(self, *, all_containers: bool = True,
                   parse: Callable[[sqlite3.Row], Container] | None = None) -> list[Container]:
        """Every container, newest first. ``parse``: a row to its Container (a front end may
        keep the ones it parsed before: see api/listcache.py)."""
        rows = self.db.execute("SELECT * FROM containers ORDER BY created DESC").fetchall()
        alive = functools.cache(_alive)     # containers share supervisors: one look at each
        out = [self.refresh((parse or container_from_row)(r), alive=alive) for r in rows]
        return out if all_containers else [c for c in out if c.running]

    def refresh(self, c: Container, *, alive: Callable[[int, int], bool] | None = None
                ) -> Container:
        """A running container whose supervisor is gone: record what can still be known. While
        its init still runs (the monitor's keeper keeps its output flowing), it is running,
        unsupervised; once the init is gone, its exit status is unknown (255)."""
        if c.state != "running" or (alive or _alive)(c.supervisor_pid, c.supervisor_start):
            return c
        if _init_alive(c.pid, c.id):
            return c
        code = 255  # the supervisor died before it could record the exit status
        with transaction(self.db) as db:
            noticed = db.execute("UPDATE containers SET state='exited', exit_code=?,"
                                 " finished_at=?, error=? WHERE id=? AND state='running'",
                                 (code, time.time(), "supervisor exited unexpectedly",
                                  c.id)).rowcount
        if noticed:     # this command noticed first: the die no supervisor reported
            self.event(c, "die", exitCode=code)
        row = self.db.execute("SELECT * FROM containers WHERE id = ?", (c.id,)).fetchone()
        return container_from_row(row) if row is not None else c

    def event(self, c: Container, action: str, **extra: object) -> None:
        """Journal a container event (its attributes: labels, name, image, then ``extra``)."""
        events.record(self.root, events.CONTAINER, action, c.id,
                      event_attributes(c, **extra), db=self.db)

    # --- create ------------------------------------------------------------------------------

    def create(self, image: str, spec_for: Any, *, name: str = "",
               config_of: Any = None) -> Container:
        """Make the container: a row, a snapshot on the image's layers, a bundle.

        ``spec_for(container_id, rootfs, image_record)`` returns the OCI spec (a dict); it is
        where the run options become a config.json (engine.specgen). ``config_of()``, called
        after it, gives the docker-shaped config kept in the row (inspect's Config etc.).
        """
        record = self.images.resolve(image)
        cid = os.urandom(32).hex()
        if name:
            _check_name(name)
        with transaction(self.db) as db:
            if not name:
                name = _random_name(db)
            elif db.execute("SELECT id FROM containers WHERE name = ?", (name,)).fetchone():
                other = db.execute("SELECT id FROM containers WHERE name = ?",
                                   (name,)).fetchone()[0]
                raise AlreadyExists(
                    f'Conflict. The container name "/{name}" is already in use by container '
                    f'"{other}". You have to remove (or rename) that container to be able to '
                    "reuse that name.")
            db.execute("INSERT INTO containers (id, name, image_id, image_name, created, config,"
                       " state) VALUES (?,?,?,?,?,?,?)",
                       (cid, name, record.id, image, time.time(), "{}", "creating"))
        try:
            bundle = os.path.join(self.dir, cid)
            os.makedirs(os.path.join(bundle, "rootfs"), mode=0o700)
            parents = [la.chain_id for la in record.layers]
            mounts = self.images.snapshots.prepare(cid, parents)
            with open(os.path.join(bundle, "mounts.json"), "w") as f:
                json.dump([{"type": m.type, "source": m.source, "options": list(m.options),
                            "chdir": m.chdir} for m in mounts], f)
            spec = spec_for(cid, os.path.join(bundle, "rootfs"), record)
            with open(os.path.join(bundle, "config.json"), "w") as f:
                json.dump(spec, f)
            config = dict(config_of() if config_of is not None else {})
            config["Layers"] = parents
        except BaseException:
            self._remove_files(cid)
            with transaction(self.db) as db:
                db.execute("DELETE FROM containers WHERE id = ?", (cid,))
            raise
        with transaction(self.db) as db:
            db.execute("UPDATE containers SET state='created', config=? WHERE id=?",
                       (json.dumps(config), cid))
        c = self.get(cid)
        self.event(c, "create")
        return c

    def bundle(self, cid: str) -> str:
        return os.path.join(self.dir, cid)

    def log_path(self, cid: str, driver: str = "json-file") -> str:
        """The log file of a container whose log driver writes one (docker's names)."""
        if driver == "local":
            return os.path.join(self.dir, cid, "local-logs", "container.log")
        return os.path.join(self.dir, cid, f"{cid}-json.log")

    # --- start -------------------------------------------------------------------------------

    def start(self, ref: str, *, attach: bool = False, stdin: bool = False,
              size: tuple[int, int] | None = None, stdin_fd: int = 0
              ) -> tuple[Container, socket.socket]:
        """Start the container under the engine's monitor; returns it and the connection to
        the monitor, which says "started <pid> <monitor pid>" (or "error <why>"), then, with
        ``attach``, carries the output, and says "exited <code>" (see monitor/channel.py).
        With ``stdin`` the container reads this process's stdin directly (run -i), or
        ``stdin_fd`` (the daemon: a pipe it fills from a client's attached stream)."""
        from dockyard.engine.supervision import monitor_connection
        from dockyard.monitor import channel
        from dockyard.monitor import host as monitor_host

        c = self.get(ref)
        if c.running:
            raise FailedPrecondition(f"container {c.short_id} is already running")
        deadline = time.monotonic() + 10
        while self._exiting(c) and time.monotonic() < deadline:
            # its last exit is recorded but its supervisor still unmounts the rootfs: a start
            # now would find it mounted, and run in it once it is gone ("sh" not found)
            time.sleep(0.02)
            c = self.get(c.id)
        from dockyard.engine.networks import network_mode, wants_network
        mode = network_mode(c.config)
        if mode.startswith("container:"):
            # another container's namespace, first: a target not running changes nothing
            from dockyard.engine import netjoin

            netjoin.join(self, c)
            c = self.get(c.id)
        self._mount_rootfs(c)
        self._prepare_volumes(c)
        if wants_network(mode):     # its namespace, veth, address, ports
            self.networks().connect(c.id, c.config, self.bundle(c.id))
        run_dir = os.path.join(self.run_dir, c.id)
        os.makedirs(run_dir, exist_ok=True)
        os.makedirs(self.runtime_root, exist_ok=True)
        self._set_paused(c.id, False)   # a pause of an earlier run (killed while paused)
        try:
            os.unlink(os.path.join(run_dir, "stop-requested"))  # a new start, a new life
        except FileNotFoundError:
            pass
        with transaction(self.db) as db:
            db.execute("UPDATE containers SET stopped_by_user = 0 WHERE id = ?", (c.id,))
        launch = self._launch(c, run_dir)
        request = {"op": "start", "launch": asdict(launch), "attach": attach,
                   "size": list(size) if size else None}
        self.images.close_db()
        try:
            sock = monitor_connection(self.config, self.run_dir)
            try:
                channel.send_request(sock, request, [stdin_fd] if stdin else [])
            except BaseException:
                sock.close()
                raise
        finally:
            monitor_host.release()
            self.images.reopen_db()
        return c, sock

    def attach(self, ref: str, size: tuple[int, int] | None = None) -> socket.socket:
        """A connection to the running container's supervision: "attached <pid> <monitor>",
        then its output (and, with a terminal, our keyboard and window size go to it)."""
        from dockyard.monitor import channel
        from dockyard.monitor import host as monitor_host

        c = self.get(ref)
        if not c.running:
            raise FailedPrecondition("You cannot attach to a stopped container, start it first")
        try:
            sock = channel.connect(os.path.join(self.run_dir, monitor_host.SOCKET))
        except OSError:
            raise FailedPrecondition(f"container {c.short_id} has no supervisor") from None
        with sock:
            channel.send_request(sock, {"op": "attach", "id": c.id,
                                        "size": list(size) if size else None}, [])
            return sock.dup()

    def _launch(self, c: Container, run_dir: str) -> Launch:
        from dockyard.engine.logopts import DEFAULT_DRIVER, file_limits
        from dockyard.monitor.supervisor import Launch

        log = c.config.get("LogConfig") or {}
        log_driver = str(log.get("Type") or DEFAULT_DRIVER)
        log_max_size, log_max_file = file_limits(log_driver, log.get("Config") or {})
        restart = (c.config.get("HostConfig") or {}).get("RestartPolicy") or {}
        return Launch(
            container_id=c.id, bundle=self.bundle(c.id), runtime_root=self.runtime_root,
            runtime=str(c.config.get("Runtime") or ""), run_dir=run_dir,
            log_path=self.log_path(c.id, log_driver),
            log_max_size=log_max_size, log_max_file=log_max_file, log_driver=log_driver,
            tty=bool((c.config.get("Config") or {}).get("Tty")),
            open_stdin=bool((c.config.get("Config") or {}).get("OpenStdin"))
            and not (c.config.get("Config") or {}).get("Tty"),
            restart_policy=str(restart.get("Name") or "no"),
            restart_max=int(restart.get("MaximumRetryCount") or 0),
            stop_flag=os.path.join(run_dir, "stop-requested"),
            **self._health_launch(c, run_dir))

    def _health_launch(self, c: Container, run_dir: str) -> dict[str, Any]:
        """The supervisor's healthcheck settings, from docker's Config.Healthcheck."""
        from dockyard.monitor.health import command_of

        hc = (c.config.get("Config") or {}).get("Healthcheck") or {}
        command = command_of(list(hc.get("Test") or []))
        if not command:
            return {}

        def seconds(key: str, default: float) -> float:
            ns = int(hc.get(key) or 0)
            return ns / 1e9 if ns > 0 else default

        return {"exec_prefix": (*self.runtime_argv(c), "exec", c.id),
                "health_command": command, "health_interval": seconds("Interval", 30.0),
                "health_timeout": seconds("Timeout", 30.0),
                "health_retries": int(hc.get("Retries") or 0) or 3,
                "health_start_period": seconds("StartPeriod", 0.0),
                "health_file": os.path.join(run_dir, "health.json")}

    def health(self, c: Container) -> dict[str, Any] | None:
        """docker's State.Health, while the container has a healthcheck and runs."""
        if not ((c.config.get("Config") or {}).get("Healthcheck") or {}).get("Test"):
            return None
        try:
            with open(os.path.join(self.run_dir, c.id, "health.json")) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def _mount_rootfs(self, c: Container) -> None:
        from dockyard.image.mounter import mount_all
        from dockyard.image.snapshot import Mount

        target = os.path.join(self.bundle(c.id), "rootfs")
        if _is_mountpoint(target):
            return
        with open(os.path.join(self.bundle(c.id), "mounts.json")) as f:
            mounts = [Mount(m["type"], m["source"], tuple(m["options"]), m.get("chdir", ""))
                      for m in json.load(f)]
        mount_all(mounts, target)

    def _unmount_rootfs(self, cid: str) -> None:
        from dockyard.image.mounter import unmount

        target = os.path.join(self.bundle(cid), "rootfs")
        while _is_mountpoint(target):
            unmount(target)

    # --- signals, stop, wait -------------------------------------------------------------------

    def kill(self, ref: str, sig: int = _signal.SIGKILL) -> Container:
        c = self.get(ref)
        if not c.running or not c.pid:
            raise FailedPrecondition(f"Cannot kill container: {ref}: container {c.short_id} "
                                     "is not running")
        if sig in (_signal.SIGKILL, _stop_signal(c)):
            # the user stopped it: no restart policy brings it back (docker's rule)
            flag = os.path.join(self.run_dir, c.id, "stop-requested")
            with open(flag, "w"):
                pass
            with transaction(self.db) as db:
                db.execute("UPDATE containers SET stopped_by_user = 1 WHERE id = ?", (c.id,))
        self.event(c, "kill", signal=sig)     # first: the die it causes comes after it
        paused = sig == _signal.SIGKILL and self.is_paused(c)
        try:
            os.kill(c.pid, sig)
        except ProcessLookupError:
            pass
        if paused:  # a frozen process dies only once thawed (docker's kill resumes it too)
            self._thaw(c)
        return c

    def _thaw(self, c: Container) -> None:
        """Resume a paused container through its runtime (errors ignored: it may be gone)."""
        import subprocess

        subprocess.run([*self.runtime_argv(c), "resume", c.id], capture_output=True,
                       check=False)
        self._set_paused(c.id, False)

    def _wait_killed(self, cid: str) -> None:
        """After a SIGKILL: a paused container's frozen cgroup holds it until it thaws, so
        one still running a moment later is thawed if paused (as docker does)."""
        if self.wait(cid, timeout=0.5) is not None:
            return
        c = self.get(cid)
        if c.running and self.paused(c):
            self._thaw(c)
        self.wait(cid, timeout=30)

    def stop(self, ref: str, timeout: float | None = None) -> Container:
        c = self.get(ref)
        if not c.running:
            return c
        stop_signal = _stop_signal(c)
        grace = timeout if timeout is not None else float(c.config.get("StopTimeout") or 10)
        self.kill(c.id, stop_signal)
        if not self.wait(c.id, timeout=grace):
            try:
                self.kill(c.id, _signal.SIGKILL)
            except FailedPrecondition:
                pass
            self._wait_killed(c.id)
        c = self.get(c.id)
        self.event(c, "stop")
        return c

    def wait(self, ref: str, timeout: float | None = None) -> int | None:
        """The exit code once the container is not running; None if ``timeout`` passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        cid = self.get(ref).id
        while True:
            try:
                c = self.get(cid)
            except NotFound:
                return None
            if not c.running and c.state != "creating" and not self._exiting(c):
                return c.exit_code
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def wait_condition(self, ref: str, condition: str = "not-running") -> int:
        """docker's wait conditions: ``not-running`` (now, if it is not running), ``next-exit``
        (the exit after the one recorded now: a created container's first), ``removed``
        (once it is gone; its last exit code)."""
        c = self.get(ref)
        cid = c.id
        if condition == "removed":
            code = c.exit_code
            while True:
                try:
                    c = self.get(cid)
                except NotFound:
                    return _last_exit_code(self.db, cid, code)
                if c.state == "exited":
                    code = c.exit_code
                time.sleep(0.05)
        if condition == "next-exit":
            seen = c.finished_at if c.state == "exited" else 0.0
            while True:
                try:
                    c = self.get(cid)
                except NotFound:
                    return _last_exit_code(self.db, cid, c.exit_code)
                if c.state == "exited" and c.finished_at > seen and not self._exiting(c):
                    return c.exit_code
                time.sleep(0.05)
        if condition not in ("", "not-running"):
            raise InvalidArgument(f"invalid condition: {condition!r}")
        done = self.wait(cid)
        return c.exit_code if done is None else done

    def _exiting(self, c: Container) -> bool:
        """Exited in the database, but its supervisor still cleaning up (unmount, --rm)."""
        return c.state == "exited" and _alive(c.supervisor_pid, c.supervisor_start)

    # --- through the OCI runtime: exec, pause, processes ---------------------------------------

    def runtime_argv(self, c: Container) -> list[str]:
        """The container's OCI runtime command line (ours unless it was created with another)."""
        import sys

        binary = str(c.config.get("Runtime") or "")
        if not binary:
            binary = os.path.join(os.path.dirname(sys.executable), "dockyard-runc")
            if not os.access(binary, os.X_OK):
                import shutil

                binary = shutil.which("dockyard-runc") or "dockyard-runc"
        return [binary, "--root", self.runtime_root]

    def _running(self, ref: str) -> Container:
        c = self.get(ref)
        if not c.running:
            raise FailedPrecondition(f"container {c.id} is not running")
        return c

    def exec_argv(self, ref: str, args: Sequence[str], *, env: Sequence[str] = (),
                  workdir: str = "", user: str = "", detach: bool = False,
                  privileged: bool = False, tty: bool = False) -> list[str]:
        """The runtime's ``exec`` command line for ``args`` in the running container."""
        c = self._running(ref)
        if self.paused(c):
            raise FailedPrecondition(f"Container {c.id} is paused, unpause the container "
                                     "before exec")
        argv = [*self.runtime_argv(c), "exec"]
        if detach:
            argv.append("--detach")
        if tty:
            argv.append("--tty")    # in the foreground the runtime proxies our terminal
        for e in env:
            argv += ["--env", e]
        if workdir:
            argv += ["--cwd", workdir]
        if user:
            from dockyard.engine.specgen import rootfs_user_lookup

            u = rootfs_user_lookup(os.path.join(self.bundle(c.id), "rootfs"))(user)
            argv += ["--user", f"{u.uid}:{u.gid}"]
            argv += [x for g in u.sgids for x in ("--additional-gids", str(g))]
        if privileged:
            from dockyard.runtime.capabilities import CAPS

            argv += [x for cap in CAPS for x in ("--cap", cap)]
        return [*argv, c.id, *args]

    def is_paused(self, c: Container) -> bool:
        """Whether the running container was paused (and not resumed) through the engine, as
        docker knows it: a flag file ``pause`` writes, so that ps and the API's list, which ask
        for every container, pay a stat each (the runtime's state costs 50-100x that)."""
        return c.running and os.path.exists(self._paused_flag(c.id))

    def _paused_flag(self, cid: str) -> str:
        return os.path.join(self.run_dir, cid, "paused")

    def _set_paused(self, cid: str, paused: bool) -> None:
        flag = self._paused_flag(cid)
        if paused:
            with open(flag, "w"):
                pass
        else:
            try:
                os.unlink(flag)
            except FileNotFoundError:
                pass

    def paused(self, c: Container) -> bool:
        import subprocess

        out = subprocess.run([*self.runtime_argv(c), "state", c.id], capture_output=True,
                             text=True, check=False)
        try:
            return bool(json.loads(out.stdout).get("status") == "paused")
        except ValueError:
            return False

    def pause(self, ref: str, *, resume: bool = False) -> Container:
        import subprocess

        c = self._running(ref)
        if self.paused(c) != resume:
            what = "paused" if not resume else "not paused"
            raise FailedPrecondition(f"Container {c.id} is {what}" if resume else
                                     f"Container {c.id} is already paused")
        verb = "resume" if resume else "pause"
        done = subprocess.run([*self.runtime_argv(c), verb, c.id], capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            raise FailedPrecondition(done.stderr.strip() or f"{verb} failed")
        self._set_paused(c.id, not resume)
        self.event(c, "unpause" if resume else "pause")
        return c

    def pids(self, ref: str) -> list[int]:
        import subprocess

        c = self._running(ref)
        done = subprocess.run([*self.runtime_argv(c), "ps", "--format", "json", c.id],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise FailedPrecondition(done.stderr.strip() or "cannot list processes")
        return [int(p) for p in json.loads(done.stdout or "[]")]

    def stats(self, ref: str) -> dict[str, Any]:
        """One sample of the container's cgroup statistics (the runtime's events --stats)."""
        import subprocess

        c = self._running(ref)
        done = subprocess.run([*self.runtime_argv(c), "events", "--stats", c.id],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise FailedPrecondition(done.stderr.strip() or "cannot read statistics")
        data = json.loads(done.stdout.splitlines()[0]).get("data") or {}
        return data if isinstance(data, dict) else {}

    def restore(self) -> list[Container]:
        """After a reboot (or any loss of supervisors): start again every container whose
        restart policy says so — always, or unless-stopped when the user did not stop it."""
        started = []
        rows = self.db.execute("SELECT id, stopped_by_user FROM containers").fetchall()
        for cid, by_user in rows:
            c = self.get(str(cid))
            policy = ((c.config.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name")
            if c.running or policy not in ("always", "unless-stopped"):
                continue
            if policy == "unless-stopped" and by_user:
                continue
            _, conn = self.start(c.id)
            with conn:
                read_status(conn)
            started.append(self.get(c.id))
        return started

    def update(self, ref: str, *, memory: int = 0, memory_swap: int = 0, nano_cpus: int = 0,
               cpu_shares: int = 0, cpuset_cpus: str = "", pids_limit: int | None = None
               ) -> Container:
        """Change a container's limits: a running one's cgroup (the runtime's update), and
        its bundle and row, so that its next start keeps them (a stopped container gets them
        when it starts, as in docker)."""
        import subprocess

        from dockyard.engine.resources import Limits, check, update_bundle

        check(Limits(memory=memory, memory_swap=memory_swap, nano_cpus=nano_cpus,
                     cpu_shares=cpu_shares, cpuset_cpus=cpuset_cpus, pids_limit=pids_limit))
        c = self.get(ref)
        argv = [*self.runtime_argv(c), "update"]
        host: dict[str, Any] = dict(c.config.get("HostConfig") or {})
        if memory:
            argv += ["--memory", str(memory)]
            host["Memory"] = memory
            if not memory_swap:     # docker keeps swap at twice the memory when unset
                memory_swap = int(host.get("MemorySwap") or 0) or 2 * memory
        if memory_swap:
            argv += ["--memory-swap", str(memory_swap)]
            host["MemorySwap"] = memory_swap
        if nano_cpus:
            argv += ["--cpu-period", "100000", "--cpu-quota", str(nano_cpus * 100000 // 10**9)]
            host["NanoCpus"] = nano_cpus
        if cpu_shares:
            argv += ["--cpu-share", str(cpu_shares)]
            host["CpuShares"] = cpu_shares
        if cpuset_cpus:
            argv += ["--cpuset-cpus", cpuset_cpus]
            host["CpusetCpus"] = cpuset_cpus
        if pids_limit is not None:
            argv += ["--pids-limit", str(pids_limit)]
            host["PidsLimit"] = pids_limit
        if c.running:
            done = subprocess.run([*argv, c.id], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise FailedPrecondition(f"Cannot update container {c.id}: "
                                         f"{done.stderr.strip() or 'the runtime refused'}")
        update_bundle(self.bundle(c.id), Limits(
            memory=memory, memory_swap=memory_swap, nano_cpus=nano_cpus,
            cpu_shares=cpu_shares, cpuset_cpus=cpuset_cpus, pids_limit=pids_limit))
        config = {**c.config, "HostConfig": host}
        with transaction(self.db) as db:
            db.execute("UPDATE containers SET config = ? WHERE id = ?",
                       (json.dumps(config), c.id))
        c = self.get(c.id)
        self.event(c, "update")
        return c

    def rename(self, ref: str, new_name: str) -> Container:
        c = self.get(ref)
        new = new_name.lstrip("/")
        _check_name(new)
        if new == c.name:
            raise InvalidArgument("Renaming a container with the same name as its current "
                                  "name")
        with transaction(self.db) as db:
            other = db.execute("SELECT id FROM containers WHERE name = ?", (new,)).fetchone()
            if other is not None:
                raise AlreadyExists(
                    f'Error when allocating new name: Conflict. The container name "/{new}" is '
                    f'already in use by container "{other[0]}". You have to remove (or rename) '
                    "that container to be able to reuse that name.")
            db.execute("UPDATE containers SET name = ? WHERE id = ?", (new, c.id))
        renamed = self.get(c.id)
        self.event(renamed, "rename", oldName=f"/{c.name}")
        return renamed

    def prune(self, spare: PruneFilter | None = None) -> tuple[list[str], int]:
        """Remove every container that is not running (and that ``spare``, docker's prune
        filters, does not keep); (their ids, bytes freed)."""
        removed: list[str] = []
        freed = 0
        for c in self.containers():
            if spare is not None and spare.keeps(c.created, c.labels):
                continue
            if c.state in ("exited", "created"):
                try:
                    freed += self.images.snapshots.usage(c.id).size
                except NotFound:
                    pass
                self.remove(c.id)
                removed.append(c.id)
        return removed, freed

    # --- remove ------------------------------------------------------------------------------

    def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> Container:
        """Remove the container; ``volumes`` (rm -v): its anonymous volumes too."""
        c = self.get(ref)
        if c.running:
            if not force:
                raise FailedPrecondition(
                    f"You cannot remove a running container {c.id}. Stop the container "
                    "before attempting removal or force remove")
            self.kill(c.id, _signal.SIGKILL)
            self._wait_killed(c.id)
        self._delete_runtime_state(c)
        self._unmount_rootfs(c.id)
        self.release_network(c.id)
        self._remove_files(c.id)
        self.forget_volumes(c, remove_anonymous=volumes)
        with transaction(self.db) as db:
            db.execute("DELETE FROM containers WHERE id = ?", (c.id,))
            others = db.execute("SELECT COUNT(*) FROM containers WHERE state IN "
                                "('creating', 'created', 'running')").fetchone()[0]
        if not others:
            self._remove_cgroup_parent()
        self.event(c, "destroy")
        return c

    def _delete_runtime_state(self, c: Container) -> None:
        """What the runtime still has of the container (its state, its cgroup: left when its
        supervisor died before cleaning up) goes, its processes with it."""
        if not os.path.exists(os.path.join(self.runtime_root, c.id)):
            return
        if c.config.get("Runtime"):
            import subprocess

            subprocess.run([*self.runtime_argv(c), "delete", "--force", c.id], check=False,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            return
        from dockyard.runtime import delete as delete_mod

        try:
            delete_mod.delete(self.runtime_root, c.id, force=True)
        except DockyardError as e:
            log.warning("runtime state of %s not deleted: %s", c.short_id, e)

    def networks(self) -> NetworkService:
        from dockyard.engine.networks import NetworkService

        return NetworkService(self.config, self.db, os.path.dirname(self.run_dir))

    # --- volumes (engine/volumes.py) ----------------------------------------------------------

    def volumes(self) -> VolumeService:
        from dockyard.engine.volumes import VolumeService

        return VolumeService(self.config, self.db)

    def _prepare_volumes(self, c: Container) -> None:
        """Device volumes mounted, empty volumes filled from the image (copy-up)."""
        if not c.config.get("MountPoints"):
            return
        try:
            self.volumes().prepare(c.id, c.config["MountPoints"],
                                   os.path.join(self.bundle(c.id), "rootfs"))
        except BaseException:
            # the start failed: nothing of it stays mounted; --rm removes it (docker's rule)
            self._unmount_rootfs(c.id)
            self.volumes().release(c.id)
            if c.config.get("AutoRemove"):
                self.remove(c.id, force=True, volumes=True)
            raise

    def release_volumes(self, cid: str) -> None:
        """The container stopped: device volumes that no running container uses unmounted."""
        row = self.db.execute("SELECT config FROM containers WHERE id = ?", (cid,)).fetchone()
        if row is not None and json.loads(row[0]).get("MountPoints"):
            self.volumes().release(cid)

    def forget_volumes(self, c: Container, *, remove_anonymous: bool) -> None:
        if c.config.get("MountPoints"):
            self.volumes().forget(c.id, remove_anonymous=remove_anonymous,
                                  points=c.config["MountPoints"])

    def release_network(self, cid: str) -> None:
        """Disconnect the stopped container from its network (its address, ports, namespace)."""
        row = self.db.execute("SELECT config FROM containers WHERE id = ?", (cid,)).fetchone()
        from dockyard.engine.networks import network_mode, wants_network
        mode = network_mode(json.loads(row[0])) if row is not None else ""
        if row is None or wants_network(mode) or mode.startswith("container:"):
            self.networks().disconnect(cid)

    def _remove_cgroup_parent(self) -> None:
        """The last container of this engine is gone: its cgroup parent goes too (only when
        empty; the kernel refuses to remove a cgroup that has children or processes)."""
        parent = self.cgroup_parent.strip("/")
        if not parent or not self.cgroup_parent.startswith("/"):
            return
        base = "/sys/fs/cgroup"
        try:
            hierarchies = [os.path.join(base, d) for d in os.listdir(base)] + [base]
        except OSError:
            return
        for h in hierarchies:
            path = os.path.join(h, parent)
            if os.path.isdir(path) and os.path.exists(os.path.join(path, "cgroup.procs")):
                try:
                    os.rmdir(path)
                except OSError:
                    pass

    def _remove_files(self, cid: str) -> None:
        import shutil

        try:
            self.images.snapshots.remove(cid)
        except NotFound:
            pass
        shutil.rmtree(os.path.join(self.dir, cid), ignore_errors=True)
        shutil.rmtree(os.path.join(self.run_dir, cid), ignore_errors=True)


def container_from_row(row: sqlite3.Row) -> Container:
    config = json.loads(row["config"])
    return Container(
        id=str(row["id"]), name=str(row["name"]), image_id=str(row["image_id"]),
        image_name=str(row["image_name"]), created=float(row["created"]), config=config,
        state=str(row["state"]), pid=int(row["pid"]), supervisor_pid=int(row["supervisor_pid"]),
        exit_code=int(row["exit_code"]), error=str(row["error"]),
        started_at=float(row["started_at"]), finished_at=float(row["finished_at"]),
        restart_count=int(row["restart_count"]),
        labels=dict(config.get("Labels") or {}),
        supervisor_start=int(row["supervisor_start"]))


def _last_exit_code(db: sqlite3.Connection, cid: str, default: int) -> int:
    """The exit code of the container's last journaled ``die`` (it may be gone since)."""
    try:
        row = db.execute("SELECT attributes FROM events WHERE actor_id = ? AND action = 'die'"
                         " ORDER BY seq DESC LIMIT 1", (cid,)).fetchone()
        if row is not None:
            return int(json.loads(row[0]).get("exitCode", default))
    except (sqlite3.Error, ValueError, TypeError):
        pass
    return default


def state_word(c: Container, paused: bool = False) -> str:
    """docker's State of a container in lists: created, running, paused, exited, removing."""
    if paused and c.running:
        return "paused"
    return {"creating": "created", "removing": "removing"}.get(c.state, c.state)


def filter_matches(c: Container, key: str, value: str) -> bool:
    """Whether the container passes one of ``ps``'s filters (``key=value``); an unknown key
    passes."""
    if key == "status":
        return state_word(c) == value
    if key == "name":
        return value.lstrip("/") in c.name
    if key == "id":
        return c.id.startswith(value)
    if key == "label":
        k, eq, v = value.partition("=")
        return k in c.labels and (not eq or c.labels[k] == v)
    if key == "ancestor":
        return value in (c.image_name, c.image_id, c.image_id[7:19])
    if key == "exited":
        return c.state == "exited" and str(c.exit_code) == value
    return True


def read_status(conn: socket.socket) -> str:
    """The next status line from the monitor ("" once it is gone); output is skipped."""
    from dockyard.monitor import channel

    while True:
        got = channel.read(conn)
        if got is None:
            return ""
        if got[0] == channel.STATUS:
            return got[1].decode(errors="replace").strip()


def event_attributes(c: Container, **extra: object) -> dict[str, object]:
    """docker's attributes of a container event: its labels, then name, image and ``extra``."""
    return {**c.labels, "name": c.name, "image": c.image_name, **extra}


def record_event(root: str, cid: str, action: str, **extra: object) -> None:
    """Journal a container event from outside a service (a supervisor's callbacks), with the
    attributes its row has now (a rename since the start shows)."""
    db = None
    try:
        db = open_database(root)
        row = db.execute("SELECT * FROM containers WHERE id = ?", (cid,)).fetchone()
        attrs = event_attributes(container_from_row(row), **extra) if row is not None else extra
        events.record(root, events.CONTAINER, action, cid, attrs, db=db)
    except (sqlite3.Error, OSError) as e:   # the event is lost, not the supervisor
        log.warning("container event %s %s not journaled: %s", action, cid, e)
    finally:
        if db is not None:
            db.close()


def _is_mountpoint(path: str) -> bool:
    """Whether something is mounted at ``path`` (os.path.ismount misses a bind mount of a
    directory on the same filesystem, which the copy snapshotter uses)."""
    want = os.path.realpath(path).encode()
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                point = line.split(b" ", 5)[4]
                if point.replace(b"\\040", b" ") == want:
                    return True
    except OSError:
        pass
    return False


def _init_alive(pid: int, cid: str) -> bool:
    """Whether ``pid`` is still the container's init (alive, not a zombie, in its cgroup)."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rpartition(")")[2].split()[0] in ("Z", "X"):
                return False
        with open(f"/proc/{pid}/cgroup") as f:
            return cid in f.read()
    except OSError:
        return False


def process_start(pid: int) -> int:
    """The process's start time in clock ticks since boot (0 if it does not exist)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def _alive(pid: int, start: int) -> bool:
    """Whether the supervisor ``pid`` still runs: the same process (same start time, so a
    recycled pid does not count) and not a zombie."""
    if pid <= 0 or not start:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return False
    return fields[0] != "Z" and int(fields[19]) == start


def _recorded_run_root(root: str, wanted: str) -> str:
    """The run root this engine root uses, recorded at its first use: every later command
    finds the containers' runtime state there, whatever its environment says."""
    from dockyard.engine.config import recorded

    return recorded(root, "run-root", wanted)


def _check_name(name: str) -> None:
    n = name.lstrip("/")
    if not n or n[0] not in _NAME_OK - frozenset("_.-") or not set(n) <= _NAME_OK:
        raise InvalidArgument(f'Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] '
                              "are allowed")


def _random_name(db: sqlite3.Connection) -> str:
    for _ in range(100):
        name = f"{_pick(_ADJECTIVES)}_{_pick(_NOUNS)}"
        if db.execute("SELECT 1 FROM containers WHERE name = ?", (name,)).fetchone() is None:
            return name
    return f"{_pick(_ADJECTIVES)}_{_pick(_NOUNS)}{int.from_bytes(os.urandom(4), 'big') % 10000}"


def _pick(words: Sequence[str]) -> str:
    """A random word (the secrets module costs 5 ms of imports on every container start)."""
    return words[int.from_bytes(os.urandom(4), "big") % len(words)]


def _stop_signal(c: Container) -> int:
    from dockyard.engine.runopts import parse_stop_signal

    return parse_stop_signal(str(c.config.get("StopSignal") or "SIGTERM"))
