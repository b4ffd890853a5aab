"""v1 devices controller: devices.deny / devices.allow."""

from __future__ import annotations

from dockyard.cgroups import devices as rules_mod
from dockyard.cgroups.fs import CgroupFs, write_knob
from dockyard.model.resources import DeviceRule

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from collections.abc import Sequence

NAME = "devices"


def set_limits(fs: CgroupFs, d: str, rules: Sequence[DeviceRule]) -> None:
    """Reset to the list's default ("a" to devices.deny or devices.allow), then each rule.
    Between the reset and the last rule the container briefly has the default's access only
    (deny-all for the usual lists), never more than the list gives."""
    for name, line in rules_mod.v1_writes(rules):
        write_knob(fs, d, name, line, controller=NAME)
