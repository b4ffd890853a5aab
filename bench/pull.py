"""Cold pull to a ready-to-run image (issue 4): dockyard against podman, docker and skopeo.

The image is :func:`testbed.images.pullbench` (5 gzip layers, ~129 MB compressed, ~229 MB of
tar, ~8,600 entries), pushed into a registry on 127.0.0.1 (:mod:`testbed.registry`). Each tool
pulls it from a cold store into its own ready-to-run state, and the tools alternate (one round =
one pull by each) so a change in the machine's load hits them alike:

``podman``
    ``podman pull 127.0.0.1:PORT/pullbench:latest`` with its own configuration, ``--root``,
    ``--runroot`` and ``--tmpdir`` (:func:`testbed.podman.start_podman`: storage driver overlay,
    the registry listed as insecure). After each run, untimed, ``podman system reset -f``
    removes the store, and the directories go: every run starts from nothing, like a first pull
    on a new machine. podman unpacks every layer into ``overlay/<id>/diff`` before it exits.
``docker``
    ``docker pull`` (docker.io's 20.10 CLI, ``/usr/bin/docker``) against a dockerd of our own
    (:func:`testbed.dockerd.start_dockerd`: its own data-root, overlay2, stopped by PID at the
    end). dockerd treats 127.0.0.0/8 as an insecure registry by default. It unpacks each layer
    into ``overlay2/<id>/diff`` before the pull returns. After each run, untimed, ``docker rmi``
    and ``docker image prune -af`` empty the store again; an untimed check before each run
    refuses to time a pull into a store that still holds a layer. The daemon's own CPU time and
    memory are not in the CLI's rusage: docker's CPU and RSS columns are the client's only.
``skopeo``
    ``skopeo copy docker://… oci:DIR`` into a fresh directory: the download alone, digests
    checked, no unpacking. It is the floor, not a competitor.
``dockyard``
    ``dockyard --root DIR pull 127.0.0.1:PORT/pullbench:latest`` with a fresh ``--root`` each
    run. Skipped, with a note, while ``dockyard pull`` answers 125 "not a dockyard command yet".

Before timing, every tool pulls once untimed (a check round): its output is captured and
shown if it fails, and the store is checked to hold at least as many non-directory entries as
the image's layers (skopeo: the blobs' bytes). Then ``-n`` measured rounds. Reported per tool:
median, min and max wall time, MB/s (compressed bytes / median, and tar bytes / median), and
the ratio against the faster of podman and docker in this run (ratio of the medians / median of
the per-round ratios); the target of issue 4 is dockyard <= 0.5x that.

Each tool's store is on a new ext4 of its own (a sparse file, loop-mounted; ``--shared-fs``
puts them all on /tmp's filesystem instead, see :func:`mount_fresh_fs` for why not by default);
everything they leave (daemons, mounts, loop devices, directories) is removed at the end, also
on failure or Ctrl-C.

    .venv/bin/python -m bench.pull [-n 5] [--warmup 0] [--tools podman,docker,skopeo,dockyard]
                                   [--out DIR] [--json FILE] [--shared-fs]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import gzip
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.harness import Case, HarnessError, Interrupted, Report, raise_interrupted, run_cases
from bench.spawn import SpawnError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from testbed.dockerd import Dockerd
    from testbed.images import BuiltImage
    from testbed.podman import Podman

REPO = Path(__file__).resolve().parents[1]
DOCKYARD = REPO / ".venv" / "bin" / "dockyard"
SKOPEO = "/usr/bin/skopeo"
REPO_NAME = "pullbench"
TAG = "latest"
TOOLS = ("podman", "docker", "skopeo", "dockyard")
REFERENCES = ("podman", "docker")
TARGET_RATIO = 0.5
NOT_YET = "not a dockyard command yet"
NOT_YET_STATUS = 125
CHECK_TIMEOUT = 600.0


@dataclass(frozen=True, slots=True)
class ImageSize:
    """What a pull of the image moves and writes."""

    layers: int
    compressed_bytes: int  # the layers' blobs, as they travel
    tar_bytes: int  # the layers uncompressed
    entries: int  # tar members of all layers
    non_dirs: int  # of which not directories: what must exist in a store once unpacked

    @classmethod
    def of(cls, image: BuiltImage) -> ImageSize:
        blobs = image.oci_layout / "blobs" / "sha256"
        compressed = tar_bytes = entries = non_dirs = 0
        for digest in image.layer_digests:
            blob = blobs / digest.removeprefix("sha256:")
            compressed += blob.stat().st_size
            with gzip.open(blob) as gz, tarfile.open(fileobj=gz, mode="r|") as tar:
                for member in tar:
                    entries += 1
                    non_dirs += not member.isdir()
                tar_bytes += gz.tell()
        return cls(len(image.layer_digests), compressed, tar_bytes, entries, non_dirs)


@dataclass(frozen=True, slots=True)
class Tool:
    """One tool's measured command, its untimed setup/teardown, and what the check reads."""

    case: Case
    store: Path  # where a pull leaves the image
    survey: Path  # one "entries bytes" line per run: what the store held after it
    kind: str = "unpacked"  # or "blobs" (skopeo: download only)

    def surveys(self) -> list[tuple[int, int]]:
        try:
            lines = self.survey.read_text().split("\n")
        except FileNotFoundError:
            return []
        return [(int(a), int(b)) for a, b in (line.split() for line in lines if line.strip())]

    def held_the_image(self, survey: tuple[int, int], size: ImageSize) -> bool:
        """Whether a store that held ``survey`` after a pull holds the image as it should:
        at least every non-directory entry of the layers (unpacked), or the blobs' bytes."""
        entries, stored = survey
        return stored >= size.compressed_bytes if self.kind == "blobs" else (
            entries >= size.non_dirs)


