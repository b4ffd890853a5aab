"""Where ``dockyard serve`` listens: dockerd's ``-H`` addresses.

- ``unix:///path``: a socket file (mode 0660; its group is chosen by the caller).
- ``tcp://host:port``: TLS with client certificates verified against a CA (dockerd's
  ``--tlsverify``); plain HTTP only when the caller allows it (``--insecure-tcp``).
- ``fd://`` / ``fd://N``: sockets handed over by systemd's socket activation (``LISTEN_PID``,
  ``LISTEN_FDS``; the first is fd 3): all of them, or the one numbered N.

Every address is checked (:func:`plan`) before any socket is made, so a bad ``-H`` leaves
nothing behind; :func:`open_all` closes what it opened when a later one fails.

The TLS handshake runs in the connection's own thread, never in the accept loop, so a client
that stalls mid-handshake holds up nobody else.
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dockyard.api.http import Handler, TCPServer, UnixServer
from dockyard.errors import InvalidArgument

log = logging.getLogger(__name__)

SD_LISTEN_FDS_START = 3
HANDSHAKE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """dockerd's ``--tlscacert``, ``--tlscert``, ``--tlskey`` (with ``--tlsverify``)."""

    ca: str
    cert: str
    key: str

    def context(self) -> ssl.SSLContext:
        for what, path in (("--tlscacert", self.ca), ("--tlscert", self.cert),
                           ("--tlskey", self.key)):
            if not os.path.isfile(path):
                raise InvalidArgument(f"{what}: could not read {path}: no such file")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2     # dockerd's default floor
        try:
            ctx.load_cert_chain(self.cert, self.key)
            ctx.load_verify_locations(cafile=self.ca)
        except (ssl.SSLError, OSError) as e:
            raise InvalidArgument(f"could not load the TLS certificates: {e}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


@dataclass(frozen=True, slots=True)
class Address:
    """One parsed ``-H``: ``kind`` is unix, tcp or fd; ``fds`` the inherited sockets."""

    text: str
    kind: str
    path: str = ""
    host: str = ""
    port: int = 0
    fds: tuple[int, ...] = ()
    tls: bool = False


def inherited_fds(env: Mapping[str, str], pid: int) -> list[int]:
    """The sockets systemd passed us (sd_listen_fds): none unless LISTEN_PID names us."""
    if env.get("LISTEN_PID", "") != str(pid):
        return []
    try:
        n = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + max(n, 0)))


def _tcp(text: str, *, tls: bool) -> tuple[str, int]:
    rest = text[len("tcp://"):].rstrip("/")
    if "/" in rest:
        raise InvalidArgument(f"invalid bind address {text!r}: no path allowed")
    if rest.startswith("["):
        host, sep, port = rest[1:].partition("]")
        if not sep or (port and not port.startswith(":")):
            raise InvalidArgument(f"invalid bind address {text!r}")
        port = port[1:]
    else:
        host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if not port:
        return host or "127.0.0.1", 2376 if tls else 2375
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"invalid bind address {text!r}: bad port {port!r}")
    return host or "127.0.0.1", int(port)


def plan(hosts: list[str], *, tls: bool, insecure_tcp: bool,
         env: Mapping[str, str] | None = None, pid: int | None = None) -> list[Address]:
    """Parse and check every ``-H`` before anything listens."""
    env = os.environ if env is None else env
    passed = inherited_fds(env, os.getpid() if pid is None else pid)
    out: list[Address] = []
    taken: set[int] = set()
    for text in hosts:
        if text.startswith("unix://"):
            path = text[len("unix://"):]
            if not path.startswith("/"):
                raise InvalidArgument(f"invalid bind address {text!r}: the path must be "
                                      "absolute")
            if len(os.fsencode(path)) > 107:
                raise InvalidArgument(f"invalid bind address {text!r}: the path is longer "
                                      "than a unix socket's 107 bytes")
            out.append(Address(text, "unix", path=path))
        elif text.startswith("tcp://"):
            if not tls and not insecure_tcp:
                raise InvalidArgument(
                    f"{text}: a tcp listener needs TLS with client certificates (--tlsverify "
                    "--tlscacert --tlscert --tlskey); --insecure-tcp to listen without "
                    "any authentication")
            host, port = _tcp(text, tls=tls)
            out.append(Address(text, "tcp", host=host, port=port, tls=tls))
        elif text.startswith("fd://"):
            which = text[len("fd://"):]
            if not passed:
                raise InvalidArgument("no sockets found via socket activation: make sure the "
                                      "service was started by systemd (LISTEN_PID and "
                                      "LISTEN_FDS)")
            if which:
                if not which.isdigit() or int(which) not in passed:
                    raise InvalidArgument(f"{text}: no such socket from systemd (it passed "
                                          f"fds {', '.join(map(str, passed))})")
                fds: tuple[int, ...] = (int(which),)
            else:
                fds = tuple(passed)
            if taken & set(fds):
                raise InvalidArgument(f"{text}: socket listed twice")
            taken.update(fds)
            out.append(Address(text, "fd", fds=fds, tls=tls))
        else:
            raise InvalidArgument(f"invalid bind address {text!r}: unix://, tcp:// or fd://")
    return out


