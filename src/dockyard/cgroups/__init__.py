"""Cgroup managers for the OCI runtime: v1 and v2 backends behind one protocol.

Use::

    mgr = manager_for(spec.linux.cgroups_path, container_id)   # picks v1/hybrid or v2
    mgr.apply(init_pid, resources)     # create the cgroup(s), move the process in
    mgr.set(resources)                 # linux.resources (and later: runc update)
    mgr.freeze(); mgr.thaw(); mgr.state()
    mgr.pids(); mgr.stats().to_runc(); mgr.kill_all(signal.SIGTERM)
    mgr.destroy(kill=True)

Save ``mgr.paths`` with the container's state and rebuild the manager in a later command with
:func:`manager_from_paths`: a relative cgroupsPath depends on the cgroup of the process that
resolved it. Every function takes the hierarchies (default: this process's mount table) and a
:class:`~dockyard.cgroups.fs.CgroupFs` (default: the kernel), so tests can point it at a fake.

The host's layout decides the backend: pure v2 -> :class:`~dockyard.cgroups.v2.V2Manager`;
v1 or the v1/v2 hybrid -> :class:`~dockyard.cgroups.v1.V1Manager`, which drives the
controllers mounted as v1 and, on a hybrid host, those only the unified tree has (hugetlb).
"""

from __future__ import annotations

import posixpath

from dockyard.cgroups.fs import KERNEL, CgroupFs
from dockyard.cgroups.layout import CgroupMode, HierarchyLike, Layout, detect_layout
from dockyard.cgroups.paths import inner_path, own_cgroups, v1_dir, v2_dir
from dockyard.choices import Choice
from dockyard.errors import InvalidArgument, Unavailable
from dockyard.model.resources import Resources, parse_resources

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    import signal
    from collections.abc import Iterable, Mapping
    from typing import ClassVar, Protocol
else:
    import _signal as signal  # not signal.py: it imports enum (~5 ms)

    Protocol = object

if TYPE_CHECKING:
    from dockyard.cgroups.stats import Stats


class FreezerState(Choice):
    THAWED: ClassVar[FreezerState]
    FROZEN: ClassVar[FreezerState]
    UNDEFINED: ClassVar[FreezerState]    # no freezer here


FreezerState.THAWED = FreezerState("THAWED", "thawed")
FreezerState.FROZEN = FreezerState("FROZEN", "frozen")
FreezerState.UNDEFINED = FreezerState("UNDEFINED", "undefined")


class CgroupManager(Protocol):
    """One container's cgroup(s)."""

    version: int                    # 1 (v1 or hybrid) or 2

    @property
    def path(self) -> str:
        """The directory that lists the container's processes."""

    @property
    def paths(self) -> Mapping[str, str]:
        """Every directory: controller -> dir ("" = the unified hierarchy). Persist this."""

    def exists(self) -> bool: ...

    def apply(self, pid: int | None, resources: Resources | None = None) -> None:
        """Create the cgroup(s) and move ``pid`` in (``None``: create only). ``resources`` is
        only consulted for what must be in place before a process can join (v1 cpuset cpus
        and mems, real-time budget); call :meth:`set` for the limits."""

    def add_pid(self, pid: int) -> None:
        """Move a process into the existing cgroup(s) (``runc exec``)."""

    @property
    def clone_dir(self) -> str | None:
        """A cgroup v2 directory a child can be cloned into (CLONE_INTO_CGROUP), if any."""

    def create_clone_dir(self) -> None:
        """Create :attr:`clone_dir` alone (if there is one), so a child can be cloned into it
        while :meth:`apply` makes the rest."""

    def add_self(self, *, cloned: bool = False) -> None:
        """Move the calling single-threaded process in, the cheap way; ``cloned``: it was
        born in :attr:`clone_dir` already."""

    def set(self, resources: Resources) -> None:
        """Apply what ``resources`` gives; what it leaves out is left as it is."""

    def freeze(self, timeout: float = 10.0) -> None:
        """Freeze every process and return once the kernel says the cgroup is frozen."""

    def thaw(self) -> None: ...

    def state(self) -> FreezerState: ...

    def pids(self) -> list[int]:
        """Every process in the cgroup tree."""

    def stats(self) -> Stats: ...

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        """Signal every process in the cgroup tree without a fork slipping through."""

    def destroy(self, *, kill: bool = False, timeout: float = 5.0) -> None:
        """Remove the cgroup(s), children first; with ``kill``, SIGKILL what is left first."""


