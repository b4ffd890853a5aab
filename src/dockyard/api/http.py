"""The HTTP/1.1 side of the daemon: a thread per connection (stdlib ``http.server``), keep-alive,
chunked streaming responses, and docker's hijacked connection (``Upgrade: tcp``, 101, then raw
bytes both ways) for attach and exec start.

Why threads and the stdlib: every engine call blocks (SQLite, the monitor's socket, waits on
containers), so a thread per connection keeps each endpoint straight-line code; what a docker
client opens at once is a handful of connections. The daemon never forks (see api/__init__).
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from dockyard.api.errors import status_of
from dockyard.errors import DockyardError, InvalidArgument, NotFound

log = logging.getLogger(__name__)

API_VERSION = "1.44"
MIN_API_VERSION = "1.24"
_VERSIONED = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")
_DATE: list[tuple[int, str]] = [(0, "")]     # the last second's Date header


def _version_tuple(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor)


def version_before(version: str, than: str) -> bool:
    """Whether a client speaking API ``version`` is older than ``than`` (behaviour that
    changed with an API version follows the client's)."""
    try:
        return _version_tuple(version) < _version_tuple(than)
    except ValueError:
        return False


class Request:
    def __init__(self, method: str, path: str, query: dict[str, list[str]], *,
                 headers: Any, body: bytes, version: str) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.version = version

    def arg(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str, default: bool = False) -> bool:
        values = self.query.get(name)
        if not values:
            return default
        return values[-1].lower() in ("1", "true", "yes")

    def int_arg(self, name: str, default: int | None = None) -> int | None:
        text = self.arg(name)
        if text == "":
            return default
        try:
            value = int(text)
        except ValueError:
            raise InvalidArgument(f"invalid value for {name}: {text!r}") from None
        if not -(2**63) <= value < 2**63:    # Go's strconv.Atoi: out of range
            raise InvalidArgument(f"invalid value for {name}: {text!r}: out of range")
        return value

    def json(self, *, required: bool = True) -> dict[str, Any]:
        if not self.body.strip():
            if required:
                raise InvalidArgument("bad parameter: request body is empty")
            return {}
        try:
            doc = json.loads(self.body)
        except ValueError as e:
            raise InvalidArgument(f"invalid JSON: {e}") from None
        except RecursionError:
            raise InvalidArgument("invalid JSON: nested too deeply") from None
        if not isinstance(doc, dict):
            raise InvalidArgument("invalid JSON: expected an object")
        return doc

    def filters(self) -> dict[str, list[str]]:
        """docker's ``filters`` parameter: ``{"key": ["v", ...]}`` or the older
        ``{"key": {"v": true}}``."""
        text = self.arg("filters")
        if not text:
            return {}
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise InvalidArgument(f"invalid filter: {e}") from None
        except RecursionError:
            raise InvalidArgument("invalid filter: nested too deeply") from None
        if not isinstance(doc, dict):
            raise InvalidArgument("invalid filter: expected an object")
        out: dict[str, list[str]] = {}
        for key, values in doc.items():
            if isinstance(values, dict):
                out[str(key)] = [str(v) for v, on in values.items() if on]
            elif isinstance(values, list):
                out[str(key)] = [str(v) for v in values]
            else:
                raise InvalidArgument(f"invalid filter {key!r}")
        return out


class Chunks:
    """A chunked response body, written as it comes."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.open = True

    def write(self, data: bytes) -> bool:
        """False once the client is gone."""
        if not data or not self.open:
            return self.open
        try:
            self.handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.handler.wfile.flush()
        except OSError:
            self.open = False
            self.handler.close_connection = True
        return self.open

    def json(self, doc: Any) -> bool:
        return self.write(json.dumps(doc).encode() + b"\n")

    def end(self) -> None:
        if self.open:
            try:
                self.handler.wfile.write(b"0\r\n\r\n")
                self.handler.wfile.flush()
            except OSError:
                self.handler.close_connection = True
            self.open = False

    def gone(self) -> bool:
        return not self.open or self.handler.client_gone()


Route = tuple[str, "re.Pattern[str]", Callable[..., None]]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Dockyard"
    sys_version = ""
    app: Any = None         # the endpoints' shared state (api/handlers.App), set per server
    sent = False            # whether this request's response head went out
    head_only = False       # a HEAD of a streamed response: its producer is stopped at once

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.requestline, *args)

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_DELETE = do_PUT = do_GET

    def __getattr__(self, name: str) -> Any:
        # any other method goes to the router too, which answers docker's 404 for a method a
        # path does not take (the stdlib's answer would be an HTML 501)
        if name.startswith("do_"):
            return self.do_GET
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """What the stdlib rejects before routing (a malformed request line or header, a line
        too long) as docker's JSON error; with a status line even when the request line was
        too broken to tell its HTTP version."""
        text = message or self.responses.get(code, ("error",))[0]
        self.log_error("code %d, message %s", code, text)
        self.close_connection = True
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.1"
        body = json.dumps({"message": text}).encode() + b"\n"
        try:
            self.send_response(code, text)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if getattr(self, "command", None) != "HEAD":
                self.wfile.write(body)
        except OSError:
            pass

    # --- writing ---------------------------------------------------------------------------

    def head(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        """The response's head, and ``body`` with it in one write (one syscall, one segment)."""
        self.send_response(status)
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Docker-Experimental", "false")
        self.send_header("OSType", "linux")
        for k, v in headers.items():
            self.send_header(k, v)
        buffered: list[bytes] = getattr(self, "_headers_buffer", [])
        self._headers_buffer: list[bytes] = []
        self.wfile.write(b"".join(buffered) + b"\r\n" + body)
        self.sent = True

    def date_time_string(self, timestamp: float | None = None) -> str:
        # the Date header changes once a second: formatted once a second
        if timestamp is not None:
            return super().date_time_string(timestamp)
        now = int(time.time())
        second, text = _DATE[0]
        if second != now:
            text = super().date_time_string(now)
            _DATE[0] = (now, text)
        return text

    def reply(self, status: int, body: bytes = b"", content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        h = dict(headers or {})
        if status not in (204, 304):
            h["Content-Type"] = content_type
            h["Content-Length"] = str(len(body))
        with_body = body and self.command != "HEAD" and status not in (204, 304)
        self.head(status, h, body if with_body else b"")

    def reply_json(self, status: int, doc: Any) -> None:
        self.reply(status, json.dumps(doc).encode() + b"\n")

    def stream(self, content_type: str = "application/json", status: int = 200) -> Chunks:
        self.head(status, {"Content-Type": content_type, "Transfer-Encoding": "chunked"})
        chunks = Chunks(self)
        if self.command == "HEAD":  # the head GET would send, and no body: writes say "gone"
            chunks.open = False
            self.head_only = True
        return chunks

    def hijack(self, content_type: str) -> socket.socket:
        """Take the connection over: 101 when the client asked to upgrade, else 200 and the
        raw stream until we close it. Reads go through :meth:`read_raw` (bytes may be
        buffered already)."""
        self.close_connection = True
        if "upgrade" in (self.headers.get("Connection") or "").lower():
            self.head(101, {"Content-Type": content_type, "Connection": "Upgrade",
                            "Upgrade": "tcp"})
        else:
            self.head(200, {"Content-Type": content_type})
        self.wfile.flush()
        sock: socket.socket = self.connection
        return sock

    def read_raw(self, n: int) -> bytes:
        return self.rfile.read1(n)

    def client_gone(self) -> bool:
        """Whether the client closed its side (a poll, never blocks)."""
        try:
            ready = select.select([self.connection], [], [], 0)[0]
            if not ready:
                return False
            if isinstance(self.connection, ssl.SSLSocket):
                # TLS takes no recv flags: peek at the raw bytes (a record means not gone)
                with socket.socket(fileno=os.dup(self.connection.fileno())) as raw:
                    return raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
            peek: bytes = self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            return peek == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    # --- reading and routing ---------------------------------------------------------------

    def _body(self) -> bytes:
        """The request's body, by chunked framing or Content-Length. A framing that cannot be
        read is a bad request, and the connection closes after the answer (where the next
        request would start is unknown)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = bytearray()
            while True:
                size = self._chunk_size(self.rfile.readline(65537))
                if size == 0:
                    while self.rfile.readline(65537).strip():
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(65537)
        given = {v.strip() for v in self.headers.get_all("Content-Length") or ["0"]}
        text = given.pop() if len(given) == 1 else ", ".join(sorted(given))
        if not text.isascii() or not text.isdigit() or len(text) > 15:
            self.close_connection = True
            raise InvalidArgument(f"bad Content-Length: {text[:40]!r}")
        length = int(text)
        return self.rfile.read(length) if length > 0 else b""

    def _chunk_size(self, line: bytes) -> int:
        text = line.split(b";")[0].strip()
        if not line:            # the client went away mid-body
            self.close_connection = True
            return 0
        if not text or len(text) > 16 or text.strip(b"0123456789abcdefABCDEF"):
            self.close_connection = True
            raise InvalidArgument(f"bad chunk size in a chunked body: {text[:40]!r}")
        return int(text, 16)

    def _dispatch(self) -> None:
        self.sent = self.head_only = False
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        version = API_VERSION
        try:
            body = self._body()
            m = _VERSIONED.match(path)
            if m:
                version = f"{m.group(1)}.{m.group(2)}"
                path = m.group(3)
                if _version_tuple(version) > _version_tuple(API_VERSION):
                    raise InvalidArgument(f"client version {version} is too new. Maximum "
                                          f"supported API version is {API_VERSION}")
                if _version_tuple(version) < _version_tuple(MIN_API_VERSION):
                    raise InvalidArgument(f"client version {version} is too old. Minimum "
                                          f"supported API version is {MIN_API_VERSION}, please "
                                          "upgrade your client to a newer version")
            req = Request(self.command, path, query, headers=self.headers, body=body,
                          version=version)
            self.app.route(self, req)
        except DockyardError as e:
            self._error(status_of(e), e.message)
        except (BrokenPipeError, ConnectionResetError):
            # a HEAD's producer stopped by its closed body: the response is whole, keep-alive
            self.close_connection = self.close_connection or not self.head_only
        except Exception as e:
            log.exception("%s %s", self.command, self.path)
            self._error(500, f"{type(e).__name__}: {e}")

    def _error(self, status: int, message: str) -> None:
        if self.sent:           # mid-stream: nothing to say but the end of it
            self.close_connection = True
            return
        try:
            if status == 304:
                self.reply(304)
            else:
                self.reply_json(status, {"message": message})
        except OSError:
            self.close_connection = True


def route_table(routes: list[tuple[str, str, Callable[..., None]]]) -> list[Route]:
    return [(method, re.compile(f"^{pattern}$"), fn) for method, pattern, fn in routes]


def find_route(table: list[Route], method: str, path: str
               ) -> tuple[Callable[..., None], dict[str, str]]:
    allowed = False
    for m, pattern, fn in table:
        got = pattern.match(path)
        if got is None:
            continue
        if m == method or (m == "GET" and method == "HEAD"):
            return fn, got.groupdict()
        allowed = True
    if allowed:
        raise NotFound(f"page not found: {method} {path} (method not allowed)")
    raise NotFound("page not found")


def _handle_error(request: Any, client_address: Any) -> None:
    """socketserver's handle_error, without a traceback for a client that hung up (a reset
    keep-alive connection is routine); anything else is logged as the fault it is."""
    exc = sys.exc_info()[1]
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, TimeoutError)):
        log.debug("client %s went away: %s", client_address, exc)
        return
    if isinstance(exc, ssl.SSLError):   # a client without a valid certificate, say
        log.warning("TLS with %s failed: %s", client_address, exc)
        return
    log.error("error while serving %s", client_address, exc_info=exc)


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        _handle_error(request, client_address)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, _ = self.socket.accept()
        return sock, ("unix", 0)     # http.server logs client_address[0]


class TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        _handle_error(request, client_address)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        # a response's head and body are separate writes: without this, Nagle holds the
        # second until the client's delayed ACK (~40 ms a request on keep-alive)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, addr


def listen(address: str, handler: type[Handler], *, mode: int = 0o660) -> socketserver.BaseServer:
    """A server on ``unix:///path`` or ``tcp://host:port``."""
    if address.startswith("unix://"):
        path = address[len("unix://"):]
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        try:
            os.unlink(path)      # a daemon that died without cleaning up
        except FileNotFoundError:
            pass
        old = os.umask(0o177)
        try:
            server: socketserver.BaseServer = UnixServer(path, handler)
        finally:
            os.umask(old)
        os.chmod(path, mode)
        return server
    if address.startswith("tcp://"):
        host, _, port = address[len("tcp://"):].rpartition(":")
        return TCPServer((host.strip("[]") or "127.0.0.1", int(port or 2375)), handler)
    raise InvalidArgument(f"unsupported listen address {address!r} (unix:// or tcp://)")


def serve_forever(servers: list[socketserver.BaseServer], stop: threading.Event) -> None:
    """Serve every listener (one thread each) until ``stop`` is set."""
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2},
                                name="api-listener", daemon=True) for s in servers]
    for t in threads:
        t.start()
    stop.wait()
    for s in servers:
        s.shutdown()
        s.server_close()
    for s in servers:
        if isinstance(s, UnixServer) and getattr(s, "owns_path", True):   # not systemd's
            try:
                os.unlink(str(s.server_address))
            except OSError:
                pass
