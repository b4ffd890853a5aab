"""The endpoints: parse docker's request, call the engine, render docker's JSON.

Each request gets its own engine services (SQLite connections are per thread). Starting a
container goes through one lock: the monitor's connect-or-spawn holds process-wide state.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from dockyard.api import (
    archive,
    images_extra,
    registryauth,
    resources,
    stats,
    streams,
    websocket,
)
from dockyard.api import networks as api_networks
from dockyard.api import volumes as api_volumes
from dockyard.api.errors import NotImplementedByUs, NotModified
from dockyard.api.http import (
    API_VERSION,
    Handler,
    Request,
    find_route,
    route_table,
)
from dockyard.api.listcache import ParsedRows, ThreadLocal
from dockyard.errors import (
    DockyardError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)

if TYPE_CHECKING:
    import socket

    from dockyard.engine.config import EngineConfig
    from dockyard.engine.containers import Container, ContainerService

_ID = r"(?P<id>[^/]+)"
_NAME = r"(?P<name>.+)"


class PendingAttach:
    """A client attached to a container that is not running yet (``docker run``: attach, then
    start): the start hands it the monitor's connection."""

    def __init__(self, stdin: bool) -> None:
        self.stdin = stdin
        self.ready = threading.Event()
        self.conn: socket.socket | None = None
        self.stdin_w = -1
        self.error = ""


def console_size(body: dict[str, Any]) -> tuple[int, int] | None:
    size = body.get("ConsoleSize")
    if isinstance(size, list) and len(size) == 2 and \
            all(isinstance(x, int) and 0 < x < 65536 for x in size):
        return int(size[0]), int(size[1])
    return None


class Exec:
    def __init__(self, eid: str, cid: str, body: dict[str, Any]) -> None:
        self.id = eid
        self.container_id = cid
        self.cmd = [str(x) for x in body.get("Cmd") or []]
        self.env = [str(x) for x in body.get("Env") or []]
        self.workdir = str(body.get("WorkingDir") or "")
        self.user = str(body.get("User") or "")
        self.tty = bool(body.get("Tty"))
        self.privileged = bool(body.get("Privileged"))
        self.stdin = bool(body.get("AttachStdin"))
        self.stdout = bool(body.get("AttachStdout"))
        self.stderr = bool(body.get("AttachStderr"))
        self.running = False
        self.started = False
        self.exit_code: int | None = None
        self.pid = 0
        self.master = -1        # the pseudo-terminal's master while it runs with one
        self.lock = threading.Lock()    # guards master and size
        self.detach_keys = str(body.get("DetachKeys") or "")
        self.size = console_size(body)     # [rows, cols] (API 1.42+), or from a resize

    def inspect(self) -> dict[str, Any]:
        return {"ID": self.id, "Running": self.running, "ExitCode": self.exit_code,
                "ProcessConfig": {"tty": self.tty, "entrypoint": self.cmd[0] if self.cmd else "",
                                  "arguments": self.cmd[1:], "privileged": self.privileged,
                                  "user": self.user},
                "OpenStdin": self.stdin, "OpenStderr": self.stderr, "OpenStdout": self.stdout,
                "CanRemove": False, "ContainerID": self.container_id,
                "DetachKeys": self.detach_keys,
                "Pid": self.pid}


class App:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.start_lock = threading.Lock()
        self.lock = threading.Lock()
        self.pending: dict[str, list[PendingAttach]] = {}
        self.execs: dict[str, Exec] = {}
        self.routes = route_table(ROUTES)
        self.rows = ParsedRows()        # for container lists (api/listcache.py)
        self.list_services = ThreadLocal(self._make_services)

    def _make_services(self) -> ContainerService:
        from dockyard.engine.containers import ContainerService
        from dockyard.engine.images import ImageService

        return ContainerService(self.config, ImageService(self.config))

    @contextmanager
    def services(self) -> Iterator[ContainerService]:
        from dockyard.engine.containers import ContainerService
        from dockyard.engine.images import ImageService

        images = ImageService(self.config)
        try:
            yield ContainerService(self.config, images)
        finally:
            images.close_db()

    def route(self, h: Handler, req: Request) -> None:
        fn, groups = find_route(self.routes, req.method, req.path)
        fn(self, h, req, **groups)


# --- system -------------------------------------------------------------------------------------


def ping(app: App, h: Handler, req: Request) -> None:
    h.reply(200, b"OK", "text/plain; charset=utf-8",
            {"Builder-Version": "1", "Cache-Control": "no-cache, no-store, must-revalidate",
             "Pragma": "no-cache", "Swarm": "inactive"})


def version(app: App, h: Handler, req: Request) -> None:
    from dockyard.engine import sysinfo

    doc = sysinfo.version()
    doc["ApiVersion"] = API_VERSION
    for comp in doc.get("Components") or []:
        if comp.get("Name") == "Engine":
            comp["Details"]["ApiVersion"] = API_VERSION
    h.reply_json(200, doc)


