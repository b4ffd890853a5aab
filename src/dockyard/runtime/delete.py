"""``delete``: remove a stopped (or, forced, any) container and its state."""

from __future__ import annotations

import os
import select

from dockyard.errors import FailedPrecondition, NotFound
from dockyard.runtime import fastpath, state

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import signal

    from _typeshed import StrPath

    from dockyard.cgroups import CgroupManager
else:
    import _signal as signal  # not signal.py: it imports enum (~5 ms)

_KILL_WAIT_MS = 10_000


def _kill_and_wait(pid: int) -> None:
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        select.select([pidfd], [], [], _KILL_WAIT_MS / 1000)
    finally:
        os.close(pidfd)


def delete(root: StrPath, container_id: str, *, force: bool = False) -> None:
    d = state.container_dir(root, container_id)
    try:
        rec = state.load(root, container_id)
    except NotFound:
        if os.path.isdir(d):  # a create that crashed half-way: nothing runs, clean it up
            state.remove_dir(d)
            return
        if force:  # runc: forcing the removal of what is not there succeeds
            return
        raise
    remove(root, rec, force=force)


def remove(root: StrPath, rec: state.Record, cgroup: CgroupManager | None = None, *,
           force: bool = False) -> None:
    """Delete the container ``rec`` (loaded). ``cgroup``: its cgroup manager, if the caller
    has it (``run``); otherwise one is built from the recorded paths only when needed."""
    container_id = rec.id
    d = state.container_dir(root, container_id)
    status = state.status_of(root, rec)
    mgr = cgroup
    if status is state.Status.CREATED or (force and status.can_kill):
        mgr = mgr or state.cgroup_of(rec)
        if mgr is not None:
            mgr.kill_all(signal.SIGKILL)  # every process, not only the init (runc -f)
        _kill_and_wait(rec.pid)
    elif not status.can_delete:
        raise FailedPrecondition(
            f"cannot delete container {container_id} that is not stopped: {status.value}",
            hint="stop it first, or use delete --force")
    if not fastpath.remove_empty_cgroups(p for _, p in rec.cgroup_paths):
        mgr = mgr or state.cgroup_of(rec)
        if mgr is not None:
            mgr.destroy(kill=True)
    poststop = None
    if "poststop" in rec.hooks:
        poststop = state.load_config(root, container_id).hooks.poststop
    state.remove_dir(d)
    if poststop:
        from dockyard.runtime import hooks

        hooks.run_all_warn(poststop, state.hook_state(rec, state.Status.STOPPED), "poststop")

