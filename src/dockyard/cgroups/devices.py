"""What an OCI device rule list means, shared by the v1 (devices.allow/deny) and v2 (eBPF)
backends.

The list is read the way the v1 devices controller reads writes to devices.allow/deny:

* a rule of type ``a`` resets everything: ``deny a`` means "deny by default, forget earlier
  rules", ``allow a`` "allow by default, forget earlier rules" (the kernel ignores the numbers
  and access of an ``a`` rule), so only the rules after the last ``a`` rule matter;
* with no ``a`` rule the default is "allow" (a new cgroup inherits its parent's allow-all);
* after that, for each access bit (r, w, m) the *last* rule that matches the device and carries
  the bit decides it; a request (e.g. open O_RDWR = r|w) is allowed only if every bit is.

v2 enforces exactly this (:func:`allows` is the reference the eBPF program is tested against).
One corner differs from v1 on purpose: v1 cannot take a bit away from a wildcard exception with
a narrower deny (``allow c *:* m`` then ``deny c 1:3 m`` still lets mknod c 1:3 through on v1);
the eBPF program denies it, which is the evident intent.
"""

from __future__ import annotations

from dockyard.model.resources import DeviceRule
from dockyard.values import value

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from collections.abc import Sequence

ACCESS_BITS = {"m": 1, "r": 2, "w": 4}   # BPF_DEVCG_ACC_MKNOD/READ/WRITE
TYPE_CODES = {"b": 1, "c": 2}            # BPF_DEVCG_DEV_BLOCK/CHAR


def access_mask(access: str) -> int:
    mask = 0
    for ch in access:
        mask |= ACCESS_BITS[ch]
    return mask


@value
class DevicePolicy:
    default_allow: bool
    rules: tuple[DeviceRule, ...]        # no "a" rules; in the order given


def normalize(rules: Sequence[DeviceRule]) -> DevicePolicy:
    default_allow = True
    start = 0
    for i, rule in enumerate(rules):
        if rule.type == "a":
            default_allow = rule.allow
            start = i + 1
    return DevicePolicy(default_allow=default_allow, rules=tuple(rules[start:]))


def v1_writes(rules: Sequence[DeviceRule]) -> list[tuple[str, str]]:
    """(file, line) pairs that put a v1 devices cgroup into the state ``rules`` describe: the
    reset first (``a`` to devices.deny or devices.allow), then each remaining rule in order."""
    policy = normalize(rules)
    out = [("devices.allow" if policy.default_allow else "devices.deny", "a")]
    for rule in policy.rules:
        out.append(("devices.allow" if rule.allow else "devices.deny", rule.v1_string()))
    return out


def _matches(rule: DeviceRule, dev_type: str, major: int, minor: int) -> bool:
    return (rule.type == dev_type
            and (rule.major is None or rule.major == major)
            and (rule.minor is None or rule.minor == minor))


def allows(rules: Sequence[DeviceRule], dev_type: str, major: int, minor: int,
           access: str) -> bool:
    """The reference decision for one request (see the module docstring)."""
    policy = normalize(rules)
    pending = access_mask(access)
    for rule in reversed(policy.rules):
        if not _matches(rule, dev_type, major, minor):
            continue
        bits = pending & access_mask(rule.access)
        if not bits:
            continue
        if not rule.allow:
            return False
        pending &= ~bits
        if not pending:
            return True
    return policy.default_allow


# What runc appends to every container's device rules (libcontainer/specconv AllowedDevices):
# mknod of anything, and the standard /dev nodes. The runtime adds these (and the devices of
# linux.devices) after the spec's rules; the managers apply exactly the list they are given.
RUNC_DEFAULT_ALLOWED: tuple[DeviceRule, ...] = (
    DeviceRule(True, "c", None, None, "m"),
    DeviceRule(True, "b", None, None, "m"),
    DeviceRule(True, "c", 1, 3, "rwm"),       # /dev/null
    DeviceRule(True, "c", 1, 8, "rwm"),       # /dev/random
    DeviceRule(True, "c", 1, 7, "rwm"),       # /dev/full
    DeviceRule(True, "c", 5, 0, "rwm"),       # /dev/tty
    DeviceRule(True, "c", 1, 5, "rwm"),       # /dev/zero
    DeviceRule(True, "c", 1, 9, "rwm"),       # /dev/urandom
    DeviceRule(True, "c", 136, None, "rwm"),  # /dev/pts/*
    DeviceRule(True, "c", 5, 2, "rwm"),       # /dev/ptmx
    DeviceRule(True, "c", 10, 200, "rwm"),    # /dev/net/tun
)
