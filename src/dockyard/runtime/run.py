"""``run``: create + start, then (unless detached) wait for the init as its subreaper and delete.

The run process makes itself a child subreaper before creating, so the init re-parents to it
when the intermediate child exits; that is how it can wait for the container's exit status.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from dockyard.linux import libc as k
from dockyard.runtime import create as create_mod
from dockyard.runtime import delete as delete_mod
from dockyard.runtime import start as start_mod

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
              signal.SIGUSR2, signal.SIGWINCH)


def run(root: Path, container_id: str, bundle: Path, *, detach: bool = False,
        pid_file: Path | None = None, no_pivot: bool = False, preserve_fds: int = 0) -> int:
    if not detach:
        k.prctl(k.PR_SET_CHILD_SUBREAPER, 1)
    rec = create_mod.create(root, container_id, bundle, pid_file=pid_file, no_pivot=no_pivot,
                            preserve_fds=preserve_fds)
    try:
        start_mod.start(root, container_id)
    except BaseException:
        delete_mod.delete(root, container_id, force=True)
        raise
    if detach:
        return 0

    def forward(signum: int, _frame: object) -> None:
        os.kill(rec.pid, signum)

    for sig in _FORWARDED:
        signal.signal(sig, forward)
    try:
        status = _wait(rec.pid)
    finally:
        for sig in _FORWARDED:
            signal.signal(sig, signal.SIG_DFL)
        delete_mod.delete(root, container_id, force=True)
    return status


def _wait(pid: int) -> int:
    """Reap children until the init exits; return its status the shell way (128+signal)."""
    while True:
        try:
            reaped, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        if reaped == pid:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) \
                else 128 + os.WTERMSIG(status)
