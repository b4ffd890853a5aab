"""The keeper: what stops a monitor's death from killing its containers.

A container writes its output into pipes (or a terminal) whose reading ends only the monitor
holds. Were the monitor to die, the container's next write would get SIGPIPE (or its terminal a
hangup) and kill it. So the monitor forks a keeper at start, a small process that holds a copy of
every reading end and does nothing else while the monitor lives::

    monitor ──KEEP {id, init pid, log} + fds──▶ keeper     (at each launch)
    monitor ──DROP {id}──────────────────────▶ keeper     (when that run ends)
    monitor dies: EOF ──▶ keeper reads each container's output into its log until the
                           container exits, then leaves

The containers' exit statuses are lost with the monitor (they were its children); the engine
records those exits as unknown (255), as it does for any vanished supervisor.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
from typing import Any

from dockyard.monitor import channel

KEEP = 7
DROP = 8


class Keeper:
    """The monitor's handle on its keeper."""

    def __init__(self) -> None:
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                self.sock.close()
                _keep_only(theirs.fileno())
                _serve(theirs)
            except BaseException:
                code = 1
            os._exit(code)
        theirs.close()
        self.pid = pid

    def keep(self, cid: str, init_pid: int, fds: list[int], log: dict[str, Any]) -> None:
        data = bytes([KEEP]) + json.dumps({"id": cid, "pid": init_pid, "log": log}).encode()
        self._send(data, fds)

    def drop(self, cid: str) -> None:
        self._send(bytes([DROP]) + cid.encode(), [])

    def _send(self, data: bytes, fds: list[int]) -> None:
        import array

        try:
            if fds:
                self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                            array.array("i", fds))])
            else:
                self.sock.send(data)
        except OSError:
            pass    # the keeper is gone: the containers lose that insurance, nothing else

    def close(self) -> None:
        self.sock.close()


def _keep_only(fd: int) -> None:
    os.closerange(3, fd)
    os.closerange(fd + 1, 1 << 16)


class _Held:
    def __init__(self, init_pid: int, fds: list[int], log: dict[str, Any]) -> None:
        self.init_pid = init_pid
        self.fds = fds
        self.log = log
        self.writer: Any = None

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _serve(sock: socket.socket) -> None:
    """The keeper's life: hold fds while the monitor lives; then drain them into the logs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)   # it leaves with the monitor, not before
    held: dict[str, _Held] = {}
    while True:
        size = 4 * 4
        try:
            data, anc, _flags, _addr = sock.recvmsg(channel.MAX_MESSAGE, socket.CMSG_SPACE(size),
                                                    socket.MSG_CMSG_CLOEXEC)
        except OSError:
            data, anc = b"", []
        fds = _fds(anc)
        if not data:
            break
        if data[0] == KEEP:
            try:
                doc = json.loads(data[1:])
                cid = str(doc["id"])
            except (ValueError, KeyError, TypeError):
                for fd in fds:
                    os.close(fd)
                continue
            old = held.pop(cid, None)
            if old is not None:
                old.close()
            held[cid] = _Held(int(doc.get("pid") or 0), fds, dict(doc.get("log") or {}))
        elif data[0] == DROP:
            old = held.pop(data[1:].decode(errors="replace"), None)
            if old is not None:
                old.close()
        else:
            for fd in fds:
                os.close(fd)
    sock.close()
    if held:
        _drain(held)


def _fds(anc: list[tuple[int, int, bytes]]) -> list[int]:
    import array

    out: list[int] = []
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(payload[:len(payload) - len(payload) % arr.itemsize])
            out.extend(arr)
    return out


def _drain(held: dict[str, _Held]) -> None:
    """The monitor is gone: read every container's output into its log until it exits."""
    poller = select.poll()
    owner: dict[int, tuple[str, str]] = {}      # fd -> (container, stream)
    for cid, h in held.items():
        h.writer = _writer(h.log)
        streams = ["stdout", "stderr"] if len(h.fds) == 2 else ["stdout"]
        for fd, stream in zip(h.fds, streams, strict=False):
            poller.register(fd, select.POLLIN)
            owner[fd] = (cid, stream)
    while owner:
        for fd, _ in poller.poll():
            cid, stream = owner[fd]
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            h = held[cid]
            if data:
                if h.writer is not None:
                    h.writer.write(stream, data)
                continue
            poller.unregister(fd)
            del owner[fd]
            h.fds.remove(fd)
            os.close(fd)
            if not h.fds:
                held.pop(cid).close()
    for h in held.values():
        h.close()


def _writer(log: dict[str, Any]) -> Any:
    driver = log.get("driver")
    path = str(log.get("path") or "")
    if driver == "none" or not path:
        return None
    max_size = log.get("max_size")
    max_file = int(log.get("max_file") or 1)
    if driver == "local":
        from dockyard.monitor.locallog import LocalLogWriter

        return LocalLogWriter(path, max_size=max_size, max_file=max_file)
    from dockyard.monitor.logfile import LogWriter

    return LogWriter(path, max_size=max_size, max_file=max_file)
