"""``events``: container statistics as runc prints them, once (``--stats``) or every interval
until the container stops."""

from __future__ import annotations

import json
import re
import sys
import time

from dockyard.errors import FailedPrecondition, InvalidArgument
from dockyard.runtime import state

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from _typeshed import StrPath


def parse_interval(text: str) -> float:
    """Go durations as runc takes them: ``5s``, ``500ms``, ``1m``, ``1m30s``."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise InvalidArgument(f"invalid interval {text!r} (e.g. 5s, 500ms)")
    seconds = sum(float(n) * units[u] for n, u in parts)
    if seconds <= 0:
        raise InvalidArgument("duration for stats must be greater than 0")
    return seconds


def stats_event(root: StrPath, container_id: str) -> dict[str, object]:
    rec = state.load(root, container_id)
    if state.status_of(root, rec) is state.Status.STOPPED:
        raise FailedPrecondition("container is not running")
    cgroup = state.cgroup_of(rec)
    if cgroup is None:
        raise FailedPrecondition(f"container {container_id} has no cgroup")
    return {"type": "stats", "id": container_id, "data": cgroup.stats().to_runc()}


def events(root: StrPath, container_id: str, *, stats_once: bool, interval: float) -> None:
    if stats_once:
        sys.stdout.write(json.dumps(stats_event(root, container_id)) + "\n")
        return
    while True:
        try:
            event = stats_event(root, container_id)
        except FailedPrecondition:
            return  # the container stopped: the stream ends, as runc's does
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()
        time.sleep(interval)
