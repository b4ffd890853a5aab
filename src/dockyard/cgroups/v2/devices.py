"""v2 devices: the device rules compiled to a BPF_PROG_TYPE_CGROUP_DEVICE program.

cgroup v2 has no devices files; the kernel runs an eBPF program attached to the cgroup
(BPF_CGROUP_DEVICE) for every device access: ``R1`` points at ``struct bpf_cgroup_dev_ctx
{u32 access_type; u32 major; u32 minor}`` (``access_type`` = access bits << 16 | device type) and
``R0 = 1`` allows. The program implements :func:`dockyard.cgroups.devices.allows` exactly:

    R2 = type, R3 = requested access, R4 = major, R5 = minor, R6 = bits still undecided (= R3)
    for each rule, last first:
        if type/major/minor do not match: next rule
        R1 = R6 & rule.access; if R1 == 0: next rule
        deny rule:  return 0
        allow rule: R6 &= ~rule.access; if R6 == 0: return 1
    return default (allow if the list has no "a" rule or its last "a" rule allows)

The instruction encoding is the kernel's (``struct bpf_insn``, 8 bytes, native endian);
loading and attaching is :mod:`dockyard.linux.bpf`.
"""

from __future__ import annotations

import struct
import sys

from dockyard.cgroups.devices import TYPE_CODES, access_mask, normalize
from dockyard.errors import InvalidArgument
from dockyard.model.resources import DeviceRule

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from collections.abc import Sequence

# Opcodes (linux/bpf_common.h, linux/bpf.h).
LDXW = 0x61          # BPF_LDX | BPF_MEM | BPF_W:   dst = *(u32 *)(src + off)
AND32_K = 0x54       # BPF_ALU | BPF_AND | BPF_K:   dst &= imm (32-bit)
RSH32_K = 0x74       # BPF_ALU | BPF_RSH | BPF_K
MOV32_K = 0xB4       # BPF_ALU | BPF_MOV | BPF_K
MOV32_X = 0xBC       # BPF_ALU | BPF_MOV | BPF_X
JNE_K = 0x55         # BPF_JMP | BPF_JNE | BPF_K:   if dst != imm: pc += off
JEQ_K = 0x15         # BPF_JMP | BPF_JEQ | BPF_K
EXIT = 0x95          # BPF_JMP | BPF_EXIT
R0, R1, R2, R3, R4, R5, R6 = range(7)
_INSN = struct.Struct("=BBhi")
_LITTLE = sys.byteorder == "little"


def insn(op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    regs = (src << 4 | dst) if _LITTLE else (dst << 4 | src)
    return _INSN.pack(op, regs, off, imm)


def _rule_block(rule: DeviceRule) -> list[tuple[int, int, int, int, int | str]]:
    """One rule's instructions; jump offsets are the string "next" until resolved."""
    for number in (rule.major, rule.minor):
        # The jumps compare 64-bit registers with a sign-extended 32-bit immediate; no real
        # device number comes near 2**31 (12-bit majors, 20-bit minors).
        if number is not None and number >= 2**31:
            raise InvalidArgument(f"device rule {rule.v1_string()!r}: no device has number "
                                  f"{number}")
    block: list[tuple[int, int, int, int, int | str]] = [
        (JNE_K, R2, 0, TYPE_CODES[rule.type], "next")]
    if rule.major is not None:
        block.append((JNE_K, R4, 0, rule.major, "next"))
    if rule.minor is not None:
        block.append((JNE_K, R5, 0, rule.minor, "next"))
    mask = access_mask(rule.access)
    block += [(MOV32_X, R1, R6, 0, 0), (AND32_K, R1, 0, mask, 0), (JEQ_K, R1, 0, 0, "next")]
    if rule.allow:
        block += [(AND32_K, R6, 0, ~mask & 0xFFFF, 0), (JNE_K, R6, 0, 0, "next"),
                  (MOV32_K, R0, 0, 1, 0), (EXIT, 0, 0, 0, 0)]
    else:
        block += [(MOV32_K, R0, 0, 0, 0), (EXIT, 0, 0, 0, 0)]
    return block


def device_filter(rules: Sequence[DeviceRule]) -> bytes:
    """The program (concatenated ``struct bpf_insn``) for ``rules``."""
    policy = normalize(rules)
    out = [
        insn(LDXW, R2, R1, 0), insn(AND32_K, R2, imm=0xFFFF),   # type
        insn(LDXW, R3, R1, 0), insn(RSH32_K, R3, imm=16),       # access
        insn(LDXW, R4, R1, 4),                                  # major
        insn(LDXW, R5, R1, 8),                                  # minor
        insn(MOV32_X, R6, R3),                                  # undecided bits
    ]
    for rule in reversed(policy.rules):
        block = _rule_block(rule)
        for i, (op, dst, src, imm, off) in enumerate(block):
            # "next" = the first instruction after this block: pc + 1 + off lands there.
            jump = len(block) - i - 1 if off == "next" else int(off)
            out.append(insn(op, dst, src, jump, imm))
    out += [insn(MOV32_K, R0, imm=1 if policy.default_allow else 0), insn(EXIT)]
    return b"".join(out)
