"""Seccomp for the OCI runtime: compile ``linux.seccomp`` before fork, load it just before exec.

The parent turns the profile into a classic-BPF program through libseccomp with runc's
semantics: names this libseccomp does not know are skipped, rules whose action equals the
default action are dropped, a rule with two conditions on one argument becomes one rule per
condition, and a deny-by-default profile gets runc's ENOSYS stub in front. The program is
cached by a hash of the profile, so the hundreds of rules of docker's or podman's default
profile are compiled once per host rather than once per container. The child only hands bytes
to the kernel (:func:`load_filter`), as late as it can: every syscall after that one is
filtered, the runtime's own included.

::

    create / exec (parent)                          container child
      resolve():
        prepare(spec.linux.seccomp, <root>/seccomp-cache)
          key = sha256(format, libseccomp version, native arch, canonical profile)
          hit:  read <key>.bpf
          miss: libseccomp -> BPF; write tmp, fsync, rename to <key>.bpf
      fork ---------------------------------------->  namespaces, rootfs, ...
                                                       [noNewPrivileges false: load_filter()
                                                        here; without NNP the kernel wants
                                                        CAP_SYS_ADMIN, gone after identity]
                                                       apply_identity (sets NNP last)
                                                       [noNewPrivileges true: load_filter()]
      <-- {"ready"} or {"error"} ---------------------
                                                       fifo wait, fd sweep, execve

The cache directory must be writable by its owner only (:func:`_trusted` checks): whoever can
write a ``.bpf`` there chooses the filter of every container started with that profile.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
from collections.abc import Sequence

from dockyard.errors import InvalidArgument, SyscallError, Unavailable
from dockyard.linux import seccomp as sc
from dockyard.model.seccomp import ARCHITECTURES, FLAGS, Action, Operator, Seccomp, SyscallArg
from dockyard.values import value

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from pathlib import Path  # only the caller's; importing it costs ~4 ms

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


@value
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


# --- runc's ENOSYS stub ---------------------------------------------------------------------
#
# A deny-by-default profile answers EPERM for every syscall it does not list, including those
# newer than the profile (or than this libseccomp's tables: 2.5.4 cannot name statmount,
# listmount, mseal, ...). glibc and others probe new syscalls and fall back only on ENOSYS, so
# runc puts a few instructions in front of libseccomp's program: per architecture, a syscall
# numbered above the highest one the profile names gets ENOSYS. The syscalls the profile does
# name, and older unnamed ones, still reach libseccomp's program unchanged.

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000
_X32_OWN_FIRST = 512
_SECCOMP_DATA_NR = 0
_SECCOMP_DATA_ARCH = 4
_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_JGT_K = 0x25
_BPF_JGE_K = 0x35
_BPF_JSET_K = 0x45
_BPF_JA = 0x05
_BPF_RET_K = 0x06
_SECCOMP_RET_ERRNO = 0x00050000

# An instruction whose jump targets may be labels, resolved by _assemble.
_Insn = tuple[int, int | str, int | str, int]


def _assemble(program: list[_Insn | str]) -> bytes:
    """Strings in ``program`` are labels; jt/jf/k of jumps may name them."""
    import struct

    labels: dict[str, int] = {}
    insns: list[_Insn] = []
    for item in program:
        if isinstance(item, str):
            labels[item] = len(insns)
        else:
            insns.append(item)
    out = bytearray()
    for i, (code, jt, jf, k) in enumerate(insns):
        def rel(target: int | str, i: int = i) -> int:
            return labels[target] - i - 1 if isinstance(target, str) else target

        if code == _BPF_JA:   # the only jump whose offset is in k
            out += struct.pack("=HBBI", code, 0, 0, rel(jt))
        else:
            out += struct.pack("=HBBI", code, rel(jt), rel(jf), k)
    return bytes(out)


def _highest_syscalls(s: Seccomp, tokens: Sequence[int]) -> dict[int, int]:
    """Per libseccomp arch token, the highest syscall number the profile names."""
    names = {name for rule in s.syscalls for name in rule.names}
    x32 = sc.arch_resolve_name("x32")
    highest: dict[int, int] = {}
    for token in tokens:
        # x32's own variants of old syscalls sit at 512-547, above every newer common one.
        limit = _X32_SYSCALL_BIT | _X32_OWN_FIRST if token == x32 else 1 << 31
        numbers = [nr for name in names
                   if (nr := sc.syscall_resolve_name(name, token)) is not None
                   and 0 <= nr < limit]
        if numbers:
            highest[token] = max(numbers)
    return highest


def _enosys_stub(highest: dict[int, int]) -> bytes:
    x32 = sc.arch_resolve_name("x32")
    x86_64 = sc.arch_resolve_name("x86_64")
    prog: list[_Insn | str] = [(_BPF_LD_W_ABS, 0, 0, _SECCOMP_DATA_ARCH)]
    blocks: dict[int, list[_Insn | str]] = {}
    for token, nr in sorted(highest.items()):
        if token in (x32, x86_64):
            continue
        blocks[token] = [(_BPF_JGT_K, "enosys", "end", nr)]
    if x86_64 in highest or x32 in highest:
        # x32 processes report AUDIT_ARCH_X86_64 too; their syscall numbers carry bit 30.
        x32_target: int | str = "x32" if x32 in highest else "end"
        block: list[_Insn | str] = [(_BPF_JSET_K, x32_target, 0, _X32_SYSCALL_BIT)]
        block.append((_BPF_JGT_K, "enosys", "end", highest[x86_64]) if x86_64 in highest
                     else (_BPF_JA, "end", 0, 0))
        if x32 in highest:
            block += ["x32", (_BPF_JGE_K, "end", 0, _X32_SYSCALL_BIT | _X32_OWN_FIRST),
                      (_BPF_JGT_K, "enosys", "end", highest[x32])]
        blocks[_AUDIT_ARCH_X86_64] = block
    for n, (audit_arch, body) in enumerate(sorted(blocks.items())):
        prog += [(_BPF_JEQ_K, 0, f"next{n}", audit_arch),
                 (_BPF_LD_W_ABS, 0, 0, _SECCOMP_DATA_NR), *body, f"next{n}"]
    prog += [(_BPF_JA, "end", 0, 0),
             "enosys", (_BPF_RET_K, 0, 0, _SECCOMP_RET_ERRNO | errno.ENOSYS),
             "end"]
    return _assemble(prog)


def _needs_enosys_stub(s: Seccomp) -> bool:
    if s.default_action in (Action.ALLOW, Action.LOG):
        return False
    return not (s.default_action is Action.ERRNO and s.default_errno_ret == errno.ENOSYS)


def compile_filter(s: Seccomp, path: str = "linux.seccomp") -> bytes:
    """The profile as a classic-BPF program (host byte order): runc's ENOSYS stub for a
    deny-by-default profile, then libseccomp's program."""
    default = _action(s.default_action, s.default_errno_ret, f"{path}.defaultAction")
    with sc.Filter(default) as f:
        tokens = [sc.arch_native()]
        for i, arch in enumerate(s.architectures):
            arch_path = f"{path}.architectures[{i}]"
            try:
                token = _arch_token(arch, arch_path)
                f.add_arch(token)
                if token not in tokens:
                    tokens.append(token)
            except SyscallError as exc:
                if exc.errno != errno.EDOM:
                    raise
                raise InvalidArgument(
                    f"config.json: {arch_path}: {arch} cannot share a filter with this "
                    f"host's architecture ({os.uname().machine}): their byte orders "
                    "differ") from None
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
        program = f.export_bpf()
    if _needs_enosys_stub(s):
        highest = _highest_syscalls(s, tokens)
        if highest:
            program = _enosys_stub(highest) + program
    return program


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
    doc = {"format": CACHE_FORMAT, "libseccomp": list(sc.version()),
           "arch": sc.arch_native(), "profile": s.to_json()}
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return _sha256_hex(canonical.encode())


