"""Path joins that cannot escape a root directory.

A container's rootfs is untrusted: a symlink inside it may point at ``/etc`` or ``../../..``.
:func:`secure_join` resolves a path the way the kernel would if ``root`` were ``/`` (symlinks
followed relative to ``root``, ``..`` clamped at it), so the result always stays beneath ``root``.
"""

from __future__ import annotations

import errno
import os

from dockyard.errors import SyscallError

_MAX_LINKS = 255


class EscapeError(SyscallError):
    """A path tried to climb out of its root (``strict`` joins only)."""


def secure_join(root: str, unsafe: str, *, strict: bool = False) -> str:
    """``strict``: raise :class:`EscapeError` instead of clamping when a ``..`` (written in
    ``unsafe`` or met in a symlink's target) would climb above ``root``."""
    root = os.path.abspath(root)
    pending = [p for p in unsafe.split("/") if p]
    parts: list[str] = []
    links = 0
    while pending:
        name = pending.pop(0)
        if name == ".":
            continue
        if name == "..":
            if parts:
                parts.pop()
            elif strict:
                raise EscapeError("secure_join", errno.EXDEV, os.path.join(root, unsafe),
                                  detail=f"{unsafe!r} leads out of {root}")
            continue
        candidate = os.path.join(root, *parts, name)
        try:
            target = os.readlink(candidate)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
                raise SyscallError("readlink", exc.errno or 0, candidate) from None
            parts.append(name)
            continue
        links += 1
        if links > _MAX_LINKS:
            raise SyscallError("secure_join", errno.ELOOP, candidate)
        if target.startswith("/"):
            parts = []
        pending = [p for p in target.split("/") if p] + pending
    return os.path.join(root, *parts)
