"""The OCI runtime spec's ``linux.seccomp`` as frozen dataclasses.

:func:`parse_seccomp` checks what the schema says (action, operator, architecture and flag
names; integer ranges) and reports the JSON path of the first bad field. It does not check what
the *runtime* supports (``SCMP_ACT_NOTIFY``, syscall names this libseccomp knows): that is
:mod:`dockyard.runtime.seccomp`'s decision, made before fork.

:meth:`Seccomp.to_json` gives the profile back in its OCI form with defaults made explicit; its
canonical dump is what the compiled-filter cache is keyed by.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from dockyard.errors import InvalidArgument
from dockyard.values import value

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from typing import Any


class Action(StrEnum):
    KILL = "SCMP_ACT_KILL"                  # kills the thread, like KILL_THREAD
    KILL_PROCESS = "SCMP_ACT_KILL_PROCESS"
    KILL_THREAD = "SCMP_ACT_KILL_THREAD"
    TRAP = "SCMP_ACT_TRAP"
    ERRNO = "SCMP_ACT_ERRNO"
    TRACE = "SCMP_ACT_TRACE"
    ALLOW = "SCMP_ACT_ALLOW"
    LOG = "SCMP_ACT_LOG"
    NOTIFY = "SCMP_ACT_NOTIFY"


class Operator(StrEnum):
    NE = "SCMP_CMP_NE"
    LT = "SCMP_CMP_LT"
    LE = "SCMP_CMP_LE"
    EQ = "SCMP_CMP_EQ"
    GE = "SCMP_CMP_GE"
    GT = "SCMP_CMP_GT"
    MASKED_EQ = "SCMP_CMP_MASKED_EQ"      # (arg & value) == valueTwo


ARCHITECTURES = (
    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X", "SCMP_ARCH_SH", "SCMP_ARCH_SHEB", "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64",
)

FLAGS = (
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
)

# A seccomp filter sees six syscall arguments (struct seccomp_data.args[6]).
MAX_ARGS = 6

_UINT32 = 1 << 32
_UINT64 = 1 << 64


@value
class SyscallArg:
    index: int
    value: int
    op: Operator
    value_two: int = 0


@value
class SyscallRule:
    names: tuple[str, ...]
    action: Action
    errno_ret: int | None = None
    args: tuple[SyscallArg, ...] = ()


@value
class Seccomp:
    default_action: Action
    default_errno_ret: int | None = None
    architectures: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    listener_path: str | None = None
    listener_metadata: str | None = None
    syscalls: tuple[SyscallRule, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The OCI form; ``parse_seccomp(s.to_json()) == s``."""
        out: dict[str, Any] = {"defaultAction": self.default_action.value}
        if self.default_errno_ret is not None:
            out["defaultErrnoRet"] = self.default_errno_ret
        if self.architectures:
            out["architectures"] = list(self.architectures)
        if self.flags:
            out["flags"] = list(self.flags)
        if self.listener_path is not None:
            out["listenerPath"] = self.listener_path
        if self.listener_metadata is not None:
            out["listenerMetadata"] = self.listener_metadata
        if self.syscalls:
            out["syscalls"] = [_rule_json(r) for r in self.syscalls]
        return out


def _rule_json(rule: SyscallRule) -> dict[str, Any]:
    out: dict[str, Any] = {"names": list(rule.names), "action": rule.action.value}
    if rule.errno_ret is not None:
        out["errnoRet"] = rule.errno_ret
    if rule.args:
        out["args"] = [{"index": a.index, "value": a.value, "valueTwo": a.value_two,
                        "op": a.op.value} for a in rule.args]
    return out


# --- parsing ---------------------------------------------------------------------------------

def _bad(path: str, what: str) -> InvalidArgument:
    return InvalidArgument(f"config.json: {path} {what}")


