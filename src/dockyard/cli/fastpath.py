"""The warm path of a command: when the engine's monitor runs, it forks the command for us
(see monitor/worker.py), so this process only starts Python, hands over its stdio, working
directory and environment, passes on the signals it gets, and exits with the command's status.

It runs before anything else, so it imports only modules built into the interpreter (no
``socket``, ``signal`` or ``json``: their enums and parsers cost more than the rest of it).
The request is marshal's format: the monitor takes it only from a peer of its own user.
"""

from __future__ import annotations

import _socket
import marshal
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
else:
    import _signal

DEFAULT_ROOT = "/var/lib/dockyard"      # engine/config.py's; not imported, on purpose
STATUS = 0              # monitor/channel.py's message kinds
REQUEST_MARSHAL = 6

# Commands that run warm: the container commands that a user types often and waits for.
WARM = frozenset({"run", "create", "start", "stop", "restart", "kill", "rm", "ps", "wait",
                  "inspect", "logs", "exec", "top", "port", "rename", "pause", "unpause",
                  "container", "attach", "diff", "update"})

_FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT,
              _signal.SIGWINCH, _signal.SIGUSR1, _signal.SIGUSR2)


def run_warm(root: str | None, command: str, argv: list[str]) -> int | None:
    """The command's exit status, run by the warm monitor; None when there is none to ask
    (then the caller runs the command itself: nothing has happened yet)."""
    if command not in WARM or os.environ.get("DOCKYARD_NO_WARM"):
        return None
    root = os.path.abspath(root or os.environ.get("DOCKYARD_ROOT") or DEFAULT_ROOT)
    try:
        with open(os.path.join(root, "run-root"), "rb") as f:
            run_root = f.read().strip().decode()
    except (OSError, UnicodeDecodeError):
        return None
    if not run_root:
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    try:
        sock.connect(os.path.join(run_root, "containers", "monitor.sock"))
        cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        sock.close()
        return None
    try:
        return _converse(sock, cwd, argv)
    finally:
        sock.close()


def _converse(sock: _socket.socket, cwd: int, argv: list[str]) -> int | None:
    umask = os.umask(0)
    os.umask(umask)
    request = bytes([REQUEST_MARSHAL]) + marshal.dumps(
        {"op": "exec", "argv": argv, "env": dict(os.environ), "umask": umask})
    fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2, cwd))
    try:
        sock.sendmsg([request], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
    except OSError:
        return None
    finally:
        os.close(cwd)
    line = _status(sock)
    if line is None or not line.startswith("pid "):
        return None         # refused before anything ran: run it ourselves
    pid = int(line.split()[1])

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in _FORWARDED:
        _signal.signal(sig, forward)
    while True:
        line = _status(sock)
        if line is None:    # the command and the monitor are both gone without a word
            sys.stderr.write("Error: the command was lost with the engine's monitor\n")
            return 125
        if line.startswith("exit "):
            return int(line.split()[1])


def _status(sock: _socket.socket) -> str | None:
    while True:
        try:
            data = sock.recv(1 << 17)
        except OSError:
            return None
        if not data:
            return None
        if data[0] == STATUS:
            return data[1:].decode(errors="replace").strip()
