"""Healthchecks, run by a container's supervisor: docker's HEALTHCHECK semantics.

Every ``interval`` the supervisor runs the test inside the container (through the OCI runtime's
``exec``), with a ``timeout``; ``retries`` failures in a row make the container "unhealthy",
one success makes it "healthy"; failures during ``start_period`` do not count. The state
(docker's State.Health: Status, FailingStreak, the last 5 results) is written to a JSON file
that ``inspect`` and ``ps`` read.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable

from dockyard.values import value

_LOG_KEEP = 5
_OUTPUT_MAX = 4096


@value
class HealthConfig:
    command: tuple[str, ...]     # argv to exec in the container
    interval: float = 30.0
    timeout: float = 30.0
    retries: int = 3
    start_period: float = 0.0


def command_of(test: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """docker's Test: ["CMD-SHELL", "cmd"], ["CMD", argv...], or ["NONE"] / [] (no check)."""
    if not test or test[0] == "NONE":
        return ()
    if test[0] == "CMD-SHELL":
        return ("/bin/sh", "-c", " ".join(test[1:]))
    if test[0] == "CMD":
        return tuple(test[1:])
    return ("/bin/sh", "-c", " ".join(test))


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e9):09d}Z"


class Checker:
    """One container's healthcheck: when the next check is due, the running one, the state."""

    def __init__(self, config: HealthConfig, exec_prefix: tuple[str, ...], state_file: str,
                 *, on_status: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.on_status = on_status      # told each change of status (docker's health_status)
        self.exec_prefix = exec_prefix
        self.state_file = state_file
        self.started = time.monotonic()
        self.next_due = self.started + config.interval
        self.status = "starting"
        self.streak = 0
        self.log: list[dict[str, object]] = []
        self.pid = 0
        self.pidfd = -1
        self.out = -1
        self.output = b""
        self.check_started = 0.0
        self.check_wall = 0.0
        self._save()

    def timeout(self) -> float:
        """Seconds until something is due (a check to start, or a running one's deadline)."""
        now = time.monotonic()
        if self.pid:
            return max(0.0, self.check_started + self.config.timeout - now)
        return max(0.0, self.next_due - now)

    def start_check(self) -> None:
        r, w = os.pipe()
        argv = [*self.exec_prefix, *self.config.command]
        try:
            self.pid = os.posix_spawn(argv[0], argv, dict(os.environ), file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, w, 1),
                (os.POSIX_SPAWN_DUP2, w, 2),
            ])
        except OSError as e:
            os.close(r)
            os.close(w)
            self._record(-1, f"cannot run the healthcheck: {e}")
            return
        os.close(w)
        self.out = r
        self.pidfd = os.pidfd_open(self.pid)
        self.output = b""
        self.check_started = time.monotonic()
        self.check_wall = time.time()

    def read_output(self) -> None:
        try:
            data = os.read(self.out, _OUTPUT_MAX)
        except OSError:
            data = b""
        if len(self.output) < _OUTPUT_MAX:
            self.output += data[:_OUTPUT_MAX - len(self.output)]

    def due(self) -> bool:
        return not self.pid and time.monotonic() >= self.next_due

    def overdue(self) -> bool:
        return bool(self.pid) and time.monotonic() >= self.check_started + self.config.timeout

    def finish(self, *, timed_out: bool = False) -> None:
        """Collect the running check (killing it if it timed out) and update the state."""
        if timed_out:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            _, status = os.waitpid(self.pid, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            code = -1
        while True:     # what the check printed before it ended
            try:
                data = os.read(self.out, _OUTPUT_MAX)
            except OSError:
                break
            if not data:
                break
            if len(self.output) < _OUTPUT_MAX:
                self.output += data[:_OUTPUT_MAX - len(self.output)]
        for fd in (self.pidfd, self.out):
            os.close(fd)
        self.pid, self.pidfd, self.out = 0, -1, -1
        if timed_out:
            self._record(-1, f"Health check exceeded timeout ({self.config.timeout:g}s)")
        else:
            self._record(code, self.output.decode(errors="replace"))

    def _record(self, code: int, output: str) -> None:
        now = time.monotonic()
        before = self.status
        self.log = [*self.log, {"Start": _iso(self.check_wall or time.time()),
                                "End": _iso(time.time()), "ExitCode": code,
                                "Output": output}][-_LOG_KEEP:]
        if code == 0:
            self.status, self.streak = "healthy", 0
        elif now - self.started >= self.config.start_period:
            self.streak += 1
            if self.streak >= self.config.retries:
                self.status = "unhealthy"
        self.next_due = now + self.config.interval
        self._save()
        if self.status != before and self.on_status is not None:
            self.on_status(self.status)

    def _save(self) -> None:
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"Status": self.status, "FailingStreak": self.streak, "Log": self.log}, f)
        os.replace(tmp, self.state_file)

    def close(self) -> None:
        if self.pid:
            self.finish(timed_out=True)