def _obj(data: object, path: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise _bad(path, "must be an object")
    return data


def _uint(data: Mapping[str, Any], key: str, path: str, limit: int,
          default: int | None = None) -> int | None:
    v = data.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < limit:
        bits = 32 if limit == _UINT32 else 64
        raise _bad(f"{path}.{key}", f"must be an unsigned {bits}-bit integer, not {v!r}")
    return v


def _opt_str(data: Mapping[str, Any], key: str, path: str) -> str | None:
    v = data.get(key)
    if v is not None and not isinstance(v, str):
        raise _bad(f"{path}.{key}", "must be a string")
    return v


def _strs(data: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
    v = data.get(key) or []
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise _bad(f"{path}.{key}", "must be an array of strings")
    return tuple(v)


def _list(data: Mapping[str, Any], key: str, path: str) -> list[Any]:
    v = data.get(key) or []
    if not isinstance(v, list):
        raise _bad(f"{path}.{key}", "must be an array")
    return v


def _action(data: Mapping[str, Any], key: str, path: str) -> Action:
    v = data.get(key)
    if v is None:
        raise _bad(f"{path}.{key}", "is required")
    try:
        return Action(v if isinstance(v, str) else "")
    except ValueError:
        raise _bad(f"{path}.{key}", f"is not a seccomp action: {v!r} "
                   f"(one of {', '.join(a.value for a in Action)})") from None


# The spec: "When the action doesn't support an errno, the runtime MUST print an error and
# fail." (runc ignores such an errnoRet; crun and the spec do not.)
ERRNO_ACTIONS = (Action.ERRNO, Action.TRACE)


def _errno_ret(data: Mapping[str, Any], key: str, action_key: str, action: Action,
               path: str) -> int | None:
    ret = _uint(data, key, path, _UINT32)
    if ret is not None and action not in ERRNO_ACTIONS:
        raise _bad(f"{path}.{key}", f"is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, "
                   f"not with {action_key} {action.value}")
    return ret


def _arg(data: object, path: str) -> SyscallArg:
    o = _obj(data, path)
    index = _uint(o, "index", path, _UINT32)
    value = _uint(o, "value", path, _UINT64)
    if index is None or value is None:
        raise _bad(path, "needs index, value and op")
    if index >= MAX_ARGS:
        raise _bad(f"{path}.index", f"must be below {MAX_ARGS}, not {index}")
    op = o.get("op")
    try:
        operator = Operator(op if isinstance(op, str) else "")
    except ValueError:
        raise _bad(f"{path}.op", f"is not a seccomp operator: {op!r} "
                   f"(one of {', '.join(x.value for x in Operator)})") from None
    return SyscallArg(index=index, value=value, op=operator,
                      value_two=_uint(o, "valueTwo", path, _UINT64, 0) or 0)


def _rule(data: object, path: str) -> SyscallRule:
    o = _obj(data, path)
    names = _strs(o, "names", path)
    if not names:
        raise _bad(f"{path}.names", "must name at least one syscall")
    if not all(names):
        raise _bad(f"{path}.names", "must not contain an empty name")
    action = _action(o, "action", path)
    return SyscallRule(
        names=names, action=action,
        errno_ret=_errno_ret(o, "errnoRet", "action", action, path),
        args=tuple(_arg(a, f"{path}.args[{i}]") for i, a in enumerate(_list(o, "args", path))))


def parse_seccomp(obj: object, path: str = "linux.seccomp") -> Seccomp:
    """Parse a decoded ``linux.seccomp``; raise InvalidArgument naming the offending field."""
    o = _obj(obj, path)
    arches = _strs(o, "architectures", path)
    for i, arch in enumerate(arches):
        if arch not in ARCHITECTURES:
            raise _bad(f"{path}.architectures[{i}]", f"is not a seccomp architecture: {arch!r}")
    flags = _strs(o, "flags", path)
    for i, flag in enumerate(flags):
        if flag not in FLAGS:
            raise _bad(f"{path}.flags[{i}]", f"is not a seccomp filter flag: {flag!r} "
                       f"(one of {', '.join(FLAGS)})")
    rules = _list(o, "syscalls", path)
    default = _action(o, "defaultAction", path)
    return Seccomp(
        default_action=default,
        default_errno_ret=_errno_ret(o, "defaultErrnoRet", "defaultAction", default, path),
        architectures=arches, flags=flags,
        listener_path=_opt_str(o, "listenerPath", path),
        listener_metadata=_opt_str(o, "listenerMetadata", path),
        syscalls=tuple(_rule(r, f"{path}.syscalls[{i}]") for i, r in enumerate(rules)))
