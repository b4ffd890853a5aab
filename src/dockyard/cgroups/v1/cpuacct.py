"""v1 cpuacct controller: CPU usage (total, per CPU, user/kernel)."""

from __future__ import annotations

from dockyard.cgroups.fs import CgroupFs, read_optional

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from dockyard.cgroups.stats import Stats

NAME = "cpuacct"
_NS_PER_TICK = 1_000_000_000 // 100   # cpuacct.stat counts USER_HZ (100) ticks


def stats(fs: CgroupFs, d: str, st: Stats) -> None:
    u = st.cpu.usage
    text = read_optional(fs, d, "cpuacct.usage")
    if text is None:
        return
    u.total = int(text.strip() or 0)
    percpu = read_optional(fs, d, "cpuacct.usage_percpu")
    if percpu is not None:
        u.percpu = [int(v) for v in percpu.split()]
    stat = read_optional(fs, d, "cpuacct.stat")
    if stat is not None:
        kv = dict(line.split() for line in stat.splitlines() if len(line.split()) == 2)
        u.user = int(kv.get("user", 0)) * _NS_PER_TICK
        u.kernel = int(kv.get("system", 0)) * _NS_PER_TICK
    usage_all = read_optional(fs, d, "cpuacct.usage_all")
    if usage_all is not None:
        rows = [line.split() for line in usage_all.splitlines()[1:]]
        u.percpu_user = [int(r[1]) for r in rows if len(r) >= 3]
        u.percpu_kernel = [int(r[2]) for r in rows if len(r) >= 3]
