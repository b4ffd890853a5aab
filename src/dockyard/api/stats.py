"""``GET /containers/{id}/stats``: a container's cgroup statistics in docker's JSON shape.

The numbers come from the engine (the runtime's ``events --stats``, runc's field names) and the
kernel's accounting of the whole machine (``/proc/stat``, the container's ``/proc/<pid>/net/dev``);
this module renames and reshapes them. As dockerd does: a stream sends a frame a second, each
carrying the previous frame's CPU figures as ``precpu_stats`` (so a client can compute CPU %);
``stream=false`` waits for a second frame so that its ``precpu_stats`` is filled, unless
``one-shot`` is asked; a container that is not running gives a frame of zeros.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from typing import TYPE_CHECKING, Any

from dockyard.errors import DockyardError, InvalidArgument

if TYPE_CHECKING:
    from dockyard.api.handlers import App
    from dockyard.api.http import Handler, Request
    from dockyard.engine.containers import Container, ContainerService

INTERVAL = 1.0
_ZERO_TIME = "0001-01-01T00:00:00Z"
_NET_FIELDS = ("rx_bytes", "rx_packets", "rx_errors", "rx_dropped")
_NET_TX_FIELDS = ("tx_bytes", "tx_packets", "tx_errors", "tx_dropped")
_BLKIO_KEYS = ("io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
               "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
               "io_time_recursive", "sectors_recursive")


def _now() -> str:
    t = _dt.datetime.now(_dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def system_cpu() -> tuple[int, int]:
    """(the machine's CPU time in nanoseconds, online CPUs), as dockerd counts them: the
    first seven fields of /proc/stat's ``cpu`` line, in clock ticks."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    cpus = 0
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu "):
                total = sum(int(x) for x in line.split()[1:8])
            elif line.startswith("cpu"):
                cpus += 1
            else:
                break
    return total * 1_000_000_000 // ticks, cpus


def host_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def networks(pid: int) -> dict[str, dict[str, int]]:
    """Per interface counters of the network namespace ``pid`` is in (loopback left out)."""
    out: dict[str, dict[str, int]] = {}
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.readlines()[2:]
    except OSError:
        return out
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        fields = rest.split()
        if name == "lo" or len(fields) < 12:
            continue
        values = [int(x) for x in fields]
        doc = dict(zip(_NET_FIELDS, values[0:4], strict=True))
        doc.update(zip(_NET_TX_FIELDS, values[8:12], strict=True))
        out[name] = doc
    return out


def _blkio(entries: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [{"major": int(e.get("major") or 0), "minor": int(e.get("minor") or 0),
             "op": str(e.get("op") or ""), "value": int(e.get("value") or 0)}
            for e in entries or ()]


def _cpu_stats(data: dict[str, Any], system: int, cpus: int) -> dict[str, Any]:
    cpu = data.get("cpu") or {}
    usage = cpu.get("usage") or {}
    throttling = cpu.get("throttling") or {}
    cpu_usage: dict[str, Any] = {"total_usage": int(usage.get("total") or 0),
                                 "usage_in_kernelmode": int(usage.get("kernel") or 0),
                                 "usage_in_usermode": int(usage.get("user") or 0)}
    if usage.get("percpu"):
        cpu_usage["percpu_usage"] = [int(x) for x in usage["percpu"]]
    return {"cpu_usage": cpu_usage, "system_cpu_usage": system, "online_cpus": cpus,
            "throttling_data": {"periods": int(throttling.get("periods") or 0),
                                "throttled_periods": int(throttling.get("throttledPeriods")
                                                         or 0),
                                "throttled_time": int(throttling.get("throttledTime") or 0)}}


def _memory_stats(data: dict[str, Any]) -> dict[str, Any]:
    memory = data.get("memory") or {}
    usage = memory.get("usage") or {}
    limit = int(usage.get("limit") or 0)
    host = host_memory()
    if not limit or limit > host:      # no limit: the machine's memory, as dockerd reports
        limit = host
    out: dict[str, Any] = {"usage": int(usage.get("usage") or 0),
                           "stats": {str(k): int(v) for k, v in
                                     (memory.get("raw") or {}).items()},
                           "limit": limit}
    if usage.get("max"):
        out["max_usage"] = int(usage["max"])
    if usage.get("failcnt"):
        out["failcnt"] = int(usage["failcnt"])
    return out


def frame(c: Container, data: dict[str, Any], *, read: str, system: int, cpus: int,
          net: dict[str, dict[str, int]] | None) -> dict[str, Any]:
    """docker's ``StatsJSON`` for one sample (``precpu_stats``/``preread`` empty)."""
    pids = data.get("pids") or {}
    pids_stats: dict[str, int] = {"current": int(pids.get("current") or 0)}
    if pids.get("limit"):
        pids_stats["limit"] = int(pids["limit"])
    blkio = data.get("blkio") or {}
    doc: dict[str, Any] = {
        "name": f"/{c.name}", "id": c.id, "read": read, "preread": _ZERO_TIME,
        "pids_stats": pids_stats,
        # a running container's lists are empty, not null (dockerd's, cgroup v1)
        "blkio_stats": {k: [] for k in _BLKIO_KEYS},
        "num_procs": 0, "storage_stats": {},
        "cpu_stats": _cpu_stats(data, system, cpus),
        "precpu_stats": empty_cpu(),
        "memory_stats": _memory_stats(data),
    }
    doc["blkio_stats"]["io_service_bytes_recursive"] = _blkio(
        blkio.get("ioServiceBytesRecursive"))
    doc["blkio_stats"]["io_serviced_recursive"] = _blkio(blkio.get("ioServicedRecursive"))
    if net:
        doc["networks"] = net
    return doc


def empty_cpu() -> dict[str, Any]:
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def zero_frame(c: Container) -> dict[str, Any]:
    """What dockerd sends for a container that is not running."""
    return {"name": f"/{c.name}", "id": c.id, "read": _ZERO_TIME, "preread": _ZERO_TIME,
            "pids_stats": {}, "blkio_stats": {k: None for k in _BLKIO_KEYS}, "num_procs": 0,
            "storage_stats": {}, "cpu_stats": empty_cpu(), "precpu_stats": empty_cpu(),
            "memory_stats": {}}


def sample(svc: ContainerService, ref: str) -> dict[str, Any]:
    """One frame of the container ``ref`` (zeros when it is not running)."""
    c = svc.get(ref)
    if not c.running:
        return zero_frame(c)
    try:
        data = svc.stats(c.id)
    except DockyardError:
        if svc.get(c.id).running:
            raise
        return zero_frame(c)        # it stopped meanwhile
    system, cpus = system_cpu()
    mode = str((c.config.get("HostConfig") or {}).get("NetworkMode") or "default")
    net = networks(c.pid) if c.pid > 0 and mode not in ("none", "host") else None
    return frame(c, data, read=_now(), system=system, cpus=cpus, net=net)


def _chain(doc: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    if previous is not None:
        doc["precpu_stats"] = previous["cpu_stats"]
        doc["preread"] = previous["read"]
    return doc


def container_stats(app: App, h: Handler, req: Request, id: str) -> None:
    stream = req.flag("stream", True)
    one_shot = req.flag("one-shot")
    if stream and one_shot:
        raise InvalidArgument("cannot have stream=true and one-shot=true")
    with app.services() as svc:
        first = sample(svc, id)         # a missing container is a 404 here
        if not stream:
            if one_shot or first["read"] == _ZERO_TIME:
                h.reply_json(200, first)
                return
            time.sleep(INTERVAL)
            h.reply_json(200, _chain(sample(svc, id), first))
            return
        out = h.stream()
        previous: dict[str, Any] | None = None
        doc = first
        while True:
            if not out.json(_chain(doc, previous)):
                return
            previous = doc
            deadline = time.monotonic() + INTERVAL
            while time.monotonic() < deadline:
                if out.gone():
                    return
                time.sleep(0.1)
            try:
                doc = sample(svc, id)
            except DockyardError:       # removed meanwhile: the stream ends
                break
    out.end()
