"""ctypes bindings to the few libc calls the stdlib lacks.

Every call raises :class:`~dockyard.errors.SyscallError` carrying the operation, the path and
errno. Nothing here decides anything: callers above ``linux/`` pass the policy in.
"""

from __future__ import annotations

import ctypes
import os

from dockyard.errors import SyscallError

# The soname directly: ctypes.util.find_library would import subprocess and run ldconfig
# (~10 ms) on the path of every container start.
_libc = ctypes.CDLL("libc.so.6", use_errno=True)

_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]
_libc.syscall.restype = ctypes.c_long

# Namespace flags (linux/sched.h).
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# Mount flags (linux/mount.h).
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_FORCE = 1
MNT_DETACH = 2

# prctl options (linux/prctl.h).
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
_SYS_CAPSET = {"x86_64": 126, "aarch64": 91}


def _fail(op: str, path: str | None = None) -> SyscallError:
    return SyscallError(op, ctypes.get_errno(), path)


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    if _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        raise _fail("mount", target)


def umount2(target: str, flags: int = 0) -> None:
    if _libc.umount2(_b(target), flags) != 0:
        raise _fail("umount2", target)


def unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        raise _fail("unshare")


def setns(fd: int, nstype: int = 0) -> None:
    if _libc.setns(fd, nstype) != 0:
        raise _fail("setns")


def pivot_root(new_root: str, put_old: str) -> None:
    nr = _SYS_PIVOT_ROOT[os.uname().machine]
    if _libc.syscall(nr, _b(new_root), _b(put_old)) != 0:
        raise _fail("pivot_root", new_root)


def sethostname(name: str) -> None:
    raw = name.encode()
    if _libc.sethostname(raw, len(raw)) != 0:
        raise _fail("sethostname")


def setdomainname(name: str) -> None:
    raw = name.encode()
    if _libc.setdomainname(raw, len(raw)) != 0:
        raise _fail("setdomainname")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    rc: int = _libc.prctl(option, arg2, arg3, arg4, arg5)
    if rc < 0:
        raise _fail(f"prctl({option})")
    return rc


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's capability sets (64-bit masks)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i, shift in enumerate((0, 32)):
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    nr = _SYS_CAPSET[os.uname().machine]
    if _libc.syscall(nr, ctypes.byref(header), ctypes.byref(data)) != 0:
        raise _fail("capset")


# statvfs f_flag bits (ST_*) and the mount flags they stand for: the first ones share values.
# MS_RDONLY is left out: asking for rw where the kernel locked ro fails loudly, as it should.
_ST_TO_MS = ((2, MS_NOSUID), (4, MS_NODEV), (8, MS_NOEXEC),
             (16, MS_SYNCHRONOUS), (64, MS_MANDLOCK), (1024, MS_NOATIME),
             (2048, MS_NODIRATIME), (4096, MS_RELATIME))


def locked_mount_flags(path: str) -> int:
    """The flags of the mount holding ``path`` that a user namespace may not clear on a
    remount (the kernel locks them when the mount came from a more privileged namespace)."""
    f_flag = os.statvfs(path).f_flag
    return sum(ms for st, ms in _ST_TO_MS if f_flag & st)


_SYS_IOPRIO_SET = {"x86_64": 251, "aarch64": 30}
_SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}
IOPRIO_WHO_PROCESS = 1
IOPRIO_CLASS_SHIFT = 13


def ioprio_set(io_class: int, level: int) -> None:
    """This process's I/O priority (ioprio_set(2))."""
    value = (io_class << IOPRIO_CLASS_SHIFT) | level
    if _libc.syscall(_SYS_IOPRIO_SET[os.uname().machine], IOPRIO_WHO_PROCESS, 0, value) != 0:
        raise _fail("ioprio_set")


class _SchedAttr(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("sched_policy", ctypes.c_uint32),
                ("sched_flags", ctypes.c_uint64), ("sched_nice", ctypes.c_int32),
                ("sched_priority", ctypes.c_uint32), ("sched_runtime", ctypes.c_uint64),
                ("sched_deadline", ctypes.c_uint64), ("sched_period", ctypes.c_uint64)]