def info(app: App, h: Handler, req: Request) -> None:
    from dockyard.engine import sysinfo

    with app.services() as svc:
        h.reply_json(200, sysinfo.info(svc))


def system_df(app: App, h: Handler, req: Request) -> None:
    from dockyard.engine.diskusage import disk_usage, disk_usage_json

    with app.services() as svc:
        h.reply_json(200, disk_usage_json(disk_usage(svc)))


def build_prune(app: App, h: Handler, req: Request) -> None:
    """Dockyard keeps no build cache (system df says 0 B): nothing to prune. ``docker system
    prune`` asks for it after the containers, networks and images."""
    h.reply_json(200, {"CachesDeleted": None, "SpaceReclaimed": 0})


def _time_ns(text: str) -> int | None:
    if not text:
        return None
    try:
        secs, _, frac = text.partition(".")
        ns = int(secs) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)
    except ValueError:
        raise InvalidArgument(f"invalid timestamp {text!r}") from None
    if not 0 <= ns < 2**63:     # before 1970 or past 2262: no event is there
        raise InvalidArgument(f"invalid timestamp {text!r}: out of range")
    return ns


def events_stream(app: App, h: Handler, req: Request) -> None:
    from dockyard.engine import events

    specs = [f"{k}={v}" for k, vs in req.filters().items() for v in vs]
    filters = events.parse_filters(specs) if specs else None
    since = _time_ns(req.arg("since"))
    until = _time_ns(req.arg("until"))
    out = h.stream()
    # watch() has no stop hook: a client that left ends it through its clock and an until far
    # away (a bound is needed for the clock to be asked)
    far = until if until is not None else 1 << 62

    def clock() -> int:
        return (1 << 63) if out.gone() else time.time_ns()

    for ev in events.watch(app.config.root, since_ns=since, until_ns=far, filters=filters,
                           clock=clock):
        if not out.json(ev.message()):
            return
    out.end()


# --- containers ---------------------------------------------------------------------------------


def _published(svc: ContainerService, shown: list[Container]) -> dict[str, list[Any]]:
    """docker ps's PORTS: the published ports of the running containers that have any."""
    wanted = [c for c in shown
              if c.running and (c.config.get("HostConfig") or {}).get("PortBindings")]
    if not wanted:
        return {}
    nets = svc.networks()
    out: dict[str, list[Any]] = {}
    for c in wanted:
        out[c.id] = [{"IP": p.host_ip or "0.0.0.0",  # noqa: S104 (docker's word for any)
                      "PrivatePort": p.container_port,
                      "PublicPort": p.host_port, "Type": p.proto}
                     for p in nets.published(c.id)]
    return out


def _summary(svc: ContainerService, c: Container,
             ports: dict[str, list[Any]] | None = None) -> dict[str, Any]:
    from dockyard.engine.containers import state_word
    from dockyard.engine.inspect import ps_status

    args = [c.config.get("Path", ""), *(c.config.get("Args") or [])]
    host = c.config.get("HostConfig") or {}
    return {
        "Id": c.id, "Names": [f"/{c.name}"], "Image": c.image_name, "ImageID": c.image_id,
        "Command": " ".join(x for x in args if x), "Created": int(c.created),
        "Ports": (ports or {}).get(c.id, []), "Labels": dict(c.labels),
        "State": state_word(c, paused := svc.is_paused(c)),
        "Status": ps_status(c, svc.health(c) if c.running else None, paused=paused),
        "HostConfig": {"NetworkMode": host.get("NetworkMode", "default")},
        "NetworkSettings": {"Networks": {}}, "Mounts": [],
    }


def containers_list(app: App, h: Handler, req: Request) -> None:
    from dockyard.engine.containers import filter_matches

    filters = req.filters()
    svc = app.list_services.get()       # reads only: kept for the connection's next list
    shown = svc.containers(parse=app.rows.parse)
    limit = req.int_arg("limit", -1) or -1
    if not req.flag("all") and limit <= 0 and "status" not in filters:
        shown = [c for c in shown if c.running]
    shown = [c for c in shown
             if all((all if k == "label" else any)(filter_matches(c, k, v) for v in vs)
                    for k, vs in filters.items() if vs)]
    if limit > 0:
        shown = shown[:limit]
    ports = _published(svc, shown)
    h.reply_json(200, [_summary(svc, c, ports) for c in shown])


def containers_create(app: App, h: Handler, req: Request) -> None:
    from dockyard.api.translate import create_request

    body = req.json()
    with app.services() as svc:
        from dockyard.api.networks import with_network_settings
        from dockyard.engine.netjoin import check_request

        check_request(body)     # --network container: against the other network options
        creq = with_network_settings(svc, create_request(body, req.arg("name")), body)
        if not svc.images.exists(creq.image):
            raise NotFound(f"No such image: {creq.image}")
        from dockyard.engine.create import create_container

        try:
            c = create_container(svc, creq)
        except NotFound as e:
            # docker's CLI pulls the image on any 404 from create: only a missing image is
            # one (an unknown user, say, is the request's fault)
            raise InvalidArgument(e.message) from None
        h.reply_json(201, {"Id": c.id, "Warnings": []})


