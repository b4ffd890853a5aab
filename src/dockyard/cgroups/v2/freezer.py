"""v2 freezer: cgroup.freeze, confirmed through cgroup.events ("frozen 1")."""

from __future__ import annotations

import time

from dockyard.cgroups.fs import CgroupFs, parse_flat_keyed, read_knob, read_optional, write_knob
from dockyard.errors import Unavailable

NAME = "freezer"


def freeze(fs: CgroupFs, d: str, *, timeout: float = 10.0) -> None:
    write_knob(fs, d, "cgroup.freeze", "1", controller=NAME)
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        events = parse_flat_keyed(read_knob(fs, d, "cgroup.events", controller=NAME))
        if events.get("frozen") == 1:
            return
        if time.monotonic() >= deadline:
            write_knob(fs, d, "cgroup.freeze", "0", controller=NAME)
            raise Unavailable(f"cgroup {d} did not freeze within {timeout:g}s")
        fs.sleep(delay)
        delay = min(delay * 2, 0.05)


def thaw(fs: CgroupFs, d: str) -> None:
    write_knob(fs, d, "cgroup.freeze", "0", controller=NAME)


def is_frozen(fs: CgroupFs, d: str) -> bool | None:
    """Whether *we* froze this cgroup (cgroup.freeze), once the kernel has finished doing it;
    None on kernels without the v2 freezer (< 5.2)."""
    want = read_optional(fs, d, "cgroup.freeze")
    if want is None:
        return None
    if want.strip() != "1":
        return False
    events = read_optional(fs, d, "cgroup.events")
    return events is None or parse_flat_keyed(events).get("frozen") == 1