class TLSServer(TCPServer):
    """A TCP server whose connections speak TLS, each handshake in the connection's thread."""

    context: ssl.SSLContext

    def finish_request(self, request: Any, client_address: Any) -> None:
        raw: socket.socket = request
        raw.settimeout(HANDSHAKE_TIMEOUT)
        try:
            tls = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log.info("TLS handshake with %s failed: %s", client_address[0], e)
            raw.close()
            return
        tls.settimeout(None)
        try:
            self.RequestHandlerClass(tls, client_address, self)  # type: ignore[arg-type]
        finally:
            try:
                tls.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            tls.close()


class TCP6Server(TCPServer):
    address_family = socket.AF_INET6


class TLS6Server(TLSServer):
    address_family = socket.AF_INET6


def _adopt(cls: type[socketserver.TCPServer], sock: socket.socket, handler: type[Handler]
           ) -> socketserver.BaseServer:
    """A server around a socket that is already listening (systemd's)."""
    server = cls(sock.getsockname(), handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.server_address = sock.getsockname()
    return server


def _open_fd(fd: int, handler: type[Handler], ctx: ssl.SSLContext | None,
             insecure_tcp: bool) -> socketserver.BaseServer:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as e:
        raise InvalidArgument(f"fd://{fd}: not a socket ({e.strerror})") from None
    os.set_inheritable(fd, False)
    if sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise InvalidArgument(f"fd://{fd}: not a stream socket")
    if sock.family == socket.AF_UNIX:
        server = _adopt(UnixServer, sock, handler)
        server.owns_path = False    # type: ignore[attr-defined]   # systemd's socket file
        return server
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        sock.detach()
        raise InvalidArgument(f"fd://{fd}: not a unix or TCP socket")
    six = sock.family == socket.AF_INET6
    if ctx is not None:
        server = _adopt(TLS6Server if six else TLSServer, sock, handler)
        server.context = ctx  # type: ignore[attr-defined]
        return server
    if not insecure_tcp:
        sock.detach()
        raise InvalidArgument(f"fd://{fd}: a TCP socket needs --tlsverify (or --insecure-tcp)")
    return _adopt(TCP6Server if six else TCPServer, sock, handler)


def open_one(addr: Address, handler: type[Handler], ctx: ssl.SSLContext | None, *,
             insecure_tcp: bool, mode: int = 0o660, gid: int = -1
             ) -> list[socketserver.BaseServer]:
    if addr.kind == "unix":
        from dockyard.api.http import listen

        server = listen(addr.text, handler, mode=mode)
        if gid >= 0:
            os.chown(addr.path, -1, gid)
        return [server]
    if addr.kind == "tcp":
        six = ":" in addr.host
        if addr.tls:
            assert ctx is not None
            tls_server = (TLS6Server if six else TLSServer)((addr.host, addr.port), handler)
            tls_server.context = ctx
            return [tls_server]
        return [(TCP6Server if six else TCPServer)((addr.host, addr.port), handler)]
    out: list[socketserver.BaseServer] = []
    try:
        for fd in addr.fds:
            out.append(_open_fd(fd, handler, ctx, insecure_tcp))
    except BaseException:
        close_all(out)
        raise
    return out


def open_all(addrs: list[Address], handler: type[Handler], tls: TLSFiles | None, *,
             insecure_tcp: bool, gid: int = -1) -> list[socketserver.BaseServer]:
    """Every listener, or none (and no socket file) when one fails."""
    ctx = tls.context() if tls is not None else None
    out: list[socketserver.BaseServer] = []
    try:
        for addr in addrs:
            try:
                out += open_one(addr, handler, ctx, insecure_tcp=insecure_tcp, gid=gid)
            except OSError as e:
                raise InvalidArgument(f"can't listen on {addr.text}: {e.strerror or e}"
                                      ) from None
    except BaseException:
        close_all(out)
        raise
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):     # not for our children
        os.environ.pop(name, None)
    return out


def close_all(servers: list[socketserver.BaseServer]) -> None:
    for s in servers:
        s.server_close()
        if isinstance(s, UnixServer) and getattr(s, "owns_path", True):
            try:
                os.unlink(str(s.server_address))
            except OSError:
                pass


def describe(server: socketserver.BaseServer) -> str:
    addr = server.server_address
    if isinstance(server, UnixServer):
        return f"unix://{addr!s}"
    host, port = addr[0], addr[1]   # type: ignore[index]
    host = f"[{host}]" if ":" in str(host) else str(host)
    scheme = "tcp+tls" if isinstance(server, TLSServer) else "tcp"
    return f"{scheme}://{host}:{port}"
