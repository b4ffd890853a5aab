"""Containers (issue 5): dockyard against podman and docker, side by side in one run.

Every tool gets the same busybox image (:func:`testbed.images.busybox`'s docker archive,
loaded with its own ``load -i``), its own store on a new ext4 (a loop-mounted sparse file, as in
:mod:`bench.pull`; ``--shared-fs`` keeps them on /tmp) and ``--network none``. dockyard runs
with a bytecode cache of its own, as an installed copy would (``--no-pycache``: as the
environment is; with ``PYTHONDONTWRITEBYTECODE`` set, as here, each command then compiles the
modules that have no ``__pycache__`` entry in the tree again, about 0.1 s). Three phases:

``run-rm``
    ``run --rm --network none IMG true`` with the image present, ``-n`` rounds alternated
    (harness), after one untimed check run per tool. Target of issue 5: dockyard <= 0.5x
    podman's median in the same run.
``many``
    ``run -d --network none IMG sleep 3600``, ``--many`` times per tool in sequence, the tools
    alternated (harness rounds: one ``run -d`` each): the total and the median per container.
    Then, with those ``--many`` containers running, ``ps -a`` (``-n`` rounds, alternated).
    Then every container is removed (timed, for information) and what is left is checked.
``idle``
    One tool at a time (MemAvailable is machine-wide): ``--idle`` containers started with
    ``run -d IMG sleep 3600``; then the PSS of every supervising process from
    ``/proc/PID/smaps_rollup`` (dockyard: its monitor and the monitor's keeper,
    ``RUN_ROOT/containers/monitor.pid`` and ``monitor.keeper.pid``;
    podman: its conmon processes; docker: its containerd-shim-runc-v2 processes), their CPU
    time over a few idle seconds, and "all memory added per idle container": (MemAvailable
    before - after) / N. The figure compared is supervision's PSS per container: the sum of
    those processes' PSS / running containers. Target of issue 5: at most conmon's (about
    0.40 MiB).

After each phase that leaves containers, they are removed and dockyard's leftovers are looked
for: a live monitor or container processes, ``RUN_ROOT/containers`` and ``RUN_ROOT/runtime``
entries, cgroups named by a container id, mounts below the root. What is found is reported and
then removed (by PID, by path); podman's and docker's are removed by :mod:`testbed`'s clean-up,
which also reports them. Daemons, mounts and directories all go at the end, also on Ctrl-C.

    .venv/bin/python -m bench.containers [-n 10] [--warmup 1] [--many 100] [--idle 100]
        [--phases run-rm,many,idle] [--tools dockyard,podman,docker] [--out DIR] [--shared-fs]
        [--no-pycache]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.harness import (
    Case,
    HarnessError,
    Interrupted,
    Report,
    comma_choices,
    is_root,
    raise_interrupted,
    run_cases,
    write_summary,
)
from bench.pull import mount_fresh_fs, unmount_fresh_fs
from bench.spawn import SpawnError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from testbed.dockerd import Dockerd
    from testbed.podman import Podman

REPO = Path(__file__).resolve().parents[1]
DOCKYARD = REPO / ".venv" / "bin" / "dockyard"
TOOLS = ("dockyard", "podman", "docker")
PHASES = ("run-rm", "many", "idle")
TARGET_RUN_RATIO = 0.5  # dockyard run --rm <= 0.5x podman's
TARGET_PSS_MIB = 0.40  # conmon's PSS per container on this machine (shared/ANCHORS.md)
TIMEOUT = 300.0
SETTLE_S = 2.0  # after the last run -d, before memory is read
CPU_WINDOW_S = 5.0  # idle helpers' CPU time is taken over this long
SLEEP = ("sleep", "3600")


def _quiet(argv: Sequence[str], timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _env_prefix(env: dict[str, str], unset: tuple[str, ...] = ()) -> tuple[str, ...]:
    # Every tool is started through env(1) (about 1 ms, the same for all), so that the
    # harness's own environment stays untouched.
    return ("/usr/bin/env", *unset, *(f"{key}={value}" for key, value in sorted(env.items())))


# ------------------------------------------------------------------------------- the tools


class Tool:
    """One engine: how to call it, which image it runs, its per-container helpers."""

    label = ""
    helper = ""

    def __init__(self, prefix: tuple[str, ...], image: str) -> None:
        self.prefix = prefix
        self.image = image

    def argv(self, *args: str) -> tuple[str, ...]:
        return (*self.prefix, *args)

    def run_rm(self) -> tuple[str, ...]:
        return self.argv("run", "--rm", "--network", "none", self.image, "true")

    def run_d(self) -> tuple[str, ...]:
        return self.argv("run", "-d", "--network", "none", self.image, *SLEEP)

    def ps_a(self) -> tuple[str, ...]:
        return self.argv("ps", "-a")

    def ids(self) -> list[str]:
        done = _quiet(self.argv("ps", "-aq", "--no-trunc"))
        if done.returncode != 0:
            raise HarnessError(f"{self.label} ps -aq: {done.stderr.strip()}")
        return done.stdout.split()

    def remove_all(self) -> subprocess.CompletedProcess[str] | None:
        ids = self.ids()
        return _quiet(self.argv("rm", "-f", *ids)) if ids else None

    def helpers(self) -> list[int]:
        """Live per-container helper processes (supervisor, conmon, shim)."""
        raise NotImplementedError

    def leftovers(self) -> list[str]:
        """What removing every container left behind (checked by this benchmark)."""
        return []


class DockyardTool(Tool):
    label = "dockyard"
    helper = "monitor + its keeper (per engine root)"

    def __init__(self, prefix: tuple[str, ...], image: str, root: Path, run_root: Path) -> None:
        super().__init__(prefix, image)
        self.root = root
        self.run_root = run_root
        self.seen_ids: set[str] = set()
        self.seen_pids: dict[int, str] = {}  # pid -> what it was (supervisor / container init)

    def _supervisor_pids(self) -> dict[str, int]:
        found = {}
        for what in ("monitor", "monitor.keeper"):   # the keeper: see monitor/keeper.py
            pid_file = self.run_root / "containers" / f"{what}.pid"
            with contextlib.suppress(OSError, ValueError, IndexError):
                found[what] = int(pid_file.read_text().split()[0])
        return found

    def remember(self) -> None:
        """Notes every container id and process seen, so leftovers can be found after rm."""
        self.seen_ids.update(self.ids())
        for cid, pid in self._supervisor_pids().items():
            self.seen_pids[pid] = f"supervisor ({cid})"
        for state in (self.run_root / "runtime").glob("*/state.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                doc = json.loads(state.read_text())
                self.seen_pids[int(doc["pid"])] = f"init of container {state.parent.name[:12]}"

    def helpers(self) -> list[int]:
        return [pid for pid in self._supervisor_pids().values() if _alive(pid)]

    def remove_all(self) -> subprocess.CompletedProcess[str] | None:
        """As the others, then the monitor is told to leave now rather than linger for warm
        commands (SIGTERM: it leaves once it supervises nothing)."""
        done = super().remove_all()
        for pid in self._supervisor_pids().values():
            if pid <= 0:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
        return done

    def leftovers(self) -> list[str]:
        from testbed.podman import mounts_under

        found = [f"process {pid} ({what}) still alive"
                 for pid, what in sorted(self.seen_pids.items()) if _alive(pid)]
        for sub in ("containers", "runtime"):
            entries = sorted(os.listdir(self.run_root / sub)) if (self.run_root / sub).is_dir() \
                else []
            entries = [e for e in entries if e != "monitor.lock"]   # the lock file stays
            if entries:
                found.append(f"{len(entries)} entries left in {self.run_root / sub}")
        cgroups = _cgroups_named(self.seen_ids)
        if cgroups:
            found.append(f"{len(cgroups)} cgroup dirs named by a container id left, e.g."
                         f" {cgroups[0]}")
        mounts = mounts_under(self.root / "overlay" / "containers")
        mounts += [m for m in mounts_under(self.root / "containers") if m not in mounts]
        if mounts:
            found.append(f"{len(mounts)} mounts left below {self.root}")
        return found

    def force_clean(self) -> None:
        """Removes what ``leftovers`` found: processes by PID, cgroups, runtime entries."""
        from testbed.podman import unmount_under

        for pid, what in sorted(self.seen_pids.items()):
            if _alive(pid) and "init" in what:
                _kill(pid)
        for pid, what in sorted(self.seen_pids.items()):
            if _alive(pid) and "supervisor" in what:
                _kill(pid)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in self.seen_pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        for path in _cgroups_named(self.seen_ids):
            with contextlib.suppress(OSError):
                os.rmdir(path)
        unmount_under(self.root)
        for sub in ("containers", "runtime"):
            shutil.rmtree(self.run_root / sub, ignore_errors=True)
        self.seen_pids.clear()


class PodmanTool(Tool):
    label = "podman"
    helper = "conmon"

    def __init__(self, prefix: tuple[str, ...], image: str, podman: Podman) -> None:
        super().__init__(prefix, image)
        self.podman = podman

    def remove_all(self) -> subprocess.CompletedProcess[str] | None:
        # -t 0: sleep as PID 1 ignores SIGTERM, and podman would wait 10 s for each.
        return _quiet(self.argv("rm", "--all", "--force", "--time", "0"))

    def helpers(self) -> list[int]:
        return _processes(str(self.podman.workdir), "conmon")


class DockerTool(Tool):
    label = "docker"
    helper = "containerd-shim-runc-v2"

    def __init__(self, prefix: tuple[str, ...], image: str, daemon: Dockerd) -> None:
        super().__init__(prefix, image)
        self.daemon = daemon

    def helpers(self) -> list[int]:
        return _processes(str(self.daemon.workdir), "containerd-shim-runc-v2")


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _processes(mentioning: str, program: str) -> list[int]:
    from testbed.podman import processes_mentioning

    return sorted(pid for pid, argv in processes_mentioning(mentioning)
                  if argv and os.path.basename(argv[0]) == program)


def _cgroups_named(ids: set[str]) -> list[Path]:
    """Cgroup directories (any hierarchy, any depth up to 3) whose name is one of ``ids``."""
    root = Path("/sys/fs/cgroup")
    found = []
    for hierarchy in root.iterdir() if root.is_dir() else ():
        if hierarchy.is_symlink() or not hierarchy.is_dir():
            continue
        for depth in ("*", "*/*", "*/*/*"):
            found += [path for path in hierarchy.glob(depth) if path.name in ids
                      and path.is_dir()]
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


# ------------------------------------------------------------------------------- memory


def mem_available_kib(samples: int = 5, gap: float = 0.2) -> int:
    """MemAvailable from /proc/meminfo, the median of a few samples (the machine is shared)."""
    values = []
    for i in range(samples):
        if i:
            time.sleep(gap)
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                values.append(int(line.split()[1]))
    return int(statistics.median(values))


@dataclass(frozen=True, slots=True)
class Smaps:
    pss_kib: int
    rss_kib: int
    private_kib: int  # USS: what would be freed if only this process went

    @classmethod
    def of(cls, pid: int) -> Smaps | None:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            return None
        fields = {}
        for line in text.splitlines()[1:]:
            key, _, rest = line.partition(":")
            with contextlib.suppress(ValueError, IndexError):
                fields[key.strip()] = int(rest.split()[0])
        return cls(fields.get("Pss", 0), fields.get("Rss", 0),
                   fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0))


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime


@dataclass(frozen=True, slots=True)
class IdleResult:
    label: str
    helper: str
    containers: int  # running after the run -d loop
    failed_runs: int
    helpers: int
    pss_mib_mean: float
    pss_mib_per_container: float  # all helpers' PSS / running containers
    pss_mib_min: float
    pss_mib_max: float
    rss_mib_mean: float
    uss_mib_mean: float
    cpu_ms_per_s: float  # all helpers together, while idle
    added_mib_per_container: float  # (MemAvailable before - after) / containers
    not_returned_mib: float  # MemAvailable before - after removal (noise or a leak)
    start_s: float
    remove_s: float
    leftovers: tuple[str, ...]


def idle_phase(tool: Tool, count: int) -> IdleResult:
    tick = os.sysconf("SC_CLK_TCK")
    before = mem_available_kib()
    started = time.perf_counter()
    failed = 0
    for _ in range(count):
        if _quiet(tool.run_d()).returncode != 0:
            failed += 1
    start_s = time.perf_counter() - started
    time.sleep(SETTLE_S)
    after = mem_available_kib()
    running = len(tool.ids())
    if isinstance(tool, DockyardTool):
        tool.remember()
    pids = tool.helpers()
    maps = [m for m in (Smaps.of(pid) for pid in pids) if m is not None]
    ticks0 = {pid: _cpu_ticks(pid) for pid in pids}
    time.sleep(CPU_WINDOW_S)
    cpu_ticks = sum(_cpu_ticks(pid) - t for pid, t in ticks0.items())
    started = time.perf_counter()
    tool.remove_all()
    remove_s = time.perf_counter() - started
    left = tuple(tool.leftovers())
    if isinstance(tool, DockyardTool) and left:
        tool.force_clean()
    time.sleep(SETTLE_S)
    end = mem_available_kib()

    def mean(values: list[int]) -> float:
        return statistics.fmean(values) / 1024 if values else 0.0

    return IdleResult(
        label=tool.label,
        helper=tool.helper,
        containers=running,
        failed_runs=failed,
        helpers=len(maps),
        pss_mib_mean=mean([m.pss_kib for m in maps]),
        pss_mib_per_container=(sum(m.pss_kib for m in maps) / 1024 / running if running
                               else 0.0),
        pss_mib_min=min((m.pss_kib for m in maps), default=0) / 1024,
        pss_mib_max=max((m.pss_kib for m in maps), default=0) / 1024,
        rss_mib_mean=mean([m.rss_kib for m in maps]),
        uss_mib_mean=mean([m.private_kib for m in maps]),
        cpu_ms_per_s=cpu_ticks * 1000 / tick / CPU_WINDOW_S,
        added_mib_per_container=(before - after) / 1024 / running if running else 0.0,
        not_returned_mib=(before - end) / 1024,
        start_s=start_s,
        remove_s=remove_s,
        leftovers=left,
    )


# ------------------------------------------------------------------------------- environment


@contextlib.contextmanager
def environment(work: Path, wanted: Sequence[str], notes: list[str], *,
                fresh_fs: bool, pycache: bool) -> Iterator[list[Tool]]:
    """The image loaded into each tool, daemons started; everything removed on the way out."""
    from testbed import images
    from testbed.dockerd import DockerdError, start_dockerd, stop_dockerd
    from testbed.podman import PodmanError, remove_podman, start_podman, unmount_under

    archive = images.busybox().docker_archive
    if archive is None:
        raise HarnessError("testbed's busybox image has no docker archive")
    cleanups: list[Callable[[], None]] = []
    tools: list[Tool] = []

    def home(name: str) -> Path:
        path = work / f"fs-{name}"
        path.mkdir()
        if fresh_fs:
            mount_fresh_fs(work / f"fs-{name}.img", path)
            cleanups.append(functools.partial(unmount_fresh_fs, path))
        return path

    try:
        for name in wanted:
            if name == "dockyard":
                if not os.access(DOCKYARD, os.X_OK):
                    notes.append(f"dockyard: {DOCKYARD} not found, skipped (pip install -e .)")
                    continue
                base = home(name)
                config = base / "daemon.json"
                # cgroup-parent "": each container's cgroup below its supervisor's, as the
                # integration tests do, so nothing lands in a shared place.
                config.write_text(json.dumps({"cgroup-parent": ""}) + "\n")
                env = {"DOCKYARD_RUN_ROOT": str(base / "run")}
                unset: tuple[str, ...] = ()
                if pycache:
                    # As pip installs it: compiled once, then read from the cache. With
                    # PYTHONDONTWRITEBYTECODE set (as on this machine) and no __pycache__ in
                    # the tree, every command would compile its modules again (~0.1 s).
                    # The cache is private to this run: nothing is written into the tree.
                    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
                    unset = ("-u", "PYTHONDONTWRITEBYTECODE")
                prefix = (*_env_prefix(env, unset), str(DOCKYARD), "--root", str(base / "root"),
                          "--config", str(config))
                tool: Tool = DockyardTool(prefix, "busybox:latest", base / "root", base / "run")
                cleanups.append(functools.partial(_last_dockyard_clean, tool))
                done = _quiet(tool.argv("load", "-i", str(archive)))
                if done.returncode != 0:
                    raise HarnessError(f"dockyard load: {done.stderr.strip()}")
            elif name == "podman":
                if not os.path.exists("/usr/bin/podman"):
                    notes.append("podman: /usr/bin/podman not found, skipped (bench/setup)")
                    continue
                podman = start_podman(home(name) / "podman")
                cleanups.append(functools.partial(remove_podman, podman))
                keys = ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF",
                        "CONTAINERS_REGISTRIES_CONF", "REGISTRY_AUTH_FILE")
                prefix = (*_env_prefix({k: podman.env[k] for k in keys}), *podman.argv())
                tool = PodmanTool(prefix, podman.load(archive), podman)
            else:
                if not os.path.exists("/usr/sbin/dockerd"):
                    notes.append("docker: /usr/sbin/dockerd not found, skipped (bench/setup)")
                    continue
                daemon = start_dockerd(home(name) / "d")
                cleanups.append(functools.partial(stop_dockerd, daemon))
                prefix = (*_env_prefix({"DOCKER_CONFIG": daemon.env["DOCKER_CONFIG"]}),
                          *daemon.argv())
                tool = DockerTool(prefix, daemon.load(archive), daemon)
            tools.append(tool)
        yield tools
    finally:
        problems = []
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except (DockerdError, PodmanError, HarnessError, subprocess.SubprocessError) as exc:
                problems.append(str(exc))
        problems += unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)
        for problem in problems:
            print(f"bench: clean-up: {problem}", file=sys.stderr)


def _last_dockyard_clean(tool: Tool) -> None:
    """On the way out (also after a failure): remove dockyard's containers and leftovers."""
    assert isinstance(tool, DockyardTool)
    with contextlib.suppress(HarnessError):
        tool.remember()
        tool.remove_all()
    left = tool.leftovers()
    if left:
        print(f"bench: clean-up: dockyard left {'; '.join(left)}; removing", file=sys.stderr)
        tool.force_clean()


