"""The cgroup v2 manager: one directory in the unified hierarchy.

Creating it enables, on every ancestor from the hierarchy's root down, all the controllers the
ancestor has (``cgroup.subtree_control``), so the container's directory gets every knob the
host can give (runc's CreateCgroupPath). A controller that cannot be enabled (an ancestor holds
processes, or the controller is bound to a v1 hierarchy) shows up later as a clear
"controller not available" error from :meth:`V2Manager.set`, not here.
"""

from __future__ import annotations

import posixpath

from dockyard.cgroups import FreezerState
from dockyard.cgroups.fs import (
    KERNEL,
    CgroupFs,
    add_pid,
    join,
    read_optional,
    read_procs_recursive,
    remove_tree,
    wait_empty,
    write_knob,
)
from dockyard.errors import DockyardError, InvalidArgument, NotFound, SyscallError, Unavailable
from dockyard.logs import get_logger
from dockyard.model.resources import Resources

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    import signal
    from collections.abc import Mapping

    from dockyard.cgroups.stats import Stats
else:
    import _signal as signal  # not signal.py: it imports enum (~5 ms)

log = get_logger(__name__)


def enable_controllers(fs: CgroupFs, directory: str) -> None:
    """Enable in ``directory``'s subtree_control every controller it has."""
    available = (read_optional(fs, directory, "cgroup.controllers") or "").split()
    enabled = set((read_optional(fs, directory, "cgroup.subtree_control") or "").split())
    missing = [c for c in available if c not in enabled]
    if not missing:
        return
    path = join(directory, "cgroup.subtree_control")
    try:
        fs.write(path, " ".join("+" + c for c in missing))
        return
    except SyscallError:
        pass   # one refused controller fails the whole write: try them one by one
    for c in missing:
        try:
            fs.write(path, "+" + c)
        except SyscallError as exc:
            log.debug("cannot enable %s in %s: %s", c, directory, exc)


def create(fs: CgroupFs, mountpoint: str, directory: str) -> list[str]:
    """mkdir ``directory`` and its missing ancestors below ``mountpoint``, enabling controllers
    on the way; returns the directories created (outermost first)."""
    mountpoint = mountpoint.rstrip("/") or "/"
    rel = posixpath.relpath(directory, mountpoint)
    if rel.startswith(".."):
        raise InvalidArgument(f"cgroup {directory} is not inside the hierarchy at {mountpoint}")
    created: list[str] = []
    current = mountpoint
    try:
        for part in [p for p in rel.split("/") if p not in ("", ".")]:
            enable_controllers(fs, current)
            current = join(current, part)
            if fs.mkdir(current):
                created.append(current)
    except BaseException:
        undo(fs, created)
        raise
    return created


def undo(fs: CgroupFs, created: list[str]) -> None:
    """Best-effort removal of directories an operation created before it failed."""
    for d in reversed(created):
        try:
            fs.rmdir(d)
        except DockyardError:
            pass


