"""Bindings to the few libc calls the stdlib lacks, on ``_ctypes`` alone.

Every call raises :class:`~dockyard.errors.SyscallError` carrying the operation, the path and
errno. Nothing here decides anything: callers above ``linux/`` pass the policy in.

Why not ``ctypes``: this module is on the path of every ``dockyard-runc create`` and ``run``,
and ``import ctypes`` costs ~3.5 ms in a bare ``python3 -IS`` (~2 ms of a ``create`` served from
the code bundle): ``ctypes/__init__.py`` imports ``struct``, ``types`` and ``ctypes._endian``
and builds ~40 classes, CDLL, PyDLL and ``pythonapi``. The C module ``_ctypes`` alone costs
~0.4 ms. The few C types and the two kinds of function pointer used here are declared below
as ``ctypes/__init__.py`` declares them. Modules used only with a seccomp profile, BPF
devices, nftables or the new mount API (``seccomp``, ``bpf``, ``nftables``, ``fsmount``) keep
full ``ctypes``: both share ``_ctypes`` and coexist. Keep imports here to ``_ctypes`` and what
every verb loads anyway (``os``, ``dockyard.errors``): no ``struct``, ``ctypes``, ``types``.
"""

from __future__ import annotations

import _ctypes
import os

from dockyard.errors import SyscallError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    _IntData = _ctypes._SimpleCData[int]
    _BytesData = _ctypes._SimpleCData[bytes | None]
else:
    # typeshed's _SimpleCData is generic; the runtime class is not subscriptable
    _IntData = _BytesData = _ctypes._SimpleCData


# --- C types: a _SimpleCData subclass is a C type named by its struct-module code letter ---
# (each costs ~8 us to create, so the fixed-width ones are aliases, as ctypes makes them on
# LP64 Linux: int is 32 bits, long and size_t 64)

class c_int(_IntData):
    _type_ = "i"


class c_uint32(_IntData):
    _type_ = "I"


class c_long(_IntData):
    _type_ = "l"


class c_ulong(_IntData):
    _type_ = "L"


class c_char_p(_BytesData):
    """``char *``: bytes or None (NULL) as an argument."""

    _type_ = "z"


c_int32 = c_int
c_uint64 = c_size_t = c_ulong


# --- function pointers ---

class _LibcFunc(_ctypes.CFuncPtr):
    """A libc function called as ``ctypes.CDLL(..., use_errno=True)`` calls it: the GIL is
    released during the call and errno is saved where ``_ctypes.get_errno()`` reads it."""

    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_int


class _GilFunc(_ctypes.CFuncPtr):
    """A function called with the GIL held, as ``ctypes.pythonapi`` calls it: the interpreter's
    fork hooks must run under the GIL, and so must the clone between them (``os.fork`` holds it
    across fork()). errno is saved too (a PyDLL does not), for clone3's failures."""

    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_PYTHONAPI | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_int


# The soname directly: ctypes.util.find_library would import subprocess and run ldconfig
# (~10 ms) on the path of every container start.
_LIBC = _ctypes.dlopen("libc.so.6")
# dlopen(NULL): the interpreter itself and what it loaded (libpython when built shared), as
# ctypes.pythonapi. typeshed's stub omits None, which _ctypes.dlopen documents and accepts.
_PROGRAM = _ctypes.dlopen(None)  # type: ignore[arg-type]


def _libc(name: str, restype: type[_IntData] = c_int,
          argtypes: tuple[type[_IntData] | type[_BytesData], ...] | None = None) -> _LibcFunc:
    """libc's ``name``; without argtypes, ints go as C int and bytes/None as char pointers."""
    func = _LibcFunc(_ctypes.dlsym(_LIBC, name))
    func.restype = restype
    if argtypes is not None:
        func.argtypes = argtypes
    return func


def _gil(name: str, restype: type[_IntData] | None) -> _GilFunc:
    func = _GilFunc(_ctypes.dlsym(_PROGRAM, name))
    func.restype = restype
    return func


