"""The wire between a ``dockyard`` command and the engine's monitor: one unix SOCK_SEQPACKET
connection per request, so every message keeps its bounds and carries its fds with it.

A message is one kind byte and a payload::

    command ──▶ monitor   REQUEST  JSON ({"op": "start", "launch": {...}} or {"op": "attach",
                                   "id": ...}), with the command's stdin as SCM_RIGHTS when the
                                   container reads it directly (run -i without a terminal)
    command ──▶ monitor   INPUT    keyboard bytes for the container's terminal
    command ──▶ monitor   RESIZE   "rows cols" of the command's terminal
    monitor ──▶ command   STATUS   "started <pid> <monitor pid>", "exited <code>", "error <why>"
    monitor ──▶ command   STDOUT / STDERR   the container's output, while attached

An empty read is the other side gone (messages are never empty).
"""

from __future__ import annotations

import array
import json
import marshal
import os
import socket
import sys
from typing import Any

STATUS = 0
STDOUT = 1
STDERR = 2
REQUEST = 3
INPUT = 4
RESIZE = 5
REQUEST_MARSHAL = 6     # a request in marshal's format (cli/fastpath.py: no json to import)

MAX_MESSAGE = 1 << 17


def connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


def listen(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def send_request(sock: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
    data = bytes([REQUEST]) + json.dumps(request).encode()
    if fds:
        sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        sock.send(data)


def recv_request(sock: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """The first message of a connection (None if it is not a well-formed request); the fds
    that came with it are close-on-exec."""
    size = array.array("i").itemsize
    data, ancdata, _flags, _addr = sock.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(4 * size),
                                                socket.MSG_CMSG_CLOEXEC)
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(payload[:len(payload) - len(payload) % size])
            fds.extend(arr)
    if not data or data[0] not in (REQUEST, REQUEST_MARSHAL):
        for fd in fds:
            os.close(fd)
        return None
    request: object = None
    try:
        if data[0] == REQUEST:
            request = json.loads(data[1:])
        elif peer_uid(sock) == os.geteuid():
            # marshal only from our own user (who could run anything as us anyway)
            request = marshal.loads(data[1:])  # noqa: S302
    except (ValueError, EOFError, TypeError):
        request = None
    if not isinstance(request, dict):
        for fd in fds:
            os.close(fd)
        return None
    return request, fds


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    return int.from_bytes(creds[4:8], sys.byteorder)


def message(kind: int, payload: bytes | str) -> bytes:
    return bytes([kind]) + (payload.encode(errors="replace") if isinstance(payload, str)
                            else payload)


def read(sock: socket.socket) -> tuple[int, bytes] | None:
    """The next message (kind, payload), or None once the other side is gone."""
    try:
        data = sock.recv(MAX_MESSAGE)
    except (ConnectionResetError, BrokenPipeError):
        return None
    if not data:
        return None
    return data[0], data[1:]
