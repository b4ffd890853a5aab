"""v1 freezer controller: freezer.state FROZEN / THAWED."""

from __future__ import annotations

import time

from dockyard.cgroups.fs import CgroupFs, read_knob, read_optional, write_knob
from dockyard.errors import DockyardError, Unavailable

NAME = "freezer"


def freeze(fs: CgroupFs, d: str, *, timeout: float = 10.0) -> None:
    """Write FROZEN and wait until the state reads FROZEN. A v1 cgroup whose processes keep
    forking can stay FREEZING; like runc, re-write FROZEN, thaw and retry now and then, and
    thaw on failure rather than leave the container half frozen."""
    deadline = time.monotonic() + timeout
    i = 0
    try:
        while True:
            if i % 50 == 49:
                write_knob(fs, d, "freezer.state", "THAWED", controller=NAME)
                fs.sleep(0.01)
            write_knob(fs, d, "freezer.state", "FROZEN", controller=NAME)
            state = read_knob(fs, d, "freezer.state", controller=NAME).strip()
            if state == "FROZEN":
                return
            if time.monotonic() >= deadline:
                raise Unavailable(f"cgroup {d} did not freeze within {timeout:g}s "
                                  f"(freezer.state {state})")
            i += 1
            if i % 25 == 24:
                fs.sleep(0.001)
    except BaseException:
        try:
            write_knob(fs, d, "freezer.state", "THAWED", controller=NAME)
        except DockyardError:
            pass
        raise


def thaw(fs: CgroupFs, d: str) -> None:
    write_knob(fs, d, "freezer.state", "THAWED", controller=NAME)


def is_frozen(fs: CgroupFs, d: str, *, settle: float = 2.0) -> bool | None:
    """True/False, or None if there is no freezer here. A cgroup frozen only because an
    ancestor is counts as not frozen by us (freezer.self_freezing). FREEZING is waited out
    for at most ``settle`` seconds, then reported as frozen (freezing was asked for): a
    cgroup whose processes keep forking may never settle, and no caller may hang on it."""
    deadline = time.monotonic() + settle
    while True:
        state = read_optional(fs, d, "freezer.state")
        if state is None:
            return None
        state = state.strip()
        if state == "THAWED":
            return False
        if state == "FROZEN" or time.monotonic() >= deadline:
            own = read_optional(fs, d, "freezer.self_freezing")
            return True if own is None else own.strip() == "1"
        fs.sleep(0.001)   # FREEZING: settle
