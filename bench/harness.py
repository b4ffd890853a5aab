"""The benchmark harness: runs commands alternately, summarises them, writes JSON, Markdown, PNG.

Benchmarks compare Dockyard with the reference tools side by side in one run, on a shared and
noisy machine (shared/ANCHORS.md), so the harness:

- runs the commands alternately, A B C A B C ..., after untimed warm-up rounds, so that a change
  in the machine's load hits every command alike instead of whichever ran during it;
- reports median, min and max of wall time, CPU time (user + sys, including reaped descendants)
  and peak RSS (the largest single process of the tree), over every measured run;
- gives ratios against a baseline two ways: the ratio of the medians, and the median of the
  per-round ratios (A_i / B_i), which cancels load that comes and goes between rounds;
- never asserts and never raises on a measured command's exit status: a non-zero exit is
  recorded and the command flagged as failed in every output.

Untimed per-command setup and teardown commands run before and after each run (e.g. ``create``
before timing ``start``, ``delete -f`` after); one that fails raises :class:`HarnessError`,
because figures measured after it would describe some other state of the machine. How a
command is measured lives in :mod:`bench.spawn`; the chart in :mod:`bench.chart`.

CLI::

    python -m bench.harness --name NAME -n 20 --warmup 3 \\
        --cmd 'runc=runc --version' --cmd 'crun=crun --version' [--setup 'runc=...'] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.spawn import Spawner, SpawnError, open_spawner

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import FrameType

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class HarnessError(Exception):
    """A benchmark that cannot give meaningful figures: bad arguments, no such tool, bad setup."""


class Interrupted(Exception):
    """SIGTERM during a benchmark, raised by :func:`raise_interrupted` so that the benchmark's
    cleanup (its ``finally`` blocks: daemons, mounts, containers) runs before it exits."""


def raise_interrupted(signum: int, frame: FrameType | None) -> None:
    """A SIGTERM handler (``signal.signal(signal.SIGTERM, raise_interrupted)``)."""
    raise Interrupted(f"signal {signum}")


@dataclass(frozen=True, slots=True)
class Case:
    """One command to measure, with the untimed commands that prepare and clean up each run."""

    label: str
    argv: tuple[str, ...]
    setup: tuple[str, ...] | None = None
    teardown: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # Lists are accepted and frozen so a Case stays hashable and serialises the same way.
        for field in ("argv", "setup", "teardown"):
            value = getattr(self, field)
            if value is not None:
                object.__setattr__(self, field, tuple(value))
        if not self.label or "=" in self.label:
            raise HarnessError(f"bad label {self.label!r}: must be non-empty and without '='")
        if not self.argv:
            raise HarnessError(f"{self.label}: empty command")


@dataclass(frozen=True, slots=True)
class Run:
    """One measured run of one case; ``round`` counts measured rounds from 0 (warm-ups excluded)."""

    label: str
    round: int
    wall_ns: int
    user_ns: int
    sys_ns: int
    maxrss_kib: int
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def wall_ms(self) -> float:
        return self.wall_ns / 1e6

    @property
    def cpu_ms(self) -> float:
        return (self.user_ns + self.sys_ns) / 1e6

    @property
    def rss_mib(self) -> float:
        return self.maxrss_kib / 1024


@dataclass(frozen=True, slots=True)
class Stat:
    """Median, min and max of one metric: the median resists the noisy machine's outliers."""

    median: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        return cls(median=statistics.median(values), min=min(values), max=max(values))


@dataclass(frozen=True, slots=True)
class Ratio:
    """One metric of a case against the baseline's; None where the baseline measured 0."""

    of_medians: float | None
    paired: float | None  # median of the per-round ratios


@dataclass(frozen=True, slots=True)
class CaseSummary:
    """What a case cost over its measured runs, and how that compares with the baseline."""

    label: str
    wall_ms: Stat
    cpu_ms: Stat
    rss_mib: Stat
    wall_ratio: Ratio
    cpu_ratio: Ratio
    rss_ratio: Ratio
    failures: int
    exit_codes: tuple[int, ...]  # the distinct non-zero ones

    @property
    def failed(self) -> bool:
        return self.failures > 0


@dataclass(frozen=True, slots=True)
class HostInfo:
    """Where the figures were taken; a ratio only means something next to this."""

    kernel: str
    machine: str
    cpu_model: str
    nproc: int
    python: str
    date: str
    loadavg: tuple[float, float, float]

    @classmethod
    def current(cls) -> HostInfo:
        return cls(
            kernel=platform.release(),
            machine=platform.machine(),
            cpu_model=_cpu_model(),
            nproc=os.cpu_count() or 1,
            python=f"{platform.python_implementation()} {platform.python_version()}",
            date=datetime.now(UTC).isoformat(timespec="seconds"),
            loadavg=os.getloadavg(),
        )


