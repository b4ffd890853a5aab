"""Compiling linux.seccomp through libseccomp, and the compiled-filter cache (no root needed:
nothing here loads a filter)."""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path
from typing import Any

import pytest
from test_seccomp_model import docker_like_profile

from dockyard.errors import InvalidArgument, SyscallError, Unavailable
from dockyard.linux import seccomp as sc
from dockyard.model.seccomp import Operator, SyscallArg, parse_seccomp
from dockyard.runtime import seccomp as rs

try:
    LIBSECCOMP = sc.version()
except Unavailable:  # pragma: no cover - libseccomp2 is a runtime dependency
    pytest.skip("libseccomp is not installed", allow_module_level=True)


def _compile(profile: dict[str, Any]) -> bytes:
    return rs.compile_filter(parse_seccomp(profile))


def _pfc(rules: list[tuple[int, str, list[sc.Condition]]], default: int) -> str:
    with sc.Filter(default) as f:
        for action, name, conds in rules:
            nr = sc.syscall_resolve_name(name)
            assert nr is not None
            f.add_rule(action, nr, conds, name=name)
        return f.export_pfc()


def test_docker_like_profile_compiles_to_bpf() -> None:
    bpf = _compile(docker_like_profile())
    assert bpf
    assert len(bpf) % sc.BPF_INSN_SIZE == 0
    assert len(bpf) // sc.BPF_INSN_SIZE < sc.BPF_MAXINSNS


def test_compiling_is_deterministic() -> None:
    assert _compile(docker_like_profile()) == _compile(docker_like_profile())


def test_a_different_profile_gives_a_different_program() -> None:
    other = docker_like_profile()
    other["syscalls"][6]["errnoRet"] = 1
    assert _compile(other) != _compile(docker_like_profile())


def test_unknown_syscall_names_are_skipped() -> None:
    base = {"defaultAction": "SCMP_ACT_ALLOW"}
    unknown = {**base, "syscalls": [{"names": ["definitely_not_a_syscall", "nor_this_one"],
                                     "action": "SCMP_ACT_ERRNO"}]}
    assert _compile(unknown) == _compile(base)