def container_inspect(app: App, h: Handler, req: Request, id: str) -> None:
    from dockyard.api.networks import container_networks
    from dockyard.engine.inspect import inspect_container

    with app.services() as svc:
        c = svc.get(id)
        doc = inspect_container(svc, c)
        doc["NetworkSettings"] = container_networks(svc, c, doc["NetworkSettings"], req.version)
        h.reply_json(200, doc)


def _start(app: App, svc: ContainerService, c: Container) -> None:
    """Start ``c``; a client waiting to attach gets the monitor's connection (and, for -i, a
    pipe to the container's stdin)."""
    from dockyard.engine.containers import read_status

    with app.lock:
        waiting = app.pending.pop(c.id, [])
    first = waiting[0] if waiting else None
    tty = bool((c.config.get("Config") or {}).get("Tty"))
    stdin_r = stdin_w = -1
    if first is not None and first.stdin and not tty:
        stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
    try:
        with app.start_lock:
            _, conn = svc.start(c.id, attach=first is not None, stdin=stdin_r >= 0,
                                stdin_fd=stdin_r)
    except BaseException as e:
        for p in waiting:
            p.error = str(e)
            p.ready.set()
        if stdin_w >= 0:
            os.close(stdin_w)
        raise
    finally:
        if stdin_r >= 0:
            os.close(stdin_r)
    if first is None:
        with conn:
            line = read_status(conn)
    else:
        line = read_status(conn)
    if not line.startswith("started "):
        conn.close()
        what = line[6:] if line.startswith("error ") else "its supervisor exited before " \
            "starting it"
        for p in waiting:
            p.error = what
            p.ready.set()
        if stdin_w >= 0:
            os.close(stdin_w)
        raise DockyardError(f"failed to start container {c.short_id}: {what}")
    if first is not None:
        first.conn, first.stdin_w = conn, stdin_w
        first.ready.set()
    for p in waiting[1:]:       # the others attach to it running
        p.ready.set()


def container_start(app: App, h: Handler, req: Request, id: str) -> None:
    with app.services() as svc:
        c = svc.get(id)
        if c.running:
            raise NotModified("container already started")
        _start(app, svc, c)
    h.reply(204)


def container_stop(app: App, h: Handler, req: Request, id: str) -> None:
    with app.services() as svc:
        c = svc.get(id)
        if not c.running:
            raise NotModified("container already stopped")
        svc.stop(c.id, req.int_arg("t"))
    h.reply(204)


def container_restart(app: App, h: Handler, req: Request, id: str) -> None:
    with app.services() as svc:
        c = svc.stop(id, req.int_arg("t"))
        _start(app, svc, c)
        svc.event(svc.get(c.id), "restart")
    h.reply(204)


def container_kill(app: App, h: Handler, req: Request, id: str) -> None:
    from dockyard.engine.runopts import parse_stop_signal

    sig = parse_stop_signal(req.arg("signal") or "SIGKILL")
    with app.services() as svc:
        c = svc.get(id)
        if not c.running:
            raise FailedPrecondition(f"Cannot kill container: {id}: Container {c.id} is not "
                                     "running")
        svc.kill(c.id, sig)
    h.reply(204)


