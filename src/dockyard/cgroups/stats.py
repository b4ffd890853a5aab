"""Cgroup statistics, shaped after runc's ``events --stats`` (runc ``types/events.go``).

Both backends fill one :class:`Stats`; :meth:`Stats.to_runc` renders the ``data`` object of
runc's ``{"type": "stats", "id": ..., "data": ...}`` event with runc's field names and its
``omitempty``/``omitzero`` rules, so tools that parse runc's output parse ours.
Units are runc's: nanoseconds for CPU time, bytes for memory and I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(slots=True)
class CpuUsage:
    total: int = 0
    percpu: list[int] = field(default_factory=list)
    percpu_kernel: list[int] = field(default_factory=list)
    percpu_user: list[int] = field(default_factory=list)
    kernel: int = 0
    user: int = 0


@dataclass(slots=True)
class Throttling:
    periods: int = 0
    throttled_periods: int = 0
    throttled_time: int = 0


@dataclass(slots=True)
class CpuStats:
    usage: CpuUsage = field(default_factory=CpuUsage)
    throttling: Throttling = field(default_factory=Throttling)


@dataclass(slots=True)
class CpusetStats:
    cpus: list[int] = field(default_factory=list)
    mems: list[int] = field(default_factory=list)


@dataclass(slots=True)
class MemoryEntry:
    limit: int = 0
    usage: int = 0
    max: int = 0
    failcnt: int = 0


@dataclass(slots=True)
class MemoryStats:
    cache: int = 0
    usage: MemoryEntry = field(default_factory=MemoryEntry)
    swap: MemoryEntry = field(default_factory=MemoryEntry)
    kernel: MemoryEntry = field(default_factory=MemoryEntry)
    kernel_tcp: MemoryEntry = field(default_factory=MemoryEntry)
    raw: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class PidsStats:
    current: int = 0
    limit: int = 0          # 0 = no limit (runc)


@dataclass(slots=True)
class BlkioEntry:
    major: int = 0
    minor: int = 0
    op: str = ""
    value: int = 0


@dataclass(slots=True)
class BlkioStats:
    io_service_bytes_recursive: list[BlkioEntry] = field(default_factory=list)
    io_serviced_recursive: list[BlkioEntry] = field(default_factory=list)


@dataclass(slots=True)
class HugetlbStats:
    usage: int = 0
    max: int = 0
    failcnt: int = 0


@dataclass(slots=True)
class Stats:
    cpu: CpuStats = field(default_factory=CpuStats)
    cpuset: CpusetStats = field(default_factory=CpusetStats)
    memory: MemoryStats = field(default_factory=MemoryStats)
    pids: PidsStats = field(default_factory=PidsStats)
    blkio: BlkioStats = field(default_factory=BlkioStats)
    hugetlb: dict[str, HugetlbStats] = field(default_factory=dict)

    def to_runc(self) -> dict[str, Any]:
        """runc's JSON for these stats (``omitempty`` drops zeros and empty lists,
        ``omitzero`` drops all-zero structs)."""
        return {
            "cpu": _cpu(self.cpu),
            "cpuset": _cpuset(self.cpuset),
            "memory": _memory(self.memory),
            "pids": _omitempty({"current": self.pids.current, "limit": self.pids.limit}),
            "blkio": _omitempty({
                "ioServiceBytesRecursive": [_blkio(e) for e in
                                            self.blkio.io_service_bytes_recursive],
                "ioServicedRecursive": [_blkio(e) for e in self.blkio.io_serviced_recursive],
            }),
            "hugetlb": {size: {**_omitempty({"usage": h.usage, "max": h.max}),
                               "failcnt": h.failcnt}
                        for size, h in sorted(self.hugetlb.items())},
            "intel_rdt": {},
            "network_interfaces": None,
        }


def _omitempty(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v not in (0, "", None, [], {})}


def _is_zero(obj: object) -> bool:
    return all(getattr(obj, f.name) in (0, "", [], {}) for f in fields(obj))  # type: ignore[arg-type]


def _cpu(c: CpuStats) -> dict[str, Any]:
    out: dict[str, Any] = {}
    u = c.usage
    if not _is_zero(u):
        out["usage"] = {**_omitempty({"total": u.total, "percpu": u.percpu,
                                      "percpu_kernel": u.percpu_kernel,
                                      "percpu_user": u.percpu_user}),
                        "kernel": u.kernel, "user": u.user}
    t = c.throttling
    if not _is_zero(t):
        out["throttling"] = _omitempty({"periods": t.periods,
                                        "throttledPeriods": t.throttled_periods,
                                        "throttledTime": t.throttled_time})
    return out


def _cpuset(c: CpusetStats) -> dict[str, Any]:
    return {**_omitempty({"cpus": c.cpus}), "cpu_exclusive": 0,
            **_omitempty({"mems": c.mems}), "mem_hardwall": 0, "mem_exclusive": 0,
            "memory_migrate": 0, "memory_spread_page": 0, "memory_spread_slab": 0,
            "memory_pressure": 0, "sched_load_balance": 0, "sched_relax_domain_level": 0}


def _mem_entry(e: MemoryEntry) -> dict[str, Any]:
    return {"limit": e.limit, **_omitempty({"usage": e.usage, "max": e.max}),
            "failcnt": e.failcnt}


def _memory(m: MemoryStats) -> dict[str, Any]:
    out: dict[str, Any] = _omitempty({"cache": m.cache})
    for key, entry in (("usage", m.usage), ("swap", m.swap), ("kernel", m.kernel),
                       ("kernelTCP", m.kernel_tcp)):
        if not _is_zero(entry):
            out[key] = _mem_entry(entry)
    if m.raw:
        out["raw"] = dict(m.raw)
    return out


def _blkio(e: BlkioEntry) -> dict[str, Any]:
    return _omitempty({"major": e.major, "minor": e.minor, "op": e.op, "value": e.value})
