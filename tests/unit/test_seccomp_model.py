"""linux.seccomp parsing: real engines' profiles become dataclasses, bad ones name the field."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.errors import InvalidArgument
from dockyard.model.seccomp import (
    ARCHITECTURES,
    FLAGS,
    Action,
    Operator,
    Seccomp,
    SyscallArg,
    SyscallRule,
    parse_seccomp,
)
from testbed.specs import runtime_schema_dir

SCHEMA_DIR = runtime_schema_dir()
needs_schema = pytest.mark.skipif(not SCHEMA_DIR.is_dir(), reason="shared/specs not present")

EPERM = 1
CLONE_NS_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET


def docker_like_profile() -> dict[str, Any]:
    """Shaped like the default profiles docker and podman send (written for these tests):
    a deny-by-default allowlist, personality and socket argument conditions, clone's
    namespace-flag mask, a name no kernel has, and 32-bit-only names."""
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {
                "names": [
                    "accept4", "arch_prctl", "brk", "close", "epoll_wait", "execve", "exit",
                    "exit_group", "fstat", "futex", "getdents64", "getpid", "ioctl", "mmap",
                    "mprotect", "munmap", "newfstatat", "openat", "read", "rt_sigaction",
                    "rt_sigprocmask", "rt_sigreturn", "set_tid_address", "wait4", "write",
                    "_llseek", "fstat64", "definitely_not_a_syscall",
                ],
                "action": "SCMP_ACT_ALLOW",
            },
            *({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]}
              for v in (0, 8, 0x20000, 0xFFFFFFFF)),
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": CLONE_NS_FLAGS, "valueTwo": 0,
                       "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
             "args": [{"index": 0, "value": 16, "op": "SCMP_CMP_EQ"},
                      {"index": 2, "value": 9, "op": "SCMP_CMP_EQ"}]},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 2, "value": 9, "op": "SCMP_CMP_NE"}]},
            {"names": ["bpf", "kexec_load", "open_by_handle_at"], "action": "SCMP_ACT_ERRNO",
             "errnoRet": EPERM},
            {"names": ["ptrace"], "action": "SCMP_ACT_TRACE"},
            {"names": ["reboot"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["acct"], "action": "SCMP_ACT_LOG"},
        ],
    }


@needs_schema
def test_the_model_knows_exactly_the_spec_names() -> None:
    defs = json.loads((SCHEMA_DIR / "defs-linux.json").read_text())["definitions"]
    assert set(defs["SeccompAction"]["enum"]) == {a.value for a in Action}
    assert set(defs["SeccompOperators"]["enum"]) == {o.value for o in Operator}
    assert set(defs["SeccompArch"]["enum"]) == set(ARCHITECTURES)
    assert set(defs["SeccompFlag"]["enum"]) == set(FLAGS)


@needs_schema
def test_the_docker_like_profile_is_valid_per_the_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    registry = referencing.Registry().with_resources(
        (f.name, referencing.Resource.from_contents(
            json.loads(f.read_text()), default_specification=referencing.jsonschema.DRAFT4))
        for f in SCHEMA_DIR.glob("*.json"))
    schema = json.loads((SCHEMA_DIR / "config-schema.json").read_text())
    config = {"ociVersion": "1.3.0", "root": {"path": "rootfs"},
              "linux": {"seccomp": docker_like_profile()}}
    errors = list(jsonschema.Draft4Validator(schema, registry=registry).iter_errors(config))
    assert errors == []


def test_docker_like_profile_parses() -> None:
    s = parse_seccomp(docker_like_profile())
    assert s.default_action is Action.ERRNO
    assert s.default_errno_ret == EPERM
    assert s.architectures == ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")
    assert s.flags == ()
    assert s.listener_path is None
    assert len(s.syscalls) == 13
    assert "definitely_not_a_syscall" in s.syscalls[0].names
    assert s.syscalls[0].args == ()
    assert s.syscalls[0].errno_ret is None
    assert s.syscalls[1].args == (SyscallArg(index=0, value=0, op=Operator.EQ),)
    clone = s.syscalls[5]
    assert clone.args == (SyscallArg(0, CLONE_NS_FLAGS, Operator.MASKED_EQ, 0),)
    assert s.syscalls[6] == SyscallRule(("clone3",), Action.ERRNO, errno_ret=38)
    assert [a.index for a in s.syscalls[7].args] == [0, 2]
    assert s.syscalls[10].action is Action.TRACE


def test_minimal_profile() -> None:
    assert parse_seccomp({"defaultAction": "SCMP_ACT_ALLOW"}) == Seccomp(Action.ALLOW)


def test_every_field() -> None:
    s = parse_seccomp({
        "defaultAction": "SCMP_ACT_TRACE", "defaultErrnoRet": 0,
        "flags": list(FLAGS), "architectures": list(ARCHITECTURES),
        "listenerPath": "/run/l.sock", "listenerMetadata": "meta",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY",
                      "args": [{"index": 5, "value": 2**64 - 1, "valueTwo": 2**64 - 1,
                                "op": "SCMP_CMP_GT"}]}],
    })
    assert s.default_errno_ret == 0
    assert s.flags == FLAGS
    assert s.listener_path == "/run/l.sock"
    assert s.listener_metadata == "meta"
    assert s.syscalls[0].args[0] == SyscallArg(5, 2**64 - 1, Operator.GT, 2**64 - 1)


def test_to_json_round_trips_the_docker_like_profile() -> None:
    s = parse_seccomp(docker_like_profile())
    dumped = json.loads(json.dumps(s.to_json()))
    assert parse_seccomp(dumped) == s


def _mutate(path: list[Any], value: Any) -> dict[str, Any]:
    profile = docker_like_profile()
    target: Any = profile
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return profile


_DELETE = object()


@pytest.mark.parametrize(("path", "value", "message"), [
    (["defaultAction"], "SCMP_ACT_DENY", "linux.seccomp.defaultAction is not a seccomp action"),
    (["defaultAction"], _DELETE, "linux.seccomp.defaultAction is required"),
    (["defaultAction"], 1, "linux.seccomp.defaultAction is not a seccomp action"),
    (["defaultErrnoRet"], -1, "linux.seccomp.defaultErrnoRet must be an unsigned 32-bit"),
    (["defaultErrnoRet"], 2**32, "linux.seccomp.defaultErrnoRet must be an unsigned 32-bit"),
    (["defaultErrnoRet"], True, "linux.seccomp.defaultErrnoRet must be an unsigned 32-bit"),
    (["architectures", 1], "SCMP_ARCH_Z80", "linux.seccomp.architectures[1] is not a seccomp "
                                            "architecture"),
    (["architectures"], "SCMP_ARCH_X86_64", "linux.seccomp.architectures must be an array"),
    (["flags"], ["SECCOMP_FILTER_FLAG_NEW_LISTENER"], "linux.seccomp.flags[0] is not a "
                                                      "seccomp filter flag"),
    (["listenerPath"], 3, "linux.seccomp.listenerPath must be a string"),
    (["syscalls"], {"names": ["read"]}, "linux.seccomp.syscalls must be an array"),
    (["syscalls", 2], "personality", "linux.seccomp.syscalls[2] must be an object"),
    (["syscalls", 0, "names"], [], "linux.seccomp.syscalls[0].names must name at least one"),
    (["syscalls", 0, "names"], "read", "linux.seccomp.syscalls[0].names must be an array of "
                                       "strings"),
    (["syscalls", 0, "names"], [""], "linux.seccomp.syscalls[0].names must not contain an "
                                     "empty"),
    (["syscalls", 0, "action"], _DELETE, "linux.seccomp.syscalls[0].action is required"),
    (["syscalls", 0, "action"], "ALLOW", "linux.seccomp.syscalls[0].action is not a seccomp "
                                         "action: 'ALLOW'"),
    (["syscalls", 6, "errnoRet"], "ENOSYS", "linux.seccomp.syscalls[6].errnoRet must be an "
                                            "unsigned 32-bit"),
    (["syscalls", 5, "args", 0, "op"], "SCMP_CMP_MASKED_NE", "linux.seccomp.syscalls[5]"
                                                             ".args[0].op is not a seccomp "
                                                             "operator"),
    (["syscalls", 5, "args", 0, "op"], _DELETE, "linux.seccomp.syscalls[5].args[0].op is not"),
    (["syscalls", 5, "args", 0, "index"], 6, "linux.seccomp.syscalls[5].args[0].index must "
                                             "be below 6"),
    (["syscalls", 5, "args", 0, "index"], _DELETE, "linux.seccomp.syscalls[5].args[0] needs "
                                                   "index, value and op"),
    (["syscalls", 5, "args", 0, "value"], -1, "linux.seccomp.syscalls[5].args[0].value must "
                                              "be an unsigned 64-bit"),
    (["syscalls", 5, "args", 0, "valueTwo"], 2**64, "linux.seccomp.syscalls[5].args[0]"
                                                    ".valueTwo must be an unsigned 64-bit"),
    (["syscalls", 5, "args", 0, "value"], 1.5, "linux.seccomp.syscalls[5].args[0].value"),
    (["syscalls", 5, "args"], {"index": 0}, "linux.seccomp.syscalls[5].args must be an array"),
    (["syscalls", 0, "errnoRet"], 1, "linux.seccomp.syscalls[0].errnoRet is only valid with "
                                     "SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not with action "
                                     "SCMP_ACT_ALLOW"),
])
def test_bad_profiles_name_the_field(path: list[Any], value: Any, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_seccomp(_mutate(path, value))
    assert message in str(info.value)
    assert str(info.value).startswith("config.json: ")


def test_default_errno_needs_an_errno_action() -> None:
    with pytest.raises(InvalidArgument, match=r"linux\.seccomp\.defaultErrnoRet is only valid "
                                              r"with .* not with defaultAction SCMP_ACT_KILL$"):
        parse_seccomp({"defaultAction": "SCMP_ACT_KILL", "defaultErrnoRet": 1})


def test_not_an_object() -> None:
    with pytest.raises(InvalidArgument, match=r"^config\.json: \$\.linux\.seccomp must be an "):
        parse_seccomp(["SCMP_ACT_ALLOW"], "$.linux.seccomp")


def test_the_caller_chooses_the_path() -> None:
    bad = copy.deepcopy(docker_like_profile())
    bad["syscalls"][0]["action"] = "nope"
    with pytest.raises(InvalidArgument, match=r"\$\.linux\.seccomp\.syscalls\[0\]\.action"):
        parse_seccomp(bad, "$.linux.seccomp")


_u32 = st.integers(0, 2**32 - 1)
_u64 = st.integers(0, 2**64 - 1)
_args = st.builds(SyscallArg, index=st.integers(0, 5), value=_u64,
                  op=st.sampled_from(Operator), value_two=_u64)
# An errno only goes with ERRNO and TRACE.
_action_errno = st.tuples(st.sampled_from(Action), st.none()) | st.tuples(
    st.sampled_from([Action.ERRNO, Action.TRACE]), _u32)
_rules = st.builds(
    lambda names, ae, args: SyscallRule(names, ae[0], ae[1], args),
    names=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=4).map(tuple),
    ae=_action_errno, args=st.lists(_args, max_size=3).map(tuple))
_profiles = st.builds(
    lambda ae, **kw: Seccomp(default_action=ae[0], default_errno_ret=ae[1], **kw),
    ae=_action_errno,
    architectures=st.lists(st.sampled_from(ARCHITECTURES), max_size=3).map(tuple),
    flags=st.lists(st.sampled_from(FLAGS), max_size=2).map(tuple),
    listener_path=st.none() | st.text(max_size=20),
    listener_metadata=st.none() | st.text(max_size=20),
    syscalls=st.lists(_rules, max_size=4).map(tuple))


@given(_profiles)
def test_to_json_round_trips(s: Seccomp) -> None:
    assert parse_seccomp(json.loads(json.dumps(s.to_json()))) == s
