"""v2 pids controller: pids.max; pids.current (or a count of cgroup.procs without it)."""

from __future__ import annotations

from dockyard.cgroups.convert import pids_limit_value
from dockyard.cgroups.fs import CgroupFs, parse_uint, read_optional, read_procs, write_knob
from dockyard.model.resources import PidsResources

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from dockyard.cgroups.stats import Stats

NAME = "pids"


def set_limits(fs: CgroupFs, d: str, p: PidsResources) -> None:
    if p.limit is not None:
        write_knob(fs, d, "pids.max", pids_limit_value(p.limit), controller=NAME)


def stats(fs: CgroupFs, d: str, st: Stats, *, count_procs: bool = True) -> None:
    """pids.current and pids.max; without pids.current (the root cgroup), the number of
    processes when ``count_procs`` (v2), nothing otherwise (v1)."""
    current = read_optional(fs, d, "pids.current")
    if current is None:
        if count_procs:
            st.pids.current = len(read_procs(fs, d))
        return
    st.pids.current = parse_uint(current)
    limit = read_optional(fs, d, "pids.max")
    if limit is not None:
        value = parse_uint(limit)
        st.pids.limit = 0 if value == 2**64 - 1 else value
