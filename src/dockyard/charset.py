"""The few string shapes the runtime validates, checked without ``re`` (whose import pulls in
enum: ~5 ms on every start of the runtime). ASCII only, as the patterns they replace were meant."""

from __future__ import annotations

DIGITS = frozenset("0123456789")
LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
ALNUM = LOWER | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ") | DIGITS


def is_uint(s: str) -> bool:
    """One or more ASCII digits."""
    return bool(s) and all(c in DIGITS for c in s)


def is_cpu_list(s: str) -> bool:
    """A cpuset list such as ``0-3,6`` (blanks allowed around items and commas)."""
    for item in s.split(","):
        first, dash, last = item.strip().partition("-")
        if not is_uint(first) or (dash and not is_uint(last)):
            return False
    return True


def is_page_size(s: str) -> bool:
    """A hugepage size such as ``2MB`` or ``1GB``: no leading zero, unit K, M or G then B."""
    return (len(s) >= 3 and s[-1] == "B" and s[-2] in "KMG" and s[0] != "0"
            and is_uint(s[:-2]))


def is_unified_key(s: str) -> bool:
    """A cgroup v2 file name, CONTROLLER.PARAMETER: ``memory.high``, ``io.bfq.weight``."""
    head, dot, tail = s.partition(".")
    return (bool(dot) and bool(head) and head[0] in LOWER
            and all(c in LOWER or c in DIGITS or c == "_" for c in head)
            and bool(tail) and all(c in ALNUM or c in "_.-" for c in tail))


def is_systemd_cgroup_path(s: str) -> bool:
    """systemd's ``slice:prefix:name`` form of linux.cgroupsPath (no slashes, a name)."""
    parts = s.split(":")
    return len(parts) == 3 and "/" not in s and bool(parts[2])
