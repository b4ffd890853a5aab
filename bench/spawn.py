"""Runs one measured command and returns what it cost: wall time, CPU time, peak RSS, status.

Why not just ``posix_spawn`` + ``wait4`` from Python: Linux folds the pre-exec mm's high-water
RSS into ``ru_maxrss`` at execve(), and a child forked or vforked from the harness starts on the
harness's mm, so every command would report at least the harness's own peak (10-60 MiB once
matplotlib or pytest is loaded) - more than crun (~3 MiB) or runc (~8 MiB) really use. So the
measured commands are forked by ``launcher.c``, a tiny C process compiled once with the system
``cc`` and cached in ``bench/.build/``. Where no compiler exists the harness falls back to
spawning from Python and says, in every report, that peak RSS is then an upper bound.

What ``wait4``'s rusage covers, either way: the command and every descendant it reaped (CPU is
summed, ``ru_maxrss`` is the largest single process). A descendant that outlives the command
(a daemonised container, a double fork) is not in it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

LAUNCHER_SOURCE = Path(__file__).resolve().parent / "launcher.c"
BUILD_DIR = Path(__file__).resolve().parent / ".build"

_FLAG_DISCARD_OUTPUT = 1
_REPLY = struct.Struct("=5q")


class SpawnError(Exception):
    """The launcher could not be built or died: the harness cannot measure anything."""


@dataclass(frozen=True, slots=True)
class Measurement:
    """The cost of one run of one command, as the kernel accounted it."""

    wall_ns: int
    user_ns: int
    sys_ns: int
    maxrss_kib: int
    exit_code: int  # negative: killed by that signal (os.waitstatus_to_exitcode)


class Spawner(Protocol):
    """Forks, execs and reaps one command; a seam so tests can compare the two implementations."""

    @property
    def exact_rss(self) -> bool:
        """False when ru_maxrss also counts the harness's own memory (see module docstring)."""
        ...

    @property
    def name(self) -> str: ...

    def measure(self, argv: tuple[str, ...], *, discard_output: bool) -> Measurement:
        """Runs ``argv`` (``argv[0]`` an absolute path) to completion."""
        ...

    def close(self) -> None: ...


class LauncherSpawner:
    """Measures through a long-lived ``launcher.c`` process (exact peak RSS)."""

    def __init__(self, launcher: Path) -> None:
        req_read, self._req = os.pipe()
        self._rep, rep_write = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [str(launcher), str(req_read), str(rep_write)],
                pass_fds=(req_read, rep_write),
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            os.close(self._req)
            os.close(self._rep)
            raise SpawnError(f"cannot start {launcher}: {exc}") from exc
        finally:
            os.close(req_read)
            os.close(rep_write)

    @property
    def exact_rss(self) -> bool:
        return True

    @property
    def name(self) -> str:
        return "launcher"

    def measure(self, argv: tuple[str, ...], *, discard_output: bool) -> Measurement:
        encoded = [arg.encode() for arg in argv]
        flags = _FLAG_DISCARD_OUTPUT if discard_output else 0
        request = struct.pack("=II", flags, len(encoded)) + b"".join(
            struct.pack("=I", len(arg)) + arg for arg in encoded
        )
        try:
            os.write(self._req, request)
            reply = _read_exact(self._rep, _REPLY.size)
        except OSError as exc:
            raise SpawnError(f"bench launcher died: {exc}") from exc
        wall_ns, utime_us, stime_us, maxrss_kib, status = _REPLY.unpack(reply)
        return Measurement(
            wall_ns=wall_ns,
            user_ns=utime_us * 1000,
            sys_ns=stime_us * 1000,
            maxrss_kib=maxrss_kib,
            exit_code=os.waitstatus_to_exitcode(status),
        )

    def close(self) -> None:
        os.close(self._req)
        os.close(self._rep)
        self._proc.wait()


class DirectSpawner:
    """Measures with posix_spawn + wait4 from Python: right times, inflated peak RSS."""

    @property
    def exact_rss(self) -> bool:
        return False

    @property
    def name(self) -> str:
        return "direct"

    def measure(self, argv: tuple[str, ...], *, discard_output: bool) -> Measurement:
        actions: list[tuple[int, int, str, int, int] | tuple[int, int, int]] = []
        if discard_output:
            actions = [
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ]
        start = time.perf_counter_ns()
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
        _, status, usage = os.wait4(pid, 0)
        wall_ns = time.perf_counter_ns() - start
        return Measurement(
            wall_ns=wall_ns,
            user_ns=round(usage.ru_utime * 1e9),
            sys_ns=round(usage.ru_stime * 1e9),
            maxrss_kib=usage.ru_maxrss,
            exit_code=os.waitstatus_to_exitcode(status),
        )

    def close(self) -> None:
        pass


def open_spawner() -> Spawner:
    """The launcher when it can be built here, else the direct fallback (with a warning)."""
    try:
        return LauncherSpawner(build_launcher())
    except SpawnError as exc:
        log.warning("%s; peak RSS will include the harness's own memory", exc)
        return DirectSpawner()


def build_launcher() -> Path:
    """Compiles ``launcher.c`` once per source version; concurrent builders race harmlessly."""
    digest = hashlib.sha256(LAUNCHER_SOURCE.read_bytes()).hexdigest()[:16]
    target = BUILD_DIR / f"launcher-{digest}"
    if os.access(target, os.X_OK):
        return target
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise SpawnError("no C compiler (cc) to build bench/launcher.c")
    BUILD_DIR.mkdir(exist_ok=True)
    tmp = BUILD_DIR / f".launcher-{digest}-{os.getpid()}"
    result = subprocess.run(
        [compiler, "-O2", "-o", str(tmp), str(LAUNCHER_SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise SpawnError(f"building bench/launcher.c failed: {result.stderr.strip()}")
    os.replace(tmp, target)  # atomic: another harness never runs a half-written binary
    return target


def _read_exact(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    while size > 0:
        chunk = os.read(fd, size)
        if not chunk:
            raise OSError("unexpected EOF from the launcher")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