def container_wait(app: App, h: Handler, req: Request, id: str) -> None:
    condition = req.arg("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise InvalidArgument(f"invalid condition: {condition!r}")
    with app.services() as svc:
        cid = svc.get(id).id
        out = h.stream()        # the head now: the client goes on (and starts it) meanwhile
        code = svc.wait_condition(cid, condition)
    out.json({"StatusCode": code, "Error": None})
    out.end()


def container_delete(app: App, h: Handler, req: Request, id: str) -> None:
    with app.services() as svc:
        svc.remove(id, force=req.flag("force"))
    h.reply(204)


def container_rename(app: App, h: Handler, req: Request, id: str) -> None:
    name = req.arg("name")
    if not name:
        raise InvalidArgument("Error when allocating new name: Invalid container name")
    with app.services() as svc:
        svc.rename(id, name)
    h.reply(204)


def container_pause(app: App, h: Handler, req: Request, id: str) -> None:
    with app.services() as svc:
        svc.pause(id)
    h.reply(204)


def container_unpause(app: App, h: Handler, req: Request, id: str) -> None:
    with app.services() as svc:
        svc.pause(id, resume=True)
    h.reply(204)


def container_top(app: App, h: Handler, req: Request, id: str) -> None:
    import subprocess

    with app.services() as svc:
        pids = set(svc.pids(id))
    ps_args = (req.arg("ps_args") or "-ef").split()
    out = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=False)
    if out.returncode != 0:     # the caller's ps_args
        raise InvalidArgument(f"ps: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    titles = lines[0].split() if lines else []
    if "PID" not in titles:
        raise DockyardError("Couldn't find PID field in ps output")
    col = titles.index("PID")
    procs = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
            procs.append(fields)
    h.reply_json(200, {"Titles": titles, "Processes": procs})


def containers_prune(app: App, h: Handler, req: Request) -> None:
    from dockyard.engine import prunefilter

    spare = prunefilter.parse(req.filters())
    with app.services() as svc:
        removed, freed = svc.prune(spare)
    h.reply_json(200, {"ContainersDeleted": removed or None, "SpaceReclaimed": freed})


def container_logs(app: App, h: Handler, req: Request, id: str) -> None:
    from dockyard.engine.logread import format_time_fixed, parse_time_arg, read_logs

    want_out, want_err = req.flag("stdout"), req.flag("stderr")
    if not (want_out or want_err):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    with app.services() as svc:
        c = svc.get(id)
        driver = str((c.config.get("LogConfig") or {}).get("Type") or "json-file")
        if driver == "none":
            raise FailedPrecondition("configured logging driver does not support reading")
        tty = bool((c.config.get("Config") or {}).get("Tty"))
        tail_text = req.arg("tail") or "all"
        try:
            tail = None if tail_text in ("all", "-1") else int(tail_text)
        except ValueError:
            tail = None
        now = time.time_ns()
        since_text, until_text = req.arg("since"), req.arg("until")
        since = parse_time_arg(since_text, now) if since_text and since_text != "0" else None
        until = parse_time_arg(until_text, now) if until_text and until_text != "0" else None
        stamps = req.flag("timestamps")
        follow = req.flag("follow")
        out = h.stream("application/vnd.docker.raw-stream" if tty
                       else "application/vnd.docker.multiplexed-stream")

        def stop() -> bool:
            if out.gone():
                return True
            try:
                return not svc.get(c.id).running
            except NotFound:
                return True

        entries = read_logs(svc.log_path(c.id, driver), follow=follow, tail=tail,
                            since_ns=since, until_ns=until, stop=stop, driver=driver)
        try:
            for e in entries:
                stream = streams.STDOUT if e.stream == "stdout" else streams.STDERR
                if (stream == streams.STDOUT and not want_out) or \
                        (stream == streams.STDERR and not want_err):
                    continue
                data = (format_time_fixed(e.time_ns).encode() + b" " + e.data) if stamps \
                    else e.data
                if not out.write(data if tty else streams.frame(stream, data)):
                    return
        finally:
            close = getattr(entries, "close", None)     # a generator: its files close now
            if close is not None:
                close()
    out.end()


# --- attach -------------------------------------------------------------------------------------


def container_attach(app: App, h: Handler, req: Request, id: str) -> None:
    from dockyard.api.terminal import DetachScanner, parse_detach_keys
    from dockyard.monitor import channel

    want_in = req.flag("stdin")
    if not req.flag("stream") and not req.flag("logs"):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    keys = parse_detach_keys(req.arg("detachKeys"))
    with app.services() as svc:
        c = svc.get(id)
        tty = bool((c.config.get("Config") or {}).get("Tty"))
        open_stdin = bool((c.config.get("Config") or {}).get("OpenStdin"))
        pending: PendingAttach | None = None
        if not c.running:
            pending = PendingAttach(stdin=want_in)
            with app.lock:
                app.pending.setdefault(c.id, []).append(pending)
        svc.event(c, "attach")
    sock = h.hijack("application/vnd.docker.raw-stream" if tty
                    else "application/vnd.docker.multiplexed-stream")
    out = streams.Output(sock, tty)
    stdin_w = -1
    conn = None
    try:
        if pending is not None:
            while not pending.ready.wait(1.0):
                if out.closed:
                    return
            if pending.error:
                return
            conn, stdin_w = pending.conn, pending.stdin_w
        if conn is None:
            with app.services() as svc:
                conn = svc.attach(c.id)
            from dockyard.engine.containers import read_status

            if not read_status(conn).startswith("attached "):
                return
        monitor = conn
        if want_in and tty:
            scanner = DetachScanner(keys)

            def typed(data: bytes) -> None:
                data, detach = scanner.feed(data)
                if data:
                    monitor.send(channel.message(channel.INPUT, data))
                if detach:      # the session ends; the container runs on
                    _close(sock)
                    raise OSError("detached")

            streams.copy_input(h.read_raw, typed, lambda: None)
        elif want_in and stdin_w >= 0:
            w = stdin_w
            stdin_w = -1
            streams.copy_input(h.read_raw, streams.write_fd(w), lambda: os.close(w))
        elif want_in and open_stdin:    # its supervision holds its stdin open (-i)
            streams.copy_input(h.read_raw,
                               lambda d: monitor.send(channel.message(channel.INPUT, d)),
                               lambda: None)
        _pump_monitor(monitor, out, req.flag("stdout", True), req.flag("stderr", True),
                      client=sock)
    finally:
        if conn is not None:
            conn.close()
        if stdin_w >= 0:
            os.close(stdin_w)
        _close(sock)


def _pump_monitor(conn: socket.socket, out: streams.Output, want_out: bool,
                  want_err: bool, client: socket.socket | None = None) -> None:
    """The container's output from its supervision to the client, until it exits, or the
    client hung up (or detached) while the container is quiet."""
    import select

    from dockyard.monitor import channel

    poller = select.poll()
    poller.register(conn, select.POLLIN)
    if client is not None:      # no POLLIN: its input belongs to the stdin thread
        poller.register(client, 0)
    while True:
        events = dict(poller.poll())
        if client is not None and events.get(client.fileno(), 0) & (
                select.POLLHUP | select.POLLERR | select.POLLNVAL):
            return
        if conn.fileno() not in events:
            continue
        got = channel.read(conn)
        if got is None:
            return
        kind, payload = got
        if kind == channel.STDOUT and want_out:
            if not out.write(streams.STDOUT, payload):
                return
        elif kind == channel.STDERR and want_err:
            if not out.write(streams.STDERR, payload):
                return
        elif kind == channel.STATUS and payload.startswith(b"exited"):
            return


def _close(sock: socket.socket) -> None:
    import socket as _socket

    try:
        sock.shutdown(_socket.SHUT_RDWR)
    except OSError:
        pass


# --- exec ---------------------------------------------------------------------------------------


def exec_create(app: App, h: Handler, req: Request, id: str) -> None:
    body = req.json()
    if not body.get("Cmd"):
        raise InvalidArgument("No exec command specified")
    with app.services() as svc:
        c = svc.get(id)
        if not c.running:
            raise FailedPrecondition(f"Container {c.id} is not running")
        if svc.paused(c):
            raise FailedPrecondition(f"Container {c.id} is paused, unpause the container "
                                     "before exec")
        ex = Exec(secrets.token_hex(32), c.id, body)
        with app.lock:
            app.execs[ex.id] = ex
        svc.event(c, f"exec_create: {' '.join(ex.cmd)}", execID=ex.id)
    h.reply_json(201, {"Id": ex.id})


def _exec(app: App, id: str) -> Exec:
    with app.lock:
        ex = app.execs.get(id)
    if ex is None:
        raise NotFound(f"No such exec instance: {id}")
    return ex


def exec_inspect(app: App, h: Handler, req: Request, id: str) -> None:
    h.reply_json(200, _exec(app, id).inspect())


def exec_resize(app: App, h: Handler, req: Request, id: str) -> None:
    from dockyard.api.terminal import set_size, size_args

    ex = _exec(app, id)
    rows, cols = size_args(req.int_arg("h"), req.int_arg("w"))
    with ex.lock:
        if ex.exit_code is not None or not ex.started:
            raise FailedPrecondition(f"Exec {ex.id} is not running")    # dockerd's 409
        if ex.master >= 0:
            try:
                set_size(ex.master, rows, cols, ex.pid)
            except OSError:
                pass        # it is ending
        elif ex.tty and rows and cols:
            ex.size = (rows, cols)      # before it has a terminal: the one it gets
    h.reply(200, b"", "text/plain")


def exec_start(app: App, h: Handler, req: Request, id: str) -> None:
    import subprocess

    ex = _exec(app, id)
    body = req.json(required=False)
    detach = bool(body.get("Detach"))
    size = console_size(body)
    if size is not None:
        with ex.lock:
            ex.size = size
    with app.lock:
        if ex.started:
            raise FailedPrecondition(f"Error: Exec command {ex.id} is already running")
        ex.started = True
    with app.services() as svc:
        argv = svc.exec_argv(ex.container_id, ex.cmd, env=ex.env, workdir=ex.workdir,
                             user=ex.user, detach=detach, privileged=ex.privileged,
                             tty=ex.tty and not detach)
        c = svc.get(ex.container_id)
        svc.event(c, f"exec_start: {' '.join(ex.cmd)}", execID=ex.id)
    if detach:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, check=False)
        if done.returncode != 0:
            ex.started = False
            raise DockyardError(done.stderr.decode(errors="replace").strip() or "exec failed")
        h.reply(200, b"", "application/json")
        return
    tty = ex.tty
    sock = h.hijack("application/vnd.docker.raw-stream" if tty
                    else "application/vnd.docker.multiplexed-stream")
    out = streams.Output(sock, tty)
    try:
        _run_exec(app, h, ex, argv, out)
    finally:
        _close(sock)


