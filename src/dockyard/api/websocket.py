"""``GET /containers/{id}/attach/ws``: attach to a running container over a WebSocket
(RFC 6455), as dockerd does: the container's output (stdout and stderr, raw, not multiplexed;
with ``logs=1`` what it wrote before, first) in binary frames, and the client's frames as its
input (when it has a terminal or its stdin is kept open, ``-i``: then its supervision takes
input).

Only what attach needs of the protocol: the handshake, unfragmented server frames, client
frames (masked, possibly fragmented), ping/pong and close.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from dockyard.errors import FailedPrecondition, InvalidArgument

if TYPE_CHECKING:
    from dockyard.api.handlers import App
    from dockyard.api.http import Handler, Request

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_MAX_FRAME = 1 << 20        # a client frame bigger than this is refused (close 1009)


def accept_key(key: str) -> str:
    """RFC 6455's Sec-WebSocket-Accept (SHA-1 is the protocol's, not a security choice)."""
    digest = hashlib.sha1((key + _GUID).encode(), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode()


def encode(opcode: int, payload: bytes) -> bytes:
    """A server frame: final, unmasked."""
    n = len(payload)
    if n < 126:
        head = struct.pack(">BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack(">BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack(">BBQ", 0x80 | opcode, 127, n)
    return head + payload


class ProtocolError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def read_frame(read: Callable[[int], bytes]) -> tuple[bool, int, bytes] | None:
    """(final, opcode, payload) of the client's next frame; None at the end of the stream."""
    head = _exactly(read, 2)
    if head is None:
        return None
    b0, b1 = head[0], head[1]
    if not b1 & 0x80:
        raise ProtocolError(1002, "client frames must be masked")
    n = b1 & 0x7F
    if n == 126:
        ext = _exactly(read, 2)
        n = struct.unpack(">H", ext)[0] if ext else -1
    elif n == 127:
        ext = _exactly(read, 8)
        n = struct.unpack(">Q", ext)[0] if ext else -1
    if n < 0:
        return None
    if n > _MAX_FRAME:
        raise ProtocolError(1009, "frame too big")
    mask = _exactly(read, 4)
    data = _exactly(read, n) if n else b""
    if mask is None or data is None:
        return None
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return bool(b0 & 0x80), b0 & 0x0F, payload


def _exactly(read: Callable[[int], bytes], n: int) -> bytes | None:
    out = b""
    while len(out) < n:
        try:
            got = read(n - len(out))
        except (OSError, ValueError):
            return None
        if not got:
            return None
        out += got
    return out


class Connection:
    """The server's side of an open WebSocket: thread-safe sends, ``closed`` once a send
    failed or a close was sent."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.closed = False

    def send(self, opcode: int, payload: bytes) -> bool:
        with self.lock:
            if self.closed:
                return False
            try:
                self.sock.sendall(encode(opcode, payload))
            except OSError:
                self.closed = True
            if opcode == CLOSE:
                self.closed = True
        return not self.closed

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.send(CLOSE, struct.pack(">H", code) + reason.encode()[:120])


def _receive(h: Handler, ws: Connection, on_data: Callable[[bytes], None] | None) -> None:
    """The client's frames until it closes or leaves: data to ``on_data``, pings answered."""
    message = b""
    try:
        while True:
            got = read_frame(h.read_raw)
            if got is None:
                return
            final, opcode, payload = got
            if opcode == CLOSE:
                ws.send(CLOSE, payload[:2])
                return
            if opcode == PING:
                ws.send(PONG, payload)
            elif opcode in (TEXT, BINARY, CONTINUATION):
                message += payload
                if final:
                    if on_data is not None and message:
                        on_data(message)
                    message = b""
    except ProtocolError as e:
        ws.close(e.code, str(e))
    except OSError:
        return


def _replay_logs(ws: Connection, path: str, driver: str, want_out: bool,
                 want_err: bool) -> None:
    """``logs=1``: what the container wrote so far, before what it writes from now on."""
    from dockyard.engine.logread import read_logs

    entries = read_logs(path, driver=driver)
    try:
        for e in entries:
            wanted = want_out if e.stream == "stdout" else want_err
            if wanted and not ws.send(BINARY, e.data):
                return
    finally:
        close = getattr(entries, "close", None)     # a generator: its files close now
        if close is not None:
            close()


def container_attach_ws(app: App, h: Handler, req: Request, id: str) -> None:
    from dockyard.engine.containers import read_status
    from dockyard.monitor import channel

    key = (req.headers.get("Sec-WebSocket-Key") or "").strip()
    if "websocket" not in (req.headers.get("Upgrade") or "").lower() or not key:
        raise InvalidArgument("attach/ws: not a WebSocket request (Upgrade: websocket and "
                              "Sec-WebSocket-Key are needed)")
    want_out, want_err = req.flag("stdout"), req.flag("stderr")
    with app.services() as svc:
        c = svc.get(id)
        if not c.running:
            raise FailedPrecondition("You cannot attach to a stopped container, start it first")
        tty = bool((c.config.get("Config") or {}).get("Tty"))
        open_stdin = bool((c.config.get("Config") or {}).get("OpenStdin"))
        driver = str((c.config.get("LogConfig") or {}).get("Type") or "json-file")
        log_path = svc.log_path(c.id, driver) if req.flag("logs") and driver != "none" else ""
        conn = svc.attach(c.id)
        svc.event(c, "attach")
    try:
        if not read_status(conn).startswith("attached "):
            raise FailedPrecondition(f"container {c.short_id} stopped before attaching")
        h.close_connection = True
        h.head(101, {"Upgrade": "websocket", "Connection": "Upgrade",
                     "Sec-WebSocket-Accept": accept_key(key)})
        h.wfile.flush()
        ws = Connection(h.connection)
        if log_path:
            _replay_logs(ws, log_path, driver, want_out, want_err)
        monitor = conn

        def to_container(data: bytes) -> None:
            monitor.send(channel.message(channel.INPUT, data))

        # its supervision takes input for a terminal, or holds its stdin open (-i)
        feed = to_container if req.flag("stdin") and (tty or open_stdin) else None

        def receive() -> None:
            _receive(h, ws, feed)
            try:        # the client left or closed: stop waiting for the container's output
                monitor.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        threading.Thread(target=receive, name="api-ws-in", daemon=True).start()
        while not ws.closed:
            got = channel.read(conn)
            if got is None:
                break
            kind, payload = got
            if (kind == channel.STDOUT and want_out) or (kind == channel.STDERR and want_err):
                ws.send(BINARY, payload)
            elif kind == channel.STATUS and payload.startswith(b"exited"):
                break
        ws.close()
    finally:
        conn.close()
