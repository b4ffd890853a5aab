"""``pause`` and ``resume``: the cgroup freezer."""

from __future__ import annotations

from dockyard.errors import FailedPrecondition
from dockyard.runtime import state

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from _typeshed import StrPath

    from dockyard.cgroups import CgroupManager


def _cgroup(rec: state.Record) -> CgroupManager:
    cgroup = state.cgroup_of(rec)
    if cgroup is None:
        raise FailedPrecondition(f"container {rec.id} has no cgroup to freeze")
    return cgroup


def pause(root: StrPath, container_id: str) -> None:
    rec = state.load(root, container_id)
    status = state.status_of(root, rec)
    if status is not state.Status.RUNNING:
        raise FailedPrecondition("container not running")
    _cgroup(rec).freeze()


def resume(root: StrPath, container_id: str) -> None:
    rec = state.load(root, container_id)
    if state.status_of(root, rec) is not state.Status.PAUSED:
        raise FailedPrecondition("container not paused")
    _cgroup(rec).thaw()
