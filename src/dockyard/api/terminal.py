"""The terminal side of attach and exec sessions: docker's detach keys and window sizes.

Detach keys are docker's notation (``ctrl-p,ctrl-q``, the default; ``a,ctrl-x``): typed into
an attached terminal, they end the session and leave the container (or exec) running. The
docker CLI watches for them itself; the daemon watches too, for clients that do not.
"""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import termios

from dockyard.errors import InvalidArgument

DEFAULT_DETACH_KEYS = b"\x10\x11"    # ctrl-p ctrl-q

_CTRL_SPECIAL = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse_detach_keys(text: str) -> bytes:
    """docker's ``--detach-keys`` / ``detachKeys``; empty means the default."""
    if not text:
        return DEFAULT_DETACH_KEYS
    out = bytearray()
    for key in text.split(","):
        low = key.lower()
        if len(key) > 1 and low.startswith("ctrl-") and len(low) == 6:
            c = low[5]
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
                continue
            if c in _CTRL_SPECIAL:
                out.append(_CTRL_SPECIAL[c])
                continue
        elif len(key) == 1 and key.isascii():
            out.append(ord(key))
            continue
        raise InvalidArgument(f"Invalid detach keys ({text}) provided")
    return bytes(out)


class DetachScanner:
    """Passes input on, holding back a possible start of the detach sequence until the next
    bytes tell whether it is one."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to pass on, whether the sequence was typed)."""
        data = self.held + data
        self.held = b""
        at = data.find(self.keys)
        if at >= 0:
            return data[:at], True
        for n in range(len(self.keys) - 1, 0, -1):
            if data.endswith(self.keys[:n]):
                self.held = data[-n:]
                return data[:-n], False
        return data, False


def size_args(height: int | None, width: int | None) -> tuple[int, int]:
    """The ``h`` and ``w`` of a resize request, checked."""
    if height is None or width is None or not 0 <= height < 65536 or not 0 <= width < 65536:
        raise InvalidArgument("bad parameter: h and w must be numbers from 0 to 65535")
    return height, width


def set_size(master: int, rows: int, cols: int, pid: int) -> None:
    """Resize a pseudo-terminal we hold the master of, and tell ``pid`` (the runtime's exec,
    which copies its terminal's size into the container's on SIGWINCH)."""
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    if pid > 0:
        try:
            os.kill(pid, signal.SIGWINCH)
        except ProcessLookupError:
            pass
