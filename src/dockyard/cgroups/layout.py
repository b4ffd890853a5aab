"""Which cgroup hierarchies a host has: pure v2, legacy v1, or the v1/v2 hybrid.

Read from ``/proc/self/mountinfo`` (or given): every ``cgroup`` mount is a v1 hierarchy carrying
the controllers in its super options, the first ``cgroup2`` mount is the unified hierarchy. This
is :func:`dockyard.linux.cgroupfs.host_hierarchies` plus what the managers also need: the mount's
root inside its hierarchy (a cgroup mount in a container is often a subtree) and unescaped paths.
Anything with ``mountpoint``, ``fstype`` and ``options`` (such as ``linux.cgroupfs.Hierarchy``)
can describe a hierarchy; a missing ``root`` means "/".
"""

from __future__ import annotations

from dockyard.choices import Choice
from dockyard.values import field, value

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import ClassVar, Protocol
else:
    Protocol = object

# Super options of a v1 cgroup mount that are not controllers.
_NOT_CONTROLLERS = frozenset({
    "rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec", "xattr", "clone_children",
    "noprefix", "cpuset_v2_mode", "favordynmods", "nsdelegate", "memory_recursiveprot",
    "memory_localevents", "memory_hugetlb_accounting", "pids_localevents",
})


class HierarchyLike(Protocol):
    @property
    def mountpoint(self) -> str: ...
    @property
    def fstype(self) -> str: ...
    @property
    def options(self) -> str: ...


@value
class CgroupMount:
    mountpoint: str
    fstype: str              # "cgroup" (v1) or "cgroup2"
    options: str             # v1: the controllers (and name=...) it carries, comma-separated
    root: str = "/"          # the mount's root inside its hierarchy

    @property
    def controllers(self) -> tuple[str, ...]:
        return tuple(o for o in self.options.split(",") if o)


class CgroupMode(Choice):
    V1: ClassVar[CgroupMode]        # legacy: only v1 hierarchies
    HYBRID: ClassVar[CgroupMode]    # v1 controllers plus a (mostly empty) unified hierarchy
    V2: ClassVar[CgroupMode]        # unified: one cgroup2 hierarchy with every controller


CgroupMode.V1 = CgroupMode("V1", "v1")
CgroupMode.HYBRID = CgroupMode("HYBRID", "hybrid")
CgroupMode.V2 = CgroupMode("V2", "v2")


@value
class Layout:
    v1: Mapping[str, CgroupMount] = field(default_factory=dict)   # controller -> hierarchy
    unified: CgroupMount | None = None

    @property
    def mode(self) -> CgroupMode:
        if not self.v1:
            return CgroupMode.V2
        return CgroupMode.HYBRID if self.unified is not None else CgroupMode.V1


def _unescape(path: str) -> str:
    """Undo mountinfo's octal escapes (``\\040`` for a space), without importing re."""
    if "\\" not in path:
        return path
    out, i = [], 0
    while i < len(path):
        oct3 = path[i + 1:i + 4]
        if path[i] == "\\" and len(oct3) == 3 and all(c in "01234567" for c in oct3):
            out.append(chr(int(oct3, 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def cgroup_mounts(mountinfo: str | None = None) -> tuple[CgroupMount, ...]:
    """Every cgroup and cgroup2 mount in ``mountinfo`` (default: this process's)."""
    if mountinfo is None:
        with open("/proc/self/mountinfo") as f:
            mountinfo = f.read()
    text = mountinfo
    out: list[CgroupMount] = []
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        fields = pre.split()
        if not sep or len(fields) < 5:
            continue
        fstype, _source, superopts = [*post.split(), "", "", ""][:3]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        opts = ""
        if fstype == "cgroup":
            opts = ",".join(o for o in superopts.split(",") if o and o not in _NOT_CONTROLLERS
                            and not o.startswith("release_agent"))
        out.append(CgroupMount(mountpoint=_unescape(fields[4]), fstype=fstype, options=opts,
                               root=_unescape(fields[3])))
    return tuple(out)


def detect_layout(hierarchies: Iterable[HierarchyLike] | None = None) -> Layout:
    """The layout described by ``hierarchies`` (default: this process's mount table)."""
    mounts = cgroup_mounts() if hierarchies is None else tuple(hierarchies)
    v1: dict[str, CgroupMount] = {}
    unified: CgroupMount | None = None
    for h in mounts:
        m = h if isinstance(h, CgroupMount) else CgroupMount(
            mountpoint=h.mountpoint, fstype=h.fstype, options=h.options,
            root=str(getattr(h, "root", "/") or "/"))
        if m.fstype == "cgroup2":
            unified = unified or m
        elif m.fstype == "cgroup":
            for controller in m.controllers:
                v1.setdefault(controller, m)
    return Layout(v1=v1, unified=unified)