class V2Manager:
    """A container's cgroup on a pure cgroup v2 host."""

    version = 2

    def __init__(self, path: str, *, mountpoint: str, fs: CgroupFs = KERNEL) -> None:
        self._path = path.rstrip("/")
        self.mountpoint = mountpoint
        self.fs = fs

    def __repr__(self) -> str:
        return f"V2Manager({self._path!r})"

    @property
    def path(self) -> str:
        return self._path

    @property
    def paths(self) -> Mapping[str, str]:
        return {"": self._path}

    def exists(self) -> bool:
        return self.fs.isdir(self._path)

    def apply(self, pid: int | None, resources: Resources | None = None) -> None:
        created = create(self.fs, self.mountpoint, self._path)
        try:
            if pid is not None:
                add_pid(self.fs, self._path, pid)
        except BaseException:
            undo(self.fs, created)
            raise

    def add_pid(self, pid: int) -> None:
        add_pid(self.fs, self._path, pid)

    @property
    def clone_dir(self) -> str | None:
        """The directory a child can be cloned into (CLONE_INTO_CGROUP)."""
        return self._path

    def create_clone_dir(self) -> None:
        create(self.fs, self.mountpoint, self._path)

    def add_self(self, *, cloned: bool = False) -> None:
        """Move the calling process in, unless it was cloned into the cgroup already."""
        if not cloned:
            add_pid(self.fs, self._path, 0)

    def set(self, resources: Resources) -> None:
        # each controller's module is imported when its limits are set: `delete` and a
        # container without limits never load them
        fs, d = self.fs, self._path
        if resources.pids is not None:
            from dockyard.cgroups.v2 import pids

            pids.set_limits(fs, d, resources.pids)
        if resources.memory is not None:
            from dockyard.cgroups.v2 import memory

            memory.set_limits(fs, d, resources.memory)
        if resources.block_io is not None:
            from dockyard.cgroups.v2 import io

            io.set_limits(fs, d, resources.block_io)
        if resources.cpu is not None:
            from dockyard.cgroups.v2 import cpu

            cpu.set_limits(fs, d, resources.cpu)
        if resources.devices:
            from dockyard.cgroups.v2.devices import device_filter

            if not fs.isdir(d):
                raise NotFound(f"cgroup {d} does not exist")
            fs.attach_device_filter(d, device_filter(resources.devices))
        if resources.cpu is not None:
            from dockyard.cgroups.v2 import cpuset

            cpuset.set_limits(fs, d, resources.cpu)
        if resources.hugepage_limits:
            from dockyard.cgroups.v2 import hugetlb

            hugetlb.set_limits(fs, d, resources.hugepage_limits)
        if resources.network is not None and (resources.network.class_id is not None
                                              or resources.network.priorities):
            raise Unavailable("linux.resources.network (net_cls/net_prio) does not exist on "
                              "cgroup v2", hint="match packets by cgroup path in nftables")
        if resources.rdma:
            log.warning("linux.resources.rdma is not supported; ignored")
        for key, value in resources.unified:
            try:
                write_knob(fs, d, key, value, controller=key.partition(".")[0])
            except SyscallError as exc:
                raise SyscallError(exc.op, exc.errno, exc.path,
                                   detail=f"linux.resources.unified[{key!r}] = {value!r}"
                                   ) from None

    def freeze(self, timeout: float = 10.0) -> None:
        from dockyard.cgroups.v2 import freezer

        freezer.freeze(self.fs, self._path, timeout=timeout)

    def thaw(self) -> None:
        from dockyard.cgroups.v2 import freezer

        freezer.thaw(self.fs, self._path)

    def state(self) -> FreezerState:
        from dockyard.cgroups.v2 import freezer

        frozen = freezer.is_frozen(self.fs, self._path)
        if frozen is None:
            return FreezerState.UNDEFINED
        return FreezerState.FROZEN if frozen else FreezerState.THAWED

    def pids(self) -> list[int]:
        return read_procs_recursive(self.fs, self._path)

    def stats(self) -> Stats:
        from dockyard.cgroups.stats import Stats
        from dockyard.cgroups.v2 import cpu, cpuset, hugetlb, io, memory, pids

        st = Stats()
        fs, d = self.fs, self._path
        for mod in (cpu, cpuset, memory, pids, io, hugetlb):
            mod.stats(fs, d, st)
        return st

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        """Signal every process in the cgroup tree. SIGKILL goes through cgroup.kill (5.14+),
        which the kernel applies atomically, forks included; any other signal (or an older
        kernel) is sent pid by pid with the cgroup frozen so nothing forks meanwhile."""
        if sig == signal.SIGKILL and self.fs.exists(join(self._path, "cgroup.kill")):
            write_knob(self.fs, self._path, "cgroup.kill", "1", controller="cgroup")
            return
        froze = False
        if self.state() is FreezerState.THAWED:
            try:
                self.freeze()
                froze = True
            except DockyardError as exc:
                log.warning("signalling %s without freezing it: %s", self._path, exc)
        try:
            for pid in self.pids():
                self.fs.kill(pid, sig)
        finally:
            if froze:
                self.thaw()

    def destroy(self, *, kill: bool = False, timeout: float = 5.0) -> None:
        """Remove the cgroup (children first). With ``kill``, SIGKILL what is left first and
        wait up to ``timeout`` for it to go; without, a populated cgroup raises EBUSY (after
        retrying for ``timeout``: the last processes may be exiting)."""
        if not self.exists():
            return
        if kill:
            self.kill_all(signal.SIGKILL)
            wait_empty(self.fs, self.pids, timeout)
        remove_tree(self.fs, self._path, timeout=timeout)