def test_rules_with_the_default_action_are_dropped() -> None:
    # ENOSYS as the default: no ENOSYS stub, so only libseccomp's program is compared.
    base = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.ENOSYS}
    same = {**base, "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                                  "errnoRet": errno.ENOSYS}]}
    assert _compile(same) == _compile(base)
    # ERRNO with another errno is another action.
    other = {**base, "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    assert _compile(other) != _compile(base)


def test_errno_defaults_to_eperm() -> None:
    implicit = {"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    explicit = {"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    assert _compile(implicit) == _compile(explicit)


def test_more_architectures_make_a_longer_program() -> None:
    native = docker_like_profile()
    del native["architectures"]
    assert len(_compile(native)) < len(_compile(docker_like_profile()))


def test_kill_is_kill_thread() -> None:
    a = {"defaultAction": "SCMP_ACT_KILL"}
    b = {"defaultAction": "SCMP_ACT_KILL_THREAD"}
    assert _compile(a) == _compile(b)
    assert _compile(a) != _compile({"defaultAction": "SCMP_ACT_KILL_PROCESS"})


def test_notify_is_refused_naming_the_field() -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock",
               "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}
    with pytest.raises(InvalidArgument, match=r"linux\.seccomp\.syscalls\[0\]\.action: "
                                              r"SCMP_ACT_NOTIFY is not supported"):
        rs.prepare(parse_seccomp(profile), None)


def test_errno_wider_than_16_bits_is_refused() -> None:
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}
    with pytest.raises(InvalidArgument, match=r"linux\.seccomp\.defaultAction: errno 70000"):
        _compile(profile)


def test_an_architecture_of_the_other_byte_order_is_refused() -> None:
    other = "SCMP_ARCH_S390X" if os.uname().machine in ("x86_64", "aarch64") else "SCMP_ARCH_X86"
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": [other]}
    with pytest.raises(InvalidArgument, match=rf"architectures\[0\]: {other} cannot share a "
                                              r"filter .* byte orders differ"):
        _compile(profile)


@pytest.mark.skipif(sc.arch_resolve_name("loongarch64") is not None,
                    reason="this libseccomp knows loongarch64")
def test_an_architecture_libseccomp_lacks_is_refused() -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_LOONGARCH64"]}
    with pytest.raises(InvalidArgument, match=r"architectures\[1\]: SCMP_ARCH_LOONGARCH64 is "
                                              r"not supported by libseccomp"):
        _compile(profile)


# --- what the programs do, run through a small classic-BPF interpreter -----------------------

X86_64, X86, AARCH64 = 0xC000003E, 0x40000003, 0xC00000B7
X32_BIT = 0x40000000
ALLOW, KILL_THREAD, KILL_PROCESS = 0x7FFF0000, 0x00000000, 0x80000000
LOG, TRAP = 0x7FFC0000, 0x00030000


def ERRNO(n: int) -> int:
    return 0x00050000 | n


def TRACE(n: int) -> int:
    return 0x7FF00000 | n


def run_bpf(program: bytes, nr: int, arch: int = X86_64, args: tuple[int, ...] = ()) -> int:
    """Evaluate a seccomp program for one struct seccomp_data; returns the action."""
    full_args = (*args, *(0,) * (6 - len(args)))
    data = struct.pack("=iIQ6Q", nr, arch, 0, *full_args)
    insns: list[tuple[int, int, int, int]] = [
        struct.unpack_from("=HBBI", program, off) for off in range(0, len(program), 8)]
    a = x = 0
    mem = [0] * 16
    pc = 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x20:                     # ld [k]
            a = struct.unpack_from("=I", data, k)[0]
        elif code == 0x00:                   # ld #k
            a = k
        elif code == 0x01:                   # ldx #k
            x = k
        elif code == 0x60:                   # ld M[k]
            a = mem[k]
        elif code == 0x61:                   # ldx M[k]
            x = mem[k]
        elif code == 0x02:                   # st M[k]
            mem[k] = a
        elif code == 0x54:                   # and #k
            a &= k
        elif code == 0x07:                   # tax
            x = a
        elif code == 0x87:                   # txa
            a = x
        elif code == 0x05:                   # ja k
            pc += k
        elif code in (0x15, 0x25, 0x35, 0x45):
            taken = {0x15: a == k, 0x25: a > k, 0x35: a >= k, 0x45: bool(a & k)}[code]
            pc += jt if taken else jf
        elif code == 0x06:                   # ret #k
            return k
        else:
            raise AssertionError(f"opcode {code:#x} at {pc - 1} not interpreted")


def nr(name: str, arch: str = "x86_64") -> int:
    token = sc.arch_resolve_name(arch)
    assert token is not None
    number = sc.syscall_resolve_name(name, token)
    assert number is not None
    return number


needs_x86_64 = pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 numbers")


@needs_x86_64
def test_the_docker_like_profile_means_what_it_says() -> None:
    prog = _compile(docker_like_profile())
    assert run_bpf(prog, nr("read")) == ALLOW
    assert run_bpf(prog, nr("uname")) == ERRNO(errno.EPERM)           # not listed: default
    assert run_bpf(prog, nr("bpf")) == ERRNO(errno.EPERM)             # dropped, still denied
    assert run_bpf(prog, nr("clone3")) == ERRNO(errno.ENOSYS)
    assert run_bpf(prog, nr("ptrace")) == TRACE(errno.EPERM)
    assert run_bpf(prog, nr("reboot")) == KILL_PROCESS
    assert run_bpf(prog, nr("acct")) == LOG
    personality = nr("personality")
    for persona in (0, 8, 0x20000, 0xFFFFFFFF):
        assert run_bpf(prog, personality, args=(persona,)) == ALLOW
    assert run_bpf(prog, personality, args=(0x0040000,)) == ERRNO(errno.EPERM)
    clone = nr("clone")
    assert run_bpf(prog, clone, args=(0x01200011,)) == ALLOW          # fork()'s flags
    assert run_bpf(prog, clone, args=(0x01200011 | 0x10000000,)) == ERRNO(errno.EPERM)
    socket_nr = nr("socket")
    assert run_bpf(prog, socket_nr, args=(16, 3, 9)) == ERRNO(errno.EINVAL)   # audit netlink
    assert run_bpf(prog, socket_nr, args=(2, 1, 0)) == ALLOW
    assert run_bpf(prog, socket_nr, args=(2, 3, 9)) == ERRNO(errno.EPERM)     # neither rule


@needs_x86_64
def test_every_listed_architecture_is_filtered() -> None:
    prog = _compile(docker_like_profile())
    assert run_bpf(prog, nr("read", "x86"), arch=X86) == ALLOW
    assert run_bpf(prog, nr("_llseek", "x86"), arch=X86) == ALLOW
    assert run_bpf(prog, nr("uname", "x86"), arch=X86) == ERRNO(errno.EPERM)
    assert run_bpf(prog, nr("read", "x32"), arch=X86_64) == ALLOW
    assert nr("read", "x32") & X32_BIT
    assert run_bpf(prog, nr("read", "aarch64"), arch=AARCH64) == KILL_THREAD  # bad arch


@needs_x86_64
def test_syscalls_newer_than_the_profile_get_enosys() -> None:
    prog = _compile(docker_like_profile())
    highest = nr("clone3")                  # the highest number the profile names
    assert run_bpf(prog, highest + 1) == ERRNO(errno.ENOSYS)
    assert run_bpf(prog, 462) == ERRNO(errno.ENOSYS)   # mseal: unknown to libseccomp 2.5.4
    assert run_bpf(prog, highest - 1) == ERRNO(errno.EPERM)
    assert run_bpf(prog, (highest + 1) | X32_BIT) == ERRNO(errno.ENOSYS)
    # x32's own syscalls (512-547) are numbered above the new ones: not "new" themselves.
    assert run_bpf(prog, nr("execve", "x32"), arch=X86_64) == ALLOW
    assert nr("execve", "x32") == X32_BIT | 520
    assert run_bpf(prog, X32_BIT | 530, arch=X86_64) == ERRNO(errno.EPERM)
    assert run_bpf(prog, nr("clone3", "x86") + 1, arch=X86) == ERRNO(errno.ENOSYS)


@needs_x86_64
def test_no_enosys_stub_for_permissive_or_enosys_defaults() -> None:
    for default in ({"defaultAction": "SCMP_ACT_ALLOW"}, {"defaultAction": "SCMP_ACT_LOG"},
                    {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.ENOSYS}):
        profile = {**default, "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_TRAP"}]}
        prog = _compile(profile)
        assert run_bpf(prog, nr("uname")) == TRAP
        with sc.Filter(rs._action(parse_seccomp(profile).default_action,
                                  parse_seccomp(profile).default_errno_ret, "")) as f:
            f.add_rule(TRAP, nr("uname"), name="uname")
            assert prog == f.export_bpf()


