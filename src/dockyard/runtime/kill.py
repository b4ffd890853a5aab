"""``kill``: signal a container's init, or with ``all`` every process in its pid namespace."""

from __future__ import annotations

import os
import signal

from dockyard.errors import FailedPrecondition
from dockyard.runtime import state

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from _typeshed import StrPath


def _pid_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _pids_in_ns(ns: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _pid_ns(int(entry)) == ns:
            pids.append(int(entry))
    return pids


def kill(root: StrPath, container_id: str, sig: signal.Signals, *, all_processes: bool = False
         ) -> None:
    rec = state.load(root, container_id)
    status = state.status_of(root, rec)
    if not status.can_kill:
        raise FailedPrecondition("container not running")
    targets = [rec.pid]
    if all_processes:
        cgroup = state.cgroup_of(rec)
        if cgroup is not None:  # freeze, signal each process, thaw (runc's way)
            cgroup.kill_all(sig)
            return
        ns = _pid_ns(rec.pid)
        if ns is not None and ns != _pid_ns(os.getpid()):
            targets = _pids_in_ns(ns)
    for pid in targets:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
