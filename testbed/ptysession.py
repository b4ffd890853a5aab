"""A command driven through a pseudo-terminal, as a person at a terminal would: it is the
session leader with the pty as its controlling terminal and stdio; the test waits for text,
types keys and reads the exit status. Stopped by its PID (its own process group) if it
outlives the test."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Mapping, Sequence


class PtySession:
    def __init__(self, argv: Sequence[str], env: Mapping[str, str] | None = None, *,
                 rows: int = 24, cols: int = 80) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        # setsid --ctty: a new session whose controlling terminal is the pty (no fork, so
        # proc.pid is the command itself)
        self.proc = subprocess.Popen(["setsid", "--ctty", *argv], stdin=slave, stdout=slave,
                                     stderr=slave, env=dict(env) if env is not None else None,
                                     close_fds=True)
        os.close(slave)
        self.master = master
        self.output = b""
        self.seen = 0       # where the next expect() starts looking
        self.eof = False

    def _read(self, timeout: float) -> None:
        if self.eof:
            time.sleep(min(timeout, 0.05))
            return
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return
        try:
            chunk = os.read(self.master, 4096)
        except OSError as e:     # EIO: every holder of the slave side is gone
            if e.errno != errno.EIO:
                raise
            chunk = b""
        if chunk:
            self.output += chunk
        else:
            self.eof = True

    def expect(self, text: str, timeout: float = 30) -> str:
        """Wait until ``text`` shows after what earlier expects matched; the output up to it."""
        want = text.encode()
        deadline = time.monotonic() + timeout
        while True:
            at = self.output.find(want, self.seen)
            if at >= 0:
                got = self.output[self.seen:at]
                self.seen = at + len(want)
                return got.decode(errors="replace")
            if time.monotonic() > deadline or (self.eof and self.proc.poll() is not None):
                raise AssertionError(f"{text!r} never showed; the terminal got:\n"
                                     f"{self.text()!r}")
            self._read(0.1)

    def send(self, data: str | bytes) -> None:
        os.write(self.master, data.encode() if isinstance(data, str) else data)

    def resize(self, rows: int, cols: int) -> None:
        """What a terminal emulator does when its window changes: the size, then SIGWINCH."""
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def wait(self, timeout: float = 30) -> int:
        """The command's exit status, reading its output meanwhile."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"still running after {timeout}s; the terminal got:\n"
                                     f"{self.text()!r}")
            self._read(0.1)
        for _ in range(20):     # what it printed last
            if self.eof:
                break
            self._read(0.05)
        return self.proc.returncode

    def text(self) -> str:
        return self.output.decode(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.pid > 0:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.master >= 0:
            os.close(self.master)
            self.master = -1

    def __enter__(self) -> PtySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
