"""Linux capability names and the sets a container process ends up with."""

from __future__ import annotations

from dockyard.errors import InvalidArgument
from dockyard.linux import libc as k
from dockyard.model.oci import Capabilities
from dockyard.values import value

CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
    "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON",
    "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
_NUMBER = {name: i for i, name in enumerate(CAPS)}


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(CAPS) - 1


def number(name: str) -> int:
    n = name.upper()
    if not n.startswith("CAP_"):
        n = "CAP_" + n
    try:
        return _NUMBER[n]
    except KeyError:
        raise InvalidArgument(f"unknown capability {name!r}") from None


def mask(names: tuple[str, ...]) -> int:
    m = 0
    for name in names:
        m |= 1 << number(name)
    return m


@value
class CapSets:
    bounding: int
    effective: int
    permitted: int
    inheritable: int
    ambient: int


def resolve(caps: Capabilities | None) -> CapSets | None:
    """Masks, validated before fork; None means "leave the capabilities alone"."""
    if caps is None:
        return None
    return CapSets(mask(caps.bounding), mask(caps.effective), mask(caps.permitted),
                   mask(caps.inheritable), mask(caps.ambient))


def drop_bounding(sets: CapSets) -> None:
    """Before the uid switch: drop every capability not in the bounding set."""
    for cap in range(last_cap() + 1):
        if not sets.bounding & (1 << cap):
            k.prctl(k.PR_CAPBSET_DROP, cap)


def apply_sets(sets: CapSets) -> None:
    """After the uid switch (keepcaps on): set E/P/I, then raise the ambient ones."""
    k.capset(sets.effective, sets.permitted, sets.inheritable)
    k.prctl(k.PR_CAP_AMBIENT, k.PR_CAP_AMBIENT_CLEAR_ALL)
    # The kernel only lets a capability be ambient when it is permitted and inheritable; like
    # runc, ask only for those (a spec listing others gets what the kernel allows).
    raisable = sets.ambient & sets.permitted & sets.inheritable
    for cap in range(last_cap() + 1):
        if raisable & (1 << cap):
            k.prctl(k.PR_CAP_AMBIENT, k.PR_CAP_AMBIENT_RAISE, cap)
