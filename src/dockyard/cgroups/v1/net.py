"""v1 net_cls and net_prio controllers (no v2 equivalent)."""

from __future__ import annotations

from dockyard.cgroups.fs import CgroupFs, write_knob
from dockyard.model.resources import NetworkResources


def set_classid(fs: CgroupFs, d: str, n: NetworkResources) -> None:
    if n.class_id is not None:
        write_knob(fs, d, "net_cls.classid", str(n.class_id), controller="net_cls")


def set_priorities(fs: CgroupFs, d: str, n: NetworkResources) -> None:
    for iface, prio in n.priorities:
        write_knob(fs, d, "net_prio.ifpriomap", f"{iface} {prio}", controller="net_prio")
