"""Compiled profiles against the real kernel: a forked child loads the program, then reports
what its own syscalls did (or the parent sees how it died)."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import resource
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dockyard.errors import SyscallError
from dockyard.linux import libc
from dockyard.linux import seccomp as sc
from dockyard.model.seccomp import parse_seccomp
from dockyard.runtime import seccomp as rs

pytestmark = pytest.mark.integration

_libc = ctypes.CDLL(None, use_errno=True)
_libc.personality.argtypes = [ctypes.c_ulong]


def _compile(profile: dict[str, Any]) -> bytes:
    return rs.compile_filter(parse_seccomp(profile))


def _run_filtered(bpf: bytes, probe: Callable[[], object], *, flags: int = 0,
                  nnp: bool = True, before: Callable[[], None] | None = None,
                  ) -> tuple[int, Any]:
    """Fork; the child sets no_new_privs, loads ``bpf``, runs ``probe`` and sends back its
    result as JSON. Returns the wait status and the result (None if the child sent none)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(r)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGSYS would dump core
            if before is not None:
                before()
            if nnp:
                libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
            rs.load_filter(bpf, flags)
            out = {"result": probe()}
        except BaseException as exc:
            out = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return status, json.loads(b"".join(chunks)) if chunks else None


def _errno_of(call: Callable[[], object]) -> int:
    try:
        call()
    except OSError as exc:
        return exc.errno or -1
    return 0


def _personality(persona: int) -> int:
    rc = _libc.personality(persona)
    return ctypes.get_errno() if rc == -1 else 0


def test_errno_rules_with_default_allow(tmp_path: Path) -> None:
    bpf = _compile({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
             "errnoRet": errno.EPERM},
            {"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
        ],
    })

    def probe() -> dict[str, object]:
        dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        (tmp_path / "file").write_text("still allowed")
        return {
            "mkdir": _errno_of(lambda: os.mkdir(tmp_path / "a")),
            "mkdirat": _errno_of(lambda: os.mkdir("b", dir_fd=dir_fd)),
            "uname": _errno_of(os.uname),
            "read": (tmp_path / "file").read_text(),
            "listdir": sorted(os.listdir(tmp_path)),
            "getpid": os.getpid() > 0,
        }

    status, out = _run_filtered(bpf, probe)
    assert os.waitstatus_to_exitcode(status) == 0
    assert out == {"result": {"mkdir": errno.EPERM, "mkdirat": errno.EPERM,
                              "uname": errno.ENOSYS, "read": "still allowed",
                              "listdir": ["file"], "getpid": True}}
    # The parent was never filtered.
    os.mkdir(tmp_path / "parent")
    assert os.uname().sysname == "Linux"