# ------------------------------------------------------------------------------- phases


def check_runs(tools: Sequence[Tool], notes: list[str]) -> None:
    """One untimed ``run --rm`` per tool; a failure is shown and noted (the tool is still
    timed, and flagged)."""
    for tool in tools:
        done = _quiet(tool.run_rm())
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip()
            print(f"bench: {tool.label}: the check run exited {done.returncode}:\n{tail[-1500:]}",
                  file=sys.stderr)
            notes.append(f"{tool.label}: the check `run --rm` exited {done.returncode}:"
                         f" {tail.splitlines()[-1] if tail else '(no output)'}")
        left = tool.ids()
        if left:
            notes.append(f"{tool.label}: {len(left)} container(s) left after `run --rm`")


def remove_and_check(tool: Tool, notes: list[str], phase: str) -> float:
    """Removes every container of ``tool``; notes dockyard's leftovers; returns the time."""
    if isinstance(tool, DockyardTool):
        tool.remember()
    started = time.perf_counter()
    done = tool.remove_all()
    elapsed = time.perf_counter() - started
    if done is not None and done.returncode != 0:
        notes.append(f"{phase}: {tool.label} rm exited {done.returncode}:"
                     f" {done.stderr.strip()[-300:]}")
    left = tool.leftovers()
    if left:
        notes.append(f"{phase}: after `rm -f` of every container {tool.label} left: "
                     + "; ".join(left))
        if isinstance(tool, DockyardTool):
            tool.force_clean()
    return elapsed


