"""The cgroup v1 manager: one directory per v1 hierarchy, plus the unified one on a hybrid host.

The container joins every mounted v1 hierarchy (named ones such as ``name=systemd`` too), as
runc does. On a hybrid host it also joins the unified (v2) hierarchy, and the controllers that
live only there (typically hugetlb) are driven through it with the v2 files; the v2 directory
also gives ``cgroup.kill`` and a freezer when the v1 freezer is not mounted.
"""

from __future__ import annotations

from dockyard import values
from dockyard.cgroups import FreezerState
from dockyard.cgroups import v2 as v2mod
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
from dockyard.cgroups.v1 import cpuset
from dockyard.errors import DockyardError, InvalidArgument, Unavailable
from dockyard.logs import get_logger
from dockyard.model.resources import Resources

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    import signal
    from collections.abc import Mapping
    from typing import Any
else:
    import _signal as signal  # not signal.py: it imports enum (~5 ms)

if TYPE_CHECKING:
    from dockyard.cgroups.stats import Stats

log = get_logger(__name__)

# Which hierarchy lists the container's processes, best first.
_PROCS_FROM = ("pids", "freezer", "devices", "memory", "cpu", "cpuacct", "blkio", "cpuset")
UNIFIED = ""   # the key of the unified hierarchy's directory in ``paths``


def given(obj: object) -> bool:
    """Whether a resources section asks for anything (any field set; 0 is a value)."""
    if obj is None:
        return False
    return any(v is not None and v is not False and v != ()
               for v in (getattr(obj, name) for name in values.fields(obj)))


