"""The embedded DNS server of user-defined networks (docker's 127.0.0.11): one process per
engine root, a single-threaded selector loop that answers on 127.0.0.11:53 (UDP and TCP)
*inside* each container's network namespace.

**How it listens in many namespaces without joining any.** A socket belongs to the network
namespace of the thread that created it, for its whole life, wherever its fd goes later. So the
engine, when it connects a container to a user network, creates the two sockets in a short
thread that joined the container's namespace (:func:`dockyard.linux.netns.run_in`), binds them
to 127.0.0.11:53 there, and hands them to this server over its unix control socket
(``SCM_RIGHTS``). The server itself never calls ``setns``, never starts a thread and never forks
once it serves, and each answer costs one ``recvfrom`` and one ``sendto``. Chosen over docker's
design (a resolver goroutine per container that binds random ports in the namespace, and
iptables DNAT rules inside the namespace mapping 53 to them) because binding port 53 directly
needs no rule in the container's namespace at all (we are root in the namespace's owning user
namespace), and over a server per container because one process costs one interpreter for
every container of the engine.

**Lifecycle.** The engine spawns the server (``python -m dockyard.engine.dnsserver``, exec'd:
safe from a multi-threaded daemon) when the first container of a user network starts, and
talks to it under the engine root's network lock, so a spawn, a registration and the server's
exit never race:

```
engine (holds network.lock)                    DNS server
  connect(<run_root>/dns.sock) ── refused? ──> spawn; the server binds dns.sock, forks once
                                               (setsid) and its parent exits: ready
  {"op": "add", "id": cid, "netns": pin} + [udp fd, tcp fd]  ──>  answers in that namespace
  <── {"ok": true, "count": n}
  ...
  {"op": "drop", "id": cid}  ──>  closes its sockets (the namespace can go)
  <── {"ok": true, "count": 0}   (the last one: dns.sock is unlinked *before* this reply,
                                  so the next engine command spawns a new server)
```

A socket holds its namespace alive, so a container's sockets must go when the container's
network does: the engine drops them on disconnect; and each second the server checks that each
namespace is still pinned where the engine pinned it (a crashed engine's leftovers), drops
those that are not, and leaves once it serves none — taking the network lock without waiting,
so it never leaves under an engine that is registering a container.

Names are answered from :class:`Records` (the engine database, see
:mod:`dockyard.engine.dnsserver`), scoped to the networks of the container that asks; other
names are forwarded over UDP, from the host's namespace, to that container's upstream servers
(its ``--dns``, the engine's ``dns`` setting, or the host's resolv.conf).
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import socket
import struct
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from dockyard.network import dnsmsg

ADDRESS = "127.0.0.11"
PORT = 53
#: how long one upstream gets to answer before the next is asked
UPSTREAM_TIMEOUT_S = 2.0
#: a TCP client that sends nothing for this long is closed
TCP_IDLE_S = 10.0
_TICK_S = 1.0


class Records(Protocol):
    def addresses(self, container_id: str, name: str) -> list[str] | None:
        """The IPv4 addresses of ``name`` as seen by the container (None: not a name of its
        networks, to be forwarded; [] known but without IPv4 address)."""
        ...

    def names(self, container_id: str, ip: str) -> list[str]:
        """The names of an address of the container's networks (PTR)."""
        ...

    def upstreams(self, container_id: str) -> list[str]:
        """The servers that other names of the container go to."""
        ...


# --- the engine's side -------------------------------------------------------------------------


def bind_sockets() -> tuple[socket.socket, socket.socket]:
    """The UDP and TCP sockets of 127.0.0.11:53 in the calling thread's network namespace."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        udp.bind((ADDRESS, PORT))
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((ADDRESS, PORT))
        tcp.listen(64)
    except BaseException:
        udp.close()
        tcp.close()
        raise
    return udp, tcp


def request(control: str, message: dict[str, object], fds: Sequence[int] = (),
            timeout: float = 5.0) -> dict[str, object] | None:
    """Send one request to the server at ``control``; its reply, or None when no server
    listens there."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.settimeout(timeout)
        try:
            s.connect(control)
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        socket.send_fds(s, [json.dumps(message).encode()], list(fds))
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    if not data:
        return None
    reply = json.loads(data)
    return reply if isinstance(reply, dict) else None


# --- the server --------------------------------------------------------------------------------


class _Endpoint:
    __slots__ = ("container_id", "ino", "pin", "tcp", "udp")

    def __init__(self, container_id: str, pin: str, ino: tuple[int, int],
                 udp: socket.socket, tcp: socket.socket) -> None:
        self.container_id = container_id
        self.pin = pin
        self.ino = ino
        self.udp = udp
        self.tcp = tcp


