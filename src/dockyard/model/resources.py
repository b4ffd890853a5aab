"""``linux.resources`` of the OCI runtime spec as frozen dataclasses.

:func:`parse_resources` turns the decoded JSON object into :class:`Resources`, checking every
field's type and range and naming the field in the error. ``None`` (and an empty tuple) always
means "not given": :meth:`CgroupManager.set` writes only what is given, which is exactly what
``runc update`` needs. Values keep the spec's (cgroup v1) meaning; the v2 backend converts them
(``convert.py``).

Accepted but not applied, with a logged note: ``memory.kernel``/``kernelTCP`` (removed from the
kernel), ``memory.useHierarchy`` (always on in current kernels), ``rdma`` (no rdma controller is
managed here).
"""

from __future__ import annotations

from dockyard.charset import is_cpu_list, is_page_size, is_unified_key
from dockyard.errors import InvalidArgument
from dockyard.values import value

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

_INT64 = (-(2**63), 2**63 - 1)
_UINT64 = (0, 2**64 - 1)
_UINT32 = (0, 2**32 - 1)
_UINT16 = (0, 2**16 - 1)


@value
class MemoryResources:
    limit: int | None = None            # bytes; -1 = unlimited
    reservation: int | None = None      # soft limit (v1) / memory.low (v2)
    swap: int | None = None             # memory+swap (v1 semantics); -1 = unlimited
    kernel: int | None = None           # ignored: removed from the kernel
    kernel_tcp: int | None = None       # ignored
    swappiness: int | None = None       # 0..100 (v1 only)
    disable_oom_killer: bool | None = None   # v1 only
    use_hierarchy: bool | None = None   # ignored: always hierarchical
    check_before_update: bool | None = None  # refuse a limit at or below current usage


@value
class CpuResources:
    shares: int | None = None
    quota: int | None = None            # microseconds per period; -1 = unlimited
    burst: int | None = None
    period: int | None = None
    realtime_runtime: int | None = None
    realtime_period: int | None = None
    cpus: str | None = None             # cpuset list, "0-3,6"
    mems: str | None = None
    idle: int | None = None             # 0 or 1


@value
class PidsResources:
    limit: int | None = None            # > 0: that many; 0: one (as runc); < 0: unlimited


@value
class WeightDevice:
    major: int
    minor: int
    weight: int | None = None
    leaf_weight: int | None = None


@value
class ThrottleDevice:
    major: int
    minor: int
    rate: int


@value
class BlockIOResources:
    weight: int | None = None           # 10..1000
    leaf_weight: int | None = None
    weight_device: tuple[WeightDevice, ...] = ()
    throttle_read_bps_device: tuple[ThrottleDevice, ...] = ()
    throttle_write_bps_device: tuple[ThrottleDevice, ...] = ()
    throttle_read_iops_device: tuple[ThrottleDevice, ...] = ()
    throttle_write_iops_device: tuple[ThrottleDevice, ...] = ()


@value
class HugepageLimit:
    page_size: str                      # "2MB", "1GB"
    limit: int                          # bytes


@value
class DeviceRule:
    allow: bool
    type: str = "a"                     # "a" (all), "b" (block), "c" (char)
    major: int | None = None            # None = any
    minor: int | None = None
    access: str = "rwm"

    def v1_string(self) -> str:
        """The line for devices.allow / devices.deny: ``c 1:3 rwm``, ``a *:* rwm``."""
        major = "*" if self.major is None else str(self.major)
        minor = "*" if self.minor is None else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"


@value
class NetworkResources:
    class_id: int | None = None
    priorities: tuple[tuple[str, int], ...] = ()


@value
class RdmaLimit:
    hca_handles: int | None = None
    hca_objects: int | None = None


@value
class Resources:
    memory: MemoryResources | None = None
    cpu: CpuResources | None = None
    pids: PidsResources | None = None
    block_io: BlockIOResources | None = None
    hugepage_limits: tuple[HugepageLimit, ...] = ()
    devices: tuple[DeviceRule, ...] = ()
    network: NetworkResources | None = None
    rdma: tuple[tuple[str, RdmaLimit], ...] = ()
    unified: tuple[tuple[str, str], ...] = ()


# --- parsing ---------------------------------------------------------------------------------

