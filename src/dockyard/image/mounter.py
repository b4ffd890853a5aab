"""Performs the mounts a snapshotter describes (:class:`~dockyard.image.snapshot.Mount`).

Overlay mounts go through the new mount API with one ``lowerdir+`` per layer: no page-size
limit on the options and no working-directory games. Where the kernel lacks it (before 6.8),
mount(2) takes the options as one string, with relative lowerdirs resolved from the mount's
``chdir``: the process changes directory for the duration of the call (under a lock; other
threads must not rely on the working directory meanwhile, which nothing in Dockyard does).
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Sequence

from dockyard.errors import InvalidArgument, SyscallError
from dockyard.image.snapshot import Mount
from dockyard.linux import fsmount, libc

_PAGE = 4096
_cwd_lock = threading.Lock()

_FLAGS = {
    "ro": libc.MS_RDONLY, "nosuid": libc.MS_NOSUID, "nodev": libc.MS_NODEV,
    "noexec": libc.MS_NOEXEC, "noatime": libc.MS_NOATIME, "nodiratime": libc.MS_NODIRATIME,
    "relatime": libc.MS_RELATIME, "sync": libc.MS_SYNCHRONOUS,
}
_ATTRS = {
    "ro": fsmount.MOUNT_ATTR_RDONLY, "nosuid": fsmount.MOUNT_ATTR_NOSUID,
    "nodev": fsmount.MOUNT_ATTR_NODEV, "noexec": fsmount.MOUNT_ATTR_NOEXEC,
    "noatime": fsmount.MOUNT_ATTR_NOATIME, "nodiratime": fsmount.MOUNT_ATTR_NODIRATIME,
}
_IGNORED = frozenset({"rw", "bind", "rbind", "relatime"})


def mount_all(mounts: Sequence[Mount], target: str) -> None:
    """Mount each of ``mounts`` on ``target``, in order (later ones on top); on failure the
    ones already made are undone."""
    done = 0
    try:
        for m in mounts:
            if m.type == "bind":
                _bind(m, target)
            elif m.type == "overlay":
                _overlay(m, target)
            else:
                _generic(m, target)
            done += 1
    except BaseException:
        for _ in range(done):
            _umount(target)
        raise


def unmount(target: str) -> None:
    """Unmount everything stacked on ``target`` (lazily if busy)."""
    while True:
        try:
            libc.umount2(target, 0)
        except SyscallError as e:
            if e.errno == errno.EINVAL:  # nothing (more) is mounted there
                return
            if e.errno != errno.EBUSY:
                raise
            libc.umount2(target, libc.MNT_DETACH)


def _umount(target: str) -> None:
    try:
        libc.umount2(target, libc.MNT_DETACH)
    except SyscallError:
        pass


def _split(options: Sequence[str]) -> tuple[int, list[str]]:
    flags = 0
    data = []
    for opt in options:
        if opt in _FLAGS:
            flags |= _FLAGS[opt]
        elif opt not in _IGNORED:
            data.append(opt)
    return flags, data


def _bind(m: Mount, target: str) -> None:
    flags = libc.MS_BIND | (libc.MS_REC if "rbind" in m.options else 0)
    libc.mount(m.source, target, None, flags)
    extra, _ = _split(m.options)
    if extra:
        try:
            libc.mount(None, target, None, libc.MS_BIND | libc.MS_REMOUNT | extra)
        except BaseException:
            _umount(target)
            raise


def _generic(m: Mount, target: str) -> None:
    flags, data = _split(m.options)
    libc.mount(m.source, target, m.type, flags, ",".join(data) or None)


def _overlay(m: Mount, target: str) -> None:
    flags, data = _split(m.options)
    try:
        _overlay_fsconfig(m, data, flags, target)
        return
    except SyscallError as e:
        if not (fsmount.unsupported(e) or (e.op == "fsconfig(lowerdir+)"
                                           and e.errno == errno.EINVAL)):
            raise
    text = ",".join(data)
    if len(text) >= _PAGE:
        raise InvalidArgument(
            f"overlay options for {target} take {len(text)} bytes, more than mount(2) accepts "
            f"({_PAGE}), and this kernel has no lowerdir+ (Linux >= 6.8)",
            hint="use fewer layers (squash the image)")
    if not m.chdir:
        libc.mount(m.source, target, "overlay", flags, text)
        return
    target = os.path.abspath(target)
    with _cwd_lock:
        here = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.chdir(m.chdir)
            libc.mount(m.source, target, "overlay", flags, text)
        finally:
            os.fchdir(here)
            os.close(here)


def _overlay_fsconfig(m: Mount, data: list[str], flags: int, target: str) -> None:
    def path(p: str) -> str:
        return os.path.join(m.chdir, p) if m.chdir and not p.startswith("/") else p

    params: list[tuple[str, str | None]] = []
    for opt in data:
        key, eq, value = opt.partition("=")
        if key == "lowerdir":
            # Overlay's own escaping (\: in a path) is not produced by our snapshotters.
            params += [("lowerdir+", path(p)) for p in value.split(":")]
        elif key in ("upperdir", "workdir"):
            params.append((key, path(value)))
        else:
            params.append((key, value if eq else None))
    attrs = 0
    for opt in m.options:
        attrs |= _ATTRS.get(opt, 0)
    if flags & libc.MS_RDONLY:
        params.append(("ro", None))  # the superblock too, not only the mount
    fsmount.mount_fs("overlay", target, params, attrs)