_mount = _libc("mount", argtypes=(c_char_p, c_char_p, c_char_p, c_ulong, c_char_p))
_umount2 = _libc("umount2", argtypes=(c_char_p, c_int))
_unshare = _libc("unshare", argtypes=(c_int,))
_setns = _libc("setns", argtypes=(c_int, c_int))
_sethostname = _libc("sethostname", argtypes=(c_char_p, c_size_t))
_setdomainname = _libc("setdomainname", argtypes=(c_char_p, c_size_t))
_prctl = _libc("prctl", argtypes=(c_int, c_ulong, c_ulong, c_ulong, c_ulong))
_setrlimit = _libc("setrlimit")  # (int, const struct rlimit *): the defaults fit
_syscall = _libc("syscall", restype=c_long)  # variadic: no argtypes


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
    return SyscallError(op, _ctypes.get_errno(), path)


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    if _mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        raise _fail("mount", target)


def umount2(target: str, flags: int = 0) -> None:
    if _umount2(_b(target), flags) != 0:
        raise _fail("umount2", target)


def unshare(flags: int) -> None:
    if _unshare(flags) != 0:
        raise _fail("unshare")


def setns(fd: int, nstype: int = 0) -> None:
    if _setns(fd, nstype) != 0:
        raise _fail("setns")


def pivot_root(new_root: str, put_old: str) -> None:
    nr = _SYS_PIVOT_ROOT[os.uname().machine]
    if _syscall(nr, _b(new_root), _b(put_old)) != 0:
        raise _fail("pivot_root", new_root)


def sethostname(name: str) -> None:
    raw = name.encode()
    if _sethostname(raw, len(raw)) != 0:
        raise _fail("sethostname")


def setdomainname(name: str) -> None:
    raw = name.encode()
    if _setdomainname(raw, len(raw)) != 0:
        raise _fail("setdomainname")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    rc: int = _prctl(option, arg2, arg3, arg4, arg5)
    if rc < 0:
        raise _fail(f"prctl({option})")
    return rc


class _CapHeader(_ctypes.Structure):
    _fields_ = (("version", c_uint32), ("pid", c_int))


class _CapData(_ctypes.Structure):
    _fields_ = (("effective", c_uint32), ("permitted", c_uint32), ("inheritable", c_uint32))


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
    if _syscall(nr, _ctypes.byref(header), _ctypes.byref(data)) != 0:
        raise _fail("capset")


# Resource limits (asm-generic/resource.h: x86_64's and aarch64's numbers), by the names OCI
# uses. Not the resource module: an extension library to load (~0.15 ms) on every start, and its
# setrlimit takes signed C longs, so OCI's RLIM_INFINITY (2**64-1) overflowed it.
RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
    "RLIMIT_OFILE": 7,  # BSD's name for NOFILE, which Python's resource module accepts too
}
RLIM_INFINITY = 2**64 - 1


class _Rlimit(_ctypes.Structure):
    _fields_ = (("cur", c_uint64), ("max", c_uint64))


def setrlimit(resource: int, soft: int, hard: int) -> None:
    """setrlimit(2) with the kernel's unsigned 64-bit values (-1 is taken as RLIM_INFINITY,
    as the resource module takes it)."""
    limit = _Rlimit(soft & RLIM_INFINITY, hard & RLIM_INFINITY)
    if _setrlimit(resource, _ctypes.byref(limit)) != 0:
        name = next((n for n, r in RLIMITS.items() if r == resource), str(resource))
        raise _fail(f"setrlimit({name})")


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
    if _syscall(_SYS_IOPRIO_SET[os.uname().machine], IOPRIO_WHO_PROCESS, 0, value) != 0:
        raise _fail("ioprio_set")


class _SchedAttr(_ctypes.Structure):
    _fields_ = (("size", c_uint32), ("sched_policy", c_uint32),
                ("sched_flags", c_uint64), ("sched_nice", c_int32),
                ("sched_priority", c_uint32), ("sched_runtime", c_uint64),
                ("sched_deadline", c_uint64), ("sched_period", c_uint64))


