"""The spec's cgroup v1 values turned into cgroup v2 ones, as runc and crun do it."""

from __future__ import annotations

from dockyard.errors import InvalidArgument

CPU_SHARES_MIN, CPU_SHARES_MAX = 2, 262144
CPU_WEIGHT_MIN, CPU_WEIGHT_MAX = 1, 10000


def cpu_shares_to_weight(shares: int) -> int:
    """cpu.shares [2, 262144] -> cpu.weight [1, 10000], linearly:
    ``1 + ((shares - 2) * 9999) / 262142`` (crun's and runc's classic formula; 1024 -> 39).

    Note: runc (opencontainers/cgroups >= 0.0.5) and crun >= 1.23 moved to a quadratic fit
    that maps the default 1024 to the default weight 100; this keeps the linear formula.
    """
    if shares <= CPU_SHARES_MIN:
        return CPU_WEIGHT_MIN
    if shares >= CPU_SHARES_MAX:
        return CPU_WEIGHT_MAX
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_weight_to_io_weight(weight: int) -> int:
    """blkio.weight [10, 1000] -> io.weight [1, 10000]: ``1 + (weight - 10) * 9999 / 990``
    (runc's ConvertBlkIOToIOWeightValue)."""
    return max(1, 1 + (weight - 10) * 9999 // 990)


def limit_to_v2(value: int) -> str:
    """A v2 ``*.max`` value: -1 (the spec's "unlimited") is "max"."""
    return "max" if value < 0 else str(value)


def memory_swap_to_v2(swap: int | None, limit: int | None) -> int | None:
    """The spec's memory+swap limit as memory.swap.max (swap alone), runc's rules:

    * no swap given but memory unlimited (-1): swap unlimited too (-1);
    * swap -1 stays -1 ("max"); swap not given stays not given (None);
    * memory unlimited: swap is taken as is;
    * otherwise ``swap - limit``, which must not be negative.
    """
    if swap is None or swap == 0:
        return -1 if limit == -1 else None
    if swap == -1 or limit == -1:
        return swap
    if limit is None or limit == 0:
        raise InvalidArgument("linux.resources.memory.swap cannot be set on cgroup v2 without "
                              "linux.resources.memory.limit (swap is memory+swap)")
    if swap < limit:
        raise InvalidArgument(f"linux.resources.memory.swap ({swap}) is memory+swap and must "
                              f"not be below memory.limit ({limit})")
    return swap - limit


def pids_limit_value(limit: int) -> str:
    """pids.max for the spec's limit: > 0 as is, < 0 "max", 0 becomes 1 (runc: systemd cannot
    express 0 and both drivers must agree)."""
    if limit > 0:
        return str(limit)
    return "1" if limit == 0 else "max"