def test_argument_conditions() -> None:
    bpf = _compile({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            # personality only with arg0 == 0.
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_NE"}]},
            # AND of two arguments, one of them masked: AF_INET datagram sockets, whatever
            # SOCK_CLOEXEC/SOCK_NONBLOCK are or'ed into the type.
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES,
             "args": [{"index": 0, "value": socket.AF_INET, "op": "SCMP_CMP_EQ"},
                      {"index": 1, "value": 0xF, "valueTwo": socket.SOCK_DGRAM,
                       "op": "SCMP_CMP_MASKED_EQ"}]},
            # Two conditions on one argument: runc's (and docker's) OR.
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EINVAL,
             "args": [{"index": 1, "value": signal.SIGUSR1, "op": "SCMP_CMP_EQ"},
                      {"index": 1, "value": signal.SIGUSR2, "op": "SCMP_CMP_EQ"}]},
        ],
    })

    def probe() -> dict[str, object]:
        def sock(family: int, kind: int) -> None:
            socket.socket(family, kind).close()

        return {
            "personality(0)": _personality(0),
            "personality(PER_LINUX32)": _personality(0x0008),
            "personality(query)": _personality(0xFFFFFFFF),
            "inet dgram": _errno_of(lambda: sock(socket.AF_INET, socket.SOCK_DGRAM)),
            "inet dgram|cloexec": _errno_of(
                lambda: sock(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)),
            "inet stream": _errno_of(lambda: sock(socket.AF_INET, socket.SOCK_STREAM)),
            "unix dgram": _errno_of(lambda: sock(socket.AF_UNIX, socket.SOCK_DGRAM)),
            "kill USR1": _errno_of(lambda: os.kill(os.getpid(), signal.SIGUSR1)),
            "kill USR2": _errno_of(lambda: os.kill(os.getpid(), signal.SIGUSR2)),
            "kill 0": _errno_of(lambda: os.kill(os.getpid(), 0)),
        }

    status, out = _run_filtered(bpf, probe)
    assert os.waitstatus_to_exitcode(status) == 0
    assert out == {"result": {
        "personality(0)": 0, "personality(PER_LINUX32)": errno.EPERM,
        "personality(query)": errno.EPERM,
        "inet dgram": errno.EACCES, "inet dgram|cloexec": errno.EACCES, "inet stream": 0,
        "unix dgram": 0,
        "kill USR1": errno.EINVAL, "kill USR2": errno.EINVAL, "kill 0": 0,
    }}


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL"])
def test_kill_actions_end_the_child_with_sigsys(action: str) -> None:
    bpf = _compile({"defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["getppid"], "action": action}]})
    status, out = _run_filtered(bpf, os.getppid)
    assert os.WIFSIGNALED(status)
    assert os.WTERMSIG(status) == signal.SIGSYS
    assert out is None


def test_trap_raises_sigsys() -> None:
    bpf = _compile({"defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_TRAP"}]})
    status, _ = _run_filtered(bpf, os.getppid)
    assert os.WIFSIGNALED(status)
    assert os.WTERMSIG(status) == signal.SIGSYS


def test_a_profile_with_unknown_names_still_compiles_and_works(tmp_path: Path) -> None:
    bpf = _compile({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["definitely_not_a_syscall", "_llseek", "mkdir", "mkdirat"],
                      "action": "SCMP_ACT_ERRNO"}],
    })
    status, out = _run_filtered(bpf, lambda: _errno_of(lambda: os.mkdir(tmp_path / "x")))
    assert os.waitstatus_to_exitcode(status) == 0
    assert out == {"result": errno.EPERM}


def test_default_deny_with_an_allowlist_for_the_probe() -> None:
    """defaultAction ERRNO: what is not listed fails, what is listed works."""
    bpf = _compile({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.ENOSYS,
        "syscalls": [{"names": ["write", "exit", "exit_group", "getpid", "close", "munmap",
                                "mmap", "brk", "rt_sigaction", "rt_sigprocmask", "futex",
                                "madvise", "mremap"],
                      "action": "SCMP_ACT_ALLOW"}],
    })

    def probe() -> dict[str, object]:
        # getppid cannot fail, so neither glibc nor Python check: -ENOSYS comes through.
        return {"getpid": os.getpid() > 0, "getppid": os.getppid(),
                "uname": _errno_of(os.uname)}

    status, out = _run_filtered(bpf, probe)
    assert os.waitstatus_to_exitcode(status) == 0
    assert out == {"result": {"getpid": True, "getppid": -errno.ENOSYS, "uname": errno.ENOSYS}}


def test_syscalls_newer_than_a_deny_by_default_profile_get_enosys() -> None:
    """runc's stub: what the profile could not know about answers ENOSYS (so that glibc
    falls back), what it knows and does not allow answers its default EPERM."""
    allow = ["write", "exit", "exit_group", "getpid", "close", "munmap", "mmap", "brk",
             "rt_sigaction", "rt_sigprocmask", "futex", "madvise", "mremap"]
    bpf = _compile({"defaultAction": "SCMP_ACT_ERRNO",
                    "syscalls": [{"names": allow, "action": "SCMP_ACT_ALLOW"}]})
    newer = sc.syscall_resolve_name("landlock_create_ruleset")  # 444 everywhere, above `allow`
    older = sc.syscall_resolve_name("uname")
    assert newer is not None
    assert older is not None
    _libc.syscall.restype = ctypes.c_long

    def raw(number: int) -> int:
        rc = _libc.syscall(ctypes.c_long(number), ctypes.c_long(0), ctypes.c_long(0),
                           ctypes.c_long(1))
        return ctypes.get_errno() if rc == -1 else 0

    status, out = _run_filtered(bpf, lambda: {"newer": raw(newer), "older": raw(older),
                                              "unknown": raw(1000)})
    assert os.waitstatus_to_exitcode(status) == 0
    assert out == {"result": {"newer": errno.ENOSYS, "older": errno.EPERM,
                              "unknown": errno.ENOSYS}}


