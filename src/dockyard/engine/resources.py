"""The limits ``update`` changes, kept in the container's bundle.

A running container's cgroup is changed by the runtime's ``update``; its bundle's config.json
must say the same, or the next start (a restart, a restart policy, ``start`` after ``stop``)
would bring back the limits it was created with. A stopped container only has its bundle
changed, as in docker, and gets the new limits when it starts.
"""

from __future__ import annotations

import copy
import json
import os
import re
from typing import Any

from dockyard.atomicfile import replace_file
from dockyard.errors import InvalidArgument
from dockyard.values import value

CPU_PERIOD = 100_000        # the CFS period --cpus is expressed in (docker's)


@value
class Limits:
    """What an update sets; zero, "" or None leaves a limit as it is."""

    memory: int = 0
    memory_swap: int = 0         # -1: unlimited swap
    nano_cpus: int = 0
    cpu_shares: int = 0
    cpuset_cpus: str = ""
    pids_limit: int | None = None    # -1: unlimited


MIN_MEMORY = 6 * 1024 * 1024     # docker's minimum memory limit
_CPUSET = re.compile(r"[0-9]+(?:-[0-9]+)?(?:,[0-9]+(?:-[0-9]+)?)*")


def check(limits: Limits, *, cpus: int | None = None) -> None:
    """docker's checks of an update, before anything is changed (a stopped container's bundle
    must not get limits its next start would fail on)."""
    if 0 < limits.memory < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if limits.memory < 0 or limits.nano_cpus < 0 or limits.cpu_shares < 0 or \
            limits.memory_swap < -1:
        raise InvalidArgument("memory, swap, CPUs and CPU shares cannot be negative")
    if limits.memory and limits.memory_swap > 0 and limits.memory_swap < limits.memory:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, "
                              "see usage")
    if limits.cpuset_cpus:
        ok = _CPUSET.fullmatch(limits.cpuset_cpus) is not None and all(
            int(lo) <= int(hi) for lo, _, hi in
            (part.partition("-") if "-" in part else (part, "", part)
             for part in limits.cpuset_cpus.split(",")))
        if not ok:
            raise InvalidArgument(f"Invalid value {limits.cpuset_cpus} for cpuset cpus: "
                                  f"invalid format: {limits.cpuset_cpus}")
    available = cpus if cpus is not None else (os.cpu_count() or 1)
    if limits.nano_cpus and not 10_000_000 <= limits.nano_cpus <= available * 1_000_000_000:
        raise InvalidArgument(f"Range of CPUs is from 0.01 to {available}.00, as there are "
                              f"only {available} CPUs available")


def patch_spec(spec: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """``spec`` (an OCI runtime spec) with ``limits`` in ``linux.resources``."""
    out = copy.deepcopy(spec)
    res = out.setdefault("linux", {}).setdefault("resources", {})
    if limits.memory or limits.memory_swap:
        memory = res.setdefault("memory", {})
        if limits.memory:
            memory["limit"] = limits.memory
        if limits.memory_swap:
            memory["swap"] = limits.memory_swap
    if limits.nano_cpus or limits.cpu_shares or limits.cpuset_cpus:
        cpu = res.setdefault("cpu", {})
        if limits.nano_cpus:
            cpu["period"] = CPU_PERIOD
            cpu["quota"] = limits.nano_cpus * CPU_PERIOD // 1_000_000_000
        if limits.cpu_shares:
            cpu["shares"] = limits.cpu_shares
        if limits.cpuset_cpus:
            cpu["cpus"] = limits.cpuset_cpus
    if limits.pids_limit is not None:
        if limits.pids_limit > 0:
            res["pids"] = {"limit": limits.pids_limit}
        else:
            res.pop("pids", None)
    return out


def update_bundle(bundle: str, limits: Limits) -> None:
    """Write ``limits`` into ``<bundle>/config.json`` (tmp + fsync + rename: a start that
    reads it meanwhile sees the old spec or the new one, never half of one)."""
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        spec = json.load(f)
        mode = os.fstat(f.fileno()).st_mode & 0o7777
    data = json.dumps(patch_spec(spec, limits)).encode()
    replace_file(path, lambda f: f.write(data), mode=mode)


__all__ = ["Limits", "check", "patch_spec", "update_bundle"]
