"""v2 cpuset controller: cpuset.cpus / cpuset.mems (empty means "inherit" on v2)."""

from __future__ import annotations

from dockyard.cgroups.fs import CgroupFs, read_optional, write_knob
from dockyard.cgroups.v1.cpuset import parse_list
from dockyard.model.resources import CpuResources

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from dockyard.cgroups.stats import Stats

NAME = "cpuset"


def set_limits(fs: CgroupFs, d: str, c: CpuResources) -> None:
    if c.cpus:
        write_knob(fs, d, "cpuset.cpus", c.cpus, controller=NAME)
    if c.mems:
        write_knob(fs, d, "cpuset.mems", c.mems, controller=NAME)


def stats(fs: CgroupFs, d: str, st: Stats) -> None:
    cpus = read_optional(fs, d, "cpuset.cpus.effective")
    mems = read_optional(fs, d, "cpuset.mems.effective")
    st.cpuset.cpus = parse_list(cpus) if cpus else []
    st.cpuset.mems = parse_list(mems) if mems else []
