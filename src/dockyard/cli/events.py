"""``dockyard events``: the engine's event journal as docker's ``events`` prints it.

Without ``--until`` it streams: the events since ``--since`` (none without it), then new ones
as they are journaled, until SIGINT or SIGTERM ends it (exit 0, as docker's). With ``--until``
it stops once that time has passed, at once if it is in the past. Each event prints as docker's
line (``<time> <type> <action> <id> (k=v, ...)``, the time in the local zone) or through
``--format``, a Go template over docker's ``events.Message``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from dockyard.cli.parser import CommandParser
from dockyard.cli.template import Struct, parse_template
from dockyard.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dockyard.cli.main import Globals
    from dockyard.engine.events import Event

_NS = 1_000_000_000


class _Actor(Struct):
    """docker's events.Actor: ``{{.Actor.ID}}``, ``{{.Actor.Attributes.name}}``."""

    __slots__ = ()

    def __init__(self, actor_id: str, attributes: dict[str, str]) -> None:
        super().__init__({"ID": actor_id, "Attributes": attributes}, go_type="events.Actor")

    def go_json_fields(self) -> list[tuple[str, Any]]:
        return [("ID", self["ID"]), ("Attributes", self["Attributes"])]


class Message(Struct):
    """docker's events.Message: Go's field names for templates; ``{{json .}}`` gives the
    JSON docker's API sends (its tags, its field order, empty fields omitted)."""

    __slots__ = ()

    _TAGS = (("Status", "status", True), ("ID", "id", True), ("From", "from", True),
             ("Type", "Type", False), ("Action", "Action", False), ("Actor", "Actor", False),
             ("Scope", "scope", True), ("Time", "time", True), ("TimeNano", "timeNano", True))

    def __init__(self, doc: dict[str, Any]) -> None:
        actor = doc.get("Actor") or {}
        super().__init__({
            "Status": doc.get("status", ""), "ID": doc.get("id", ""),
            "From": doc.get("from", ""), "Type": doc.get("Type", ""),
            "Action": doc.get("Action", ""),
            "Actor": _Actor(str(actor.get("ID", "")), actor.get("Attributes") or {}),
            "Scope": doc.get("scope", ""), "Time": doc.get("time", 0),
            "TimeNano": doc.get("timeNano", 0),
        }, go_type="events.Message")

    def go_json_fields(self) -> list[tuple[str, Any]]:
        return [(tag, self[name]) for name, tag, omitempty in self._TAGS
                if not omitempty or self[name]]


def format_time_local(ts_ns: int) -> str:
    """moby's RFC3339NanoFixed in the local zone (``Z`` when it is UTC), as docker prints."""
    from dockyard.engine.logread import format_time_fixed

    offset = time.localtime(ts_ns // _NS).tm_gmtoff
    text = format_time_fixed(ts_ns + offset * _NS)
    if not offset:
        return text
    sign = "+" if offset > 0 else "-"
    hours, minutes = divmod(abs(offset) // 60, 60)
    return f"{text[:-1]}{sign}{hours:02d}:{minutes:02d}"


def pretty(ev: Event) -> str:
    """docker's default line for one event (its prettyPrintEvent)."""
    line = f"{format_time_local(ev.time_nano)} {ev.type} {ev.action} {ev.actor_id}"
    if ev.attributes:
        line += " (" + ", ".join(f"{k}={v}" for k, v in sorted(ev.attributes.items())) + ")"
    return line + "\n"


def renderer(fmt: str) -> Callable[[Event], str]:
    """What prints one event: docker's line, or ``fmt`` (``json`` is ``{{json .}}``), checked
    first against an empty message, as docker does, so a bad field fails before streaming."""
    if not fmt:
        return pretty
    tmpl = parse_template("{{json .}}" if fmt == "json" else fmt)
    tmpl.render(Message({}))
    return lambda ev: tmpl.render(Message(ev.message())) + "\n"


class _Interrupted(Exception):
    """SIGINT or SIGTERM while streaming: the user is done watching."""


def _interrupt(_signum: int, _frame: object) -> None:
    raise _Interrupted


def _parser(command: str) -> CommandParser:
    p = CommandParser(command, "[OPTIONS]", "Get real time events from the engine")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="Filter output based on conditions provided")
    p.add_argument("--format", default="",
                   help="Format output using a custom template ('json' or a Go template)")
    p.add_argument("--since", default=None, help="Show all events created since timestamp")
    p.add_argument("--until", default=None, help="Stream events until this timestamp")
    return p


def cmd_events(g: Globals, argv: list[str], command: str = "events") -> int:
    a: argparse.Namespace = _parser(command).parse_args(argv)
    from dockyard.engine import events
    from dockyard.engine.config import load_config
    from dockyard.engine.logread import parse_time_arg

    now = time.time_ns()
    since = parse_time_arg(a.since, now) if a.since else None
    until = parse_time_arg(a.until, now) if a.until else None
    if since is not None and until is not None and since > until:
        raise InvalidArgument(f"`since` time ({since / _NS:.9f}) cannot be after `until` "
                              f"time ({until / _NS:.9f})")
    filters = events.parse_filters(a.filter)
    render = renderer(a.format)
    root = load_config(g.root, g.config).root
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    out = sys.stdout
    try:
        for ev in events.watch(root, since_ns=since, until_ns=until, filters=filters):
            out.write(render(ev))
            out.flush()
    except _Interrupted:
        return 0
    except BrokenPipeError:
        _quiet_stdout()
    return 0


def _quiet_stdout() -> None:
    """The reader went away (``events | head``): what is still buffered goes nowhere, rather
    than into an error when the interpreter flushes stdout on its way out."""
    import os

    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, sys.stdout.fileno())
    os.close(null)
