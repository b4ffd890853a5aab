"""Seccomp for the OCI runtime: compile ``linux.seccomp`` before fork, load it just before exec.

The parent turns the profile into a classic-BPF program through libseccomp (runc's semantics:
names this libseccomp does not know are skipped, rules whose action equals the default action
are dropped, a rule with two conditions on one argument becomes one rule per condition). The
program is cached by a hash of the profile, so the hundreds of rules of docker's or podman's
default profile are compiled once per host rather than once per container. The child only
hands bytes to the kernel.

::

    create / exec (parent)                                   container child
      resolve():
        prepare(spec.linux.seccomp, <root>/seccomp-cache)
          key = sha256(format, libseccomp version, native arch, canonical profile)
          hit:  read <key>.bpf
          miss: libseccomp -> BPF; write tmp, fsync, rename to <key>.bpf
      fork ----------------------------------------------->  namespaces, rootfs, ...
                                                              [no NNP: load_filter() here,
                                                               before caps and uid change]
                                                              apply_identity (NNP set last)
                                                              ready, fifo, fd sweep
                                                              [NNP: load_filter() here]
                                                              execve

The cache directory must be writable by root only: whoever can write a ``.bpf`` there chooses
the filter of every container started with that profile.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import InvalidArgument
from dockyard.linux import seccomp as sc
from dockyard.model.seccomp import Action, Operator, Seccomp, SyscallArg

log = logging.getLogger(__name__)

# Bump when the way a profile becomes rules changes, so old cache entries are not reused.
CACHE_FORMAT = 1
CACHE_DIR_NAME = "seccomp-cache"

_OPS = {
    Operator.NE: sc.SCMP_CMP_NE, Operator.LT: sc.SCMP_CMP_LT, Operator.LE: sc.SCMP_CMP_LE,
    Operator.EQ: sc.SCMP_CMP_EQ, Operator.GE: sc.SCMP_CMP_GE, Operator.GT: sc.SCMP_CMP_GT,
    Operator.MASKED_EQ: sc.SCMP_CMP_MASKED_EQ,
}

_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": sc.SECCOMP_FILTER_FLAG_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": sc.SECCOMP_FILTER_FLAG_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": sc.SECCOMP_FILTER_FLAG_SPEC_ALLOW,
    # Only changes how a notification listener waits; without SCMP_ACT_NOTIFY there is no
    # listener and the kernel rejects it alone (EINVAL), so it maps to nothing.
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 0,
}


@dataclass(frozen=True, slots=True)
class CompiledFilter:
    """What the child needs: the program and the seccomp(2) flags to load it with."""

    bpf: bytes
    flags: int

    @property
    def instructions(self) -> int:
        return len(self.bpf) // sc.BPF_INSN_SIZE


def _action(action: Action, errno_ret: int | None, path: str) -> int:
    if action in (Action.KILL, Action.KILL_THREAD):
        return sc.SCMP_ACT_KILL_THREAD
    if action is Action.KILL_PROCESS:
        return sc.SCMP_ACT_KILL_PROCESS
    if action is Action.TRAP:
        return sc.SCMP_ACT_TRAP
    if action is Action.ALLOW:
        return sc.SCMP_ACT_ALLOW
    if action is Action.LOG:
        return sc.SCMP_ACT_LOG
    if action is Action.NOTIFY:
        raise InvalidArgument(f"config.json: {path}: SCMP_ACT_NOTIFY is not supported by "
                              "dockyard-runc (no seccomp notification listener)")
    ret = errno.EPERM if errno_ret is None else errno_ret
    if ret > sc.ACTION_DATA_MAX:
        raise InvalidArgument(f"config.json: {path}: errno {ret} does not fit the 16 bits "
                              "seccomp returns")
    return sc.scmp_act_errno(ret) if action is Action.ERRNO else sc.scmp_act_trace(ret)


def _condition(arg: SyscallArg) -> sc.Condition:
    return sc.Condition(arg=arg.index, op=_OPS[arg.op], datum_a=arg.value,
                        datum_b=arg.value_two)


def _rule_conditions(args: Sequence[SyscallArg]) -> list[list[sc.Condition]]:
    """The condition lists to add one rule each for. libseccomp ANDs a rule's conditions but
    refuses two on the same argument; docker's profiles rely on runc's reading of that case:
    one rule per condition (OR)."""
    conds = [_condition(a) for a in args]
    indexes = [a.index for a in args]
    if len(set(indexes)) < len(indexes):
        return [[c] for c in conds]
    return [conds]


def _arch_token(arch: str, path: str) -> int:
    token = sc.arch_resolve_name(arch.removeprefix("SCMP_ARCH_").lower())
    if token is None:
        version = ".".join(map(str, sc.version()))
        raise InvalidArgument(f"config.json: {path}: {arch} is not supported by "
                              f"libseccomp {version}")
    return token


def compile_filter(s: Seccomp, path: str = "linux.seccomp") -> bytes:
    """The profile as a classic-BPF program (host byte order), through libseccomp."""
    default = _action(s.default_action, s.default_errno_ret, f"{path}.defaultAction")
    with sc.Filter(default) as f:
        for i, arch in enumerate(s.architectures):
            f.add_arch(_arch_token(arch, f"{path}.architectures[{i}]"))
        skipped: list[str] = []
        for i, rule in enumerate(s.syscalls):
            rule_path = f"{path}.syscalls[{i}]"
            action = _action(rule.action, rule.errno_ret, f"{rule_path}.action")
            if action == default:
                continue        # libseccomp refuses it (EACCES); it changes nothing anyway
            groups = _rule_conditions(rule.args)
            for name in rule.names:
                nr = sc.syscall_resolve_name(name)
                if nr is None:
                    skipped.append(name)
                    continue
                for conds in groups:
                    f.add_rule(action, nr, conds, name=name)
        if skipped:
            log.debug("seccomp: syscalls unknown to libseccomp, skipped: %s",
                      " ".join(sorted(set(skipped))))
        return f.export_bpf()


def load_flags(s: Seccomp) -> int:
    flags = 0
    for name in s.flags:
        flags |= _FLAGS[name]
    return flags


def _check_supported(s: Seccomp, path: str) -> None:
    for i, rule in enumerate(s.syscalls):
        if rule.action is Action.NOTIFY:
            _action(rule.action, None, f"{path}.syscalls[{i}].action")
    if s.default_action is Action.NOTIFY:
        _action(s.default_action, None, f"{path}.defaultAction")


def cache_key(s: Seccomp) -> str:
    """sha256 over everything the program depends on: the profile, libseccomp's version (its
    syscall tables), the native architecture and how we turn profiles into rules."""
    import hashlib  # OpenSSL costs ~4 ms to import: only when a spec has seccomp

    doc = {"format": CACHE_FORMAT, "libseccomp": list(sc.version()),
           "arch": sc.arch_native(), "profile": s.to_json()}
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _well_formed(data: bytes) -> bool:
    return len(data) > 0 and len(data) % sc.BPF_INSN_SIZE == 0


def _read_cached(file: Path) -> bytes | None:
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("seccomp cache: cannot read %s: %s", file, exc)
        return None
    if not _well_formed(data):
        log.warning("seccomp cache: %s is not a BPF program (%d bytes); recompiling",
                    file, len(data))
        return None
    return data


def _write_cached(cache_dir: Path, file: Path, data: bytes) -> None:
    """tmp + fsync + rename: a reader sees the whole program or none; a failure to write only
    costs the next start a compile."""
    tmp = cache_dir / f".{file.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, file)
    except OSError as exc:
        log.warning("seccomp cache: cannot write %s: %s", file, exc)
        with contextlib.suppress(OSError):
            tmp.unlink()


def compile_cached(s: Seccomp, cache_dir: Path | None, path: str = "linux.seccomp") -> bytes:
    """:func:`compile_filter`, through ``<cache_dir>/<cache_key>.bpf`` when a directory is
    given."""
    if cache_dir is None:
        return compile_filter(s, path)
    file = cache_dir / f"{cache_key(s)}.bpf"
    data = _read_cached(file)
    if data is None:
        data = compile_filter(s, path)
        _write_cached(cache_dir, file, data)
    return data


def prepare(s: Seccomp | None, cache_dir: Path | None,
            path: str = "linux.seccomp") -> CompiledFilter | None:
    """Everything seccomp needs before fork: check what is unsupported, compile (or fetch
    from the cache), check the size, work out the load flags."""
    if s is None:
        return None
    _check_supported(s, path)
    bpf = compile_cached(s, cache_dir, path)
    if len(bpf) > sc.BPF_MAXINSNS * sc.BPF_INSN_SIZE:
        raise InvalidArgument(f"config.json: {path}: the compiled filter has "
                              f"{len(bpf) // sc.BPF_INSN_SIZE} instructions; the kernel "
                              f"accepts at most {sc.BPF_MAXINSNS}")
    return CompiledFilter(bpf=bpf, flags=load_flags(s))


def load_filter(bpf: bytes, flags: int = 0) -> None:
    """In the child: install the program. Needs no_new_privs or CAP_SYS_ADMIN; every syscall
    after this one is filtered, so it is the last step before execve."""
    sc.load_bpf(bpf, flags)
