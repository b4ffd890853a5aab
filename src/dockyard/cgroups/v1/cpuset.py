"""v1 cpuset controller: cpuset.cpus / cpuset.mems.

A new v1 cpuset cgroup starts with *empty* cpus and mems, and a process cannot join it until
both are set, so :func:`prepare` fills every level from the hierarchy's root down with its
parent's values (unless the spec gives them) before the process joins (runc's ensureParent)."""

from __future__ import annotations

import posixpath

from dockyard.cgroups.fs import CgroupFs, join, read_knob, read_optional, write_knob
from dockyard.model.resources import CpuResources

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from dockyard.cgroups.stats import Stats

NAME = "cpuset"


def _prefix(fs: CgroupFs, d: str) -> str:
    # A v1 cpuset hierarchy may be mounted with "noprefix" (Android): files are "cpus", "mems".
    return "" if fs.exists(join(d, "cpus")) and not fs.exists(join(d, "cpuset.cpus")) else "cpuset."


def _copy_if_empty(fs: CgroupFs, d: str, parent: str) -> None:
    pre = _prefix(fs, parent)
    for knob in ("cpus", "mems"):
        if not read_knob(fs, d, pre + knob, controller=NAME).strip():
            value = read_knob(fs, parent, pre + knob, controller=NAME).strip()
            write_knob(fs, d, pre + knob, value, controller=NAME)


def prepare(fs: CgroupFs, mountpoint: str, d: str, c: CpuResources | None,
            created: list[str]) -> None:
    """Create ``d`` and its missing ancestors below ``mountpoint``, each with cpus/mems."""
    mountpoint = mountpoint.rstrip("/") or "/"
    rel = posixpath.relpath(d, mountpoint)
    current = mountpoint
    for part in [p for p in rel.split("/") if p not in ("", ".")]:
        parent, current = current, join(current, part)
        if fs.mkdir(current):
            created.append(current)
        if current == d and c is not None:
            set_limits(fs, d, c)
        _copy_if_empty(fs, current, parent)


def set_limits(fs: CgroupFs, d: str, c: CpuResources) -> None:
    pre = _prefix(fs, d)
    if c.cpus:
        write_knob(fs, d, pre + "cpus", c.cpus, controller=NAME)
    if c.mems:
        write_knob(fs, d, pre + "mems", c.mems, controller=NAME)


def parse_list(text: str) -> list[int]:
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def stats(fs: CgroupFs, d: str, st: Stats) -> None:
    pre = _prefix(fs, d)
    cpus = read_optional(fs, d, pre + "cpus")
    mems = read_optional(fs, d, pre + "mems")
    st.cpuset.cpus = parse_list(cpus) if cpus else []
    st.cpuset.mems = parse_list(mems) if mems else []
