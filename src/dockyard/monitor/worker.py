"""Warm commands: the monitor forks a worker that runs a ``dockyard`` command for a client.

The monitor has the engine imported already, so a command forked from it skips the
interpreter's start and every import (most of a short command's time). The client — the
``dockyard`` process the user started — hands over what makes the command its own: argv,
environment, umask, its stdin/stdout/stderr and its working directory (as fds), and waits::

    dockyard (client) ──EXEC {argv, env, umask} + fds 0,1,2,cwd──▶ monitor
                      ◀──── "pid <worker>" ─────────────────────── │ fork ─▶ worker: main(argv)
         signals ─────────────────────────────────────────────────────────▶ worker
                      ◀──── "exit <code>" ──────────────────────── │ (reaped)

The worker is the monitor's child, not a container: it leaves its session's supervision to the
monitor like any other command (it connects to the monitor's socket to start a container).
"""

from __future__ import annotations

import io
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

Runner = Callable[[list[str]], int]


REPLY_FD = 3    # the worker's copy of the client's connection


def run(req: dict[str, Any], fds: list[int], runner: Runner, reply: int) -> None:
    """In the forked worker: become the client's command, run it, tell the client its status
    ourselves (so it hears it even if the monitor dies meanwhile), exit with it."""
    code = 1
    try:
        _adopt(req, fds, reply)
        try:
            code = runner([str(a) for a in req.get("argv") or []])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except KeyboardInterrupt:
            code = 130
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        _tell(f"exit {code & 0xFF}")
    except BaseException:   # never return into the monitor's loop
        code = 125
        import contextlib
        import traceback

        with contextlib.suppress(BaseException):
            traceback.print_exc()
    os._exit(code & 0xFF)


def _tell(line: str) -> None:
    try:
        os.write(REPLY_FD, bytes([0]) + line.encode())   # channel.STATUS
    except OSError:
        pass


def _adopt(req: dict[str, Any], fds: list[int], reply: int) -> None:
    stdin, stdout, stderr, cwd = fds
    signal.set_wakeup_fd(-1)
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)         # dup2 makes the copy inheritable, as stdio must be
    os.fchdir(cwd)
    os.dup2(reply, REPLY_FD, inheritable=False)
    # Nothing of the monitor's (its sockets, containers' pipes, logs) stays open here. Their
    # Python objects stay reachable from the monitor's frames, which never unwind (we leave
    # by os._exit), so none of them closes a number that we reuse.
    os.closerange(REPLY_FD + 1, 1 << 16)
    os.umask(int(req.get("umask", 0o022)))
    env = req.get("env")
    if isinstance(env, dict):
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in env.items()})
    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT, signal.SIGCHLD,
                signal.SIGWINCH, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    sys.stdin = _stream(0, "r")
    sys.stdout = _stream(1, "w")
    sys.stderr = _stream(2, "w")
    sys.argv = ["dockyard", *[str(a) for a in req.get("argv") or []]]


def _stream(fd: int, mode: str) -> Any:
    """A fresh text stream on ``fd``, buffered as the interpreter would have at start."""
    tty = os.isatty(fd)
    raw = io.FileIO(fd, mode, closefd=False)
    if mode == "r":
        return io.TextIOWrapper(io.BufferedReader(raw), encoding="utf-8",
                                errors="surrogateescape")
    return io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8",
                            errors="backslashreplace" if fd == 2 else "surrogateescape",
                            line_buffering=tty or fd == 2, write_through=fd == 2)
