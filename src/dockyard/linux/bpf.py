"""Raw bpf(2) for cgroup device filters: load a BPF_PROG_TYPE_CGROUP_DEVICE program and make it
the only one attached to a cgroup (what runc's ``devices/ebpf_linux.go`` and crun's ``ebpf.c``
do).

This is syscall code and belongs in ``dockyard.linux`` by the layering rules; it lives here,
self-contained (ctypes + errors only), until it moves there.

Replacing a filter is done without a window in which the cgroup has none: the new program is
attached (BPF_F_ALLOW_MULTI, with BPF_F_REPLACE when exactly one old program is there) before
the old ones are detached. A program stays alive while attached, so our fds are closed at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import struct

from dockyard.errors import SyscallError, Unavailable

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351, "riscv64": 280}

BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 1 << 1
BPF_F_REPLACE = 1 << 2
_ATTR_SIZE = 128          # larger than every union member used; the tail stays zero
_LOG_SIZE = 64 * 1024
_LICENSE = b"Apache\0"
_NAME = b"dockyard_dev"

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], what: str, path: str) -> int:
    try:
        nr = _SYS_BPF[os.uname().machine]
    except KeyError:
        raise Unavailable(f"bpf(2) number unknown on {os.uname().machine}") from None
    for _ in range(30):   # the verifier may be interrupted by a signal: EAGAIN, retry
        rc = int(_libc.syscall(ctypes.c_long(nr), ctypes.c_long(cmd), attr,
                               ctypes.c_ulong(_ATTR_SIZE)))
        if rc >= 0:
            return rc
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.EINTR):
            raise SyscallError(f"bpf({what})", err, path)
    raise SyscallError(f"bpf({what})", errno.EAGAIN, path)


def _attr(*fields: tuple[int, str, int]) -> ctypes.Array[ctypes.c_char]:
    buf = ctypes.create_string_buffer(_ATTR_SIZE)
    for offset, fmt, value in fields:
        struct.pack_into("=" + fmt, buf, offset, value)
    return buf


def load_device_program(program: bytes, path: str = "") -> int:
    """BPF_PROG_LOAD; returns the program fd. A verifier rejection carries the verifier log."""
    insns = ctypes.create_string_buffer(program, len(program))
    lic = ctypes.create_string_buffer(_LICENSE, len(_LICENSE))
    log = ctypes.create_string_buffer(_LOG_SIZE)
    attr = _attr((0, "I", BPF_PROG_TYPE_CGROUP_DEVICE), (4, "I", len(program) // 8),
                 (8, "Q", ctypes.addressof(insns)), (16, "Q", ctypes.addressof(lic)))
    struct.pack_into(f"={len(_NAME)}s", attr, 48, _NAME)   # prog_name
    try:
        return _bpf(BPF_PROG_LOAD, attr, "BPF_PROG_LOAD", path)
    except SyscallError as exc:
        if exc.errno not in (errno.EINVAL, errno.EACCES):
            if exc.errno == errno.EPERM:
                raise SyscallError("bpf(BPF_PROG_LOAD)", exc.errno, path,
                                   detail="loading a device filter needs CAP_BPF or "
                                          "CAP_SYS_ADMIN") from None
            raise
        # Load again with the verifier's log to say why.
        struct.pack_into("=IIQ", attr, 24, 1, _LOG_SIZE, ctypes.addressof(log))
        try:
            return _bpf(BPF_PROG_LOAD, attr, "BPF_PROG_LOAD", path)
        except SyscallError as again:
            text = log.value.decode(errors="replace").strip().splitlines()
            raise SyscallError("bpf(BPF_PROG_LOAD)", again.errno, path,
                               detail="verifier: " + " | ".join(text[-5:])) from None


def attached_programs(cgroup_fd: int, path: str = "") -> list[int]:
    """Ids of the device programs attached to the cgroup (BPF_PROG_QUERY)."""
    count = 64
    for _ in range(10):
        ids = (ctypes.c_uint32 * count)()
        # Kernels >= 6.17 write the query's "revision" (offset 56) whatever size we pass:
        # the attr buffer is large enough for it.
        attr = _attr((0, "I", cgroup_fd), (4, "I", BPF_CGROUP_DEVICE),
                     (16, "Q", ctypes.addressof(ids)), (24, "I", count))
        try:
            _bpf(BPF_PROG_QUERY, attr, "BPF_PROG_QUERY", path)
        except SyscallError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            count = struct.unpack_from("=I", attr, 24)[0]
            continue
        n = struct.unpack_from("=I", attr, 24)[0]
        return list(ids[:n])
    raise SyscallError("bpf(BPF_PROG_QUERY)", errno.ENOSPC, path)


def _prog_fd(prog_id: int, path: str) -> int | None:
    try:
        return _bpf(BPF_PROG_GET_FD_BY_ID, _attr((0, "I", prog_id)), "BPF_PROG_GET_FD_BY_ID",
                    path)
    except SyscallError as exc:
        if exc.errno in (errno.ENOENT, errno.EPERM, errno.EACCES):
            return None   # gone meanwhile, or an LSM hides it: it can only restrict more
        raise


def _attach(cgroup_fd: int, prog_fd: int, flags: int, replace_fd: int, path: str) -> None:
    _bpf(BPF_PROG_ATTACH, _attr((0, "I", cgroup_fd), (4, "I", prog_fd),
                                (8, "I", BPF_CGROUP_DEVICE), (12, "I", flags),
                                (16, "I", replace_fd)), "BPF_PROG_ATTACH", path)


def _detach(cgroup_fd: int, prog_fd: int, path: str) -> None:
    _bpf(BPF_PROG_DETACH, _attr((0, "I", cgroup_fd), (4, "I", prog_fd),
                                (8, "I", BPF_CGROUP_DEVICE)), "BPF_PROG_DETACH", path)


def replace_device_filter(path: str, program: bytes) -> None:
    """Attach ``program`` to the cgroup directory ``path`` in place of any device filter
    attached there before."""
    try:
        cgroup_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise SyscallError("open", exc.errno or errno.EIO, path) from None
    old: list[int] = []
    try:
        for prog_id in attached_programs(cgroup_fd, path):
            fd = _prog_fd(prog_id, path)
            if fd is not None:
                old.append(fd)
        new = load_device_program(program, path)
        try:
            if len(old) == 1:
                try:
                    _attach(cgroup_fd, new, BPF_F_ALLOW_MULTI | BPF_F_REPLACE, old[0], path)
                    return
                except SyscallError as exc:
                    if exc.errno != errno.EINVAL:   # EINVAL: no BPF_F_REPLACE (< 5.6)
                        raise
            _attach(cgroup_fd, new, BPF_F_ALLOW_MULTI, 0, path)
            for fd in old:
                _detach(cgroup_fd, fd, path)
        finally:
            os.close(new)
    finally:
        for fd in old:
            with contextlib.suppress(OSError):
                os.close(fd)
        os.close(cgroup_fd)


def detach_all(path: str) -> int:
    """Detach every device filter from ``path`` (tests, repair); how many were detached."""
    cgroup_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        n = 0
        for prog_id in attached_programs(cgroup_fd, path):
            fd = _prog_fd(prog_id, path)
            if fd is None:
                continue
            try:
                _detach(cgroup_fd, fd, path)
                n += 1
            finally:
                os.close(fd)
        return n
    finally:
        os.close(cgroup_fd)
