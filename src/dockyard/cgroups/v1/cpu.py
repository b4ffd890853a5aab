"""v1 cpu controller: shares, CFS quota/period/burst, idle, real-time runtime/period."""

from __future__ import annotations

import errno

from dockyard.cgroups.fs import (
    CgroupFs,
    join,
    parse_flat_keyed,
    read_knob,
    read_optional,
    write_knob,
)
from dockyard.errors import InvalidArgument, SyscallError
from dockyard.model.resources import CpuResources

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from dockyard.cgroups.stats import Stats

NAME = "cpu"


def _try(fs: CgroupFs, d: str, name: str, value: int, *, retry_later: bool) -> bool:
    """Write a knob; with ``retry_later``, an EINVAL is swallowed (False) so the caller can try
    again once the knob it depends on is written (period vs quota, rt period vs runtime)."""
    try:
        write_knob(fs, d, name, str(value), controller=NAME)
    except SyscallError as exc:
        if exc.errno == errno.EINVAL and retry_later:
            return False
        raise
    return True


def set_realtime(fs: CgroupFs, d: str, c: CpuResources) -> None:
    """Before a process joins: an SCHED_RR/FIFO task cannot enter a group with no rt budget."""
    period_pending = False
    if c.realtime_period:
        period_pending = not _try(fs, d, "cpu.rt_period_us", c.realtime_period,
                                  retry_later=bool(c.realtime_runtime))
    if c.realtime_runtime:
        _try(fs, d, "cpu.rt_runtime_us", c.realtime_runtime, retry_later=False)
        if period_pending and c.realtime_period:
            _try(fs, d, "cpu.rt_period_us", c.realtime_period, retry_later=False)


def set_limits(fs: CgroupFs, d: str, c: CpuResources) -> None:
    if c.shares:
        write_knob(fs, d, "cpu.shares", str(c.shares), controller=NAME)
        got = int(read_knob(fs, d, "cpu.shares", controller=NAME))
        if got != c.shares:   # the kernel clamps silently
            bound = "maximum" if c.shares > got else "minimum"
            raise InvalidArgument(f"linux.resources.cpu.shares {c.shares}: the {bound} "
                                  f"allowed is {got}")
    period_pending = False
    if c.period:
        period_pending = not _try(fs, d, "cpu.cfs_period_us", c.period,
                                  retry_later=bool(c.quota))
    burst_pending = False
    if c.burst is not None and fs.exists(join(d, "cpu.cfs_burst_us")):
        burst_pending = not _try(fs, d, "cpu.cfs_burst_us", c.burst, retry_later=bool(c.quota))
    if c.quota:
        _try(fs, d, "cpu.cfs_quota_us", c.quota, retry_later=False)
        if period_pending and c.period:
            _try(fs, d, "cpu.cfs_period_us", c.period, retry_later=False)
        if burst_pending and c.burst is not None:
            _try(fs, d, "cpu.cfs_burst_us", c.burst, retry_later=False)
    if c.idle is not None:
        write_knob(fs, d, "cpu.idle", str(c.idle), controller=NAME)
    set_realtime(fs, d, c)


def stats(fs: CgroupFs, d: str, st: Stats) -> None:
    text = read_optional(fs, d, "cpu.stat")
    if text is None:
        return
    kv = parse_flat_keyed(text)
    st.cpu.throttling.periods = kv.get("nr_periods", 0)
    st.cpu.throttling.throttled_periods = kv.get("nr_throttled", 0)
    st.cpu.throttling.throttled_time = kv.get("throttled_time", 0)
