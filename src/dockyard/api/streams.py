"""docker's stream framing and the sessions on a hijacked connection (attach, exec start).

Without a terminal every piece of output is framed (``stdcopy``): one byte for the stream
(0 stdin, 1 stdout, 2 stderr), three zero bytes, the length as a big-endian uint32, the data.
With a terminal the output is sent raw.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

STDOUT = 1
STDERR = 2


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


class Output:
    """Where a session's output goes: the client's socket, framed unless ``tty``; thread-safe.
    ``closed`` once a write failed (the client left)."""

    def __init__(self, sock: socket.socket, tty: bool) -> None:
        self.sock = sock
        self.tty = tty
        self.lock = threading.Lock()
        self.closed = False

    def write(self, stream: int, data: bytes) -> bool:
        if not data:
            return not self.closed
        payload = data if self.tty else frame(stream, data)
        with self.lock:
            if self.closed:
                return False
            try:
                self.sock.sendall(payload)
            except OSError:
                self.closed = True
        return not self.closed


def copy_input(read: Callable[[int], bytes], write: Callable[[bytes], Any],
               done: Callable[[], None]) -> threading.Thread:
    """Copy the client's input (what it sends after the upgrade) to ``write`` until it half-
    closes or leaves, then call ``done``; in a daemon thread."""

    def run() -> None:
        try:
            while True:
                try:
                    data = read(65536)
                except (OSError, ValueError):
                    break
                if not data:
                    break
                try:
                    write(data)
                except OSError:
                    break
        finally:
            done()

    t = threading.Thread(target=run, name="api-stdin", daemon=True)
    t.start()
    return t


def write_fd(fd: int) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    return write
