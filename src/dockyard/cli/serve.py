"""``dockyard serve``: run the engine daemon, the Docker Engine API (api/), on dockerd's kinds of
listener (``-H unix://…``, ``tcp://…`` with TLS, ``fd://`` from systemd; api/listeners.py).

Containers do not belong to the daemon: they run under the engine's monitor, so stopping or
killing ``dockyard serve`` leaves them running, and a new daemon sees them (and what the CLI
made meanwhile) in the engine's database (docker's live-restore)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dockyard.cli.parser import CommandParser, UsageError

if TYPE_CHECKING:
    from dockyard.api.handlers import App
    from dockyard.cli.main import Globals

DEFAULT_HOST = "unix:///run/dockyard/dockyard.sock"


def _cert_dir() -> str:
    return os.environ.get("DOCKER_CERT_PATH") or os.path.join(os.path.expanduser("~"),
                                                             ".docker")


# daemon.json keys (dockerd's names) that serve's flags may also set: attribute, expected type
_FILE_KEYS: dict[str, tuple[str, type[Any]]] = {
    "hosts": ("host", list), "tlsverify": ("tlsverify", bool), "tlscacert": ("tlscacert", str),
    "tlscert": ("tlscert", str), "tlskey": ("tlskey", str), "group": ("group", str)}


def _from_config_file(a: Any, settings: Mapping[str, Any], path: str, command: str) -> None:
    """dockerd's rule: a listener setting comes from the flags or from the config file, and
    naming one in both is an error (it never guesses which one is meant)."""
    both = []
    for key, (attr, kind) in _FILE_KEYS.items():
        if key not in settings:
            continue
        got: Any = settings[key]
        if not isinstance(got, kind) or (kind is list and
                                          not all(isinstance(x, str) for x in got)):
            raise UsageError(f"config file {path}: {key!r} must be "
                             f"{'a list of strings' if kind is list else kind.__name__}",
                             command)
        if getattr(a, attr):
            both.append(f"{key}: (from flag: {getattr(a, attr)}, from file: {got})")
            continue
        setattr(a, attr, list(got) if kind is list else got)
    if both:
        raise UsageError("the following directives are specified both as a flag and in the "
                         f"configuration file: {', '.join(both)}", command)


def cmd_serve(g: Globals, argv: list[str], command: str = "serve") -> int:
    p = CommandParser(command, "[OPTIONS]", "Serve the Docker Engine API (the engine daemon)")
    p.add_argument("-H", "--host", action="append", default=[],
                   help=f"Daemon socket(s) to listen on: unix:///path, tcp://host:port, fd:// "
                        f"or fd://N (default {DEFAULT_HOST})")
    p.add_argument("--tlsverify", action="store_true",
                   help="Serve tcp:// with TLS and require client certificates signed by "
                        "--tlscacert")
    p.add_argument("--tlscacert", default="", help='Trust certs signed only by this CA '
                   '(default "~/.docker/ca.pem")')
    p.add_argument("--tlscert", default="", help='Path to TLS certificate file (default '
                   '"~/.docker/cert.pem")')
    p.add_argument("--tlskey", default="", help='Path to TLS key file (default '
                   '"~/.docker/key.pem")')
    p.add_argument("--insecure-tcp", action="store_true",
                   help="Allow tcp:// listeners without TLS (no authentication: anyone who "
                        "can connect is root on this host)")
    p.add_argument("--group", default="",
                   help='Group owning the unix socket (default "dockyard" when it exists)')
    a = p.parse_args(argv)
    import grp

    from dockyard.api import listeners
    from dockyard.engine.config import load_config
    from dockyard.errors import InvalidArgument

    config = load_config(g.root, g.config)
    _from_config_file(a, config.settings, config.config_file, command)
    hosts = a.host or [DEFAULT_HOST]

    tls = None
    if a.tlsverify:
        certs = _cert_dir()
        tls = listeners.TLSFiles(ca=a.tlscacert or os.path.join(certs, "ca.pem"),
                                 cert=a.tlscert or os.path.join(certs, "cert.pem"),
                                 key=a.tlskey or os.path.join(certs, "key.pem"))
    elif a.tlscacert or a.tlscert or a.tlskey:
        raise UsageError("--tlscacert/--tlscert/--tlskey need --tlsverify (a tcp listener "
                         "always verifies its clients' certificates)", command)
    try:
        addrs = listeners.plan(hosts, tls=tls is not None, insecure_tcp=a.insecure_tcp)
        if tls is not None:
            tls.context()       # the files, checked before anything listens
    except InvalidArgument as e:
        raise UsageError(e.message, command) from None
    try:
        gid = grp.getgrnam(a.group or "dockyard").gr_gid
    except KeyError:
        if a.group:
            raise UsageError(f"--group: no such group: {a.group}", command) from None
        gid = -1
    from dockyard.api.handlers import App
    from dockyard.api.http import Handler, serve_forever
    from dockyard.engine import supervision

    logging.basicConfig(level=logging.DEBUG if g.debug else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    supervision.spawn_by_exec()     # this process has threads: it must never fork
    app = App(config)
    _resync(app)
    handler = type("BoundHandler", (Handler,), {"app": app})
    try:
        servers = listeners.open_all(addrs, handler, tls, insecure_tcp=a.insecure_tcp,
                                     gid=gid)
    except InvalidArgument as e:
        raise UsageError(e.message, command) from None
    for s in servers:
        where = listeners.describe(s)
        if where.startswith("tcp://"):
            print(f"WARNING: API is accessible on http://{where[len('tcp://'):]} without "
                  "encryption and without authentication: access to the API is equivalent "
                  "to root access on this host. Use --tlsverify.", file=sys.stderr, flush=True)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logging.getLogger("dockyard.api").info(
        "API listening on %s", ", ".join(listeners.describe(s) for s in servers))
    serve_forever(servers, stop)
    return 0


def _resync(app: App) -> None:
    """Live restore: the containers are the monitor's and the state is the engine's database,
    so a new daemon only looks: every container is read once, which records the exit of any
    whose supervision died while no daemon ran (engine.containers.refresh)."""
    with app.services() as svc:
        found = svc.containers()
    running = sum(1 for c in found if c.running)
    logging.getLogger("dockyard.api").info("live-restore: %d containers, %d running",
                                           len(found), running)
