"""ctypes bindings to libseccomp (compiling) and to the kernel's seccomp(2) (loading).

Two halves that never meet in one process step:

* :class:`Filter` wraps a libseccomp ``scmp_filter_ctx``: add architectures and rules, then
  :meth:`Filter.export_bpf` returns the classic-BPF program as bytes. This runs in the runtime's
  parent, before fork. ``libseccomp.so.2`` is opened on first use only, so a container without
  a seccomp profile never maps it.
* :func:`load_bpf` hands such bytes to the kernel with ``seccomp(SECCOMP_SET_MODE_FILTER)``
  (``prctl(PR_SET_SECCOMP)`` where seccomp(2) is missing and no flags are asked for). It needs
  only libc, so the container's child loads a filter without libseccomp.

libseccomp reports failures as negative errno values; they become
:class:`~dockyard.errors.SyscallError` (or :class:`~dockyard.errors.InvalidArgument` for a name
it does not know). Nothing here decides anything: the policy comes from
:mod:`dockyard.runtime.seccomp`.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Sequence
from types import TracebackType

from dockyard.errors import InvalidArgument, SyscallError, Unavailable
from dockyard.values import value

LIBSECCOMP = "libseccomp.so.2"

# Actions (seccomp.h). ERRNO and TRACE carry 16 bits of data.
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_KILL = SCMP_ACT_KILL_THREAD
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_NOTIFY = 0x7FC00000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_ACT_ERRNO = 0x00050000
_SCMP_ACT_TRACE = 0x7FF00000
ACTION_DATA_MAX = 0xFFFF


def scmp_act_errno(err: int) -> int:
    return _SCMP_ACT_ERRNO | (err & ACTION_DATA_MAX)


def scmp_act_trace(msg: int) -> int:
    return _SCMP_ACT_TRACE | (msg & ACTION_DATA_MAX)


# enum scmp_compare
SCMP_CMP_NE = 1
SCMP_CMP_LT = 2
SCMP_CMP_LE = 3
SCMP_CMP_EQ = 4
SCMP_CMP_GE = 5
SCMP_CMP_GT = 6
SCMP_CMP_MASKED_EQ = 7          # datum_a is the mask, datum_b the value

# enum scmp_filter_attr. The CTL_* ones only change what seccomp_load() passes to the kernel;
# we export and load ourselves, so their seccomp(2) counterparts are the SECCOMP_FILTER_FLAG_*
# below.
SCMP_FLTATR_ACT_DEFAULT = 1
SCMP_FLTATR_ACT_BADARCH = 2
SCMP_FLTATR_CTL_NNP = 3
SCMP_FLTATR_CTL_TSYNC = 4
SCMP_FLTATR_API_TSKIP = 5
SCMP_FLTATR_CTL_LOG = 6
SCMP_FLTATR_CTL_SSB = 7
SCMP_FLTATR_CTL_OPTIMIZE = 8
SCMP_FLTATR_API_SYSRAWRC = 9

# seccomp(2) (linux/seccomp.h).
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1 << 0
SECCOMP_FILTER_FLAG_LOG = 1 << 1
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 1 << 2
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_FILTER_FLAG_TSYNC_ESRCH = 1 << 4
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

BPF_INSN_SIZE = 8               # struct sock_filter
BPF_MAXINSNS = 4096             # the kernel refuses longer programs

_NR_ERROR = -1                  # __NR_SCMP_ERROR
_SYS_SECCOMP = {"x86_64": 317, "aarch64": 277, "riscv64": 277, "s390x": 348, "ppc64le": 358}


class ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp"""

    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


@value
class Condition:
    """One argument comparison of a rule, in libseccomp's terms."""

    arg: int
    op: int
    datum_a: int
    datum_b: int = 0


