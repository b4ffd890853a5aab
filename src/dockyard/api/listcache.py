"""The containers of ``GET /containers/json`` without parsing every row on every request, and
without opening the database for each.

A list reads every row of the containers table; turning a row into a Container (its config's
JSON, the value's fields) was most of a list's cost. The daemon keeps the Containers it parsed,
keyed by the whole row: a row that changed in any column is a new key and is parsed again, so
nothing stale is ever served and nothing needs invalidating. A list never changes a Container
it is given, so one may be shared between requests. Bounded: past ``limit`` rows it starts
again.

The engine services a list reads through are kept per connection thread (:class:`ThreadLocal`):
a client that lists again and again on one keep-alive connection opens the database once. They
go with the thread (a connection's thread ends when it closes), and with them the database
connection.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from dockyard.engine.containers import Container

T = TypeVar("T")


class ParsedRows:
    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._parsed: dict[tuple[Any, ...], Container] = {}

    def parse(self, row: sqlite3.Row) -> Container:
        from dockyard.engine.containers import container_from_row

        key = tuple(row)
        with self._lock:
            c = self._parsed.get(key)
        if c is not None:
            return c
        c = container_from_row(row)
        with self._lock:
            if len(self._parsed) >= self.limit:
                self._parsed.clear()
            self._parsed[key] = c
        return c


class ThreadLocal(Generic[T]):
    """One ``make()`` per thread, made on the thread's first ``get``."""

    def __init__(self, make: Callable[[], T]) -> None:
        self.make = make
        self._local = threading.local()

    def get(self) -> T:
        got: T | None = getattr(self._local, "value", None)
        if got is None:
            got = self._local.value = self.make()
        return got
