"""``start``: release a created container's init by reading its exec fifo."""

from __future__ import annotations

import os

from dockyard.errors import DockyardError, FailedPrecondition
from dockyard.runtime import fastpath, state

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from _typeshed import StrPath


def start(root: StrPath, container_id: str) -> None:
    rec = state.load(root, container_id)
    status = state.status_of(root, rec)
    if not status.can_start:
        if status is state.Status.STOPPED:
            raise FailedPrecondition("cannot start a container that has stopped")
        raise FailedPrecondition(f"cannot start an already {status.value} container")
    fifo = os.path.join(state.container_dir(root, container_id), fastpath.FIFO_NAME)
    if not fastpath.release_init(fifo, rec.pid, rec.pid_start_time):
        raise DockyardError("container init exited before it was started")
    if "poststart" in rec.hooks:
        from dockyard.runtime import hooks

        spec = state.load_config(root, container_id)
        hooks.run_all_warn(spec.hooks.poststart, state.hook_state(rec, state.Status.RUNNING),
                           "poststart")