def ratio_of_medians(values: Sequence[float], baseline: Sequence[float]) -> float | None:
    """median(values) / median(baseline): the headline figure, sensitive to load drift."""
    base = statistics.median(baseline)
    return statistics.median(values) / base if base else None


def median_of_ratios(values: Sequence[float], baseline: Sequence[float]) -> float | None:
    """Median over rounds of values[i] / baseline[i]: robust when load changes between rounds."""
    ratios = [v / b for v, b in zip(values, baseline, strict=True) if b]
    return statistics.median(ratios) if ratios else None


def _ratio(values: Sequence[float], baseline: Sequence[float]) -> Ratio:
    return Ratio(ratio_of_medians(values, baseline), median_of_ratios(values, baseline))


def summarise(runs: Sequence[Run], baseline: Sequence[Run]) -> CaseSummary:
    """Stats over every run, failed or not: a failed case's figures say what failing cost."""
    if not runs:
        raise HarnessError("no runs to summarise")

    def stat_and_ratio(metric: Callable[[Run], float]) -> tuple[Stat, Ratio]:
        values = [metric(run) for run in runs]
        return Stat.of(values), _ratio(values, [metric(run) for run in baseline])

    wall = stat_and_ratio(lambda run: run.wall_ms)
    cpu = stat_and_ratio(lambda run: run.cpu_ms)
    rss = stat_and_ratio(lambda run: run.rss_mib)
    return CaseSummary(
        label=runs[0].label,
        wall_ms=wall[0],
        cpu_ms=cpu[0],
        rss_mib=rss[0],
        wall_ratio=wall[1],
        cpu_ratio=cpu[1],
        rss_ratio=rss[1],
        failures=sum(not run.ok for run in runs),
        exit_codes=tuple(sorted({run.exit_code for run in runs if not run.ok})),
    )


@dataclass(frozen=True, slots=True)
class Report:
    """Every measured run of one benchmark, with what is needed to interpret and redo it."""

    name: str
    cases: tuple[Case, ...]
    runs: tuple[Run, ...]
    runs_per_case: int
    warmup: int
    baseline: str
    host: HostInfo
    spawner: str
    exact_rss: bool

    def runs_of(self, label: str) -> tuple[Run, ...]:
        return tuple(run for run in self.runs if run.label == label)

    def summaries(self) -> tuple[CaseSummary, ...]:
        baseline = self.runs_of(self.baseline)
        return tuple(summarise(self.runs_of(case.label), baseline) for case in self.cases)

    def to_json(self) -> dict[str, Any]:
        """Everything, raw runs included, so a later script can re-analyse without re-running."""
        return {
            "name": self.name,
            "runs_per_case": self.runs_per_case,
            "warmup": self.warmup,
            "baseline": self.baseline,
            "spawner": self.spawner,
            "exact_rss": self.exact_rss,
            "host": asdict(self.host),
            "cases": [
                {**asdict(case), **asdict(summary), "failed": summary.failed}
                for case, summary in zip(self.cases, self.summaries(), strict=True)
            ],
            "runs": [asdict(run) for run in self.runs],
        }

    def markdown(self) -> str:
        return render_markdown(self)

    def write(self, out_dir: Path | None = None) -> Path:
        """Writes results.json, results.md and results.png; returns the directory."""
        out = out_dir if out_dir is not None else default_out_dir(self.name)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(self.to_json(), indent=2) + "\n")
        (out / "results.md").write_text(self.markdown())
        _draw_chart(self, out / "results.png")
        return out


