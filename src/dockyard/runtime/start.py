"""``start``: release a created container's init by reading its exec fifo."""

from __future__ import annotations

import os
import select

from dockyard.errors import DockyardError, FailedPrecondition
from dockyard.runtime import state

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from _typeshed import StrPath

_POLL_MS = 100


def start(root: StrPath, container_id: str) -> None:
    rec = state.load(root, container_id)
    status = state.status_of(root, rec)
    if not status.can_start:
        if status is state.Status.STOPPED:
            raise FailedPrecondition("cannot start a container that has stopped")
        raise FailedPrecondition(f"cannot start an already {status.value} container")
    fifo = os.path.join(state.container_dir(root, container_id), state.FIFO_NAME)
    # Non-blocking open: a reader appears at once, which releases the init's blocked open.
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        while True:
            events = poller.poll(_POLL_MS)
            if events:
                data = os.read(fd, 1)
                if data == b"0":
                    break
                if not data and state.process_start_time(rec.pid) != rec.pid_start_time:
                    raise DockyardError("container init exited before it was started")
            elif state.process_start_time(rec.pid) != rec.pid_start_time:
                raise DockyardError("container init exited before it was started")
    finally:
        os.close(fd)
        try:
            os.unlink(fifo)
        except FileNotFoundError:
            pass
    if "poststart" in rec.hooks:
        from dockyard.runtime import hooks

        spec = state.load_config(root, container_id)
        hooks.run_all_warn(spec.hooks.poststart, state.hook_state(rec, state.Status.RUNNING),
                           "poststart")