def _run_exec(app: App, h: Handler, ex: Exec, argv: list[str], out: streams.Output) -> None:
    """The exec's process with pipes (no terminal: its stderr apart) or a pseudo-terminal;
    its output to the client, the client's input to it; its exit code recorded before the
    stream ends (the client asks for it right after)."""
    import subprocess

    from dockyard.api.terminal import DetachScanner, parse_detach_keys, set_size

    master = -1
    if ex.tty:
        import tty as _tty

        master, slave = os.openpty()
        _tty.setraw(slave)
        with ex.lock:
            if ex.size is not None:
                set_size(master, ex.size[0], ex.size[1], 0)
            proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                    start_new_session=True)
            ex.master = master      # exec resize: from now on to the terminal and the runtime
        os.close(slave)
    else:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if ex.stdin else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ex.running, ex.pid = True, proc.pid
    first = bytearray()     # the start of what it wrote: where a runtime says it failed
    try:
        if ex.tty:
            if ex.stdin:
                scanner = DetachScanner(parse_detach_keys(ex.detach_keys))
                to_terminal = streams.write_fd(master)

                def typed(data: bytes) -> None:
                    data, detach = scanner.feed(data)
                    if data:
                        with ex.lock:   # never to the fd number once it is closed (reused)
                            if ex.master < 0:
                                raise OSError("the exec ended")
                            to_terminal(data)
                    if detach:      # the session ends; the exec runs on, unheard
                        _close(out.sock)
                        raise OSError("detached")

                streams.copy_input(h.read_raw, typed, lambda: None)
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                if len(first) < 4096:
                    first += data[:4096 - len(first)]
                out.write(streams.STDOUT, data)
        else:
            if ex.stdin and proc.stdin is not None:
                pipe = proc.stdin
                streams.copy_input(h.read_raw, _writer(pipe), pipe.close)
            threads = []
            for src, stream in ((proc.stdout, streams.STDOUT), (proc.stderr, streams.STDERR)):
                assert src is not None
                t = threading.Thread(target=_copy_out, daemon=True,
                                     args=(src, stream, out,
                                           first if stream == streams.STDERR else None))
                t.start()
                threads.append(t)
            for t in threads:
                t.join()
        code = proc.wait()
    finally:
        if master >= 0:
            with ex.lock:
                ex.master = -1
                os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ex.running = False
    ex.exit_code = _exec_status(code if code >= 0 else 128 - code, bytes(first))
    with ContainerEvents(app, ex.container_id) as record:
        record("exec_die", execID=ex.id, exitCode=ex.exit_code)