def default_out_dir(name: str) -> Path:
    """bench/results/<name>-<UTC timestamp>/ (gitignored)."""
    return RESULTS_DIR / f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def write_summary(out: Path, name: str, text: str, summary: object) -> None:
    """``out/<name>.md`` (``text``) and ``out/<name>.json`` (``summary``), then ``text`` and
    where it went on stdout: how each benchmark ends."""
    (out / f"{name}.md").write_text(text)
    (out / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(text)
    print(f"wrote {os.path.relpath(out)}")


def comma_choices(parser: argparse.ArgumentParser, flag: str, text: str,
                  allowed: Sequence[str]) -> list[str]:
    """``--tools a,b``-style values, each one of ``allowed`` (at least one); a usage error
    (exit 2) otherwise."""
    chosen = [t.strip() for t in text.split(",") if t.strip()]
    if not chosen or sorted(set(chosen) - set(allowed)):
        parser.error(f"{flag}: choose from {', '.join(allowed)}")
    return chosen


def is_root(needs: str) -> bool:
    """Whether we run as root; if not, says so on stderr (``needs``: what root is for)."""
    if os.geteuid() == 0:
        return True
    print(f"bench: error: this benchmark needs root ({needs})", file=sys.stderr)
    return False


def run_cases(
    cases: Sequence[Case],
    runs: int,
    warmup: int,
    *,
    baseline: str | None = None,
    name: str = "bench",
    discard_output: bool = True,
    spawner: Spawner | None = None,
) -> Report:
    """Runs the cases alternately, ``warmup`` untimed rounds then ``runs`` measured ones."""
    _check(cases, runs, warmup, baseline, name)
    resolved = {case.label: _resolve(case) for case in cases}
    host = HostInfo.current()  # before the runs: the load average is the one they started in
    own = spawner is None
    active = open_spawner() if spawner is None else spawner
    measured: list[Run] = []
    try:
        for round_ in range(warmup + runs):
            for case in cases:
                run = _run_once(case, resolved[case.label], active, round_ - warmup, discard_output)
                if round_ >= warmup:
                    measured.append(run)
    finally:
        if own:
            active.close()
    return Report(
        name=name,
        cases=tuple(cases),
        runs=tuple(measured),
        runs_per_case=runs,
        warmup=warmup,
        baseline=baseline or cases[0].label,
        host=host,
        spawner=active.name,
        exact_rss=active.exact_rss,
    )


def _check(
    cases: Sequence[Case], runs: int, warmup: int, baseline: str | None, name: str
) -> None:
    if not cases:
        raise HarnessError("no commands to run")
    labels = [case.label for case in cases]
    if len(set(labels)) != len(labels):
        raise HarnessError(f"labels must be unique: {labels}")
    if baseline is not None and baseline not in labels:
        raise HarnessError(f"baseline {baseline!r} is not one of {labels}")
    if runs < 1 or warmup < 0:
        raise HarnessError(f"need runs >= 1 and warmup >= 0, got {runs} and {warmup}")
    if not _NAME.fullmatch(name):
        raise HarnessError(f"bad name {name!r}: letters, digits, '.', '_' and '-' only")


def _resolve(case: Case) -> tuple[str, ...]:
    """Looks argv[0] up on PATH once, so no PATH search happens inside the timed region."""
    path = shutil.which(case.argv[0])
    if path is None:
        raise HarnessError(f"{case.label}: {case.argv[0]!r} not found or not executable")
    return (os.path.abspath(path), *case.argv[1:])


def _run_once(
    case: Case, argv: tuple[str, ...], spawner: Spawner, round_: int, discard_output: bool
) -> Run:
    if case.setup is not None:
        status = _run_untimed(case.setup, discard_output)
        if status != 0:
            raise HarnessError(f"{case.label}: setup {shlex.join(case.setup)} exited {status}")
    cost = spawner.measure(argv, discard_output=discard_output)
    if case.teardown is not None:
        status = _run_untimed(case.teardown, discard_output)
        # After a failed command there may be nothing to tear down; that failure is reported.
        if status != 0 and cost.exit_code == 0:
            raise HarnessError(
                f"{case.label}: teardown {shlex.join(case.teardown)} exited {status}"
            )
    return Run(
        label=case.label,
        round=round_,
        wall_ns=cost.wall_ns,
        user_ns=cost.user_ns,
        sys_ns=cost.sys_ns,
        maxrss_kib=cost.maxrss_kib,
        exit_code=cost.exit_code,
    )


def _run_untimed(argv: tuple[str, ...], discard_output: bool) -> int:
    # Never a pipe: `runc create` hands its stdio to the container and would block a reader.
    output = subprocess.DEVNULL if discard_output else None
    try:
        return subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=output, stderr=output, check=False
        ).returncode
    except OSError as exc:
        raise HarnessError(f"cannot run {shlex.join(argv)}: {exc}") from exc