def test_load_flags_are_accepted_by_this_kernel() -> None:
    bpf = _compile({"defaultAction": "SCMP_ACT_ALLOW",
                    "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                              "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                              "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
                    "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_ERRNO"}]})
    flags = rs.load_flags(parse_seccomp({"defaultAction": "SCMP_ACT_ALLOW", "flags": [
        "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}))
    status, out = _run_filtered(bpf, lambda: _errno_of(os.uname), flags=flags)
    assert os.waitstatus_to_exitcode(status) == 0
    assert out == {"result": errno.EPERM}


def test_without_no_new_privs_or_cap_sys_admin_the_kernel_refuses() -> None:
    bpf = _compile({"defaultAction": "SCMP_ACT_ALLOW"})

    def drop_to_nobody() -> None:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)  # without KEEPCAPS: every capability is gone

    status, out = _run_filtered(bpf, lambda: "loaded", nnp=False, before=drop_to_nobody)
    assert os.waitstatus_to_exitcode(status) == 0
    assert out["error"].startswith(f"{SyscallError.__name__}: seccomp(SECCOMP_SET_MODE_FILTER)"
                                   ": EACCES")
    assert "needs no_new_privs or CAP_SYS_ADMIN" in out["error"]


def test_with_cap_sys_admin_no_new_privs_is_not_needed() -> None:
    bpf = _compile({"defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_ERRNO"}]})
    status, out = _run_filtered(bpf, lambda: _errno_of(os.uname), nnp=False)
    assert os.waitstatus_to_exitcode(status) == 0
    assert out == {"result": errno.EPERM}


def test_the_filter_survives_execve() -> None:
    """What a container's process sees: loaded last, then execve."""
    bpf = _compile({"defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_ERRNO",
                                  "errnoRet": errno.ENOSYS}]})
    uname = "/bin/uname"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(r)
            os.dup2(w, 1)
            os.dup2(w, 2)
            libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
            rs.load_filter(bpf, 0)
            os.execv(uname, [uname, "-s"])
        finally:
            os._exit(127)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        output = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1
    assert "Function not implemented" in output
    # and without the filter the same program works
    assert subprocess.run([uname, "-s"], capture_output=True, text=True,
                          check=True).stdout.strip() == "Linux"


def test_a_filter_from_the_cache_behaves_like_a_fresh_one(tmp_path: Path) -> None:
    profile = parse_seccomp({"defaultAction": "SCMP_ACT_ALLOW",
                             "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_ERRNO",
                                           "errnoRet": errno.ENOSYS}]})
    first = rs.prepare(profile, tmp_path)
    cached = rs.prepare(profile, tmp_path)
    assert first is not None
    assert cached is not None
    assert cached == first
    status, out = _run_filtered(cached.bpf, lambda: _errno_of(os.uname), flags=cached.flags)
    assert os.waitstatus_to_exitcode(status) == 0
    assert out == {"result": errno.ENOSYS}


def test_the_kernel_rejects_a_program_that_is_not_seccomp_bpf() -> None:
    # One instruction: "ret" with an opcode the seccomp verifier does not allow (0xFFFF).
    bogus = (0xFFFF).to_bytes(2, "little") + b"\0\0" + (0).to_bytes(4, "little")
    status, out = _run_filtered(bogus, lambda: "loaded")
    assert os.waitstatus_to_exitcode(status) == 0
    assert out["error"].startswith("SyscallError: seccomp(SECCOMP_SET_MODE_FILTER): EINVAL")


def test_native_libseccomp_arch_matches_the_kernel() -> None:
    machine = os.uname().machine
    assert sc.arch_native() == sc.arch_resolve_name(machine)