def _exec_status(code: int, first: bytes) -> int:
    """The exec's exit code as dockerd reports it: when the runtime could not start the
    process (it says so, logrus-style, and exits 1, or 255 as runc exec does), 127 for a
    command that is not there and 126 for one that cannot run — what docker's CLI exits with."""
    if code not in (1, 255) or b"level=error" not in first or b"exec" not in first:
        return code
    if b"no such file or directory" in first or b"executable file not found" in first:
        return 127
    return 126


def _writer(pipe: Any) -> Any:
    def write(data: bytes) -> None:
        pipe.write(data)
        pipe.flush()
    return write


def _copy_out(src: Any, stream: int, out: streams.Output, first: bytearray | None = None
              ) -> None:
    while True:
        data = src.read1(65536)
        if not data:
            return
        if first is not None and len(first) < 4096:
            first += data[:4096 - len(first)]
        out.write(stream, data)


class ContainerEvents:
    """Journal events of a container that may be gone by now."""

    def __init__(self, app: App, cid: str) -> None:
        self.app = app
        self.cid = cid

    def __enter__(self) -> Any:
        from dockyard.engine.containers import record_event

        return lambda action, **extra: record_event(self.app.config.root, self.cid, action,
                                                    **extra)

    def __exit__(self, *exc: object) -> None:
        pass


# --- images -------------------------------------------------------------------------------------


def images_list(app: App, h: Handler, req: Request) -> None:
    import fnmatch

    from dockyard.engine.imagefilter import filter_images, ref_matches
    from dockyard.engine.images import _epoch, familiar, familiar_digest

    filters = req.filters()
    if req.arg("filter"):       # API < 1.41: ?filter=NAME
        filters.setdefault("reference", []).append(req.arg("filter"))
    for key in filters:
        if key not in ("dangling", "reference", "label", "before", "since"):
            raise InvalidArgument(f"invalid filter '{key}'")
    patterns = filters.get("reference", [])
    with app.services() as svc:
        out = []
        for rec in filter_images(svc.images, svc.images.images(), filters):
            labels = dict(svc.images.image_config(rec).config.labels or {})
            tags = [familiar(r) for r in rec.references]
            digests = [familiar_digest(d) for d in rec.repo_digests]
            if patterns:        # dockerd: only the names that matched
                tags = [t for t in tags
                        if any(ref_matches(t, p, fnmatch.fnmatchcase) for p in patterns)]
                digests = [d for d in digests
                           if any(fnmatch.fnmatchcase(d.partition("@")[0], p) or
                                  fnmatch.fnmatchcase(d, p) for p in patterns)]
            out.append({
                "Id": rec.id, "ParentId": "",
                "RepoTags": tags,
                "RepoDigests": digests,
                "Created": int(_epoch(rec.created) or rec.added), "Size": rec.size,
                "SharedSize": -1, "VirtualSize": rec.size, "Labels": labels or None,
                "Containers": -1})
    h.reply_json(200, out)