# ------------------------------------------------------------------------------- the tools


def _sh(script: Path, text: str) -> tuple[str, ...]:
    script.write_text("set -eu\n" + text)
    return ("/bin/sh", str(script))


def _cold(script: Path, text: str) -> tuple[str, ...]:
    """An untimed setup: check that the store is empty, then flush the dirty pages that the
    previous pull (of any tool) left, so no run pays for another's writeback."""
    return _sh(script, text + "sync\n")


def _survey(store: Path, log: Path) -> str:
    """Shell, first thing in every teardown: append what the store holds (non-directory
    entries, their bytes) to ``log``, so every measured run is checked, not only the first."""
    return (
        f"find {shlex.quote(str(store))} ! -type d -printf '%s\\n' 2>/dev/null"
        f" | awk '{{ n++; s += $1 }} END {{ print n + 0, s + 0 }}' >> {shlex.quote(str(log))}\n"
    )


def _no_mounts_below(path: Path) -> str:
    """Shell: fail if anything is mounted at or below ``path`` (rm -rf must never cross one)."""
    p = shlex.quote(str(path))
    return (
        f"if awk -v d={p} '$5 == d || index($5, d \"/\") == 1 {{ found = 1 }}"
        f" END {{ exit !found }}' /proc/self/mountinfo; then\n"
        f"  echo 'still mounted below '{p} >&2; exit 1\nfi\n"
    )


def _env_argv(env: dict[str, str], keys: Sequence[str]) -> tuple[str, ...]:
    return ("/usr/bin/env", *(f"{key}={env[key]}" for key in keys))


