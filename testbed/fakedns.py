"""A fake upstream DNS server for tests: UDP on a loopback address, in a thread; answers A
queries of its names with their addresses and NXDOMAIN to others, and records what it was
asked. Never a real outside server."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


def _name(msg: bytes) -> tuple[str, int]:
    labels, pos = [], 12
    while msg[pos]:
        n = msg[pos]
        labels.append(msg[pos + 1:pos + 1 + n].decode())
        pos += 1 + n
    return ".".join(labels).lower(), pos + 5


def answer(query: bytes, records: Mapping[str, str]) -> bytes:
    name, end = _name(query)
    qtype = struct.unpack_from("!H", query, end - 4)[0]
    ip = records.get(name)
    flags = 0x8180 | (0 if ip else 3)
    ans = b""
    if ip and qtype == 1:
        ans = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(ip)
    return (query[:2] + struct.pack("!HHHHH", flags, 1, 1 if ans else 0, 0, 0)
            + query[12:end] + ans)


class FakeDns:
    def __init__(self, address: str, records: Mapping[str, str], port: int = 53) -> None:
        self.records = dict(records)
        self.asked: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, port))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, addr = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                self.asked.append(_name(query)[0])
                self.sock.sendto(answer(query, self.records), addr)
            except (IndexError, struct.error, OSError):
                continue


@contextmanager
def fake_dns(address: str, records: Mapping[str, str]) -> Iterator[FakeDns]:
    server = FakeDns(address, records)
    server._thread.start()
    try:
        yield server
    finally:
        server._stop.set()
        server._thread.join()
        server.sock.close()
