"""A pure cgroup v2 host inside a hybrid one, for the cgroup manager's integration tests.

:func:`run_pure_v2` starts ``unshare --mount --propagation private python -m testbed.cgroupv2
<scenario> <name> <workdir>``: in its private mount namespace the helper unmounts the host's
/sys/fs/cgroup tree and mounts cgroup2 there alone, so ``/proc/self/mountinfo`` shows a pure v2
layout, then runs the scenario against the real kernel and prints what it observed as JSON.
The cgroup2 hierarchy is the host's one (there is only one), so what the helper creates is
visible from the test, which cleans it up even if the helper dies (:func:`unified_guard`).

Controllers bound to v1 hierarchies are not available in the v2 tree: on a hybrid host the
scenario can only exercise what the unified tree has (creation, processes, freezer,
cgroup.kill, device filters, hugetlb); on a pure v2 host it also exercises memory, pids, cpu.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CGROUP_ROOT = "/sys/fs/cgroup"


# --- the test's side ---------------------------------------------------------------------------

def run_pure_v2(scenario: str, name: str, workdir: Path, timeout: float = 120) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", sys.executable, "-m",
         "testbed.cgroupv2", scenario, name, str(workdir)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"pure-v2 helper failed ({proc.returncode}):\n{proc.stdout}\n"
                             f"{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def host_unified() -> str | None:
    from dockyard.cgroups.layout import detect_layout

    layout = detect_layout()
    return layout.unified.mountpoint if layout.unified is not None else None


def _kill_tree(directory: str) -> None:
    for dirpath, _dirs, files in os.walk(directory, topdown=False):
        if "cgroup.kill" in files:
            with contextlib.suppress(OSError):
                Path(dirpath, "cgroup.kill").write_text("1")
        with contextlib.suppress(OSError):
            for pid in Path(dirpath, "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)


def remove_cgroup_tree(directory: str, timeout: float = 5.0) -> None:
    """Kill whatever is in a cgroup tree and rmdir it, deepest first."""
    if not os.path.isdir(directory):
        return
    _kill_tree(directory)
    deadline = time.monotonic() + timeout
    while os.path.isdir(directory):
        for dirpath, _dirs, _files in os.walk(directory, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
        if time.monotonic() > deadline:
            raise AssertionError(f"cannot remove cgroup {directory}")
        time.sleep(0.02)


@contextlib.contextmanager
def unified_guard(name: str) -> Iterator[str | None]:
    """Around a test that creates ``/<name>`` in the unified hierarchy: afterwards remove it
    (killing what is left) and take back the controllers it enabled in the root's
    subtree_control (best effort: another user may have started to rely on them)."""
    mountpoint = host_unified()
    if mountpoint is None:
        yield None
        return
    control = Path(mountpoint, "cgroup.subtree_control")
    before = set(control.read_text().split())
    try:
        yield mountpoint
    finally:
        remove_cgroup_tree(os.path.join(mountpoint, name))
        for c in set(control.read_text().split()) - before:
            with contextlib.suppress(OSError):
                control.write_text("-" + c)


# --- the helper's side (inside the private mount namespace) ---------------------------------

def enter_pure_v2() -> None:
    from dockyard.linux import libc

    libc.umount2(CGROUP_ROOT, libc.MNT_DETACH)
    libc.mount("cgroup2", CGROUP_ROOT, "cgroup2", libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC)


def _read(path: str) -> str:
    return Path(path).read_text().strip()


def _count(workdir: str) -> int:
    """How many ticks the counter has appended (two bytes each).

    The shell appends rather than rewrites, so a process frozen between two writes never
    leaves the file empty or half-written.
    """
    return os.stat(os.path.join(workdir, "count")).st_size // 2


def _spawn(argv: list[str], procs: list[subprocess.Popen[str]],
           **kw: Any) -> subprocess.Popen[str]:
    p: subprocess.Popen[str] = subprocess.Popen(argv, text=True, **kw)
    procs.append(p)
    return p


def lifecycle(name: str, workdir: str) -> dict[str, Any]:
    from dockyard.cgroups import manager_for, parse_resources
    from dockyard.cgroups.layout import detect_layout
    from dockyard.errors import DockyardError
    from dockyard.linux import bpf

    obs: dict[str, Any] = {"mode": detect_layout().mode.value}
    controllers = _read(f"{CGROUP_ROOT}/cgroup.controllers").split()
    obs["controllers"] = controllers
    obs["default_path"] = manager_for(None, name).path
    mgr = manager_for(f"/{name}", name)
    obs["manager"] = type(mgr).__name__
    obs["path"] = mgr.path
    procs: list[subprocess.Popen[str]] = []
    try:
        counter = _spawn(["sh", "-c", f": > {workdir}/count; while :; do echo x >> {workdir}/count;"
                          " sleep 0.01; done"], procs)
        mgr.apply(counter.pid)
        sleeper = _spawn(["sleep", "60"], procs)
        mgr.add_pid(sleeper.pid)
        obs["own_pids"] = [counter.pid, sleeper.pid]
        obs["pids"] = mgr.pids()
        obs["cgroup_procs"] = sorted(int(p) for p in _read(f"{mgr.path}/cgroup.procs").split())

        # freezer: cgroup.freeze + cgroup.events, and the counter really stops
        time.sleep(0.2)
        mgr.freeze()
        obs["state_frozen"] = mgr.state().value
        obs["events_frozen"] = _read(f"{mgr.path}/cgroup.events")
        c1 = _count(workdir)
        time.sleep(0.4)
        obs["progress_frozen"] = _count(workdir) - c1
        mgr.thaw()
        obs["state_thawed"] = mgr.state().value
        c1 = _count(workdir)
        time.sleep(0.4)
        obs["progress_thawed"] = _count(workdir) - c1

        exercised = []
        if "hugetlb" in controllers:
            mgr.set(parse_resources({"hugepageLimits": [{"pageSize": "2MB",
                                                         "limit": 4 << 20}]}))
            obs["hugetlb_max"] = _read(f"{mgr.path}/hugetlb.2MB.max")
            exercised.append("hugetlb")
        if "pids" in controllers:
            mgr.set(parse_resources({"pids": {"limit": 64}}))
            obs["pids_max"] = _read(f"{mgr.path}/pids.max")
            exercised.append("pids")
        if "memory" in controllers:
            mgr.set(parse_resources({"memory": {"limit": 256 << 20}}))
            obs["memory_max"] = _read(f"{mgr.path}/memory.max")
            exercised.append("memory")
        if "cpu" in controllers:
            mgr.set(parse_resources({"cpu": {"shares": 2048, "quota": 20000}}))
            obs["cpu_weight"] = _read(f"{mgr.path}/cpu.weight")
            obs["cpu_max"] = _read(f"{mgr.path}/cpu.max")
            exercised.append("cpu")
        obs["exercised"] = exercised

        # devices: an eBPF filter; read /dev/null yes, write it no
        rules = {"devices": [{"allow": False, "access": "rwm"},
                             {"allow": True, "type": "c", "major": 1, "minor": 3,
                              "access": "r"}]}
        mgr.set(parse_resources(rules))
        mgr.set(parse_resources(rules))     # an update replaces the filter
        fd = os.open(mgr.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            obs["device_programs"] = len(bpf.attached_programs(fd))
        finally:
            os.close(fd)
        probe = _spawn(["sh", "-c", "read _; cat /dev/null && echo READ-OK; "
                        "echo x > /dev/null && echo WRITE-OK; exit 0"], procs,
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        mgr.add_pid(probe.pid)
        obs["device_probe"] = probe.communicate("\n", timeout=30)[0]

        obs["stats"] = mgr.stats().to_runc()

        # kill_all with SIGTERM: frozen, signalled pid by pid, thawed
        mgr.kill_all(signal.SIGTERM)
        obs["term_returncodes"] = [counter.wait(10), sleeper.wait(10)]

        # kill_all with SIGKILL on a frozen cgroup: cgroup.kill
        more = [_spawn(["sleep", "60"], procs) for _ in range(2)]
        for p in more:
            mgr.add_pid(p.pid)
        mgr.freeze()
        mgr.kill_all(signal.SIGKILL)
        obs["kill_returncodes"] = [p.wait(10) for p in more]

        mgr.destroy()
        obs["exists_after_destroy"] = mgr.exists()
        obs["dir_after_destroy"] = os.path.isdir(mgr.path)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        with contextlib.suppress(DockyardError):
            mgr.destroy(kill=True)
    return obs


SCENARIOS: dict[str, Callable[[str, str], dict[str, Any]]] = {"lifecycle": lifecycle}


def main(argv: list[str]) -> int:
    scenario, name, workdir = argv
    enter_pure_v2()
    print(json.dumps(SCENARIOS[scenario](name, workdir)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
