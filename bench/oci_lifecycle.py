"""The OCI lifecycle of a busybox ``/bin/true`` bundle: dockyard-runc against runc and crun.

Two scenarios, each a side-by-side harness run (runtimes alternated, ratios against runc):

``create-start-delete``
    ``create`` + ``start`` + wait for the container's exit + ``delete``, timed as one command:
    a ``/bin/sh`` script (:data:`CYCLE_SCRIPT`, identical for every runtime) runs the three
    verbs and, between ``start`` and ``delete``, waits for the init's exit by re-reading
    ``/proc/<pid>/stat`` with shell builtins only (no process started, sub-millisecond
    latency) until the process is gone or a zombie. Polling ``<runtime> state`` instead would
    charge each runtime its own start-up once per poll, and a Python or C waiter would add
    an interpreter or an exec of its own. The shell's own cost (one ``dash`` start, ~1 ms) is
    in every runtime's figure alike.
``run``
    ``run`` in the foreground: creates, starts, waits for the exit and deletes what it created
    (runc's semantics without ``--keep``, which crun 1.8 and dockyard-runc do not have). An
    untimed teardown checks that ``<runtime> state`` then fails, i.e. that the container is
    really gone; the harness stops the benchmark if it is not.

Each runtime has its own ``--root`` and its own bundle (the busybox image unpacked, its
config.json from *that* runtime's ``spec`` via :func:`testbed.bundles.make_bundle`, no
terminal). Output goes to /dev/null, never a pipe (``create`` hands its stdio to the container).

**crun** refuses this machine's cgroup v1/v2 hybrid ("cgroups in hybrid mode not supported,
drop all controllers from cgroupv2": ``hugetlb`` sits on the v2 side). Moving hugetlb to a v1
hierarchy would change the host for everyone: which hierarchy a controller is bound to is
kernel-global, not per mount namespace. Instead crun runs in a private mount namespace, held
open by a ``sleep`` started with ``unshare -m --propagation private``, in which
``/sys/fs/cgroup/unified`` is unmounted, so crun sees a pure cgroup v1 layout. Every crun
command is entered into it with ``nsenter --mount=/proc/<holder>/ns/mnt``, which adds one exec
of nsenter to crun's figures; the ``nsenter (crun's wrapper)`` row measures that alone. The
namespace and everything mounted in it die with the holder, which is killed at the end.

**Cgroups**: runc and crun create the container's cgroups (runc: every v1 hierarchy plus the
v2 one in hybrid mode; crun, in its namespace: every v1 hierarchy) and remove them at delete;
so does dockyard-runc. The report says, per runtime, whether a created container left its
caller's cgroups, checked before timing.

    .venv/bin/python -m bench.oci_lifecycle [-n 20] [--warmup 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.harness import Case, HarnessError, Report, run_cases
from bench.spawn import SpawnError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

REPO = Path(__file__).resolve().parents[1]
DOCKYARD_RUNC = REPO / ".venv" / "bin" / "dockyard-runc"
BASELINE = "runc"
UNIFIED = "/sys/fs/cgroup/unified"
HYBRID_REFUSAL = "hybrid mode not supported"
CONTAINER_IDS = ("probe", "cgprobe", "lifecycle", "run")

#: create + start + wait for exit + delete. $1 runtime, $2 root, $3 bundle, $4 id, $5 pid file.
#: The wait uses builtins only: `read` of /proc/<pid>/stat until it fails (reaped) or says Z.
CYCLE_SCRIPT = """\
R=$1 ROOT=$2 B=$3 ID=$4 P=$5
"$R" --root "$ROOT" create --bundle "$B" --pid-file "$P" "$ID" || exit
"$R" --root "$ROOT" start "$ID" || exit
pid=
read -r pid < "$P" || [ -n "$pid" ] || exit 90
while read -r _ _ s _ < "/proc/$pid/stat"; do [ "$s" = Z ] && break; done 2>/dev/null
exec "$R" --root "$ROOT" delete "$ID"
"""


@dataclass(frozen=True, slots=True)
class Runtime:
    """A runtime under test, its private state and bundle, and how its commands are entered."""

    name: str
    binary: str
    root: Path
    bundle: Path
    work: Path
    prefix: tuple[str, ...] = ()  # e.g. nsenter into crun's namespace

    def cmd(self, *args: str) -> tuple[str, ...]:
        return (*self.prefix, self.binary, "--root", str(self.root), *args)


class MountNamespace:
    """A private mount namespace without the cgroup v2 mount, held open by a sleeping process.

    Nothing is mounted or unmounted on the host: the umount happens inside the new namespace
    (``unshare --propagation private``), and the namespace goes away with its last process.
    """

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
             f"umount {UNIFIED} && echo ready && exec sleep infinity"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if line.strip() != b"ready":
            # The shell has exited (umount failed): its stderr is complete, read it first.
            self._proc.wait()
            err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
            self.close()
            raise HarnessError(f"cannot make a mount namespace without {UNIFIED}: {err.strip()}")

    @property
    def enter(self) -> tuple[str, ...]:
        nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"
        return (nsenter, f"--mount=/proc/{self._proc.pid}/ns/mnt", "--")

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
        self._proc.wait()
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()


def _probe(rt: Runtime) -> str | None:
    """Runs the bundle once; None if it worked, else the runtime's complaint."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.run(
            rt.cmd("run", "--bundle", str(rt.bundle), "probe"),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            timeout=60, check=False,
        )
        err.seek(0)
        message = err.read().decode(errors="replace").strip()
    subprocess.run(rt.cmd("delete", "--force", "probe"), stdin=subprocess.DEVNULL,
                   capture_output=True, check=False)
    if proc.returncode == 0:
        return None
    return message or f"exit status {proc.returncode}"