def _layout(hierarchies: Iterable[HierarchyLike] | Layout | None) -> Layout:
    layout = hierarchies if isinstance(hierarchies, Layout) else detect_layout(hierarchies)
    if not layout.v1 and layout.unified is None:
        raise Unavailable("no cgroup hierarchy is mounted",
                          hint="mount cgroup2 on /sys/fs/cgroup")
    return layout


def manager_for(cgroups_path: str | None, container_id: str, *,
                hierarchies: Iterable[HierarchyLike] | Layout | None = None,
                own_cgroup: str | None = None, systemd: bool = False,
                fs: CgroupFs = KERNEL) -> CgroupManager:
    """The manager for a container's ``linux.cgroupsPath`` (see :mod:`.paths` for the rules).

    ``hierarchies``: the cgroup mounts (default: read /proc/self/mountinfo); ``own_cgroup``:
    the text of /proc/self/cgroup (read only for a relative path); ``systemd``: the runtime's
    --systemd-cgroup flag (refused: there is no systemd driver).
    """
    inner = inner_path(cgroups_path, container_id, systemd=systemd)
    layout = _layout(hierarchies)
    own = {} if inner.startswith("/") else own_cgroups(own_cgroup)
    if layout.mode is CgroupMode.V2:
        from dockyard.cgroups.v2 import V2Manager

        assert layout.unified is not None
        return V2Manager(v2_dir(layout.unified, inner, own, pure=True),
                         mountpoint=layout.unified.mountpoint, fs=fs)
    from dockyard.cgroups.v1 import UNIFIED, V1Manager

    paths = {c: v1_dir(m, c, inner, own) for c, m in layout.v1.items()}
    mountpoints = {c: m.mountpoint for c, m in layout.v1.items()}
    if layout.unified is not None:
        paths[UNIFIED] = v2_dir(layout.unified, inner, own, pure=False)
        mountpoints[UNIFIED] = layout.unified.mountpoint
    return V1Manager(paths, mountpoints=mountpoints, fs=fs)


def manager_from_paths(paths: Mapping[str, str], *,
                       hierarchies: Iterable[HierarchyLike] | Layout | None = None,
                       fs: CgroupFs = KERNEL) -> CgroupManager:
    """Rebuild a manager from its saved :attr:`CgroupManager.paths`."""
    if not paths:
        raise InvalidArgument("no cgroup paths saved for this container")
    layout = _layout(hierarchies)

    def mountpoint_of(d: str, mounts: Iterable[str]) -> str:
        best = "/"
        for mount in mounts:
            m = mount.rstrip("/") or "/"
            if (d == m or d.startswith(m + "/")) and len(m) > len(best):
                best = m
        return best

    if set(paths) == {""}:
        from dockyard.cgroups.v2 import V2Manager

        d = paths[""]
        mounts = [layout.unified.mountpoint] if layout.unified else []
        return V2Manager(d, mountpoint=mountpoint_of(d, mounts), fs=fs)
    from dockyard.cgroups.v1 import V1Manager

    all_mounts = [m.mountpoint for m in layout.v1.values()]
    if layout.unified is not None:
        all_mounts.append(layout.unified.mountpoint)
    return V1Manager(paths, mountpoints={k: mountpoint_of(posixpath.normpath(d), all_mounts)
                                         for k, d in paths.items()}, fs=fs)


__all__ = [
    "CgroupManager",
    "CgroupMode",
    "FreezerState",
    "Resources",
    "manager_for",
    "manager_from_paths",
    "parse_resources",
]
