"""Attached sessions: ``run`` without ``-d``, ``start -a`` and ``attach``.

The container's output comes from the engine's monitor over one connection (see
monitor/channel.py); this command writes it to its own stdout and stderr. With a terminal
(``-it``) our terminal is in raw mode, what we type goes to the container's terminal, window
size changes follow, and the detach keys (ctrl-p ctrl-q) let go of the container, which runs on.
Without one, signals we receive go to the container's init (docker's --sig-proxy).
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
from typing import Any

from dockyard.cli.parser import CommandParser, EngineFailure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dockyard.cli.main import Globals

DETACH_KEYS = b"\x10\x11"   # docker's default: ctrl-p ctrl-q


def await_start(conn: socket.socket, cid: str) -> int:
    """The container's init pid once the monitor started it (or attached us to it)."""
    from dockyard.engine.containers import read_status

    line = read_status(conn)
    if line.startswith(("started ", "attached ")):
        return int(line.split()[1])
    what = line[6:] if line.startswith("error ") else "its supervisor exited before starting it"
    raise EngineFailure(f"failed to start container {cid[:12]}: {what}")


def terminal_size(fd: int = 1) -> tuple[int, int] | None:
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return size.lines, size.columns


def session(conn: socket.socket, cid: str, *, raw: bool = False, keyboard: bool = False,
            detach_keys: bool = True) -> int:
    """Copy the container's output here until it exits (its exit code) or we detach (0).

    ``raw``: our terminal is the container's (-it); ``keyboard``: what we type goes to it."""
    from dockyard.monitor import channel

    saved = _raw_mode(0) if raw else None
    try:
        init_pid = await_start(conn, cid)

        def forward(signum: int, _frame: object) -> None:
            try:
                os.kill(init_pid, signum)
            except ProcessLookupError:
                pass

        def winch(_signum: int, _frame: object) -> None:
            size = terminal_size()
            if size is not None:
                try:
                    conn.send(channel.message(channel.RESIZE, f"{size[0]} {size[1]}"))
                except OSError:
                    pass

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, forward)
        signal.signal(signal.SIGWINCH, winch)
        return _pump(conn, cid, keyboard=keyboard, detach_keys=detach_keys)
    finally:
        conn.close()
        if saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, saved)


def _pump(conn: socket.socket, cid: str, *, keyboard: bool, detach_keys: bool = True) -> int:
    from dockyard.monitor import channel

    poller = select.poll()
    poller.register(conn, select.POLLIN)
    if keyboard:
        poller.register(0, select.POLLIN)
    held = b""
    while True:
        for fd, _ in poller.poll():
            if fd == 0:
                data = os.read(0, 4096)
                if not data:
                    poller.unregister(0)
                    continue
                data, held, detach = scan_detach(held + data) if detach_keys else \
                    (data, b"", False)
                if data:
                    conn.send(channel.message(channel.INPUT, data))
                if detach:
                    return 0
                continue
            got = channel.read(conn)
            if got is None:
                raise EngineFailure(f"container {cid[:12]}: lost its supervisor")
            kind, payload = got
            if kind in (channel.STDOUT, channel.STDERR):
                _write_all(kind, payload)
            elif kind == channel.STATUS:
                line = payload.decode(errors="replace").strip()
                if line.startswith("exited "):
                    return int(line.split()[1])


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BrokenPipeError:
            return
        view = view[n:]


def scan_detach(data: bytes) -> tuple[bytes, bytes, bool]:
    """(bytes to forward, bytes held back as a possible detach prefix, detach typed?)."""
    at = data.find(DETACH_KEYS)
    if at >= 0:
        return data[:at], b"", True
    for n in range(len(DETACH_KEYS) - 1, 0, -1):
        if data.endswith(DETACH_KEYS[:n]):
            return data[:-n], data[-n:], False
    return data, b"", False


def _raw_mode(fd: int) -> list[Any] | None:
    import termios
    import tty

    if not os.isatty(fd):
        return None
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)
    return saved


def cmd_attach(g: Globals, argv: list[str], command: str = "attach") -> int:
    from dockyard.cli.containers import service

    p = CommandParser(command, "[OPTIONS] CONTAINER",
                      "Attach local standard input, output, and error streams to a running "
                      "container")
    p.add_argument("--no-stdin", action="store_true", help="Do not attach STDIN")
    p.add_argument("--sig-proxy", default="true", help="Proxy all received signals to the "
                   "process")
    p.add_argument("--detach-keys", default=None, help="Override the key sequence for "
                   "detaching a container")
    p.add_argument("container")
    a = p.parse_args(argv)
    svc = service(g)
    c = svc.get(a.container)    # its errors exit 1, as docker attach's do
    tty = bool((c.config.get("Config") or {}).get("Tty"))
    interactive = tty and not a.no_stdin and os.isatty(0)
    # -i without a terminal: its supervision holds its stdin open; ours goes there
    piped = not tty and not a.no_stdin and bool((c.config.get("Config") or {}).get("OpenStdin"))
    conn = svc.attach(c.id, terminal_size() if tty else None)
    sys.stdout.flush()
    return session(conn, c.id, raw=interactive, keyboard=interactive or piped,
                   detach_keys=tty)