_lib_handle: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _lib_handle  # noqa: PLW0603 - one lazily opened library per process
    if _lib_handle is not None:
        return _lib_handle
    try:
        lib = ctypes.CDLL(LIBSECCOMP, use_errno=True)
    except OSError as exc:
        raise Unavailable(f"seccomp: cannot load {LIBSECCOMP}: {exc}",
                          hint="install libseccomp2 (apt-get install libseccomp2)") from None
    ctx = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_init.restype = ctx
    lib.seccomp_release.argtypes = [ctx]
    lib.seccomp_release.restype = None
    lib.seccomp_arch_add.argtypes = [ctx, ctypes.c_uint32]
    lib.seccomp_arch_exist.argtypes = [ctx, ctypes.c_uint32]
    lib.seccomp_arch_native.argtypes = []
    lib.seccomp_arch_native.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctx, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(ArgCmp)]
    lib.seccomp_attr_set.argtypes = [ctx, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_export_bpf.argtypes = [ctx, ctypes.c_int]
    lib.seccomp_export_pfc.argtypes = [ctx, ctypes.c_int]
    lib.seccomp_version.argtypes = []
    lib.seccomp_version.restype = ctypes.POINTER(_Version)
    _lib_handle = lib
    return lib


def version() -> tuple[int, int, int]:
    v = _lib().seccomp_version().contents
    return (v.major, v.minor, v.micro)


def arch_native() -> int:
    """The AUDIT_ARCH_* token of the architecture libseccomp was built for."""
    token: int = _lib().seccomp_arch_native()
    return token


def arch_resolve_name(name: str) -> int | None:
    """libseccomp's token for an architecture name such as ``x86_64`` or ``aarch64``."""
    token: int = _lib().seccomp_arch_resolve_name(name.encode())
    return token or None


def syscall_resolve_name(name: str, arch: int | None = None) -> int | None:
    """The syscall number for ``name`` (native arch unless ``arch`` is given); None if this
    libseccomp does not know the name. Syscalls that exist only on another architecture of a
    multi-arch filter come back as libseccomp's negative pseudo numbers."""
    raw = name.encode()
    lib = _lib()
    nr: int = (lib.seccomp_syscall_resolve_name(raw) if arch is None
               else lib.seccomp_syscall_resolve_name_arch(arch, raw))
    return None if nr == _NR_ERROR else nr


def _check(rc: int, op: str, detail: str = "") -> None:
    if rc < 0:
        raise SyscallError(op, -rc, detail=detail)


class Filter:
    """A libseccomp filter context; release it with :meth:`release` or ``with``."""

    def __init__(self, default_action: int) -> None:
        lib = _lib()
        ctx = lib.seccomp_init(default_action)
        if not ctx:
            # libseccomp validates the action against the running kernel here.
            raise InvalidArgument(f"seccomp: default action {default_action:#x} is not "
                                  "supported by this kernel or libseccomp")
        self._lib = lib
        self._ctx: int | None = ctx

    def __enter__(self) -> Filter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def _handle(self) -> int:
        if self._ctx is None:
            raise ValueError("seccomp filter used after release")
        return self._ctx

    def release(self) -> None:
        if self._ctx is not None:
            self._lib.seccomp_release(self._ctx)
            self._ctx = None

    def add_arch(self, token: int) -> None:
        """Add an architecture; adding one already there (the native one) is not an error."""
        rc = self._lib.seccomp_arch_add(self._handle(), token)
        if rc == -errno.EEXIST:
            return
        _check(rc, "seccomp_arch_add", f"arch {token:#x}")

    def has_arch(self, token: int) -> bool:
        rc: int = self._lib.seccomp_arch_exist(self._handle(), token)
        if rc == -errno.EEXIST:
            return False
        _check(rc, "seccomp_arch_exist", f"arch {token:#x}")
        return True

    def set_attr(self, attr: int, value: int) -> None:
        _check(self._lib.seccomp_attr_set(self._handle(), attr, value), "seccomp_attr_set",
               f"attribute {attr} = {value:#x}")

    def add_rule(self, action: int, syscall: int, conditions: Sequence[Condition] = (),
                 *, name: str = "") -> None:
        """seccomp_rule_add_array: ``action`` when every condition holds (AND)."""
        arr = (ArgCmp * max(1, len(conditions)))()
        for i, c in enumerate(conditions):
            arr[i] = ArgCmp(c.arg, c.op, c.datum_a, c.datum_b)
        rc = self._lib.seccomp_rule_add_array(self._handle(), action, syscall,
                                              len(conditions), arr)
        _check(rc, "seccomp_rule_add", f"syscall {name or syscall}, action {action:#x}")

    def _export(self, fn_name: str) -> bytes:
        fd = os.memfd_create("dockyard-seccomp", os.MFD_CLOEXEC)
        try:
            _check(getattr(self._lib, fn_name)(self._handle(), fd), fn_name)
            size = os.fstat(fd).st_size
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)

    def export_bpf(self) -> bytes:
        """The filter as a classic-BPF program (``struct sock_filter[]``), host byte order."""
        return self._export("seccomp_export_bpf")

    def export_pfc(self) -> str:
        """The filter as libseccomp's human-readable pseudo filter code (for debugging)."""
        return self._export("seccomp_export_pfc").decode()


