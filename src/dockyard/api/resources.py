"""``POST /containers/{id}/update``: docker's ``UpdateConfig`` body (its ``Resources`` and a
``RestartPolicy``) -> the engine's update of a running container's limits.

Clients send the whole struct with zeros and nulls for what they leave alone; a field that is
set and that the engine cannot change is refused (400), never ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dockyard.errors import InvalidArgument

if TYPE_CHECKING:
    from dockyard.api.handlers import App
    from dockyard.api.http import Handler, Request

# what the engine's update changes: body key -> the engine's keyword
_SUPPORTED = {"Memory": "memory", "MemorySwap": "memory_swap", "NanoCpus": "nano_cpus",
              "CpuShares": "cpu_shares"}
# Resources fields docker has that the engine's update does not change
_UNSUPPORTED = ("CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime",
                "CpusetMems", "BlkioWeight", "BlkioWeightDevice", "BlkioDeviceReadBps",
                "BlkioDeviceWriteBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps",
                "MemoryReservation", "KernelMemory", "KernelMemoryTCP", "MemorySwappiness",
                "OomKillDisable", "Devices", "DeviceCgroupRules", "DeviceRequests", "Ulimits",
                "CpuCount", "CpuPercent", "IOMaximumIOps", "IOMaximumBandwidth",
                "CgroupParent")


def _int(body: dict[str, Any], key: str) -> int:
    v = body.get(key)
    if v is None:
        return 0
    if not isinstance(v, int) or isinstance(v, bool):
        raise InvalidArgument(f"{key}: expected an integer")
    return v


def _is_set(v: Any) -> bool:
    return v not in (None, 0, "", [], {}, False)


def update_args(body: dict[str, Any]) -> dict[str, Any]:
    """The engine's ``update`` keywords for docker's body."""
    for key in _UNSUPPORTED:
        if _is_set(body.get(key)):
            raise InvalidArgument(f"{key} cannot be updated by Dockyard (it updates Memory, "
                                  "MemorySwap, NanoCpus, CpuShares, CpusetCpus and "
                                  "PidsLimit)")
    policy = body.get("RestartPolicy") or {}
    if not isinstance(policy, dict):
        raise InvalidArgument("RestartPolicy: expected an object")
    if policy.get("Name"):
        raise InvalidArgument("the restart policy cannot be updated by Dockyard yet")
    args: dict[str, Any] = {kw: _int(body, key) for key, kw in _SUPPORTED.items()}
    cpuset = body.get("CpusetCpus") or ""
    if not isinstance(cpuset, str):
        raise InvalidArgument("CpusetCpus: expected a string")
    args["cpuset_cpus"] = cpuset
    pids = body.get("PidsLimit")
    if pids is not None:
        if not isinstance(pids, int) or isinstance(pids, bool):
            raise InvalidArgument("PidsLimit: expected an integer")
        pids = -1 if pids <= 0 else pids       # docker: 0 and -1 both mean unlimited
    args["pids_limit"] = pids
    return args


def container_update(app: App, h: Handler, req: Request, id: str) -> None:
    """The values are checked by the engine (the CLI's update makes the same checks)."""
    args = update_args(req.json())
    with app.services() as svc:
        svc.update(id, **args)
    h.reply_json(200, {"Warnings": None})     # dockerd's when it has none