def image_inspect(app: App, h: Handler, req: Request, name: str) -> None:
    with app.services() as svc:
        h.reply_json(200, svc.images.inspect(name))


def image_tag(app: App, h: Handler, req: Request, name: str) -> None:
    repo, tag = req.arg("repo"), req.arg("tag")
    if not repo:
        raise InvalidArgument("repository name must have at least one component")
    with app.services() as svc:
        svc.images.tag(name, f"{repo}:{tag}" if tag else repo)
    h.reply(201, b"", "text/plain")


def image_delete(app: App, h: Handler, req: Request, name: str) -> None:
    with app.services() as svc:
        rep = svc.images.remove(name, force=req.flag("force"), prune=not req.flag("noprune"))
    h.reply_json(200, [{"Untagged": u} for u in rep.untagged] +
                 [{"Deleted": d} for d in rep.deleted])


def images_prune(app: App, h: Handler, req: Request) -> None:
    dangling = req.filters().get("dangling", ["true"])
    with app.services() as svc:
        rep = svc.images.prune(all_images=dangling[-1].lower() in ("false", "0"))
    deleted = [{"Untagged": u} for u in rep.untagged] + [{"Deleted": d} for d in rep.deleted]
    h.reply_json(200, {"ImagesDeleted": deleted or None, "SpaceReclaimed": rep.reclaimed})


def image_create(app: App, h: Handler, req: Request) -> None:
    """``POST /images/create?fromImage=...&tag=...``: a pull, with docker's JSON progress."""
    from dockyard.image.platform import parse_platform
    from dockyard.image.reference import parse_reference

    from_image = req.arg("fromImage")
    if not from_image:
        raise NotImplementedByUs("import (fromSrc) is not supported yet")
    tag = req.arg("tag")
    name = from_image
    if tag:
        name = f"{from_image}@{tag}" if tag.startswith("sha256:") else f"{from_image}:{tag}"
    ref = parse_reference(name)
    platform = parse_platform(req.arg("platform")) if req.arg("platform") else None
    with app.services() as svc:
        try:
            before: str | None = svc.images.resolve(str(ref)).id
        except (NotFound, InvalidArgument):
            before = None
        # the head goes out with the first progress, once the manifest is resolved: a name
        # the registry does not know is an HTTP error (docker's 404), as dockerd's
        opened: list[Any] = []
        lock = threading.Lock()
        last: dict[str, str] = {}

        def begin() -> Any:
            if not opened:
                opened.append(h.stream())
                opened[0].json({"status": f"Pulling from {ref.path}",
                                "id": ref.digest or ref.tag})
            return opened[0]

        def progress(p: Any) -> None:
            with lock:
                out = begin()
                doc: dict[str, Any] = {"status": p.status}
                if p.id:
                    if p.total and p.status in ("Downloading", "Extracting"):
                        doc["progressDetail"] = {"current": p.current, "total": p.total}
                    elif last.get(p.id) == p.status:
                        return
                    else:
                        doc["progressDetail"] = {}
                    last[p.id] = p.status
                    doc["id"] = p.id
                out.json(doc)

        client = registryauth.client_for(app.config, req, ref.domain)
        try:
            rec = svc.images.pull(str(ref), platform=platform, progress=progress,
                                  registry=client)
        except DockyardError as e:
            if not opened:
                raise
            out = opened[0]
            out.json({"errorDetail": {"message": e.message}, "error": e.message})
            out.end()
            return
        finally:
            if client is not None:
                client.close()
        out = begin()
        out.json({"status": f"Digest: {rec.manifest_digest}"})
        what = "Image is up to date for" if before == rec.id else "Downloaded newer image for"
        out.json({"status": f"Status: {what} {ref.familiar}"})
    out.end()


def no_such_object(app: App, h: Handler, req: Request, kind: str, name: str) -> None:
    """A lookup by name of an object kind this slice does not serve: not found (``docker
    inspect NAME`` tries each kind in turn and needs a 404 to go on)."""
    raise NotFound(f"No such {kind.rstrip('s')}: {name.removesuffix('/json')}")


def not_implemented(app: App, h: Handler, req: Request, **_: str) -> None:
    raise NotImplementedByUs(f"{req.method} {req.path} is not implemented by Dockyard yet")


def resize(app: App, h: Handler, req: Request, id: str) -> None:
    """The container's terminal size: through its supervision, as ``dockyard attach`` does."""
    from dockyard.api.terminal import size_args
    from dockyard.engine.containers import read_status

    rows, cols = size_args(req.int_arg("h"), req.int_arg("w"))
    with app.services() as svc:
        c = svc.get(id)
        if not c.running:
            raise FailedPrecondition(f"Container {c.id} is not running")
        if (c.config.get("Config") or {}).get("Tty"):
            with svc.attach(c.id, (rows, cols)) as conn:
                read_status(conn)
    h.reply(200, b"", "text/plain")


