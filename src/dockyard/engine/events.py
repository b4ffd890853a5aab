"""The engine's event journal: what ``dockyard events`` (and later the API's ``/events``) reads.

Every engine action appends one event in docker's shape: a type (container, image; network
and volume later), an action (``create``, ``die``, ``health_status: healthy``...), an actor
(an id and string attributes: the container's name, image and labels, ``exitCode``...), the
scope ``local`` and the time in nanoseconds.

There is no daemon to hold the events in memory, as dockerd does: the writers are many
short-lived CLIs and the containers' supervisors. So the journal is a table of the engine
database. One ``BEGIN IMMEDIATE`` transaction per event makes an append atomic and gives it
its place: ``seq`` grows in commit order and the time is taken once the write lock is held, so
sequence and time agree. A writer that dies mid-append rolls back with its transaction;
readers never see half an event. The journal keeps the last :data:`KEEP` events: every
:data:`TRIM_EVERY`-th append deletes what fell out, inside its own transaction.

:func:`record` never raises for the journal itself (the action it reports already happened):
a failure is logged. It opens its own connection unless given one, so it is safe in a freshly
forked supervisor (never fork with an open SQLite connection; see ``db.py``).

Filters follow moby's ``daemon/events/filter.go``: values of one key are alternatives, keys
are all required; ``container=`` (and the other object keys) match an id or name by prefix,
``image=`` a name with or without its tag, ``label=`` every ``key`` or ``key=value`` given,
``event=`` the action exactly (by prefix for ``health_status``, ``exec_create`` and
``exec_start``, whose actions carry a suffix).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from dockyard.db import ensure_schema, open_database, transaction
from dockyard.errors import InvalidArgument
from dockyard.logs import get_logger
from dockyard.values import value

log = get_logger(__name__)

KEEP = 10_000           # events kept (docker's daemon keeps 256 in memory)
TRIM_EVERY = 100        # appends between two trims, so the table holds < KEEP + TRIM_EVERY
POLL_S = 0.1            # how often a follower looks for new events
_BATCH = 1000

SCOPE = "local"
CONTAINER = "container"
IMAGE = "image"

_MIGRATIONS: list[list[str]] = [[
    # AUTOINCREMENT: a seq is never reused, even after the journal was trimmed to nothing
    """CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time_nano INTEGER NOT NULL,
        type TEXT NOT NULL,
        action TEXT NOT NULL,
        actor_id TEXT NOT NULL,
        attributes TEXT NOT NULL)""",
]]

# The database files whose events table this process has made sure of (ensure_schema takes a
# write lock; an event must not cost two).
_ready: set[str] = set()

FILTER_KEYS = frozenset({"config", "container", "daemon", "event", "image", "label", "network",
                         "node", "plugin", "scope", "secret", "service", "type", "volume"})
# keys naming an object of that type, matched against the actor's id or name (by prefix)
_NAME_KEYS = ("config", "container", "daemon", "network", "node", "plugin", "secret",
              "service", "volume")
_FUZZY_EVENTS = frozenset({"health_status", "exec_create", "exec_start"})

Filters = Mapping[str, frozenset[str]]


@value
class Event:
    """One journaled event; ``seq`` orders the journal."""

    seq: int
    time_nano: int
    type: str
    action: str
    actor_id: str
    attributes: Mapping[str, str]

    def message(self) -> dict[str, Any]:
        """docker's ``events.Message`` as its API sends it (the deprecated ``status``, ``id``
        and ``from`` included for containers and images, as docker's daemon still does)."""
        doc: dict[str, Any] = {}
        if self.type in (CONTAINER, IMAGE):
            doc["status"] = self.action
            doc["id"] = self.actor_id
            if self.type == CONTAINER and self.attributes.get("image"):
                doc["from"] = self.attributes["image"]
        doc.update({"Type": self.type, "Action": self.action,
                    "Actor": {"ID": self.actor_id, "Attributes": dict(self.attributes)},
                    "scope": SCOPE, "time": self.time_nano // 1_000_000_000,
                    "timeNano": self.time_nano})
        return doc


def _prepare(conn: sqlite3.Connection) -> None:
    (path,) = [str(r[2]) for r in conn.execute("PRAGMA database_list") if r[1] == "main"]
    if path in _ready:
        return
    # a read first: ensure_schema takes the write lock, which 20 parallel runs queue for
    row = conn.execute("SELECT version FROM schema_versions WHERE component = 'events'"
                       ).fetchone()
    if row is None or int(row[0]) != len(_MIGRATIONS):
        ensure_schema(conn, "events", _MIGRATIONS)
    _ready.add(path)


# --- writing -----------------------------------------------------------------------------------


