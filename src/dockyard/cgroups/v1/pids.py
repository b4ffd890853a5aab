"""v1 pids controller: pids.max, the same file and values as v2's, so v2's code serves."""

from __future__ import annotations

from dockyard.cgroups.v2 import pids as _v2

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from dockyard.cgroups.fs import CgroupFs
    from dockyard.cgroups.stats import Stats

NAME = "pids"
set_limits = _v2.set_limits


def stats(fs: CgroupFs, d: str, st: Stats) -> None:
    _v2.stats(fs, d, st, count_procs=False)