class _Pending:
    """A query forwarded upstream, waiting for its answer."""

    __slots__ = ("deadline", "query", "reply", "servers", "sock")

    def __init__(self, query: bytes, reply: Callable[[bytes], None], servers: list[str]) -> None:
        self.query = query
        self.reply = reply
        self.servers = servers
        self.deadline = 0.0
        self.sock: socket.socket | None = None


class _TcpClient:
    __slots__ = ("buf", "ep", "last", "sock")

    def __init__(self, sock: socket.socket, ep: _Endpoint) -> None:
        self.sock = sock
        self.ep = ep
        self.buf = b""
        self.last = time.monotonic()


def _pin_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class Server:
    """The selector loop; :meth:`run` returns once it serves no namespace: told so by the
    engine, or on its own when ``lock()`` (the engine root's network lock, without waiting:
    an fd to close, or None while an engine holds it) lets it."""

    def __init__(self, listener: socket.socket, records: Records, *,
                 lock: Callable[[], int | None], control_path: str,
                 upstream_port: int = PORT) -> None:
        self.listener = listener
        self.records = records
        self.lock = lock
        self.control_path = control_path
        self.upstream_port = upstream_port
        self.sel = selectors.DefaultSelector()
        self.endpoints: dict[str, _Endpoint] = {}
        self.pending: dict[int, _Pending] = {}       # by upstream socket fd
        self.tcp_clients: dict[int, _TcpClient] = {}
        self.done = False
        listener.setblocking(False)
        self.sel.register(listener, selectors.EVENT_READ, self._control)

    # control

    def _control(self, _sock: socket.socket) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        fds: list[int] = []
        try:
            conn.settimeout(2.0)
            msg, fds, _flags, _addr = socket.recv_fds(conn, 65536, 4)
            reply = self._handle(json.loads(msg or b"{}"), fds)
            fds = []
            conn.sendall(json.dumps(reply).encode())
        except (OSError, ValueError):
            pass
        finally:
            for fd in fds:
                os.close(fd)
            conn.close()

    def _handle(self, msg: dict[str, object], fds: list[int]) -> dict[str, object]:
        op = msg.get("op")
        cid = str(msg.get("id") or "")
        if op == "add" and cid and len(fds) == 2:
            pin = str(msg.get("netns") or "")
            udp = socket.socket(fileno=fds[0])
            tcp = socket.socket(fileno=fds[1])
            self._drop(cid)
            ino = _pin_id(pin)
            if ino is None:
                udp.close()
                tcp.close()
                return {"ok": False, "error": f"no namespace at {pin}"}
            ep = _Endpoint(cid, pin, ino, udp, tcp)
            udp.setblocking(False)
            tcp.setblocking(False)
            self.sel.register(udp, selectors.EVENT_READ, lambda s: self._udp_query(ep))
            self.sel.register(tcp, selectors.EVENT_READ, lambda s: self._tcp_accept(ep))
            self.endpoints[cid] = ep
        elif op == "drop" and cid:
            self._drop(cid)
            if not self.endpoints:
                self._stop_listening()
        elif op != "ping":
            for fd in fds:
                os.close(fd)
            return {"ok": False, "error": "bad request"}
        return {"ok": True, "count": len(self.endpoints), "pid": os.getpid()}

    def _stop_listening(self) -> None:
        """No new request reaches this server: the next one spawns a new server."""
        if self.done:
            return
        self.done = True
        try:
            os.unlink(self.control_path)
        except FileNotFoundError:
            pass
        self.sel.unregister(self.listener)
        self.listener.close()

    def _drop(self, cid: str) -> None:
        ep = self.endpoints.pop(cid, None)
        if ep is None:
            return
        for s in (ep.udp, ep.tcp):
            self.sel.unregister(s)
            s.close()
        for fd, client in list(self.tcp_clients.items()):
            if client.ep is ep:
                self._close_tcp(fd)

    # queries

    def _answer(self, ep: _Endpoint, query: bytes, reply: Callable[[bytes], None]) -> None:
        try:
            q = dnsmsg.parse_query(query)
        except dnsmsg.BadMessage:
            out = dnsmsg.error(query, dnsmsg.RCODE_FORMERR)
            if out:
                reply(out)
            return
        if q.qclass == dnsmsg.CLASS_IN and q.qtype in (dnsmsg.TYPE_A, dnsmsg.TYPE_AAAA):
            addrs = self.records.addresses(ep.container_id, q.name)
            if addrs is not None:
                if not addrs:
                    reply(dnsmsg.response(query, q, rcode=dnsmsg.RCODE_NXDOMAIN))
                else:   # AAAA of our names: no IPv6 address, but the name exists
                    reply(dnsmsg.response(query, q, addresses=tuple(addrs)
                                          if q.qtype == dnsmsg.TYPE_A else ()))
                return
        if q.qclass == dnsmsg.CLASS_IN and q.qtype == dnsmsg.TYPE_PTR:
            ip = dnsmsg.reverse_address(q.name)
            names = self.records.names(ep.container_id, ip) if ip else []
            if names:
                reply(dnsmsg.response(query, q, ptr_names=tuple(names)))
                return
        servers = self.records.upstreams(ep.container_id)
        self._forward(_Pending(query, reply, list(servers)))

    def _forward(self, p: _Pending) -> None:
        while p.servers:
            server = p.servers.pop(0)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            try:
                s.connect((server, self.upstream_port))
                s.send(p.query)
            except OSError:
                s.close()
                continue
            p.sock = s
            p.deadline = time.monotonic() + UPSTREAM_TIMEOUT_S
            self.pending[s.fileno()] = p
            self.sel.register(s, selectors.EVENT_READ, lambda sock: self._upstream_answer(p))
            return
        out = dnsmsg.error(p.query, dnsmsg.RCODE_SERVFAIL)
        if out:
            p.reply(out)

    def _finish(self, p: _Pending) -> None:
        if p.sock is not None:
            self.pending.pop(p.sock.fileno(), None)
            self.sel.unregister(p.sock)
            p.sock.close()
            p.sock = None

    def _upstream_answer(self, p: _Pending) -> None:
        assert p.sock is not None
        try:
            data = p.sock.recv(65535)
        except OSError:     # refused (ICMP): the next server
            self._finish(p)
            self._forward(p)
            return
        self._finish(p)
        if data[:2] == p.query[:2]:
            p.reply(data)

    def _udp_query(self, ep: _Endpoint) -> None:
        for _ in range(64):
            try:
                query, addr = ep.udp.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return

            def reply(data: bytes, addr: tuple[str, int] = addr,
                      udp: socket.socket = ep.udp) -> None:
                try:
                    udp.sendto(data, addr)
                except OSError:
                    pass

            self._answer(ep, query, reply)

    def _tcp_accept(self, ep: _Endpoint) -> None:
        try:
            conn, _ = ep.tcp.accept()
        except OSError:
            return
        conn.setblocking(False)
        client = _TcpClient(conn, ep)
        self.tcp_clients[conn.fileno()] = client
        self.sel.register(conn, selectors.EVENT_READ, lambda s: self._tcp_read(client))

    def _tcp_read(self, client: _TcpClient) -> None:
        try:
            data = client.sock.recv(65535)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close_tcp(client.sock.fileno())
            return
        client.last = time.monotonic()
        client.buf += data
        while len(client.buf) >= 2:
            (n,) = struct.unpack_from("!H", client.buf)
            if len(client.buf) < 2 + n:
                break
            query, client.buf = client.buf[2:2 + n], client.buf[2 + n:]
            sock = client.sock

            def reply(out: bytes, sock: socket.socket = sock) -> None:
                try:
                    sock.setblocking(True)
                    sock.settimeout(1.0)
                    sock.sendall(struct.pack("!H", len(out)) + out)
                    sock.setblocking(False)
                except OSError:
                    pass

            self._answer(client.ep, query, reply)

    def _close_tcp(self, fd: int) -> None:
        client = self.tcp_clients.pop(fd, None)
        if client is not None:
            self.sel.unregister(client.sock)
            client.sock.close()

    # housekeeping

    def _tick(self) -> None:
        now = time.monotonic()
        for p in [p for p in self.pending.values() if p.deadline <= now]:
            self._finish(p)
            self._forward(p)
        for tcp_fd, client in list(self.tcp_clients.items()):
            if now - client.last > TCP_IDLE_S:
                self._close_tcp(tcp_fd)
        for cid, ep in list(self.endpoints.items()):
            if _pin_id(ep.pin) != ep.ino:     # the namespace is gone: so is the container
                self._drop(cid)
        if not self.endpoints and not self.done:
            fd = self.lock()
            if fd is not None:
                try:
                    self._stop_listening()
                finally:
                    os.close(fd)

    def run(self) -> None:
        next_tick = time.monotonic() + _TICK_S
        while not self.done or self.pending:
            timeout = max(0.0, next_tick - time.monotonic())
            try:
                events = self.sel.select(timeout)
            except InterruptedError:
                continue
            for key, _mask in events:
                key.data(key.fileobj)
            if time.monotonic() >= next_tick:
                self._tick()
                next_tick = time.monotonic() + _TICK_S
        for cid in list(self.endpoints):
            self._drop(cid)


def try_lock(path: str) -> int | None:
    """An fd holding ``path``'s flock, or None if another process holds it."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd
