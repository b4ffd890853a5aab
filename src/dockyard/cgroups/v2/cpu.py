"""v2 cpu controller: cpu.weight (from shares), cpu.max, cpu.max.burst, cpu.idle."""

from __future__ import annotations

import errno

from dockyard.cgroups.convert import cpu_shares_to_weight
from dockyard.cgroups.fs import CgroupFs, join, parse_flat_keyed, read_optional, write_knob
from dockyard.errors import SyscallError, Unavailable
from dockyard.model.resources import CpuResources

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from dockyard.cgroups.stats import Stats

NAME = "cpu"
DEFAULT_PERIOD = 100000


def _current_max(fs: CgroupFs, d: str) -> tuple[str, int]:
    text = read_optional(fs, d, "cpu.max")
    if not text:
        return "max", DEFAULT_PERIOD
    quota, _, period = text.strip().partition(" ")
    return quota or "max", int(period or DEFAULT_PERIOD)


def cpu_max_value(fs: CgroupFs, d: str, c: CpuResources) -> str | None:
    """"$QUOTA $PERIOD" for cpu.max; what is not given is kept from the current value, so an
    update of the period alone does not lift the quota."""
    if not c.quota and not c.period:
        return None
    cur_quota, cur_period = _current_max(fs, d)
    quota = cur_quota
    if c.quota:
        quota = "max" if c.quota < 0 else str(c.quota)
    period = c.period or cur_period
    return f"{quota} {period}"


def set_limits(fs: CgroupFs, d: str, c: CpuResources) -> None:
    if c.realtime_runtime or c.realtime_period:
        raise Unavailable("linux.resources.cpu.realtimeRuntime/realtimePeriod: real-time group "
                          "scheduling does not exist on cgroup v2")
    if c.idle is not None:
        write_knob(fs, d, "cpu.idle", str(c.idle), controller=NAME)
    if c.shares:
        write_knob(fs, d, "cpu.weight", str(cpu_shares_to_weight(c.shares)), controller=NAME)
    burst_pending = False
    if c.burst is not None:
        try:
            write_knob(fs, d, "cpu.max.burst", str(c.burst), controller=NAME)
        except SyscallError as exc:   # bigger than the current quota allows: after cpu.max
            if exc.errno != errno.EINVAL or not c.quota:
                raise
            burst_pending = True
    value = cpu_max_value(fs, d, c)
    if value is not None:
        write_knob(fs, d, "cpu.max", value, controller=NAME)
    if burst_pending and fs.exists(join(d, "cpu.max.burst")):
        write_knob(fs, d, "cpu.max.burst", str(c.burst), controller=NAME)


def stats(fs: CgroupFs, d: str, st: Stats) -> None:
    # cpu.stat exists even with the cpu controller off (usage only, no throttling).
    text = read_optional(fs, d, "cpu.stat")
    if text is None:
        return
    kv = parse_flat_keyed(text)
    u, t = st.cpu.usage, st.cpu.throttling
    u.total = kv.get("usage_usec", 0) * 1000
    u.user = kv.get("user_usec", 0) * 1000
    u.kernel = kv.get("system_usec", 0) * 1000
    t.periods = kv.get("nr_periods", 0)
    t.throttled_periods = kv.get("nr_throttled", 0)
    t.throttled_time = kv.get("throttled_usec", 0) * 1000