def sched_setattr(policy: int, flags: int, nice: int, priority: int, *, runtime: int,
                  deadline: int, period: int) -> None:
    """This process's scheduling policy and attributes (sched_setattr(2))."""
    attr = _SchedAttr(_ctypes.sizeof(_SchedAttr), policy, flags, nice, priority, runtime,
                      deadline, period)
    if _syscall(_SYS_SCHED_SETATTR[os.uname().machine], 0, _ctypes.byref(attr), 0) != 0:
        raise _fail("sched_setattr")


_SYS_KEYCTL = {"x86_64": 250, "aarch64": 219}
KEYCTL_JOIN_SESSION_KEYRING = 1
KEYCTL_SETPERM = 5


def join_session_keyring(name: str) -> int:
    """A new session keyring for this process (and what it execs); returns its serial."""
    serial: int = _syscall(_SYS_KEYCTL[os.uname().machine], KEYCTL_JOIN_SESSION_KEYRING,
                           _b(name))
    if serial < 0:
        raise _fail("keyctl(JOIN_SESSION_KEYRING)")
    return serial


def keyring_setperm(serial: int, perm: int) -> None:
    if _syscall(_SYS_KEYCTL[os.uname().machine], KEYCTL_SETPERM, serial, perm) != 0:
        raise _fail("keyctl(SETPERM)")


# clone3(2) with CLONE_INTO_CGROUP (Linux >= 5.7): a child born in a cgroup v2 directory.
CLONE_INTO_CGROUP = 0x200000000
_SYS_CLONE3 = 435  # the same number on every architecture (the new syscall table)
_SIGCHLD = 17


class _CloneArgs(_ctypes.Structure):
    _fields_ = tuple((name, c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size",
        "tls", "set_tid", "set_tid_size", "cgroup"))


# Called with the GIL held (see _GilFunc): as os.fork, which runs the same three hooks.
_before_fork = _gil("PyOS_BeforeFork", None)
_after_fork_parent = _gil("PyOS_AfterFork_Parent", None)
_after_fork_child = _gil("PyOS_AfterFork_Child", None)
_clone_syscall = _gil("syscall", c_long)


def clone(flags: int, cgroup_fd: int | None = None) -> int:
    """``os.fork()`` through clone3(2): the child starts in the new namespaces ``flags`` asks
    for (CLONE_NEWPID: it is pid 1 of a new pid namespace, no middle process needed) and, with
    ``cgroup_fd``, in that cgroup v2 directory (CLONE_INTO_CGROUP).

    Why a cgroup at birth: moving a process with a write to ``cgroup.procs`` takes the kernel's
    threadgroup lock for writing, which waits for an RCU grace period (10-30 ms measured here);
    a child cloned into the cgroup only takes it for reading. Wrapped in the interpreter's fork
    bookkeeping exactly as ``os.fork`` is. glibc's cached thread id stays the parent's in the
    child (glibc >= 2.34 asks the kernel in raise/pthread_kill on itself, getpid is a real
    syscall, and the child ends in execve or _exit). Raises SyscallError (ENOSYS before Linux
    5.3, EINVAL before 5.7, ...): callers fall back to another way."""
    if cgroup_fd is not None:
        flags |= CLONE_INTO_CGROUP
    args = _CloneArgs(flags=flags, exit_signal=_SIGCHLD, cgroup=cgroup_fd or 0)
    _before_fork()
    pid: int = _clone_syscall(_SYS_CLONE3, _ctypes.byref(args), _ctypes.sizeof(args))
    if pid == 0:
        _after_fork_child()
        return 0
    err = _ctypes.get_errno()  # before the hook: its own calls would overwrite the saved errno
    _after_fork_parent()
    if pid < 0:
        raise SyscallError("clone3(CLONE_INTO_CGROUP)" if cgroup_fd is not None else "clone3",
                           err)
    return pid