def podman_tool(work: Path, registry_host: str, ref: str, home: Path) -> tuple[Tool, Podman]:
    from testbed.podman import start_podman

    podman = start_podman(home / "podman", insecure_registries=[registry_host])
    env = dict(podman.env)
    keys = ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF",
            "REGISTRY_AUTH_FILE")
    prefix = _env_argv(env, keys)
    dirs = " ".join(shlex.quote(str(d)) for d in (podman.root, podman.runroot, podman.tmpdir))
    # start_podman ran `podman info`: the first measured pull must start from nothing too.
    store = podman.root / "overlay"
    survey = work / "podman.survey"
    reset = (
        _survey(store, survey)
        + f"{shlex.join((*prefix, *podman.argv('system', 'reset', '-f')))} >/dev/null\n"
        + _no_mounts_below(podman.workdir)
        + f"rm -rf {dirs}\n"
    )
    done = subprocess.run(_sh(work / "podman-reset.sh", reset), capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise HarnessError(f"podman: cannot reset its store: {done.stderr.strip()}")
    case = Case(
        "podman",
        (*prefix, *podman.argv("pull", ref)),
        setup=_cold(work / "podman-cold.sh", f"for d in {dirs}; do test ! -e \"$d\"; done\n"),
        teardown=("/bin/sh", str(work / "podman-reset.sh")),
    )
    return Tool(case, store, survey), podman


def docker_tool(work: Path, ref: str, home: Path) -> tuple[Tool, Dockerd]:
    from testbed.dockerd import start_dockerd

    daemon = start_dockerd(home / "d")
    env = dict(daemon.env)
    prefix = _env_argv(env, ("DOCKER_CONFIG",))
    docker = shlex.join((*prefix, *daemon.argv()))
    overlay2 = shlex.quote(str(daemon.data_root / "overlay2"))
    case = Case(
        "docker",
        (*prefix, *daemon.argv("pull", ref)),
        # overlay2/l holds the layers' short links; any other entry is a layer left behind.
        setup=_cold(
            work / "docker-cold.sh",
            f'test -z "$({docker} images -aq)"\n'
            f'test -z "$(ls -A {overlay2} 2>/dev/null | grep -vx l || true)"\n',
        ),
        teardown=_sh(
            work / "docker-rmi.sh",
            _survey(daemon.data_root / "overlay2", work / "docker.survey")
            + f"{docker} rmi {shlex.quote(ref)} >/dev/null\n"
            f"{docker} image prune -af >/dev/null\n",
        ),
    )
    return Tool(case, daemon.data_root / "overlay2", work / "docker.survey"), daemon


def skopeo_tool(work: Path, ref: str, home: Path) -> Tool:
    dest = home / "skopeo-oci"
    case = Case(
        "skopeo",
        (SKOPEO, "--insecure-policy", "copy", "--src-tls-verify=false", f"docker://{ref}",
         f"oci:{dest}:{TAG}"),
        setup=_cold(work / "skopeo-cold.sh", f"test ! -e {shlex.quote(str(dest))}\n"),
        teardown=_sh(
            work / "skopeo-rm.sh",
            _survey(dest, work / "skopeo.survey") + f"rm -rf {shlex.quote(str(dest))}\n",
        ),
    )
    return Tool(case, dest, work / "skopeo.survey", kind="blobs")


def dockyard_tool(work: Path, ref: str, home: Path) -> Tool:
    root = home / "dockyard-root"
    case = Case(
        "dockyard",
        (str(DOCKYARD), "--root", str(root), "pull", ref),
        setup=_cold(work / "dockyard-cold.sh", f"test ! -e {shlex.quote(str(root))}\n"),
        teardown=_sh(
            work / "dockyard-rm.sh",
            _survey(root, work / "dockyard.survey")
            + _no_mounts_below(root) + f"rm -rf {shlex.quote(str(root))}\n",
        ),
    )
    return Tool(case, root, work / "dockyard.survey")


# ------------------------------------------------------------------------------- checks


@dataclass(frozen=True, slots=True)
class Check:
    """What the untimed check pull found: whether to time the tool, and a note if any."""

    measure: bool
    note: str | None = None


def check_round(tool: Tool, size: ImageSize) -> Check:
    """Runs the tool's setup, command and teardown once, untimed; checks the store in between.

    Raises HarnessError if the store is not cold or cannot be cleaned (figures taken after
    that would describe some other state). A tool that fails is still timed, and flagged."""
    case = tool.case
    if case.setup is not None and _quiet(case.setup).returncode != 0:
        raise HarnessError(f"{case.label}: the store is not cold before the first pull")
    proc = subprocess.run(
        case.argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=CHECK_TIMEOUT, check=False,
    )
    check = Check(measure=True)
    if proc.returncode == NOT_YET_STATUS and NOT_YET in proc.stderr:
        check = Check(False, f"skipped: `{shlex.join(case.argv[-3:])}` is {NOT_YET} (exit 125)")
    elif proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()
        print(f"bench: {case.label}: the check pull exited {proc.returncode}; its runs will"
              f" be flagged as failed:\n{tail[-1500:]}", file=sys.stderr)
        last = tail.splitlines()[-1] if tail else "(no output)"
        check = Check(True, f"the check pull exited {proc.returncode}: {last}")
    if case.teardown is not None:
        done = _quiet(case.teardown)
        if done.returncode != 0 and proc.returncode == 0:
            raise HarnessError(f"{case.label}: teardown failed: {done.stderr.strip()}")
    surveys = tool.surveys()
    tool.survey.unlink(missing_ok=True)  # from here on, one line per timed or warm-up run
    if proc.returncode == 0 and surveys:
        entries, stored = surveys[-1]
        what = (f"{stored:,} bytes of blobs (the image's: {size.compressed_bytes:,})"
                if tool.kind == "blobs" else
                f"{entries:,} non-directory entries (the layers': {size.non_dirs:,})")
        if tool.held_the_image(surveys[-1], size):
            print(f"bench: {case.label}: check pull ok, {what} in {tool.store}", file=sys.stderr)
        else:
            check = Check(True, f"after the check pull its store held only {what}")
    return check


def _quiet(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=CHECK_TIMEOUT, check=False)


# ------------------------------------------------------------------------------- report


@dataclass(frozen=True, slots=True)
class PullRow:
    label: str
    median_s: float
    min_s: float
    max_s: float
    mb_s: float  # compressed MB / median
    tar_mb_s: float  # tar MB / median
    ratio_of_medians: float | None  # against the faster reference
    ratio_paired: float | None
    failures: int
    held: int  # measured runs after which the store held the image (unpacked, for skopeo blobs)
    runs: int

    @property
    def ok(self) -> bool:
        return self.failures == 0 and self.held == self.runs


def pull_rows(report: Report, size: ImageSize, held: Mapping[str, int]) -> list[PullRow]:
    rows = []
    for s in report.summaries():
        median = s.wall_ms.median / 1000
        rows.append(PullRow(
            label=s.label,
            median_s=median,
            min_s=s.wall_ms.min / 1000,
            max_s=s.wall_ms.max / 1000,
            mb_s=size.compressed_bytes / 1e6 / median if median else 0.0,
            tar_mb_s=size.tar_bytes / 1e6 / median if median else 0.0,
            ratio_of_medians=s.wall_ratio.of_medians,
            ratio_paired=s.wall_ratio.paired,
            failures=s.failures,
            held=held.get(s.label, 0),
            runs=report.runs_per_case,
        ))
    return rows


def faster_reference(rows: Sequence[PullRow]) -> str | None:
    """The faster (by median) of podman and docker, among those whose every run was ok."""
    medians = {row.label: row.median_s for row in rows if row.label in REFERENCES and row.ok}
    return min(medians, key=lambda label: medians[label]) if medians else None


def with_baseline(rows: Sequence[PullRow], report: Report, size: ImageSize,
                  held: Mapping[str, int]) -> tuple[Report, list[PullRow], str | None]:
    """The report and rows with their ratios taken against the faster reference."""
    reference = faster_reference(rows)
    if reference is None:
        return report, list(rows), None
    report = dataclasses.replace(report, baseline=reference)
    return report, pull_rows(report, size, held), reference


def target_line(rows: Sequence[PullRow], reference: str | None) -> str:
    ref = next((row for row in rows if row.label == reference), None)
    if ref is None:
        return "Target (dockyard <= 0.5x the faster of podman and docker): no reference measured."
    budget = TARGET_RATIO * ref.median_s
    head = (f"Target: dockyard <= {TARGET_RATIO}x {ref.label}'s median"
            f" ({ref.median_s:.2f} s) = **{budget:.2f} s**")
    mine = next((row for row in rows if row.label == "dockyard"), None)
    if mine is None:
        return head + ": dockyard not measured."
    if mine.failures:
        return head + f": dockyard failed {mine.failures} run(s)."
    if not mine.ok:
        return head + (f": dockyard's store held the unpacked image after only {mine.held} of"
                       f" {mine.runs} runs -> **not met**.")
    met = mine.median_s <= budget
    return (head + f": dockyard {mine.median_s:.2f} s, ratio {_r(mine.ratio_of_medians)} /"
            f" {_r(mine.ratio_paired)} -> {'**met**' if met else '**not met**'}.")


def _r(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def render(report: Report, rows: Sequence[PullRow], size: ImageSize, reference: str | None,
           notes: Sequence[str]) -> str:
    base = reference or report.baseline
    lines = [
        f"### pull: cold pull to ready-to-run, {report.runs_per_case} rounds, alternated",
        "",
        f"Image: {size.layers} gzip layers, {size.compressed_bytes / 1e6:.1f} MB"
        f" compressed, {size.tar_bytes / 1e6:.1f} MB of tar, {size.entries:,} entries;"
        " registry on 127.0.0.1.",
        "",
        f"| tool | median s | min s | max s | MB/s (gz) | MB/s (tar) | x / {base} | status |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        if row.failures:
            status = f"**FAILED** {row.failures}/{row.runs}"
        elif not row.ok:
            status = f"**image missing from the store** after {row.runs - row.held}/{row.runs}"
        else:
            status = "ok"
        # A failed pull moved nothing worth a rate: its times only say what failing cost.
        rates = (
            f"{row.mb_s:.0f} | {row.tar_mb_s:.0f}"
            f" | {_r(row.ratio_of_medians)} / {_r(row.ratio_paired)}"
            if row.ok
            else "- | - | -"
        )
        lines.append(
            f"| {row.label} | {row.median_s:.2f} | {row.min_s:.2f} | {row.max_s:.2f}"
            f" | {rates} | {status} |"
        )
    lines += [
        "",
        "Ratios: ratio of the medians / median of the per-round ratios, against "
        + ("the faster of podman and docker in this run" if reference else
           f"{base} (neither podman nor docker measured)")
        + ". skopeo downloads only (no unpack): the floor. Status ok: every run exited 0 and"
        " left the image in the store (every layer's non-directory entries; skopeo: the"
        " blobs), checked after each run.",
        "",
        target_line(rows, reference),
        "",
        *(f"- note: {note}" for note in notes),
        "",
    ]
    return "\n".join(lines)


def to_json(report: Report, rows: Sequence[PullRow], size: ImageSize, reference: str | None,
            notes: Sequence[str]) -> dict[str, Any]:
    return {
        "image": dataclasses.asdict(size),
        "reference": reference,
        "target_ratio": TARGET_RATIO,
        "target_line": target_line(rows, reference),
        "tools": [{**dataclasses.asdict(row), "ok": row.ok} for row in rows],
        "notes": list(notes),
        "harness": report.to_json(),
    }


# ------------------------------------------------------------------------------- main


@contextlib.contextmanager
def _environment(work: Path, tools: Sequence[str], notes: list[str], *,
                 fresh_fs: bool) -> Iterator[tuple[list[Tool], ImageSize]]:
    """Registry, image, daemons and tools; everything torn down on the way out."""
    from testbed import images
    from testbed.dockerd import DockerdError, stop_dockerd
    from testbed.podman import PodmanError, remove_podman, unmount_under
    from testbed.registry import push_oci_layout, start_registry, stop_registry

    image = images.pullbench()
    size = ImageSize.of(image)
    cleanups: list[Callable[[], None]] = []
    try:
        reg = start_registry(work / "registry")
        cleanups.append(functools.partial(stop_registry, reg))
        push_oci_layout(reg, image.oci_layout, image.tag, REPO_NAME, TAG)
        ref = f"{reg.host}/{REPO_NAME}:{TAG}"
        found: list[Tool] = []

        def home(name: str) -> Path:
            """Where a tool keeps its store: a new ext4 of its own, or a dir in ``work``."""
            path = work / f"fs-{name}"
            path.mkdir()
            if fresh_fs:
                mount_fresh_fs(work / f"fs-{name}.img", path)
                cleanups.append(functools.partial(unmount_fresh_fs, path))
            return path

        for name in tools:
            if name == "podman":
                if not os.path.exists("/usr/bin/podman"):
                    notes.append("podman: /usr/bin/podman not found, skipped (run bench/setup)")
                    continue
                tool, podman = podman_tool(work, reg.host, ref, home(name))
                cleanups.append(functools.partial(remove_podman, podman))
            elif name == "docker":
                if not os.path.exists("/usr/sbin/dockerd"):
                    notes.append("docker: /usr/sbin/dockerd not found, skipped (bench/setup)")
                    continue
                tool, daemon = docker_tool(work, ref, home(name))
                cleanups.append(functools.partial(stop_dockerd, daemon))
            elif name == "skopeo":
                if not os.path.exists(SKOPEO):
                    notes.append(f"skopeo: {SKOPEO} not found, skipped (run bench/setup)")
                    continue
                tool = skopeo_tool(work, ref, home(name))
            else:
                if not os.access(DOCKYARD, os.X_OK):
                    notes.append(f"dockyard: {DOCKYARD} not found, skipped (pip install -e .)")
                    continue
                tool = dockyard_tool(work, ref, home(name))
            found.append(tool)
        yield found, size
    finally:
        problems = []
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except (DockerdError, PodmanError) as exc:
                problems.append(str(exc))
        problems += unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)
        for problem in problems:
            print(f"bench: clean-up: {problem}", file=sys.stderr)


# ------------------------------------------------------------------------------- filesystems

FRESH_FS_SIZE = 8 << 30  # sparse: only what the tool writes takes space


def mount_fresh_fs(image: Path, target: Path) -> None:
    """A new ext4 (mkfs defaults) on a sparse file, loop-mounted at ``target``.

    Why: on a filesystem that has created and deleted many files, ext4's inode allocator can
    spend most of a pull's time skipping recently freed inodes (``find_inode_bit`` →
    ``recently_deleted``; on this VM's root filesystem it tripled a pull's system time). A
    new filesystem per tool measures the tools, not that history, and is the same for all.
    """
    with open(image, "wb") as f:
        f.truncate(FRESH_FS_SIZE)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(target)], check=True)


