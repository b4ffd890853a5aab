"""The new mount API (fsopen, fsconfig, fsmount, move_mount; Linux >= 5.2).

It passes a filesystem's options one by one instead of in one page of mount(2) data, which is
what lets overlayfs take hundreds of ``lowerdir+`` layers (Linux >= 6.8). On failure the
kernel's own explanation (the fs context log: "overlay: ...") is added to the error.
"""

from __future__ import annotations

import ctypes
import errno
import os

from dockyard.errors import SyscallError

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long

# The same numbers on every architecture (the unified syscall table).
_SYS_MOVE_MOUNT = 429
_SYS_FSOPEN = 430
_SYS_FSCONFIG = 431
_SYS_FSMOUNT = 432

FSOPEN_CLOEXEC = 1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 1
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_NODIRATIME = 0x80
MOVE_MOUNT_F_EMPTY_PATH = 0x4
_AT_FDCWD = -100


def _context_log(fs_fd: int) -> str:
    """What the kernel logged into the fs context (one message per read)."""
    lines = []
    for _ in range(16):
        try:
            msg = os.read(fs_fd, 1024)
        except OSError:
            break
        if not msg:
            break
        lines.append(msg.decode(errors="replace").strip())
    return "; ".join(lines)


def _check(rc: int, op: str, fs_fd: int | None = None, path: str | None = None) -> int:
    if rc < 0:
        err = ctypes.get_errno()
        detail = _context_log(fs_fd) if fs_fd is not None else ""
        raise SyscallError(op, err, path, detail=detail)
    return rc


def fsopen(fstype: str) -> int:
    return _check(_libc.syscall(_SYS_FSOPEN, fstype.encode(), FSOPEN_CLOEXEC), "fsopen",
                  path=fstype)


def fsconfig_flag(fs_fd: int, key: str) -> None:
    _check(_libc.syscall(_SYS_FSCONFIG, fs_fd, FSCONFIG_SET_FLAG, key.encode(), None, 0),
           f"fsconfig({key})", fs_fd)


def fsconfig_string(fs_fd: int, key: str, value: str) -> None:
    _check(_libc.syscall(_SYS_FSCONFIG, fs_fd, FSCONFIG_SET_STRING, key.encode(),
                         os.fsencode(value), 0), f"fsconfig({key})", fs_fd, value)


def fsconfig_create(fs_fd: int) -> None:
    _check(_libc.syscall(_SYS_FSCONFIG, fs_fd, FSCONFIG_CMD_CREATE, None, None, 0),
           "fsconfig(create)", fs_fd)


def fsmount(fs_fd: int, attr_flags: int = 0) -> int:
    return _check(_libc.syscall(_SYS_FSMOUNT, fs_fd, FSMOUNT_CLOEXEC, attr_flags), "fsmount",
                  fs_fd)


def move_mount(mnt_fd: int, target: str) -> None:
    _check(_libc.syscall(_SYS_MOVE_MOUNT, mnt_fd, b"", _AT_FDCWD, os.fsencode(target),
                         MOVE_MOUNT_F_EMPTY_PATH), "move_mount", path=target)


def mount_fs(fstype: str, target: str, options: list[tuple[str, str | None]],
             attr_flags: int = 0) -> None:
    """Mount a new ``fstype`` on ``target``: ``options`` are (key, value) pairs, value None for
    a flag; ``attr_flags`` are MOUNT_ATTR_* bits."""
    fs_fd = fsopen(fstype)
    try:
        for key, value in options:
            if value is None:
                fsconfig_flag(fs_fd, key)
            else:
                fsconfig_string(fs_fd, key, value)
        fsconfig_create(fs_fd)
        mnt_fd = fsmount(fs_fd, attr_flags)
    finally:
        os.close(fs_fd)
    try:
        move_mount(mnt_fd, target)
    finally:
        os.close(mnt_fd)


def unsupported(err: SyscallError) -> bool:
    """The new API or the option is missing on this kernel (fall back to mount(2))."""
    return err.errno in (errno.ENOSYS, errno.EOPNOTSUPP)