# --- loading: libc only ------------------------------------------------------------------

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _seccomp_nr() -> int | None:
    return _SYS_SECCOMP.get(os.uname().machine)


def kernel_accepts_flags(flags: int) -> bool:
    """Whether seccomp(2) knows ``flags``, asked without installing anything: with a NULL
    program a known flag set fails with EFAULT, an unknown one with EINVAL (libseccomp's
    probe)."""
    nr = _seccomp_nr()
    if nr is None:
        return False
    rc = _libc.syscall(ctypes.c_long(nr), ctypes.c_long(SECCOMP_SET_MODE_FILTER),
                       ctypes.c_long(flags), ctypes.c_void_p(None))
    return rc < 0 and ctypes.get_errno() == errno.EFAULT


def load_bpf(program: bytes, flags: int = 0) -> None:
    """Install ``program`` as a seccomp filter on the calling thread (all threads with TSYNC).

    The kernel requires no_new_privs or CAP_SYS_ADMIN in the caller's user namespace. The
    filter survives execve and cannot be removed; everything this process does afterwards is
    filtered, so callers do this as late as they can before execve.
    """
    if not program or len(program) % BPF_INSN_SIZE:
        raise InvalidArgument(f"seccomp: a BPF program is a non-empty array of "
                              f"{BPF_INSN_SIZE}-byte instructions, got {len(program)} bytes")
    count = len(program) // BPF_INSN_SIZE
    if count > BPF_MAXINSNS:
        raise InvalidArgument(f"seccomp: the filter has {count} instructions; the kernel "
                              f"accepts at most {BPF_MAXINSNS}")
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(count, ctypes.cast(buf, ctypes.c_void_p))
    nr = _seccomp_nr()
    err = errno.ENOSYS
    if nr is not None:
        rc = _libc.syscall(ctypes.c_long(nr), ctypes.c_long(SECCOMP_SET_MODE_FILTER),
                           ctypes.c_long(flags), ctypes.byref(prog))
        if rc == 0:
            return
        if rc > 0:
            # With TSYNC, the id of a thread that could not be synchronised.
            raise SyscallError("seccomp(SECCOMP_SET_MODE_FILTER)", errno.ESRCH,
                               detail=f"thread {rc} could not be synchronised (TSYNC)")
        err = ctypes.get_errno()
    if err == errno.ENOSYS and flags == 0:
        # Kernels before 3.17 have no seccomp(2); prctl takes a program but no flags.
        rc = _libc.prctl(ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER),
                         ctypes.byref(prog), ctypes.c_ulong(0), ctypes.c_ulong(0))
        if rc == 0:
            return
        err = ctypes.get_errno()
    detail = {
        errno.EACCES: "needs no_new_privs or CAP_SYS_ADMIN",
        errno.EINVAL: f"the kernel rejected the program or flags {flags:#x}",
    }.get(err, "")
    raise SyscallError("seccomp(SECCOMP_SET_MODE_FILTER)", err, detail=detail)
