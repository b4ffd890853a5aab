"""v1 memory controller: memory.limit_in_bytes, memsw, soft limit, OOM control, swappiness."""

from __future__ import annotations

import errno

from dockyard.cgroups.fs import (
    CgroupFs,
    join,
    parse_flat_keyed,
    parse_uint,
    read_knob,
    read_optional,
    write_knob,
)
from dockyard.errors import FailedPrecondition, SyscallError
from dockyard.logs import get_logger
from dockyard.model.resources import MemoryResources

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from dockyard.cgroups.stats import MemoryEntry, Stats

log = get_logger(__name__)
NAME = "memory"
_LIMIT = "memory.limit_in_bytes"
_MEMSW = "memory.memsw.limit_in_bytes"


def _write(fs: CgroupFs, d: str, name: str, value: int) -> None:
    try:
        write_knob(fs, d, name, str(value), controller=NAME)
    except SyscallError as exc:
        if exc.errno != errno.EBUSY or name != _LIMIT:
            raise
        # EBUSY: the kernel cannot reclaim below the new limit.
        usage = read_knob(fs, d, "memory.usage_in_bytes", controller=NAME).strip()
        peak = read_knob(fs, d, "memory.max_usage_in_bytes", controller=NAME).strip()
        raise SyscallError("write", exc.errno, exc.path,
                           detail=f"memory limit {value} is below current usage {usage} "
                                  f"(peak {peak})") from None


def _check_usage(fs: CgroupFs, d: str, m: MemoryResources) -> None:
    text = read_optional(fs, d, "memory.usage_in_bytes")
    if text is None:
        return
    usage = parse_uint(text)
    for what, value in (("memory+swap limit", m.swap), ("memory limit", m.limit)):
        if value is not None and 0 < value <= usage:
            raise FailedPrecondition(f"rejecting {what} {value}: at or below current usage "
                                     f"{usage} (memory.checkBeforeUpdate)")


def set_limits(fs: CgroupFs, d: str, m: MemoryResources) -> None:
    if m.kernel is not None or m.kernel_tcp is not None:
        log.info("memory.kernel and memory.kernelTCP are ignored (removed from the kernel)")
    if m.check_before_update:
        _check_usage(fs, d, m)
    limit, swap = m.limit, m.swap
    if limit == -1 and swap is None and fs.exists(join(d, _MEMSW)):
        swap = -1  # unlimited memory without a swap value: unlimited memory+swap too
    # memsw must stay >= limit at every step: raise memsw first when it grows.
    if limit is not None and swap is not None and swap != 0:
        current = parse_uint(read_knob(fs, d, _LIMIT, controller=NAME))
        if swap == -1 or current < swap:
            _write(fs, d, _MEMSW, swap)
            _write(fs, d, _LIMIT, limit)
            swap = None
            limit = None
    if limit is not None and limit != 0:
        _write(fs, d, _LIMIT, limit)
    if swap is not None and swap != 0:
        _write(fs, d, _MEMSW, swap)
    if m.reservation is not None and m.reservation != 0:
        _write(fs, d, "memory.soft_limit_in_bytes", m.reservation)
    if m.disable_oom_killer:
        write_knob(fs, d, "memory.oom_control", "1", controller=NAME)
    if m.swappiness is not None:
        write_knob(fs, d, "memory.swappiness", str(m.swappiness), controller=NAME)


def _entry(fs: CgroupFs, d: str, prefix: str) -> MemoryEntry:
    from dockyard.cgroups.stats import MemoryEntry

    usage = read_optional(fs, d, f"{prefix}.usage_in_bytes")
    if usage is None:
        return MemoryEntry()
    e = MemoryEntry(usage=parse_uint(usage))
    for attr, name in (("max", "max_usage_in_bytes"), ("failcnt", "failcnt"),
                       ("limit", "limit_in_bytes")):
        text = read_optional(fs, d, f"{prefix}.{name}")
        if text is not None:
            setattr(e, attr, parse_uint(text))
    return e


def stats(fs: CgroupFs, d: str, st: Stats) -> None:
    text = read_optional(fs, d, "memory.stat")
    if text is None:
        return
    raw = parse_flat_keyed(text)
    st.memory.raw = raw
    st.memory.cache = raw.get("cache", 0)
    st.memory.usage = _entry(fs, d, "memory")
    st.memory.swap = _entry(fs, d, "memory.memsw")
    st.memory.kernel = _entry(fs, d, "memory.kmem")
    st.memory.kernel_tcp = _entry(fs, d, "memory.kmem.tcp")
