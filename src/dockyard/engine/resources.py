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
from typing import Any

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
    tmp = path + ".update.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(patch_spec(spec, limits), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


__all__ = ["Limits", "patch_spec", "update_bundle"]