class V1Manager:
    """A container's cgroups on a v1 (or v1/v2 hybrid) host."""

    version = 1

    def __init__(self, paths: Mapping[str, str], *, mountpoints: Mapping[str, str],
                 fs: CgroupFs = KERNEL) -> None:
        """``paths``: controller (or ``name=...``, or "" for the unified hierarchy) ->
        directory; ``mountpoints``: the same keys -> the hierarchy's mountpoint."""
        self._paths = {k: v.rstrip("/") for k, v in paths.items()}
        self.mountpoints = dict(mountpoints)
        self.fs = fs

    def __repr__(self) -> str:
        return f"V1Manager({self.path!r})"

    @property
    def paths(self) -> Mapping[str, str]:
        return dict(self._paths)

    @property
    def path(self) -> str:
        """The directory that lists the container's processes (the pids hierarchy's, ...)."""
        for c in _PROCS_FROM:
            if c in self._paths:
                return self._paths[c]
        return next(iter(self._paths.values()), "")

    def _dir(self, controller: str) -> str | None:
        return self._paths.get(controller)

    def _unified(self) -> str | None:
        return self._paths.get(UNIFIED)

    def _unique_dirs(self) -> list[tuple[str, str]]:
        """(key, dir) once per directory (co-mounted controllers share one)."""
        seen: set[str] = set()
        out = []
        for key, d in self._paths.items():
            if d not in seen:
                seen.add(d)
                out.append((key, d))
        return out

    def exists(self) -> bool:
        return any(self.fs.isdir(d) for _, d in self._unique_dirs())

    # --- create and join -----------------------------------------------------------------

    def apply(self, pid: int | None, resources: Resources | None = None) -> None:
        created: list[str] = []
        cpu_res = resources.cpu if resources is not None else None
        try:
            for key, d in self._unique_dirs():
                mountpoint = self.mountpoints.get(key, "/")
                if key == UNIFIED:
                    created += v2mod.create(self.fs, mountpoint, d)
                elif key == "cpuset" or self._paths.get("cpuset") == d:
                    cpuset.prepare(self.fs, mountpoint, d, cpu_res, created)
                else:
                    created += _mkdir_p(self.fs, mountpoint, d)
                if d == self._paths.get("cpu") and cpu_res is not None:
                    from dockyard.cgroups.v1 import cpu

                    cpu.set_realtime(self.fs, d, cpu_res)
            if pid is not None:
                self.add_pid(pid)
        except BaseException:
            v2mod.undo(self.fs, created)
            raise

    def add_pid(self, pid: int) -> None:
        for _, d in self._unique_dirs():
            add_pid(self.fs, d, pid)

    @property
    def clone_dir(self) -> str | None:
        """The cgroup v2 directory a child can be cloned into (the unified one, if any)."""
        return self._paths.get(UNIFIED)

    def create_clone_dir(self) -> None:
        u = self._unified()
        if u is not None:
            v2mod.create(self.fs, self.mountpoints.get(UNIFIED, "/"), u)

    def add_self(self, *, cloned: bool = False) -> None:
        """Move the calling (single-threaded) process in: "0" into each v1 ``tasks`` file,
        which moves just this thread without the kernel's threadgroup write lock; the
        unified directory through ``cgroup.procs`` unless the process was cloned into it."""
        for key, d in self._unique_dirs():
            if key == UNIFIED:
                if not cloned:
                    add_pid(self.fs, d, 0)
            else:
                self.fs.write(join(d, "tasks"), "0")

    # --- limits ----------------------------------------------------------------------------

    def _need(self, controller: str, what: str) -> str:
        d = self._dir(controller)
        if d is None:
            raise Unavailable(f"{what}: the {controller} cgroup controller is not mounted on "
                              f"this host")
        return d

    def set(self, resources: Resources) -> None:
        # a controller's module is imported when its limits are set: `delete` never loads them
        fs = self.fs
        if resources.unified:
            raise InvalidArgument("linux.resources.unified needs cgroup v2; this host uses "
                                  "cgroup v1 for its controllers",
                                  hint="express the limits in the v1 fields instead")
        c = resources.cpu
        if c is not None and (c.cpus or c.mems):
            cpuset.set_limits(fs, self._need("cpuset", "linux.resources.cpu.cpus/mems"), c)
        if resources.devices:
            from dockyard.cgroups.v1 import devices

            devices.set_limits(fs, self._need("devices", "linux.resources.devices"),
                               resources.devices)
        if given(resources.memory):
            assert resources.memory is not None
            from dockyard.cgroups.v1 import memory

            memory.set_limits(fs, self._need("memory", "linux.resources.memory"),
                              resources.memory)
        if c is not None and given(values.replace(c, cpus=None, mems=None)):
            from dockyard.cgroups.v1 import cpu

            cpu.set_limits(fs, self._need("cpu", "linux.resources.cpu"), c)
        if resources.pids is not None and resources.pids.limit is not None:
            from dockyard.cgroups.v1 import pids

            pids.set_limits(fs, self._need("pids", "linux.resources.pids"), resources.pids)
        if given(resources.block_io):
            assert resources.block_io is not None
            from dockyard.cgroups.v1 import blkio

            blkio.set_limits(fs, self._need("blkio", "linux.resources.blockIO"),
                             resources.block_io)
        if resources.hugepage_limits:
            self._set_hugetlb(resources)
        n = resources.network
        if n is not None and n.class_id is not None:
            from dockyard.cgroups.v1 import net

            net.set_classid(fs, self._need("net_cls", "linux.resources.network.classID"), n)
        if n is not None and n.priorities:
            from dockyard.cgroups.v1 import net

            net.set_priorities(fs, self._need("net_prio", "linux.resources.network.priorities"),
                               n)
        if resources.rdma:
            log.warning("linux.resources.rdma is not supported; ignored")

    def _set_hugetlb(self, resources: Resources) -> None:
        from dockyard.cgroups.v1 import hugetlb
        from dockyard.cgroups.v2 import hugetlb as v2hugetlb

        d = self._dir("hugetlb")
        if d is not None:
            hugetlb.set_limits(self.fs, d, resources.hugepage_limits)
            return
        u = self._unified()
        if u is not None and "hugetlb" in (read_optional(self.fs, u, "cgroup.controllers")
                                          or "").split():
            v2hugetlb.set_limits(self.fs, u, resources.hugepage_limits)
            return
        raise Unavailable("linux.resources.hugepageLimits: the hugetlb cgroup controller is "
                          "not available on this host (neither v1 nor in the unified tree)")

    # --- freezer ---------------------------------------------------------------------------

    def freeze(self, timeout: float = 10.0) -> None:
        from dockyard.cgroups.v1 import freezer
        from dockyard.cgroups.v2 import freezer as v2freezer

        d = self._dir("freezer")
        if d is not None:
            freezer.freeze(self.fs, d, timeout=timeout)
            return
        u = self._unified()
        if u is not None and self.fs.exists(join(u, "cgroup.freeze")):
            v2freezer.freeze(self.fs, u, timeout=timeout)
            return
        raise Unavailable("cannot freeze: no freezer cgroup controller on this host")

    def thaw(self) -> None:
        from dockyard.cgroups.v1 import freezer
        from dockyard.cgroups.v2 import freezer as v2freezer

        d = self._dir("freezer")
        if d is not None:
            freezer.thaw(self.fs, d)
            return
        u = self._unified()
        if u is not None and self.fs.exists(join(u, "cgroup.freeze")):
            v2freezer.thaw(self.fs, u)
            return
        raise Unavailable("cannot thaw: no freezer cgroup controller on this host")

    def state(self) -> FreezerState:
        from dockyard.cgroups.v1 import freezer
        from dockyard.cgroups.v2 import freezer as v2freezer

        d = self._dir("freezer")
        u = self._unified()
        frozen = None
        if d is not None:
            frozen = freezer.is_frozen(self.fs, d)
        elif u is not None:
            frozen = v2freezer.is_frozen(self.fs, u)
        if frozen is None:
            return FreezerState.UNDEFINED
        return FreezerState.FROZEN if frozen else FreezerState.THAWED

    # --- processes -------------------------------------------------------------------------

    def pids(self) -> list[int]:
        d = self.path
        return read_procs_recursive(self.fs, d) if d else []

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        """Freeze, signal every process, thaw (runc's signalAllProcesses): frozen, nothing
        can fork a process we would miss. SIGKILL is also sent through the unified
        hierarchy's cgroup.kill when there is one. A v1-frozen process only dies once thawed,
        so after SIGKILL the cgroup is thawed even if it was paused before."""
        u = self._unified()
        if sig == signal.SIGKILL and u is not None and self.fs.exists(join(u, "cgroup.kill")):
            write_knob(self.fs, u, "cgroup.kill", "1", controller="cgroup")
        before = self.state()
        froze = False
        if before is FreezerState.THAWED:
            try:
                self.freeze()
                froze = True
            except DockyardError as exc:
                log.warning("signalling %s without freezing it: %s", self.path, exc)
        try:
            for pid in self.pids():
                self.fs.kill(pid, sig)
        finally:
            if froze or (sig == signal.SIGKILL and before is FreezerState.FROZEN):
                self.thaw()

    # --- stats -----------------------------------------------------------------------------

    def stats(self) -> Stats:
        from dockyard.cgroups.stats import Stats
        from dockyard.cgroups.v1 import blkio, cpu, cpuacct, hugetlb, memory, pids
        from dockyard.cgroups.v2 import hugetlb as v2hugetlb

        st = Stats()
        mods: tuple[tuple[str, Any], ...] = (
            ("cpu", cpu), ("cpuacct", cpuacct), ("cpuset", cpuset), ("memory", memory),
            ("pids", pids), ("blkio", blkio), ("hugetlb", hugetlb))
        for controller, mod in mods:
            d = self._dir(controller)
            if d is not None:
                mod.stats(self.fs, d, st)
        u = self._unified()
        if self._dir("hugetlb") is None and u is not None:
            v2hugetlb.stats(self.fs, u, st)
        return st

    # --- removal ---------------------------------------------------------------------------

    def destroy(self, *, kill: bool = False, timeout: float = 5.0) -> None:
        """Remove every directory (children first). With ``kill``, SIGKILL what is left and
        wait up to ``timeout`` for it first; without, a populated cgroup raises EBUSY (after
        retrying for ``timeout``: the last processes may be exiting)."""
        if not self.exists():
            return
        if kill and self.pids():  # an empty cgroup gains no process: nothing to freeze
            self.kill_all(signal.SIGKILL)
            wait_empty(self.fs, self.pids, timeout)
        first: DockyardError | None = None
        for _, d in self._unique_dirs():
            try:
                remove_tree(self.fs, d, timeout=timeout)
            except DockyardError as exc:
                first = first or exc
        if first is not None:
            raise first


def _mkdir_p(fs: CgroupFs, mountpoint: str, d: str) -> list[str]:
    created: list[str] = []
    mountpoint = mountpoint.rstrip("/") or "/"
    rel = d[len(mountpoint):] if d.startswith(mountpoint + "/") else ""
    current = mountpoint
    for part in [p for p in rel.split("/") if p]:
        current = join(current, part)
        if fs.mkdir(current):
            created.append(current)
    if not rel and not fs.isdir(d):
        raise InvalidArgument(f"cgroup {d} is not inside the hierarchy at {mountpoint}")
    return created

