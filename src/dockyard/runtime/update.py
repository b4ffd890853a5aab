"""``update``: change a running container's resources (flags or a resources JSON)."""

from __future__ import annotations

import json
import re

from dockyard.errors import FailedPrecondition, InvalidArgument
from dockyard.model.resources import parse_resources
from dockyard.runtime import state

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from typing import Any

if TYPE_CHECKING:
    from _typeshed import StrPath

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(text: str) -> int:
    """docker's RAMInBytes: ``1024``, ``64m``, ``1g``, ``512k``, ``-1``."""
    if text.strip() == "-1":
        return -1
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtb]?)(?:i?b)?\s*", text.lower())
    if m is None:
        raise InvalidArgument(f"invalid size: {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def resources_from_flags(flags: dict[str, str | None]) -> dict[str, Any]:
    """runc update's flags as the OCI resources object."""
    out: dict[str, Any] = {}

    def put(section: str, key: str, value: object) -> None:
        out.setdefault(section, {})[key] = value

    def num(flag: str) -> int | None:
        v = flags.get(flag)
        if v is None:
            return None
        try:
            return int(v)
        except ValueError:
            raise InvalidArgument(f"--{flag}: {v!r} is not a number") from None

    for flag, key in (("memory", "limit"), ("memory-reservation", "reservation"),
                      ("memory-swap", "swap"), ("kernel-memory", "kernel"),
                      ("kernel-memory-tcp", "kernelTCP")):
        v = flags.get(flag)
        if v is not None:
            put("memory", key, parse_bytes(v))
    for flag, key in (("cpu-share", "shares"), ("cpu-quota", "quota"),
                      ("cpu-period", "period"), ("cpu-rt-runtime", "realtimeRuntime"),
                      ("cpu-rt-period", "realtimePeriod")):
        n = num(flag)
        if n is not None:
            put("cpu", key, n)
    for flag, key in (("cpuset-cpus", "cpus"), ("cpuset-mems", "mems")):
        v = flags.get(flag)
        if v is not None:
            put("cpu", key, v)
    n = num("pids-limit")
    if n is not None:
        put("pids", "limit", n)
    n = num("blkio-weight")
    if n is not None:
        put("blockIO", "weight", n)
    return out


def update(root: StrPath, container_id: str, raw: dict[str, Any]) -> None:
    rec = state.load(root, container_id)
    if state.status_of(root, rec) is state.Status.STOPPED:
        raise FailedPrecondition("container not running")
    cgroup = state.cgroup_of(rec)
    if cgroup is None:
        raise FailedPrecondition(f"container {container_id} has no cgroup")
    cgroup.set(parse_resources(raw, where="resources"))


def load_resources_file(path: str) -> dict[str, Any]:
    import sys

    try:
        text = sys.stdin.read() if path == "-" else open(path).read()  # noqa: SIM115
        data = json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"--resources {path}: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"--resources {path}: expected a JSON object")
    return data
