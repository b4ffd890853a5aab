"""Unpacker processes: layers unpack in forked children, so several unpack at once on real
cores instead of taking turns on one interpreter's GIL.

The pool forks its children when it is made, before the puller starts its download threads.
Each child serves one layer at a time over a socketpair::

    parent (download thread)                       child
      "<dest>\\0<compression>" frame        ──▶     unpack_layer(frames…, dest)
      data frames (the compressed layer)   ──▶       decompress, hash, write entries
      end frame (or abort frame)           ──▶       (on error: keep draining to the end)
                                           ◀──     result frame: diff_id size files
                                                   or the error's class and message

A frame is a 4-byte big-endian length and its bytes; length 0 ends a layer and ABORT (all
ones) abandons it (the child then removes what it unpacked, as ``unpack_layer`` does on any
error). A child whose parent goes away sees EOF and exits.
"""

from __future__ import annotations

import os
import queue
import socket
import struct
from collections.abc import Iterable, Iterator
from types import TracebackType

from dockyard.errors import DockyardError, Internal, InvalidArgument, PermissionDenied
from dockyard.image.unpack import UnpackResult, unpack_layer
from dockyard.model.image import check_digest

_LEN = struct.Struct(">I")
_ABORT = 0xFFFFFFFF
_ERRORS: dict[str, type[DockyardError]] = {
    "InvalidArgument": InvalidArgument,
    "PermissionDenied": PermissionDenied,
}


class _Aborted(Exception):
    pass


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise EOFError
        got += k
    return bytes(buf)


def _send_frame(sock: socket.socket, data: bytes | memoryview) -> None:
    sock.sendall(_LEN.pack(len(data)))
    if data:
        sock.sendall(data)


class _FrameReader:
    """The child's view of one layer's data frames, as a ``read(n)`` stream."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.ended = False
        self.aborted = False

    def read(self, n: int = -1, /) -> bytes:
        while not self.ended:
            (length,) = _LEN.unpack(_recv_exact(self.sock, 4))
            if length == _ABORT:
                self.ended = self.aborted = True
                raise _Aborted
            if length == 0:
                self.ended = True
                return b""
            return _recv_exact(self.sock, length)
        return b""

    def drain(self) -> None:
        try:
            while self.read():
                pass
        except _Aborted:
            pass


def _child(sock: socket.socket) -> None:
    while True:
        try:
            (length,) = _LEN.unpack(_recv_exact(sock, 4))
            header = _recv_exact(sock, length)
        except EOFError:
            return
        dest, _, compression = header.decode("utf-8", "surrogateescape").partition("\0")
        frames = _FrameReader(sock)
        try:
            result = unpack_layer(frames, dest, compression=compression)
            reply = f"ok\0{result.diff_id}\0{result.size}\0{result.files}"
        except _Aborted:
            reply = "aborted\0"
        except DockyardError as e:
            kind = next((c.__name__ for c in type(e).__mro__ if c.__name__ in _ERRORS),
                        "Internal")
            reply = f"error\0{kind}\0{e.message}"
        except Exception as e:  # reported to the parent, which raises it
            reply = f"error\0Internal\0unpacking {dest}: {type(e).__name__}: {e}"
        frames.drain()
        _send_frame(sock, reply.encode("utf-8", "surrogateescape"))


class UnpackPool:
    """``workers`` forked unpackers. Make it before starting threads; close it after."""

    def __init__(self, workers: int) -> None:
        self._idle: queue.SimpleQueue[tuple[int, socket.socket]] = queue.SimpleQueue()
        self._children: list[tuple[int, socket.socket]] = []
        try:
            for _ in range(workers):
                parent_end, child_end = socket.socketpair()
                pid = os.fork()
                if pid == 0:  # the child: serve layers, never return into the caller
                    status = 0
                    try:
                        parent_end.close()
                        for _, other in self._children:
                            other.close()
                        _child(child_end)
                    except BaseException:  # a child never unwinds into the caller
                        status = 1
                    finally:
                        os._exit(status)
                child_end.close()
                self._children.append((pid, parent_end))
                self._idle.put((pid, parent_end))
        except BaseException:
            self.close()
            raise

    def unpack(self, chunks: Iterable[bytes], dest: str, compression: str) -> UnpackResult:
        """Unpack the compressed layer ``chunks`` into ``dest`` in a child process."""
        pid, sock = self._idle.get()
        try:
            _send_frame(sock, f"{dest}\0{compression}".encode("utf-8", "surrogateescape"))
            try:
                for chunk in chunks:
                    if chunk:
                        _send_frame(sock, chunk)
            except BaseException:
                sock.sendall(_LEN.pack(_ABORT))
                self._reply(sock)
                raise
            _send_frame(sock, b"")
            return self._result(self._reply(sock))
        except (BrokenPipeError, ConnectionError, EOFError):
            raise Internal(f"unpacker process {pid} died while unpacking into {dest}") from None
        finally:
            self._idle.put((pid, sock))

    @staticmethod
    def _reply(sock: socket.socket) -> list[str]:
        (length,) = _LEN.unpack(_recv_exact(sock, 4))
        return _recv_exact(sock, length).decode("utf-8", "surrogateescape").split("\0")

    @staticmethod
    def _result(reply: list[str]) -> UnpackResult:
        if reply[0] == "ok":
            return UnpackResult(check_digest(reply[1]), int(reply[2]), int(reply[3]))
        if reply[0] == "error":
            cls = _ERRORS.get(reply[1], Internal)
            raise cls(reply[2])
        raise Internal(f"unpacker answered {reply[0]!r}")

    def close(self) -> None:
        for _, sock in self._children:
            sock.close()
        for pid, _ in self._children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self._children.clear()

    def __enter__(self) -> UnpackPool:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def iter_file(f: object, chunk: int = 1 << 20) -> Iterator[bytes]:
    read = getattr(f, "read")  # noqa: B009 - any readable
    while data := read(chunk):
        yield data


__all__ = ["UnpackPool", "iter_file"]