def sched_setattr(policy: int, flags: int, nice: int, priority: int, *, runtime: int,
                  deadline: int, period: int) -> None:
    """This process's scheduling policy and attributes (sched_setattr(2))."""
    attr = _SchedAttr(ctypes.sizeof(_SchedAttr), policy, flags, nice, priority, runtime,
                      deadline, period)
    if _libc.syscall(_SYS_SCHED_SETATTR[os.uname().machine], 0, ctypes.byref(attr), 0) != 0:
        raise _fail("sched_setattr")


_SYS_KEYCTL = {"x86_64": 250, "aarch64": 219}
KEYCTL_JOIN_SESSION_KEYRING = 1
KEYCTL_SETPERM = 5


def join_session_keyring(name: str) -> int:
    """A new session keyring for this process (and what it execs); returns its serial."""
    serial: int = _libc.syscall(_SYS_KEYCTL[os.uname().machine], KEYCTL_JOIN_SESSION_KEYRING,
                                _b(name))
    if serial < 0:
        raise _fail("keyctl(JOIN_SESSION_KEYRING)")
    return serial


def keyring_setperm(serial: int, perm: int) -> None:
    if _libc.syscall(_SYS_KEYCTL[os.uname().machine], KEYCTL_SETPERM, serial, perm) != 0:
        raise _fail("keyctl(SETPERM)")


# clone3(2) with CLONE_INTO_CGROUP (Linux >= 5.7): a child born in a cgroup v2 directory.
CLONE_INTO_CGROUP = 0x200000000
_SYS_CLONE3 = 435  # the same number on every architecture (the new syscall table)
_SIGCHLD = 17


class _CloneArgs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size",
        "tls", "set_tid", "set_tid_size", "cgroup")]


# Through pythonapi (a PyDLL): the call keeps the GIL, as a fork must.
_py = ctypes.pythonapi
_py.PyOS_BeforeFork.restype = None
_py.PyOS_AfterFork_Parent.restype = None
_py.PyOS_AfterFork_Child.restype = None
_py.syscall.restype = ctypes.c_long


def fork_into_cgroup(cgroup_fd: int) -> int:
    """``os.fork()``, but the child starts life in the cgroup v2 directory ``cgroup_fd``.

    Why: moving a process with a write to ``cgroup.procs`` takes the kernel's threadgroup
    lock for writing, which waits for an RCU grace period (10-30 ms measured here); a child
    cloned into the cgroup only takes it for reading. Wrapped in the interpreter's fork
    bookkeeping exactly as ``os.fork`` is. glibc's cached thread id stays the parent's in
    the child: nothing we run there uses it (getpid is a real syscall). Raises SyscallError
    (ENOSYS before Linux 5.3, EINVAL before 5.7, ...): callers fall back to ``os.fork``.
    """
    args = _CloneArgs(flags=CLONE_INTO_CGROUP, exit_signal=_SIGCHLD, cgroup=cgroup_fd)
    _py.PyOS_BeforeFork()
    pid: int = _py.syscall(_SYS_CLONE3, ctypes.byref(args), ctypes.sizeof(args))
    if pid == 0:
        _py.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    _py.PyOS_AfterFork_Parent()
    if pid < 0:
        raise SyscallError("clone3(CLONE_INTO_CGROUP)", err)
    return pid


def clone(flags: int, cgroup_fd: int | None = None) -> int:
    """``os.fork()`` through clone3(2): the child starts in the new namespaces ``flags`` asks
    for (CLONE_NEWPID: it is pid 1 of a new pid namespace, no middle process needed) and, with
    ``cgroup_fd``, in that cgroup v2 directory (CLONE_INTO_CGROUP). The same bookkeeping and
    the same caveat as :func:`fork_into_cgroup`: glibc's cached thread id stays the parent's
    in the child (glibc >= 2.34 asks the kernel in raise/pthread_kill on itself, and the child
    ends in execve or _exit). Raises SyscallError; callers fall back to another way."""
    if cgroup_fd is not None:
        flags |= CLONE_INTO_CGROUP
    args = _CloneArgs(flags=flags, exit_signal=_SIGCHLD, cgroup=cgroup_fd or 0)
    _py.PyOS_BeforeFork()
    pid: int = _py.syscall(_SYS_CLONE3, ctypes.byref(args), ctypes.sizeof(args))
    if pid == 0:
        _py.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    _py.PyOS_AfterFork_Parent()
    if pid < 0:
        raise SyscallError("clone3", err)
    return pid