def _ratio_to(report: Report, label: str, reference: str) -> tuple[float | None, float | None]:
    summaries = {s.label: s for s in dataclasses.replace(report, baseline=reference).summaries()}
    s = summaries[label]
    return s.wall_ratio.of_medians, s.wall_ratio.paired


def _r(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def run_rm_section(report: Report) -> tuple[list[str], dict[str, Any]]:
    labels = [case.label for case in report.cases]
    medians = {s.label: s.wall_ms.median / 1000 for s in report.summaries()}
    failures = {s.label: s.failures for s in report.summaries()}
    lines = [f"#### run --rm --network none busybox true ({report.runs_per_case} rounds)", "",
             "| tool | median s | x / podman | x / docker | status |", "|---|---:|---:|---:|---|"]
    for label in labels:
        cells = []
        for ref in ("podman", "docker"):
            cells.append(" / ".join(_r(x) for x in _ratio_to(report, label, ref))
                         if ref in labels else "-")
        status = "ok" if not failures[label] else f"**FAILED** {failures[label]}"
        lines.append(f"| {label} | {medians[label]:.3f} | {cells[0]} | {cells[1]} | {status} |")
    target = "Target (dockyard <= 0.5x podman): "
    met: bool | None = None
    if "dockyard" in labels and "podman" in labels:
        budget = TARGET_RUN_RATIO * medians["podman"]
        of_medians, paired = _ratio_to(report, "dockyard", "podman")
        met = medians["dockyard"] <= budget and not failures["dockyard"]
        target += (f"podman {medians['podman']:.3f} s -> budget **{budget:.3f} s**; dockyard"
                   f" {medians['dockyard']:.3f} s, ratio {_r(of_medians)} / {_r(paired)}"
                   f" -> {'**met**' if met else '**not met**'}.")
    else:
        target += "needs both dockyard and podman."
    lines += ["", "Ratios: ratio of the medians / median of the per-round ratios.", "", target, ""]
    return lines, {"medians_s": medians, "failures": failures, "target_met": met,
                   "target_line": target}


def many_section(run_d: Report, ps: Report | None, remove_s: dict[str, float],
                 count: int) -> tuple[list[str], dict[str, Any]]:
    summaries = {s.label: s for s in run_d.summaries()}
    ps_summaries = {s.label: s for s in ps.summaries()} if ps is not None else {}
    lines = [f"#### {count} x `run -d --network none busybox sleep 3600` in sequence, then"
             f" `ps -a` with {count} running",
             "", "| tool | run -d total s | run -d median s [min-max] | failed | ps -a median s"
             " [min-max] | rm -f all s |", "|---|---:|---:|---:|---:|---:|"]
    data: dict[str, Any] = {}
    for case in run_d.cases:
        label = case.label
        s = summaries[label]
        total = sum(run.wall_ns for run in run_d.runs_of(label)) / 1e9
        p = ps_summaries.get(label)
        ps_text = (f"{p.wall_ms.median / 1000:.3f} [{p.wall_ms.min / 1000:.3f}-"
                   f"{p.wall_ms.max / 1000:.3f}]" + (f" **FAILED** {p.failures}"
                                                      if p.failures else "")) if p else "-"
        lines.append(
            f"| {label} | {total:.1f} | {s.wall_ms.median / 1000:.3f}"
            f" [{s.wall_ms.min / 1000:.3f}-{s.wall_ms.max / 1000:.3f}] | {s.failures}"
            f" | {ps_text} | {remove_s.get(label, float('nan')):.1f} |")
        data[label] = {"run_d_total_s": total, "run_d_median_s": s.wall_ms.median / 1000,
                       "run_d_failures": s.failures,
                       "ps_median_s": p.wall_ms.median / 1000 if p else None,
                       "rm_all_s": remove_s.get(label)}
    lines.append("")
    return lines, data


def idle_section(results: Sequence[IdleResult]) -> tuple[list[str], list[dict[str, Any]]]:
    lines = ["#### idle containers: memory of supervision", "",
             "| tool | helper | containers | helpers | **supervision PSS MiB/container** |"
             " PSS MiB per helper mean [min-max] | RSS MiB |"
             " USS MiB | idle CPU ms/s (all) | all memory added MiB/container"
             " | not returned after rm MiB |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(
            f"| {r.label} | {r.helper} | {r.containers} | {r.helpers}"
            f" | **{r.pss_mib_per_container:.3f}**"
            f" | {r.pss_mib_mean:.2f} [{r.pss_mib_min:.2f}-{r.pss_mib_max:.2f}]"
            f" | {r.rss_mib_mean:.2f} | {r.uss_mib_mean:.2f} | {r.cpu_ms_per_s:.1f}"
            f" | {r.added_mib_per_container:.2f} | {r.not_returned_mib:.0f} |")
    lines += ["", "All memory added: (MemAvailable before the first run -d - after the last)"
              " / containers: helpers, container processes, mounts, cgroups, page cache; the"
              " machine is shared, so this one is noisy. Not returned: MemAvailable before"
              " - after removing them all (noise, or a leak)."]
    mine = next((r for r in results if r.label == "dockyard"), None)
    conmon = next((r for r in results if r.label == "podman"), None)
    ref = conmon.pss_mib_per_container if conmon and conmon.helpers else TARGET_PSS_MIB
    where = "conmon in this run" if conmon and conmon.helpers else "conmon (shared/ANCHORS.md)"
    if mine is not None:
        got = mine.pss_mib_per_container
        met = mine.helpers > 0 and got <= ref
        lines += ["", f"Target (dockyard's supervision PSS per container <= {where},"
                  f" {ref:.3f} MiB): dockyard {got:.3f} MiB ({got / ref:.2f}x) ->"
                  f" {'**met**' if met else '**not met**'}."]
    for r in results:
        if r.failed_runs:
            lines.append(f"- {r.label}: {r.failed_runs} `run -d` failed")
        for left in r.leftovers:
            lines.append(f"- {r.label} left after rm: {left}")
        lines.append(f"- {r.label}: started {r.containers} in {r.start_s:.1f} s, removed them"
                     f" in {r.remove_s:.1f} s")
    lines.append("")
    return lines, [dataclasses.asdict(r) for r in results]


# ------------------------------------------------------------------------------- main


def measure(args: argparse.Namespace, wanted: Sequence[str], phases: Sequence[str],
            out: Path) -> tuple[list[str], dict[str, Any]]:
    notes: list[str] = []
    lines: list[str] = []
    summary: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="dyc-", dir="/tmp"))  # short: dockerd's sockets
    notes.append("each tool's store is on " + (
        "/tmp's filesystem (--shared-fs)" if args.shared_fs else
        "a new ext4 of its own (loop-mounted sparse file, mkfs defaults)"))
    notes.append(
        "dockyard runs with a bytecode cache of this run's own (PYTHONPYCACHEPREFIX, warmed by"
        " the check run), as an installed dockyard would" if args.pycache else
        "dockyard runs with the environment as it is (--no-pycache): with"
        f" PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}, modules"
        " without a __pycache__ entry are compiled again by every command")
    with environment(work, wanted, notes, fresh_fs=not args.shared_fs,
                     pycache=args.pycache) as tools:
        if not tools:
            raise HarnessError("no tool left to measure")
        check_runs(tools, notes)  # also warms dockyard's bytecode cache for every phase
        if "run-rm" in phases:
            report = run_cases([Case(t.label, t.run_rm()) for t in tools], args.runs,
                               args.warmup, name="containers-run-rm")
            report.write(out / "run-rm")
            print(report.markdown())
            text, summary["run_rm"] = run_rm_section(report)
            lines += text
        if "many" in phases and args.many > 0:
            run_d = run_cases([Case(t.label, t.run_d()) for t in tools], args.many, 0,
                              name="containers-run-d")
            run_d.write(out / "run-d")
            ps = run_cases([Case(t.label, t.ps_a()) for t in tools], args.runs, args.warmup,
                           name="containers-ps-a")
            ps.write(out / "ps-a")
            print(ps.markdown())
            removed = {t.label: remove_and_check(t, notes, "many") for t in tools}
            text, summary["many"] = many_section(run_d, ps, removed, args.many)
            lines += text
        if "idle" in phases and args.idle > 0:
            results = []
            for tool in tools:
                print(f"bench: idle: {tool.label}, {args.idle} containers", file=sys.stderr)
                results.append(idle_phase(tool, args.idle))
            text, summary["idle"] = idle_section(results)
            lines += text
    return [*lines, *(f"- note: {note}" for note in notes), ""], {**summary, "notes": notes}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.containers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--runs", type=int, default=10,
                        help="measured rounds of run --rm and of ps -a")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--many", type=int, default=100,
                        help="containers for run -d in sequence and ps -a (0: skip)")
    parser.add_argument("--idle", type=int, default=100,
                        help="idle containers for the memory phase (0: skip)")
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--out", type=Path,
                        help="output dir (default bench/results/containers-TIME)")
    parser.add_argument("--shared-fs", action="store_true",
                        help="every store on /tmp's filesystem instead of a new ext4 per tool")
    parser.add_argument("--no-pycache", dest="pycache", action="store_false",
                        help="run dockyard without a bytecode cache of its own (see README)")
    args = parser.parse_args(argv)
    wanted = comma_choices(parser, "--tools", args.tools, TOOLS)
    phases = comma_choices(parser, "--phases", args.phases, PHASES)
    if not is_root("containers, dockerd"):
        return 2
    from bench.harness import default_out_dir

    out: Path = args.out or default_out_dir("containers")
    out.mkdir(parents=True, exist_ok=True)
    previous = signal.signal(signal.SIGTERM, raise_interrupted)
    try:
        lines, summary = measure(args, wanted, phases, out)
    except (HarnessError, SpawnError, Interrupted, RuntimeError, OSError,
            subprocess.SubprocessError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    text = "\n".join([f"### containers (issue 5): {', '.join(wanted)}", "", *lines])
    write_summary(out, "containers", text, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
