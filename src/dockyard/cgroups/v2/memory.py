"""v2 memory controller: memory.max, memory.swap.max (swap alone), memory.low."""

from __future__ import annotations

from dockyard.cgroups.convert import limit_to_v2, memory_swap_to_v2
from dockyard.cgroups.fs import (
    CgroupFs,
    parse_flat_keyed,
    parse_uint,
    read_optional,
    write_knob,
)
from dockyard.errors import FailedPrecondition, Unavailable
from dockyard.logs import get_logger
from dockyard.model.resources import MemoryResources

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from dockyard.cgroups.stats import MemoryEntry, Stats

log = get_logger(__name__)
NAME = "memory"
_UNLIMITED = 2**64 - 1


def _current_limit(fs: CgroupFs, d: str) -> int | None:
    text = read_optional(fs, d, "memory.max")
    if text is None:
        return None
    return -1 if text.strip() == "max" else int(text)


def _check_usage(fs: CgroupFs, d: str, m: MemoryResources) -> None:
    text = read_optional(fs, d, "memory.current")
    if text is None:
        return
    usage = parse_uint(text)
    for what, value in (("memory+swap limit", m.swap), ("memory limit", m.limit)):
        if value is not None and 0 < value <= usage:
            raise FailedPrecondition(f"rejecting {what} {value}: at or below current usage "
                                     f"{usage} (memory.checkBeforeUpdate)")


def set_limits(fs: CgroupFs, d: str, m: MemoryResources) -> None:
    for what, given in (("swappiness", m.swappiness is not None),
                        ("disableOOMKiller", bool(m.disable_oom_killer)),
                        ("kernel/kernelTCP", m.kernel is not None or m.kernel_tcp is not None)):
        if given:
            log.info("linux.resources.memory.%s has no cgroup v2 equivalent; ignored", what)
    if m.limit is None and m.swap is None and m.reservation is None:
        return
    if m.check_before_update:
        _check_usage(fs, d, m)
    limit = m.limit
    if m.swap not in (None, 0, -1) and limit is None:
        limit = _current_limit(fs, d)   # an update of swap alone: against the current limit
    swap = memory_swap_to_v2(m.swap, limit)
    if swap is not None:
        try:
            write_knob(fs, d, "memory.swap.max", limit_to_v2(swap), controller=NAME)
        except Unavailable:
            # No swap accounting in this kernel: only "unlimited" or "none" can be ignored.
            if swap not in (-1, 0):
                raise
    if m.limit is not None and m.limit != 0:
        write_knob(fs, d, "memory.max", limit_to_v2(m.limit), controller=NAME)
    if m.reservation is not None and m.reservation != 0:
        write_knob(fs, d, "memory.low", limit_to_v2(m.reservation), controller=NAME)


def _entry(fs: CgroupFs, d: str, prefix: str) -> MemoryEntry | None:
    from dockyard.cgroups.stats import MemoryEntry

    usage = read_optional(fs, d, f"{prefix}.current")
    if usage is None:
        return None
    e = MemoryEntry(usage=parse_uint(usage))
    limit = read_optional(fs, d, f"{prefix}.max")
    e.limit = parse_uint(limit) if limit else _UNLIMITED
    peak = read_optional(fs, d, f"{prefix}.peak")
    e.max = parse_uint(peak) if peak else 0
    return e


def stats(fs: CgroupFs, d: str, st: Stats) -> None:
    from dockyard.cgroups.stats import MemoryEntry

    text = read_optional(fs, d, "memory.stat")
    if text is None:
        return
    raw = parse_flat_keyed(text)
    st.memory.raw = raw
    st.memory.cache = raw.get("file", 0)
    usage = _entry(fs, d, "memory")
    if usage is None:
        return
    events = read_optional(fs, d, "memory.events")
    if events:
        usage.failcnt = parse_flat_keyed(events).get("max", 0)
    st.memory.usage = usage
    swap = _entry(fs, d, "memory.swap") or MemoryEntry()
    # runc reports v1's memory+swap here: add memory to swap-only figures, no peak.
    combined = MemoryEntry(usage=swap.usage + usage.usage, max=0,
                           limit=swap.limit if _UNLIMITED in (swap.limit, usage.limit)
                           else swap.limit + usage.limit)
    st.memory.swap = combined

