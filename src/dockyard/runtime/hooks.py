"""OCI lifecycle hooks: each runs with the container's state as JSON on its stdin.

prestart and createRuntime run in the runtime's namespaces from ``create`` (while the init
waits before pivot_root); createContainer runs in the init before pivot_root and
startContainer in the init right before the user's process; poststart runs from ``start``
and poststop from ``delete``. A failing hook fails the step it belongs to, except poststart
and poststop, whose failures are logged as warnings (the spec's rule).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import time

from dockyard import fastjson
from dockyard.errors import DockyardError
from dockyard.model.oci import Hook

log = logging.getLogger(__name__)


class HookError(DockyardError):
    pass


def run_hook(hook: Hook, state_doc: dict[str, object]) -> None:
    """Run one hook to completion; raise HookError if it fails or times out."""
    stdin_r, stdin_w = os.pipe()
    # stderr into a memfd, read after the hook exits: a pipe could fill up and block it
    err = os.memfd_create("hook-stderr", os.MFD_CLOEXEC)
    argv = list(hook.args) or [hook.path]
    env = dict(e.partition("=")[::2] for e in hook.env)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - replaced by execve
        try:
            os.dup2(stdin_r, 0)
            os.dup2(err, 2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.execve(hook.path, argv, env)
        except BaseException as exc:
            os.write(2, f"{exc}".encode())
        os._exit(127)
    os.close(stdin_r)
    try:
        with contextlib.suppress(BrokenPipeError):
            os.write(stdin_w, fastjson.dumps(state_doc).encode())
        os.close(stdin_w)
        status = _wait(pid, hook.timeout)
        os.lseek(err, 0, os.SEEK_SET)
        errors = os.read(err, 65536).decode(errors="replace")[-2000:]
    finally:
        os.close(err)
    if status is None:
        raise HookError(f"hook {hook.path} timed out after {hook.timeout}s")
    if status != 0:
        detail = f": {errors.strip()}" if errors.strip() else ""
        raise HookError(f"hook {hook.path} failed with status {status}{detail}")


def _wait(pid: int, timeout: int | None) -> int | None:
    if timeout is None:
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    pidfd = os.pidfd_open(pid)
    try:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([pidfd], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return None
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    finally:
        os.close(pidfd)


def run_all(hooks: tuple[Hook, ...], state_doc: dict[str, object]) -> None:
    for hook in hooks:
        run_hook(hook, state_doc)


def run_all_warn(hooks: tuple[Hook, ...], state_doc: dict[str, object], kind: str) -> None:
    """poststart/poststop: a failure is a warning, and the remaining hooks still run."""
    for hook in hooks:
        try:
            run_hook(hook, state_doc)
        except HookError as exc:
            log.warning("%s hook: %s", kind, exc)
            import sys

            sys.stderr.write(f'time="{_now()}" level=warning msg="{kind} hook: {exc}"\n')


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