class _Obj:
    """Typed access to one JSON object; errors name the field by its path."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, dict):
            raise InvalidArgument(f"{path} must be an object")
        self.data: Mapping[str, Any] = data
        self.path = path

    def where(self, key: str) -> str:
        return f"{self.path}.{key}"

    def num(self, key: str, bounds: tuple[int, int], kind: str) -> int | None:
        v = self.data.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise InvalidArgument(f"{self.where(key)} must be an integer ({kind}), got {v!r}")
        lo, hi = bounds
        if not lo <= v <= hi:
            raise InvalidArgument(f"{self.where(key)} is out of range for {kind}: {v}")
        return v

    def req_num(self, key: str, bounds: tuple[int, int], kind: str) -> int:
        v = self.num(key, bounds, kind)
        if v is None:
            raise InvalidArgument(f"{self.where(key)} is required")
        return v

    def flag(self, key: str) -> bool | None:
        v = self.data.get(key)
        if v is not None and not isinstance(v, bool):
            raise InvalidArgument(f"{self.where(key)} must be true or false, got {v!r}")
        return v

    def text(self, key: str) -> str | None:
        v = self.data.get(key)
        if v is not None and not isinstance(v, str):
            raise InvalidArgument(f"{self.where(key)} must be a string, got {v!r}")
        return v

    def obj(self, key: str) -> _Obj | None:
        v = self.data.get(key)
        return None if v is None else _Obj(v, self.where(key))

    def objs(self, key: str) -> list[_Obj]:
        v = self.data.get(key)
        if v is None:
            return []
        if not isinstance(v, list):
            raise InvalidArgument(f"{self.where(key)} must be an array")
        return [_Obj(o, f"{self.where(key)}[{i}]") for i, o in enumerate(v)]


def _limit(o: _Obj, key: str) -> int | None:
    """A byte limit: int64, where -1 means unlimited and other negatives mean nothing."""
    v = o.num(key, _INT64, "int64")
    if v is not None and v < -1:
        raise InvalidArgument(f"{o.where(key)} must be -1 (unlimited) or >= 0, got {v}")
    return v


def _memory(o: _Obj) -> MemoryResources:
    swappiness = o.num("swappiness", (-1, _UINT64[1]), "uint64")
    if swappiness in (-1, 2**64 - 1):   # runc: -1 (as int64) means "leave it"
        swappiness = None
    if swappiness is not None and swappiness > 100:
        raise InvalidArgument(f"{o.where('swappiness')} must be between 0 and 100, "
                              f"got {swappiness}")
    limit, swap = _limit(o, "limit"), _limit(o, "swap")
    if limit is not None and swap is not None and limit > 0 and 0 < swap < limit:
        raise InvalidArgument(f"{o.where('swap')} ({swap}) is memory+swap and must not be below "
                              f"{o.where('limit')} ({limit})")
    return MemoryResources(
        limit=limit, reservation=_limit(o, "reservation"), swap=swap,
        kernel=o.num("kernel", _INT64, "int64"), kernel_tcp=o.num("kernelTCP", _INT64, "int64"),
        swappiness=swappiness, disable_oom_killer=o.flag("disableOOMKiller"),
        use_hierarchy=o.flag("useHierarchy"), check_before_update=o.flag("checkBeforeUpdate"))


def _cpu_list(o: _Obj, key: str) -> str | None:
    v = o.text(key)
    if v is not None and v.strip() and not is_cpu_list(v):
        raise InvalidArgument(f"{o.where(key)} must be a list like \"0-3,6\", got {v!r}")
    return v.strip() if v is not None and v.strip() else None


def _cpu(o: _Obj) -> CpuResources:
    quota = o.num("quota", _INT64, "int64")
    if quota is not None and quota < -1:
        raise InvalidArgument(f"{o.where('quota')} must be -1 (unlimited) or >= 0, got {quota}")
    idle = o.num("idle", _INT64, "int64")
    if idle not in (None, 0, 1):
        raise InvalidArgument(f"{o.where('idle')} must be 0 or 1, got {idle}")
    return CpuResources(
        shares=o.num("shares", _UINT64, "uint64"), quota=quota,
        burst=o.num("burst", _UINT64, "uint64"), period=o.num("period", _UINT64, "uint64"),
        realtime_runtime=o.num("realtimeRuntime", _INT64, "int64"),
        realtime_period=o.num("realtimePeriod", _UINT64, "uint64"),
        cpus=_cpu_list(o, "cpus"), mems=_cpu_list(o, "mems"), idle=idle)


def _device_number(o: _Obj, key: str) -> int | None:
    v = o.num(key, _INT64, "int64")
    if v is not None and v < -1:
        raise InvalidArgument(f"{o.where(key)} must be >= 0 (or -1 for any), got {v}")
    if v is not None and v > _UINT32[1]:
        raise InvalidArgument(f"{o.where(key)} is too large for a device number: {v}")
    return None if v in (None, -1) else v


def _device_rule(o: _Obj) -> DeviceRule:
    allow = o.flag("allow")
    if allow is None:
        raise InvalidArgument(f"{o.where('allow')} is required")
    dtype = o.text("type") or "a"
    if dtype not in ("a", "b", "c"):
        raise InvalidArgument(f"{o.where('type')} must be \"a\", \"b\" or \"c\", got {dtype!r}")
    access = o.text("access")
    if access is None:
        access = "rwm"
    if not access or set(access) - set("rwm"):
        raise InvalidArgument(f"{o.where('access')} must be a combination of r, w and m, "
                              f"got {access!r}")
    access = "".join(c for c in "rwm" if c in access)
    return DeviceRule(allow=allow, type=dtype, major=_device_number(o, "major"),
                      minor=_device_number(o, "minor"), access=access)


def _block_dev(o: _Obj) -> tuple[int, int]:
    major = o.req_num("major", (0, _UINT32[1]), "device major")
    minor = o.req_num("minor", (0, _UINT32[1]), "device minor")
    return major, minor


def _weight(o: _Obj, key: str) -> int | None:
    v = o.num(key, _UINT16, "uint16")
    if v is not None and v != 0 and not 10 <= v <= 1000:
        raise InvalidArgument(f"{o.where(key)} must be between 10 and 1000, got {v}")
    return v or None


def _throttle(o: _Obj, key: str) -> tuple[ThrottleDevice, ...]:
    out = []
    for d in o.objs(key):
        major, minor = _block_dev(d)
        out.append(ThrottleDevice(major=major, minor=minor,
                                  rate=d.num("rate", _UINT64, "uint64") or 0))
    return tuple(out)


def _block_io(o: _Obj) -> BlockIOResources:
    wdevs = []
    for d in o.objs("weightDevice"):
        major, minor = _block_dev(d)
        wdevs.append(WeightDevice(major=major, minor=minor, weight=_weight(d, "weight"),
                                  leaf_weight=_weight(d, "leafWeight")))
    return BlockIOResources(
        weight=_weight(o, "weight"), leaf_weight=_weight(o, "leafWeight"),
        weight_device=tuple(wdevs),
        throttle_read_bps_device=_throttle(o, "throttleReadBpsDevice"),
        throttle_write_bps_device=_throttle(o, "throttleWriteBpsDevice"),
        throttle_read_iops_device=_throttle(o, "throttleReadIOPSDevice"),
        throttle_write_iops_device=_throttle(o, "throttleWriteIOPSDevice"))


def _hugepages(o: _Obj) -> tuple[HugepageLimit, ...]:
    out = []
    for h in o.objs("hugepageLimits"):
        size = h.text("pageSize")
        if size is None:
            raise InvalidArgument(f"{h.where('pageSize')} is required")
        if not is_page_size(size):
            raise InvalidArgument(f"{h.where('pageSize')} must look like \"2MB\" or \"1GB\", "
                                  f"got {size!r}")
        out.append(HugepageLimit(page_size=size, limit=h.req_num("limit", _UINT64, "uint64")))
    return tuple(out)


def _network(o: _Obj) -> NetworkResources:
    prios = []
    for p in o.objs("priorities"):
        name = p.text("name")
        if not name:
            raise InvalidArgument(f"{p.where('name')} is required")
        prios.append((name, p.req_num("priority", _UINT32, "uint32")))
    return NetworkResources(class_id=o.num("classID", _UINT32, "uint32"), priorities=tuple(prios))


def _rdma(o: _Obj) -> tuple[tuple[str, RdmaLimit], ...]:
    out = []
    for name in sorted(o.data):
        r = _Obj(o.data[name], o.where(name))
        out.append((name, RdmaLimit(hca_handles=r.num("hcaHandles", _UINT32, "uint32"),
                                    hca_objects=r.num("hcaObjects", _UINT32, "uint32"))))
    return tuple(out)


def _unified(o: _Obj) -> tuple[tuple[str, str], ...]:
    out = []
    for key in sorted(o.data):
        value = o.data[key]
        if not isinstance(value, str):
            raise InvalidArgument(f"{o.where(key)} must be a string, got {value!r}")
        if not is_unified_key(key):
            raise InvalidArgument(f"{o.path}: key {key!r} must name a cgroup v2 file "
                                  f"(CONTROLLER.PARAMETER, no slashes)")
        out.append((key, value))
    return tuple(out)


def parse_resources(data: object, *, where: str = "linux.resources") -> Resources:
    """Parse a decoded ``linux.resources`` object (or ``runc update -r``'s file); raise
    :class:`~dockyard.errors.InvalidArgument` naming the offending field."""
    if data is None:
        return Resources()
    r = _Obj(data, where)
    mem = r.obj("memory")
    cpu = r.obj("cpu")
    pids = r.obj("pids")
    bio = r.obj("blockIO")
    net = r.obj("network")
    rdma = r.obj("rdma")
    unified = r.obj("unified")
    return Resources(
        memory=None if mem is None else _memory(mem),
        cpu=None if cpu is None else _cpu(cpu),
        pids=None if pids is None else PidsResources(limit=pids.num("limit", _INT64, "int64")),
        block_io=None if bio is None else _block_io(bio),
        hugepage_limits=_hugepages(r),
        devices=tuple(_device_rule(d) for d in r.objs("devices")),
        network=None if net is None else _network(net),
        rdma=() if rdma is None else _rdma(rdma),
        unified=() if unified is None else _unified(unified),
    )