def creates_cgroups(rt: Runtime) -> bool | None:
    """Whether the runtime moves a created container out of its caller's cgroups (None: could
    not tell, e.g. create failed). Said in the report, since cgroup set-up is part of the cost."""
    pid_file = rt.work / "cgroup-probe.pid"
    created = subprocess.run(
        rt.cmd("create", "--bundle", str(rt.bundle), "--pid-file", str(pid_file), "cgprobe"),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        timeout=60, check=False,
    )
    try:
        if created.returncode != 0:
            return None
        pid = int(pid_file.read_text().strip())
        theirs = Path(f"/proc/{pid}/cgroup").read_text()
        return theirs != Path("/proc/self/cgroup").read_text()
    except (OSError, ValueError):
        return None
    finally:
        subprocess.run(rt.cmd("delete", "--force", "cgprobe"), stdin=subprocess.DEVNULL,
                       capture_output=True, check=False)
        pid_file.unlink(missing_ok=True)


@contextlib.contextmanager
def prepared_runtimes(work: Path, notes: list[str]) -> Iterator[list[Runtime]]:
    """The runtimes found here, each with its root and bundle; crun in its own mount namespace
    if it refuses the host's cgroups. Everything they left is force-deleted afterwards."""
    from testbed import images
    from testbed.bundles import make_bundle

    busybox = images.busybox()
    namespace: MountNamespace | None = None
    wanted = [("dockyard-runc", str(DOCKYARD_RUNC)), ("runc", "runc"), ("crun", "crun")]
    runtimes: list[Runtime] = []
    try:
        for name, program in wanted:
            binary = shutil.which(program)
            if binary is None:
                notes.append(f"{name}: {program} not found, skipped (run bench/setup)")
                continue
            rt_work = work / name
            root = rt_work / "root"
            root.mkdir(parents=True)
            bundle = make_bundle(busybox, rt_work / "bundle", binary, ["/bin/true"])
            rt = Runtime(name, binary, root, bundle, rt_work)
            problem = _probe(rt)
            if problem is not None and name == "crun" and HYBRID_REFUSAL in problem:
                try:
                    namespace = MountNamespace()
                except HarnessError as exc:
                    notes.append(f"crun: {exc}; its rows will fail")
                else:
                    rt = Runtime(name, binary, root, bundle, rt_work, namespace.enter)
                    notes.append(
                        f"crun refused the host's cgroup hybrid ({problem!r}); it runs in a"
                        f" private mount namespace without {UNIFIED}, each command through"
                        f" `{' '.join(namespace.enter[:2])}` (its cost is measured alone in"
                        " the oci-run table)"
                    )
                    problem = _probe(rt)
            if problem is not None:
                notes.append(f"{name}: a probe run failed ({problem}); its rows will fail")
            cgroups = creates_cgroups(rt)
            notes.append(f"{name}: " + {
                True: "creates the container's cgroups (and removes them at delete)",
                False: "creates no cgroups for the container (it stays in its caller's), so it"
                       " skips that work",
                None: "could not tell whether it creates cgroups",
            }[cgroups])
            runtimes.append(rt)
        yield runtimes
    finally:
        for rt in runtimes:  # whatever an interrupted or failed run left behind
            for cid in CONTAINER_IDS:
                subprocess.run(rt.cmd("delete", "--force", cid), stdin=subprocess.DEVNULL,
                               capture_output=True, check=False)
        if namespace is not None:
            namespace.close()