def _sha256_hex(data: bytes) -> str:
    """sha256 without importing hashlib, which loads OpenSSL (~4 ms, most of a cache hit);
    CPython's own sha256, which hashlib falls back to, is as good for a few kB."""
    import importlib

    for name in ("_sha2", "_sha256"):  # Python 3.12+, 3.11
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return str(module.sha256(data).hexdigest())
    import hashlib

    return hashlib.sha256(data).hexdigest()


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
    if cache_dir is None or not _trusted(cache_dir):
        return compile_filter(s, path)
    file = cache_dir / f"{cache_key(s)}.bpf"
    data = _read_cached(file)
    if data is None:
        data = compile_filter(s, path)
        _write_cached(cache_dir, file, data)
    return data


def _trusted(cache_dir: Path) -> bool:
    """A cache someone else can write to would choose containers' filters: use it only if it
    is ours and nobody else may write to it (we create it 0700)."""
    try:
        st = os.stat(cache_dir)
    except FileNotFoundError:
        return True
    except OSError as exc:
        log.warning("seccomp cache: %s: %s", cache_dir, exc)
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        log.warning("seccomp cache: not using %s: not a directory that only uid %d can "
                    "write to", cache_dir, os.geteuid())
        return False
    return True


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
    after this one is filtered, so as few steps as possible follow it before execve."""
    sc.load_bpf(bpf, flags)


def features() -> dict[str, object]:
    """``linux.seccomp`` of the OCI features document (``dockyard-runc features``)."""
    try:
        sc.version()
    except Unavailable:
        return {"enabled": False}
    archs = [a for a in ARCHITECTURES
             if sc.arch_resolve_name(a.removeprefix("SCMP_ARCH_").lower()) is not None]
    # WAIT_KILLABLE_RECV is accepted but means nothing without a notification listener.
    supported = [f for f in FLAGS if _FLAGS[f] and sc.kernel_accepts_flags(_FLAGS[f])]
    return {
        "enabled": True,
        "actions": sorted(a.value for a in Action if a is not Action.NOTIFY),
        "operators": sorted(o.value for o in Operator),
        "archs": sorted(archs),
        "knownFlags": list(FLAGS),
        "supportedFlags": supported,
    }