def record(root: str, type_: str, action: str, actor_id: str,
           attributes: Mapping[str, object] | None = None, *,
           db: sqlite3.Connection | None = None) -> None:
    """Append one event to the journal of the engine at ``root`` (``db``: a connection to its
    database to use, outside any transaction; else one is opened and closed here)."""
    attrs = json.dumps({str(k): str(v) for k, v in (attributes or {}).items()},
                       separators=(",", ":"), sort_keys=True)
    conn = db
    try:
        if conn is None:
            conn = open_database(root)
        _prepare(conn)
        with transaction(conn):
            cur = conn.execute(
                "INSERT INTO events (time_nano, type, action, actor_id, attributes)"
                " VALUES (?, ?, ?, ?, ?)", (time.time_ns(), type_, action, actor_id, attrs))
            seq = int(cur.lastrowid or 0)
            if seq % TRIM_EVERY == 0:
                conn.execute("DELETE FROM events WHERE seq <= ?", (seq - KEEP,))
    except (sqlite3.Error, OSError) as e:
        log.warning("event %s %s %s not journaled: %s", type_, action, actor_id, e)
    finally:
        if db is None and conn is not None:
            conn.close()


# --- reading -----------------------------------------------------------------------------------


def _event(row: sqlite3.Row) -> Event:
    try:
        attrs = json.loads(row["attributes"])
    except ValueError:
        attrs = {}
    return Event(seq=int(row["seq"]), time_nano=int(row["time_nano"]), type=str(row["type"]),
                 action=str(row["action"]), actor_id=str(row["actor_id"]),
                 attributes={str(k): str(v) for k, v in dict(attrs).items()})


def _after(conn: sqlite3.Connection, seq: int, since_ns: int | None) -> list[Event]:
    rows = conn.execute("SELECT * FROM events WHERE seq > ? AND time_nano >= ? ORDER BY seq"
                        " LIMIT ?", (seq, since_ns or 0, _BATCH)).fetchall()
    return [_event(r) for r in rows]


def last_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT MAX(seq) FROM events").fetchone()
    return int(row[0] or 0)


def watch(root: str, *, since_ns: int | None = None, until_ns: int | None = None,
          filters: Filters | None = None, follow: bool = True, poll: float = POLL_S,
          clock: Callable[[], int] = time.time_ns) -> Iterator[Event]:
    """The journal's events in order: from ``since_ns`` (else only those appended from now
    on), then, with ``follow``, new ones as they come, until ``until_ns`` has passed (or for
    ever). Both bounds are inclusive, as docker's; ``filters`` as :func:`parse_filters`."""
    conn = open_database(root)
    try:
        _prepare(conn)
        seq = 0 if since_ns is not None else last_seq(conn)
        while True:
            batch = _after(conn, seq, since_ns)
            for ev in batch:
                seq = ev.seq
                if until_ns is not None and ev.time_nano > until_ns:
                    continue
                if filters is None or matches(filters, ev):
                    yield ev
            if len(batch) == _BATCH:
                continue
            now = clock()
            if not follow or (until_ns is not None and now > until_ns):
                return
            wait = poll if until_ns is None else min(poll, (until_ns - now) / 1e9 + 0.001)
            time.sleep(wait)
    finally:
        conn.close()


# --- filters -----------------------------------------------------------------------------------


def parse_filters(specs: Sequence[str]) -> dict[str, frozenset[str]]:
    """``-f key=value`` flags as docker's filters.Args; InvalidArgument for a bad one."""
    out: dict[str, set[str]] = {}
    for spec in specs:
        key, eq, val = spec.partition("=")
        key = key.strip().lower()
        if not eq:
            raise InvalidArgument(f"bad format of filter (expected name=value): {spec}")
        if key not in FILTER_KEYS:
            raise InvalidArgument(f"invalid filter '{key}'")
        out.setdefault(key, set()).add(val)
    return {k: frozenset(v) for k, v in out.items()}


def _exact(filters: Filters, key: str, source: str) -> bool:
    values = filters.get(key)
    return not values or source in values


def _fuzzy(filters: Filters, key: str, source: str) -> bool:
    values = filters.get(key)
    return not values or any(source.startswith(v) for v in values)


def _labels(filters: Filters, attributes: Mapping[str, str]) -> bool:
    for spec in filters.get("label", ()):
        key, eq, val = spec.partition("=")
        if key not in attributes or (eq and attributes[key] != val):
            return False
    return True


def _strip_tag(image: str) -> str:
    """An image name without its tag or digest, in docker's short form (moby's stripTag)."""
    from dockyard.image.reference import parse_reference

    try:
        return parse_reference(image).familiar_name
    except InvalidArgument:
        return image


def _image(filters: Filters, ev: Event) -> bool:
    if not filters.get("image"):
        return True
    name = ev.attributes.get("name" if ev.type == IMAGE else "image", "")
    return any(_exact(filters, "image", s)
               for s in (ev.actor_id, name, _strip_tag(ev.actor_id), _strip_tag(name)))


def matches(filters: Filters, ev: Event) -> bool:
    """Whether ``ev`` passes ``filters`` (moby's events.Filter.Include)."""
    wanted = filters.get("event") or frozenset()
    event_ok = (_fuzzy(filters, "event", ev.action) if wanted & _FUZZY_EVENTS
                else _exact(filters, "event", ev.action))
    name = ev.attributes.get("name", "")
    return (event_ok and _exact(filters, "type", ev.type) and _exact(filters, "scope", SCOPE)
            and all(_fuzzy(filters, k, ev.actor_id) or _fuzzy(filters, k, name)
                    for k in _NAME_KEYS if k in filters)
            and _image(filters, ev) and _labels(filters, ev.attributes))