def unmount_fresh_fs(target: Path) -> None:
    # A loop device set up by mount(8) is detached when its last mount goes (autoclear).
    subprocess.run(["umount", str(target)], check=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pull",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-n", "--runs", type=int, default=5, help="measured rounds")
    parser.add_argument("--warmup", type=int, default=0,
                        help="untimed rounds after the check round (default 0)")
    parser.add_argument("--tools", default=",".join(TOOLS),
                        help=f"comma-separated subset of {','.join(TOOLS)}")
    parser.add_argument("--out", type=Path, help="output dir (default bench/results/pull-TIME)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the summary here")
    parser.add_argument("--shared-fs", action="store_true",
                        help="keep every store on /tmp's filesystem instead of a new ext4 "
                             "per tool")
    args = parser.parse_args(argv)
    wanted = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = sorted(set(wanted) - set(TOOLS))
    if unknown or not wanted:
        parser.error(f"unknown tools {unknown}; choose from {', '.join(TOOLS)}")
    if os.geteuid() != 0:
        print("bench: error: the pull benchmark needs root (dockerd, podman's overlay)",
              file=sys.stderr)
        return 2
    notes: list[str] = [
        "each run starts from an empty store: podman a new root (system reset after each run),"
        " docker an emptied data-root (rmi + image prune), skopeo and dockyard a new directory",
        "docker's CPU and peak RSS columns are the CLI's only: dockerd does the pull",
    ]
    previous = signal.signal(signal.SIGTERM, raise_interrupted)
    work = Path(tempfile.mkdtemp(prefix="dyp-", dir="/tmp"))  # short: dockerd's sockets
    try:
        notes.append("each tool's store is on " + (
            "/tmp's filesystem (--shared-fs)" if args.shared_fs else
            "a new ext4 of its own (loop-mounted sparse file, mkfs defaults)"))
        with _environment(work, wanted, notes, fresh_fs=not args.shared_fs) as (tools, size):
            measured = []
            for tool in tools:
                check = check_round(tool, size)
                if check.measure:
                    measured.append(tool)
                if check.note is not None:
                    notes.append(f"{tool.case.label}: {check.note}")
                    print(f"bench: {tool.case.label}: {check.note}", file=sys.stderr)
            if not measured:
                print("bench: error: no tool left to measure", file=sys.stderr)
                return 2
            report = run_cases([tool.case for tool in measured], args.runs, args.warmup,
                               name="pull")
            # The surveys live in the work directory, which goes with the environment.
            held = {
                tool.case.label: sum(
                    tool.held_the_image(survey, size) for survey in tool.surveys()[-args.runs:]
                )
                for tool in measured
            }
    # RuntimeError: testbed's errors (image build, registry, podman, dockerd) all derive from it.
    except (HarnessError, SpawnError, Interrupted, RuntimeError, OSError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    report, rows, reference = with_baseline(pull_rows(report, size, held), report, size, held)
    out = report.write(args.out)
    text = render(report, rows, size, reference, notes)
    (out / "pull.md").write_text(text)
    summary = to_json(report, rows, size, reference, notes)
    (out / "pull.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(report.markdown())
    print(text)
    print(f"wrote {os.path.relpath(out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
