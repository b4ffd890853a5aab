"""The leak guard: a pytest plugin that fails the run if the suite leaves kernel state behind.

At session start it records mounts, cgroup directories (every v1 controller and the v2
hierarchy), named network namespaces, network links, nftables tables and the test process's
children; at session end it records them again and fails the run, listing each leftover, if
anything new remains. The pytest process makes itself a child subreaper so that daemonised
processes (a container init whose parent exited) are still counted as its children.

Run with ``-p testbed.leakguard`` (tests/conftest.py lists it); ``--no-leak-guard`` turns it off.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

CGROUP_ROOT = Path("/sys/fs/cgroup")
NETNS_DIRS = (Path("/run/netns"), Path("/var/run/netns"))
_SETTLE_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    mounts: frozenset[str]
    cgroups: frozenset[str]
    netns: frozenset[str]
    links: frozenset[str]
    nft_tables: frozenset[str]
    children: frozenset[str]

    def minus(self, before: Snapshot) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for kind in ("mounts", "cgroups", "netns", "links", "nft_tables", "children"):
            new = sorted(getattr(self, kind) - getattr(before, kind))
            if new:
                out[kind] = new
        return out


def _mounts() -> frozenset[str]:
    out = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fields = pre.split()
        fstype, source = ([*post.split(), "", ""])[:2]
        out.add(f"{_unescape(fields[4])} ({fstype} {source})")
    return frozenset(out)


def _unescape(path: str) -> str:
    return path.encode().decode("unicode_escape") if "\\" in path else path


def _cgroups() -> frozenset[str]:
    out = set()
    if not CGROUP_ROOT.is_dir():
        return frozenset()
    for dirpath, _dirnames, filenames in os.walk(CGROUP_ROOT):
        if "cgroup.procs" in filenames or dirpath == str(CGROUP_ROOT):
            out.add(dirpath)
    return frozenset(out)


def _netns() -> frozenset[str]:
    out: set[str] = set()
    for d in NETNS_DIRS:
        with contextlib.suppress(OSError):
            out.update(str(d / name) for name in os.listdir(d))
    return frozenset(out)


def _links() -> frozenset[str]:
    with contextlib.suppress(OSError):
        return frozenset(os.listdir("/sys/class/net"))
    return frozenset()


def _nft_tables() -> frozenset[str]:
    nft = shutil.which("nft") or "/usr/sbin/nft"
    if not os.path.exists(nft):
        return frozenset()
    proc = subprocess.run([nft, "-j", "list", "tables"], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        return frozenset()
    tables = set()
    for item in json.loads(proc.stdout or "{}").get("nftables", []):
        t = item.get("table")
        if t:
            tables.add(f"{t['family']} {t['name']}")
    return frozenset(tables)


def _children(pid: int) -> frozenset[str]:
    """Every live descendant of ``pid`` with its command line."""
    parent_of: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        rest = raw[raw.rindex(b")") + 2:].split()
        if rest[0] in (b"Z", b"X"):
            continue
        parent_of[int(entry)] = int(rest[1])
    out = set()
    for p in parent_of:
        q = p
        while q in parent_of and q != pid:
            q = parent_of[q]
        if q == pid and p != pid:
            out.add(f"pid {p}: {_cmdline(p)}")
    return frozenset(out)


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def snapshot() -> Snapshot:
    return Snapshot(mounts=_mounts(), cgroups=_cgroups(), netns=_netns(), links=_links(),
                    nft_tables=_nft_tables(), children=_children(os.getpid()))


def _reap_zombies() -> None:
    """Orphans re-parented to us (the subreaper) and already dead: collect them. Only called
    at the very end, when no test's subprocess.Popen is waiting for its own child."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _foreign_cgroup(path: str, ours: frozenset[int]) -> bool:
    """A cgroup that holds live processes, none of them ours: made by something else running
    on this machine at the same time (a session manager, another tool), not by the suite."""
    try:
        pids = {int(p) for p in Path(path, "cgroup.procs").read_text().split()}
    except (OSError, ValueError):
        return False
    return bool(pids) and not pids & ours


def _our_pids() -> frozenset[int]:
    me = os.getpid()
    return frozenset({me, *(int(c.split(":")[0][4:]) for c in _children(me))})


def leaks_since(before: Snapshot, settle: float = _SETTLE_SECONDS) -> dict[str, list[str]]:
    """What is new since ``before``; waits up to ``settle`` seconds for things that are on
    their way out (a process just killed, a lazily detached mount)."""
    deadline = time.monotonic() + settle
    while True:
        _reap_zombies()
        found = snapshot().minus(before)
        if "cgroups" in found:
            ours = _our_pids()
            kept = [c for c in found["cgroups"] if not _foreign_cgroup(c, ours)]
            if kept:
                found["cgroups"] = kept
            else:
                del found["cgroups"]
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.2)


def format_leaks(found: dict[str, list[str]]) -> str:
    lines = ["LEAK GUARD: the test session left kernel state behind:"]
    for kind, items in found.items():
        lines.append(f"  {kind}:")
        lines.extend(f"    {item}" for item in items)
    return "\n".join(lines)


# --- the pytest plugin ---------------------------------------------------------------------

_KEY = pytest.StashKey[Snapshot]()
_RESULT = pytest.StashKey[dict[str, list[str]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--no-leak-guard", action="store_true",
                     help="do not check for mounts, cgroups, netns, links, nft tables or "
                          "processes left behind")


def pytest_sessionstart(session: pytest.Session) -> None:
    if session.config.getoption("--no-leak-guard") or os.geteuid() != 0:
        return
    from dockyard.linux import libc

    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
    session.config.stash[_KEY] = snapshot()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(_KEY, None)
    if before is None:
        return
    found = leaks_since(before)
    if found:
        session.config.stash[_RESULT] = found
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    found = terminalreporter.config.stash.get(_RESULT, None)
    if found:
        terminalreporter.section("leak guard", sep="=", red=True, bold=True)
        terminalreporter.line(format_leaks(found), red=True)
