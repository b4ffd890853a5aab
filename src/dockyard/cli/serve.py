"""``dockyard serve``: run the engine daemon, the Docker Engine API (api/) on a unix socket."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING

from dockyard.cli.parser import CommandParser, UsageError

if TYPE_CHECKING:
    from dockyard.cli.main import Globals

DEFAULT_HOST = "unix:///run/dockyard/dockyard.sock"


def cmd_serve(g: Globals, argv: list[str], command: str = "serve") -> int:
    p = CommandParser(command, "[OPTIONS]", "Serve the Docker Engine API (the engine daemon)")
    p.add_argument("-H", "--host", action="append", default=[],
                   help=f"Daemon socket(s) to listen on (default {DEFAULT_HOST})")
    p.add_argument("--insecure-tcp", action="store_true",
                   help="Allow tcp:// listeners (no TLS, no authentication: loopback only!)")
    p.add_argument("--group", default="",
                   help='Group owning the unix socket (default "dockyard" when it exists)')
    a = p.parse_args(argv)
    hosts = a.host or [DEFAULT_HOST]
    for h in hosts:
        if h.startswith("tcp://") and not a.insecure_tcp:
            raise UsageError(f"{h}: tcp listeners need TLS, which is not supported yet "
                             "(--insecure-tcp to listen without it)", command)
    import grp
    import os

    try:
        gid = grp.getgrnam(a.group or "dockyard").gr_gid
    except KeyError:
        if a.group:
            raise UsageError(f"--group: no such group: {a.group}", command) from None
        gid = -1
    from dockyard.api.handlers import App
    from dockyard.api.http import Handler, listen, serve_forever
    from dockyard.engine import supervision
    from dockyard.engine.config import load_config

    logging.basicConfig(level=logging.DEBUG if g.debug else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    supervision.spawn_by_exec()     # this process has threads: it must never fork
    config = load_config(g.root, g.config)
    app = App(config)
    handler = type("BoundHandler", (Handler,), {"app": app})
    servers = [listen(h, handler) for h in hosts]
    if gid >= 0:
        for h in hosts:
            if h.startswith("unix://"):
                os.chown(h[len("unix://"):], -1, gid)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logging.getLogger("dockyard.api").info("API listening on %s", ", ".join(hosts))
    serve_forever(servers, stop)
    return 0