@needs_x86_64
def test_without_x32_in_the_filter_x32_calls_are_left_to_libseccomp() -> None:
    prog = _compile({"defaultAction": "SCMP_ACT_KILL_PROCESS",
                     "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]})
    assert run_bpf(prog, nr("read")) == ALLOW
    assert run_bpf(prog, nr("read") + 1) == ERRNO(errno.ENOSYS)
    # An x32 number on an x86_64-only filter is libseccomp's "bad architecture".
    assert run_bpf(prog, nr("read", "x32"), arch=X86_64) == KILL_THREAD


def test_every_spec_operator_and_action_compiles() -> None:
    rules = [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
              "args": [{"index": 0, "value": 1, "valueTwo": 1, "op": op.value}]}
             for op in Operator]
    actions = ["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
               "SCMP_ACT_TRAP", "SCMP_ACT_TRACE", "SCMP_ACT_LOG"]
    rules += [{"names": [name], "action": action}
              for name, action in zip(["mkdir", "rmdir", "link", "unlink", "rename", "chmod"],
                                      actions, strict=True)]
    assert _compile({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules})


def test_two_conditions_on_one_argument_become_two_rules() -> None:
    """runc's reading, which docker's profiles rely on: OR, not an impossible AND."""
    same = [SyscallArg(0, 1, Operator.EQ), SyscallArg(0, 2, Operator.EQ)]
    groups = rs._rule_conditions(same)
    assert [[c.datum_a for c in g] for g in groups] == [[1], [2]]
    different = [SyscallArg(0, 16, Operator.EQ), SyscallArg(2, 9, Operator.EQ)]
    assert [[c.arg for c in g] for g in rs._rule_conditions(different)] == [[0, 2]]


def test_rule_semantics_reach_libseccomp() -> None:
    """What the filter means, read back as libseccomp's pseudo filter code."""
    pfc = _pfc([(sc.scmp_act_errno(errno.ENOSYS), "uname", []),
                (sc.scmp_act_errno(errno.EPERM), "personality",
                 [sc.Condition(0, sc.SCMP_CMP_NE, 0)]),
                (sc.scmp_act_errno(errno.EPERM), "clone",
                 [sc.Condition(0, sc.SCMP_CMP_MASKED_EQ, 0x10000000, 0x10000000)])],
               sc.SCMP_ACT_ALLOW)
    assert 'filter for syscall "uname"' in pfc
    assert "action ERRNO(38);" in pfc
    assert 'filter for syscall "personality"' in pfc
    assert 'filter for syscall "clone"' in pfc
    assert "action ALLOW;" in pfc


def test_libseccomp_errors_are_syscall_errors() -> None:
    with sc.Filter(sc.SCMP_ACT_ALLOW) as f, pytest.raises(SyscallError, match="EACCES"):
        f.add_rule(sc.SCMP_ACT_ALLOW, 0, name="read")


def test_filter_is_unusable_after_release() -> None:
    f = sc.Filter(sc.SCMP_ACT_ALLOW)
    f.release()
    f.release()
    with pytest.raises(ValueError, match="after release"):
        f.export_bpf()


def test_native_arch_is_always_present() -> None:
    with sc.Filter(sc.SCMP_ACT_ALLOW) as f:
        assert f.has_arch(sc.arch_native())
        f.add_arch(sc.arch_native())  # EEXIST is not an error


def test_load_flags() -> None:
    s = parse_seccomp({"defaultAction": "SCMP_ACT_ALLOW",
                       "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                                 "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                                 "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]})
    # WAIT_KILLABLE_RECV only means something for a notification listener, which we lack.
    assert rs.load_flags(s) == (sc.SECCOMP_FILTER_FLAG_TSYNC | sc.SECCOMP_FILTER_FLAG_LOG
                                | sc.SECCOMP_FILTER_FLAG_SPEC_ALLOW)


@pytest.mark.parametrize("program", [b"", b"\0" * 7, b"\0" * 8 * (sc.BPF_MAXINSNS + 1)])
def test_load_refuses_what_is_not_a_program_before_the_kernel_sees_it(program: bytes) -> None:
    with pytest.raises(InvalidArgument, match="seccomp: "):
        rs.load_filter(program, 0)


def test_features_describe_what_compiles() -> None:
    f = rs.features()
    assert f["enabled"] is True
    assert "SCMP_ACT_NOTIFY" not in f["actions"]  # type: ignore[operator]
    assert f["operators"] == sorted(o.value for o in Operator)
    assert "SCMP_ARCH_X86_64" in f["archs"]  # type: ignore[operator]
    for arch in f["archs"]:  # type: ignore[attr-defined]
        try:
            assert _compile({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [arch]})
        except InvalidArgument as exc:
            assert "byte orders differ" in str(exc)
    assert set(f["supportedFlags"]) <= set(f["knownFlags"])  # type: ignore[call-overload]


def test_the_kernel_flag_probe_installs_nothing() -> None:
    assert sc.kernel_accepts_flags(sc.SECCOMP_FILTER_FLAG_LOG)
    assert not sc.kernel_accepts_flags(1 << 30)
    # Had the probe installed a filter, this process would now be under seccomp.
    assert "Seccomp:\t0" in Path("/proc/self/status").read_text()


# --- the cache ---------------------------------------------------------------------------

@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = rs.compile_filter

    def compile_filter(s: Any, path: str = "linux.seccomp") -> bytes:
        calls.append(1)
        return real(s, path)

    monkeypatch.setattr(rs, "compile_filter", compile_filter)
    return calls


def test_cache_miss_compiles_and_writes_then_hits(tmp_path: Path,
                                                  counted: list[int]) -> None:
    cache = tmp_path / "root" / rs.CACHE_DIR_NAME
    s = parse_seccomp(docker_like_profile())
    first = rs.compile_cached(s, cache)
    assert counted == [1]
    assert sorted(p.name for p in cache.iterdir()) == [f"{rs.cache_key(s)}.bpf"]
    assert (cache / f"{rs.cache_key(s)}.bpf").read_bytes() == first
    assert cache.stat().st_mode & 0o777 == 0o700
    second = rs.compile_cached(parse_seccomp(docker_like_profile()), cache)
    assert second == first
    assert counted == [1]


def test_prepare_carries_program_and_flags(tmp_path: Path) -> None:
    profile = {**docker_like_profile(), "flags": ["SECCOMP_FILTER_FLAG_LOG"]}
    compiled = rs.prepare(parse_seccomp(profile), tmp_path)
    assert compiled is not None
    assert compiled.flags == sc.SECCOMP_FILTER_FLAG_LOG
    assert compiled.bpf == rs.compile_filter(parse_seccomp(docker_like_profile()))
    assert compiled.instructions == len(compiled.bpf) // 8
    assert rs.prepare(None, tmp_path) is None


def test_cache_key_follows_profile_and_libseccomp(monkeypatch: pytest.MonkeyPatch) -> None:
    s = parse_seccomp(docker_like_profile())
    key = rs.cache_key(s)
    assert len(key) == 64
    assert rs.cache_key(parse_seccomp(docker_like_profile())) == key
    other = docker_like_profile()
    other["syscalls"][0]["names"].append("getppid")
    assert rs.cache_key(parse_seccomp(other)) != key
    monkeypatch.setattr(sc, "version", lambda: (9, 9, 9))
    assert rs.cache_key(s) != key


def test_the_cache_hash_is_sha256() -> None:
    import hashlib

    for data in (b"", b"abc", b"x" * 100_000):
        assert rs._sha256_hex(data) == hashlib.sha256(data).hexdigest()


def test_a_corrupt_entry_is_recompiled(tmp_path: Path, counted: list[int]) -> None:
    s = parse_seccomp(docker_like_profile())
    entry = tmp_path / f"{rs.cache_key(s)}.bpf"
    entry.write_bytes(b"\x06\0\0\0\0\0\xff")   # a torn write: not whole instructions
    program = rs.compile_cached(s, tmp_path)
    assert counted == [1]
    assert entry.read_bytes() == program
    assert len(program) % 8 == 0


@pytest.mark.parametrize("mode", [0o777, 0o720, 0o702])
def test_a_cache_others_may_write_is_not_used(tmp_path: Path, counted: list[int],
                                               mode: int) -> None:
    s = parse_seccomp(docker_like_profile())
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{rs.cache_key(s)}.bpf").write_bytes(b"\x06\0\0\0\0\0\xff\x7f")  # ALLOW all
    cache.chmod(mode)
    assert rs.compile_cached(s, cache) == rs.compile_filter(s)
    assert len(counted) == 2
    assert os.listdir(cache) == [f"{rs.cache_key(s)}.bpf"]


def test_an_unwritable_cache_only_costs_a_compile(tmp_path: Path, counted: list[int]) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    s = parse_seccomp(docker_like_profile())
    assert rs.compile_cached(s, blocker / "cache") == rs.compile_filter(s)
    assert rs.compile_cached(s, blocker / "cache")
    assert len(counted) == 3
    assert os.listdir(tmp_path) == ["not-a-dir"]


def test_no_cache_dir_means_no_cache(tmp_path: Path, counted: list[int]) -> None:
    s = parse_seccomp(docker_like_profile())
    rs.compile_cached(s, None)
    rs.compile_cached(s, None)
    assert len(counted) == 2
