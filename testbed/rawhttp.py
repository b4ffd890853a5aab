"""A small HTTP/1.1 client over a raw unix socket: keep-alive, requests sent as the caller's
exact bytes (so a fuzzer can send what no library would, and a benchmark costs the same for
every server), responses read by Content-Length, chunked framing or until the server closes.

It knows only what a Docker Engine API server answers: no 1xx other than 101, no trailers that
matter, no pipelining (one request, then its response).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field


class ConnectionClosed(Exception):
    """The server closed the connection before a whole response came."""


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)   # names lower-cased
    body: bytes = b""
    closed: bool = False            # the server closed (or will close) the connection after it

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


def build_request(method: str, target: str, *, body: bytes | None = None,
                  headers: dict[str, str] | None = None, host: str = "docker") -> bytes:
    """A well-formed request's bytes; Content-Length is set when there is a body and the caller
    did not give a framing of its own."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    given = {k.lower() for k in (headers or {})}
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body is not None and "content-length" not in given and "transfer-encoding" not in given:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + (body or b"")


class RawClient:
    """One keep-alive connection to a server on a unix socket (reconnects when it was closed)."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buf = bytearray()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.buf.clear()

    def connect(self) -> socket.socket:
        if self.sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.path)
            except OSError:
                sock.close()
                raise
            self.sock = sock
            self.buf.clear()
        return self.sock

    def send(self, data: bytes) -> None:
        self.connect().sendall(data)

    def request(self, data: bytes, *, head: bool = False) -> Response:
        """Send one request's bytes and read its response (``head``: it was a HEAD, so the
        response has no body whatever its headers say)."""
        self.send(data)
        return self.read_response(head=head)

    # --- reading -----------------------------------------------------------------------------

    def _fill(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionClosed("server closed the connection")
        self.buf += chunk

    def _line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            self._fill()

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_response(self, *, head: bool = False) -> Response:
        if self.sock is None:
            raise ConnectionClosed("not connected")
        try:
            return self._read_response(head)
        except (ConnectionClosed, OSError):
            self.close()
            raise

    def _read_response(self, head: bool) -> Response:
        status_line = self._line().decode("latin-1")
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ConnectionClosed(f"not an HTTP response: {status_line!r}")
        resp = Response(int(code), reason)
        while True:
            line = self._line()
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            resp.headers[name.strip().lower()] = value.strip()
        conn = resp.header("connection").lower()
        resp.closed = conn == "close" or (version == "HTTP/1.0" and conn != "keep-alive")
        if head or resp.status in (101, 204, 304) or 100 <= resp.status < 200:
            return resp
        if "chunked" in resp.header("transfer-encoding").lower():
            body = bytearray()
            while True:
                size = int(self._line().split(b";")[0].strip(), 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._exactly(size)
                self._line()
            resp.body = bytes(body)
        elif resp.header("content-length"):
            resp.body = self._exactly(int(resp.header("content-length")))
        else:                           # until the server closes
            try:
                while True:
                    self._fill()
            except ConnectionClosed:
                pass
            resp.body = bytes(self.buf)
            self.buf.clear()
            resp.closed = True
        if resp.closed:
            self.close()
        return resp