def lifecycle_cases(runtimes: Sequence[Runtime], script: Path) -> list[Case]:
    cases = []
    for rt in runtimes:
        pid_file = rt.work / "init.pid"
        cases.append(Case(
            rt.name,
            (*rt.prefix, "/bin/sh", str(script), rt.binary, str(rt.root), str(rt.bundle),
             "lifecycle", str(pid_file)),
            teardown=_gone(rt, "lifecycle"),
        ))
    return cases


def run_cases_for(runtimes: Sequence[Runtime]) -> list[Case]:
    return [
        Case(rt.name, rt.cmd("run", "--bundle", str(rt.bundle), "run"), teardown=_gone(rt, "run"))
        for rt in runtimes
    ]


def _gone(rt: Runtime, cid: str) -> tuple[str, ...]:
    """Untimed check after each run: the container must not exist any more."""
    return ("/bin/sh", "-c", f"! {shlex.join(rt.cmd('state', cid))} >/dev/null 2>&1")


def _nsenter_case(prefix: tuple[str, ...]) -> Case:
    return Case("nsenter (crun's wrapper)", (*prefix, "/bin/true"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.oci_lifecycle",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-n", "--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, help="output dir (default bench/results/NAME-TIME)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench: error: OCI runtimes need root here", file=sys.stderr)
        return 2
    notes: list[str] = []
    reports: list[Report] = []
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-oci-"))
    try:
        with prepared_runtimes(work, notes) as runtimes:
            script = work / "cycle.sh"
            script.write_text(CYCLE_SCRIPT)
            labels = [rt.name for rt in runtimes]
            baseline = BASELINE if BASELINE in labels else None
            crun = next((rt for rt in runtimes if rt.prefix), None)
            extra = [_nsenter_case(crun.prefix)] if crun is not None else []
            for name, cases in (
                ("oci-create-start-wait-delete", lifecycle_cases(runtimes, script)),
                ("oci-run", run_cases_for(runtimes) + extra),
            ):
                reports.append(run_cases(cases, args.runs, args.warmup, name=name,
                                         baseline=baseline))
    except (HarnessError, SpawnError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    finally:
        _cleanup(work)
    footer = "".join(f"- note: {note}\n" for note in notes)
    for report in reports:
        out = report.write(None if args.out is None else args.out / report.name)
        with open(out / "results.md", "a") as md:
            md.write(footer)
        print(report.markdown())
        print(f"wrote {os.path.relpath(out)}\n")
    print(footer, end="")
    return 0


def _cleanup(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