def render_markdown(report: Report) -> str:
    """A heading, the host, one table row per case, then the commands and any failures."""
    base = report.baseline
    host = report.host
    lines = [
        f"### {report.name}: {report.runs_per_case} runs each, {report.warmup} warm-up rounds,"
        " alternated",
        "",
        f"Host: Linux {host.kernel} {host.machine}, {host.nproc} CPUs ({host.cpu_model}),"
        f" {host.python}, {host.date}, load {' '.join(f'{x:.2f}' for x in host.loadavg)}.",
        "",
        f"| command | wall ms | CPU ms | peak RSS MiB | wall / {base} | CPU / {base}"
        f" | RSS / {base} | status |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    summaries = report.summaries()
    for s in summaries:
        lines.append(
            f"| {s.label} | {_stat(s.wall_ms)} | {_stat(s.cpu_ms)} | {_stat(s.rss_mib)}"
            f" | {_ratio_text(s.wall_ratio)} | {_ratio_text(s.cpu_ratio)}"
            f" | {_ratio_text(s.rss_ratio)} | {_status(s, report.runs_per_case)} |"
        )
    lines += [
        "",
        "Figures: median [min-max] over every measured run. Ratios: ratio of the medians /"
        " median of the per-round ratios (trust the second on a noisy machine).",
    ]
    if not report.exact_rss:
        lines.append(
            "**Peak RSS is an upper bound**: commands were spawned from the Python harness"
            " (no C compiler for bench/launcher.c), so it includes the harness's own memory."
        )
    lines += ["", *(f"- {case.label}: `{shlex.join(case.argv)}`" for case in report.cases), ""]
    return "\n".join(lines)


def _fmt(value: float) -> str:
    # Three significant figures at most: the noise here is larger than that.
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _stat(stat: Stat) -> str:
    return f"{_fmt(stat.median)} [{_fmt(stat.min)}-{_fmt(stat.max)}]"


def _ratio_text(ratio: Ratio) -> str:
    def one(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    return f"{one(ratio.of_medians)} / {one(ratio.paired)}"


def _status(summary: CaseSummary, runs: int) -> str:
    if not summary.failed:
        return "ok"
    codes = ", ".join(str(code) for code in summary.exit_codes)
    return f"**FAILED** {summary.failures}/{runs} (exit {codes})"


def _draw_chart(report: Report, path: Path) -> None:
    from bench import chart  # matplotlib only once there is something to draw

    summaries = report.summaries()

    def panel(title: str, unit: str, pick: Callable[[CaseSummary], Stat]) -> chart.Panel:
        return chart.Panel(
            title=title,
            unit=unit,
            bars=tuple(
                chart.Bar(s.label, pick(s).median, pick(s).min, pick(s).max, s.failed)
                for s in summaries
            ),
        )

    chart.draw(
        path,
        f"{report.name}: median of {report.runs_per_case} runs, bars span min-max",
        [
            panel("wall time", "ms", lambda s: s.wall_ms),
            panel("peak RSS (largest process)", "MiB", lambda s: s.rss_mib),
        ],
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _labelled(text: str) -> tuple[str, tuple[str, ...]]:
    """Splits 'label=command string' (shell quoting, no shell: wrap in sh -c for pipes)."""
    label, sep, command = text.partition("=")
    if not sep or not label.strip():
        raise HarnessError(f"expected 'label=command', got {text!r}")
    argv = tuple(shlex.split(command))
    if not argv:
        raise HarnessError(f"{label}: empty command")
    return label.strip(), argv


def cases_from_args(
    commands: Sequence[str], setups: Sequence[str], teardowns: Sequence[str]
) -> list[Case]:
    """Builds the cases from --cmd, --setup and --teardown; the latter two name a --cmd label."""
    cases = dict(_labelled(text) for text in commands)
    if len(cases) != len(commands):
        raise HarnessError("each --cmd needs its own label")
    extra: dict[str, dict[str, tuple[str, ...]]] = {"setup": {}, "teardown": {}}
    for kind, texts in (("setup", setups), ("teardown", teardowns)):
        for text in texts:
            label, argv = _labelled(text)
            if label not in cases:
                raise HarnessError(f"--{kind} {label!r} names no --cmd")
            extra[kind][label] = argv
    return [
        Case(label, argv, extra["setup"].get(label), extra["teardown"].get(label))
        for label, argv in cases.items()
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.harness",
        description="Run commands alternately and compare wall time, CPU time and peak RSS.",
    )
    parser.add_argument("--name", required=True, help="benchmark name, used for the output dir")
    parser.add_argument("-n", "--runs", type=int, default=20, help="measured runs per command")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument(
        "--cmd", action="append", required=True, metavar="LABEL=COMMAND",
        help="a command to measure (repeat; the first is the baseline unless --baseline)",
    )
    parser.add_argument("--setup", action="append", default=[], metavar="LABEL=COMMAND",
                        help="untimed command before each run of LABEL")
    parser.add_argument("--teardown", action="append", default=[], metavar="LABEL=COMMAND",
                        help="untimed command after each run of LABEL")
    parser.add_argument("--baseline", help="label the ratios are taken against")
    parser.add_argument("--out", type=Path, help="output dir (default bench/results/NAME-TIME)")
    parser.add_argument("--show-output", action="store_true",
                        help="let the commands write to this terminal instead of /dev/null")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 even when a command failed: the report flags it; 2 when nothing could be measured."""
    logging.basicConfig(level=logging.WARNING, format="bench: %(message)s")
    args = _parser().parse_args(argv)
    try:
        cases = cases_from_args(args.cmd, args.setup, args.teardown)
        report = run_cases(
            cases,
            args.runs,
            args.warmup,
            baseline=args.baseline,
            name=args.name,
            discard_output=not args.show_output,
        )
    except (HarnessError, SpawnError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    out = report.write(args.out)
    print(report.markdown())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