ROUTES: list[tuple[str, str, Callable[..., None]]] = [
    ("GET", r"/_ping", ping),
    ("GET", r"/version", version),
    ("GET", r"/info", info),
    ("GET", r"/events", events_stream),
    ("GET", r"/system/df", system_df),
    ("POST", r"/build/prune", build_prune),
    ("GET", r"/containers/json", containers_list),
    ("POST", r"/containers/create", containers_create),
    ("POST", r"/containers/prune", containers_prune),
    ("GET", rf"/containers/{_ID}/json", container_inspect),
    ("POST", rf"/containers/{_ID}/start", container_start),
    ("POST", rf"/containers/{_ID}/stop", container_stop),
    ("POST", rf"/containers/{_ID}/restart", container_restart),
    ("POST", rf"/containers/{_ID}/kill", container_kill),
    ("POST", rf"/containers/{_ID}/wait", container_wait),
    ("GET", rf"/containers/{_ID}/logs", container_logs),
    ("POST", rf"/containers/{_ID}/attach", container_attach),
    ("GET", rf"/containers/{_ID}/top", container_top),
    ("POST", rf"/containers/{_ID}/rename", container_rename),
    ("POST", rf"/containers/{_ID}/pause", container_pause),
    ("POST", rf"/containers/{_ID}/unpause", container_unpause),
    ("POST", rf"/containers/{_ID}/resize", resize),
    ("DELETE", rf"/containers/{_ID}", container_delete),
    ("POST", rf"/containers/{_ID}/exec", exec_create),
    ("POST", rf"/exec/{_ID}/start", exec_start),
    ("POST", rf"/exec/{_ID}/resize", exec_resize),
    ("GET", rf"/exec/{_ID}/json", exec_inspect),
    ("GET", r"/images/json", images_list),
    ("POST", r"/images/create", image_create),
    ("POST", r"/images/prune", images_prune),
    ("GET", rf"/images/{_NAME}/json", image_inspect),
    ("POST", rf"/images/{_NAME}/tag", image_tag),
    ("DELETE", rf"/images/{_NAME}", image_delete),
    # a container's filesystem, resources and statistics; images to and from archives and
    # registries (api/archive.py, api/resources.py, api/stats.py, api/images_extra.py)
    ("GET", rf"/containers/{_ID}/archive", archive.container_archive),      # and HEAD
    ("PUT", rf"/containers/{_ID}/archive", archive.container_archive_put),
    ("GET", rf"/containers/{_ID}/export", archive.container_export),
    ("GET", rf"/containers/{_ID}/changes", archive.container_changes),
    ("GET", rf"/containers/{_ID}/stats", stats.container_stats),
    ("POST", rf"/containers/{_ID}/update", resources.container_update),
    ("GET", rf"/containers/{_ID}/attach/ws", websocket.container_attach_ws),
    ("POST", rf"/containers/{_ID}/attach/ws", websocket.container_attach_ws),
    ("POST", r"/commit", images_extra.commit),
    ("GET", r"/images/get", images_extra.images_get),
    ("GET", r"/images/search", images_extra.images_search),
    ("POST", r"/images/load", images_extra.images_load),
    ("GET", rf"/images/{_NAME}/history", images_extra.image_history),
    ("GET", rf"/images/{_NAME}/get", images_extra.image_get),
    ("POST", rf"/images/{_NAME}/push", images_extra.image_push),
    ("POST", r"/auth", registryauth.auth),
    ("GET", r"/networks", api_networks.networks_list),
    ("POST", r"/networks/create", api_networks.network_create),
    ("POST", r"/networks/prune", api_networks.networks_prune),
    ("GET", rf"/networks/{_ID}", api_networks.network_inspect),
    ("DELETE", rf"/networks/{_ID}", api_networks.network_delete),
    ("POST", rf"/networks/{_ID}/connect", api_networks.network_connect),
    ("POST", rf"/networks/{_ID}/disconnect", api_networks.network_disconnect),
    ("GET", r"/volumes", api_volumes.volumes_list),
    ("POST", r"/volumes/create", api_volumes.volume_create),
    ("POST", r"/volumes/prune", api_volumes.volumes_prune),
    ("GET", rf"/volumes/{_NAME}", api_volumes.volume_inspect),
    ("DELETE", rf"/volumes/{_NAME}", api_volumes.volume_delete),
    # docker has these; this slice does not
    ("GET", r"/(?P<kind>plugins|secrets|configs|services|nodes|tasks)"
            r"/(?P<name>[^/]+(?:/json)?)", no_such_object),
    ("GET", r"/(?:plugins|secrets|configs|services|nodes|tasks|swarm)(?:/.*)?",
     not_implemented),
    ("POST", r"/(?:plugins|build|session|swarm)(?:/.*)?", not_implemented),
]
