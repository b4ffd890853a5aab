"""The benchmark harness, driven with real tiny commands: order, measurement, failures, output.

Timing is only checked against bounds the kernel guarantees (``sleep 0.05`` cannot finish in
under 50 ms; a sleeping process uses little CPU), never against how fast something should be.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bench.harness import (
    Case,
    HarnessError,
    HostInfo,
    Report,
    Run,
    Stat,
    cases_from_args,
    main,
    median_of_ratios,
    ratio_of_medians,
    run_cases,
    summarise,
)
from bench.spawn import DirectSpawner, SpawnError, build_launcher

PYTHON = (sys.executable, "-I", "-S", "-c")
MIB = 1 << 20


def _appender(log: Path, word: str) -> tuple[str, ...]:
    return ("/bin/sh", "-c", f"echo {word} >> {log}")


def _launcher_available() -> bool:
    try:
        build_launcher()
    except SpawnError:
        return False
    return True


needs_launcher = pytest.mark.skipif(
    not _launcher_available(), reason="no C compiler for bench/launcher.c"
)


def test_commands_alternate_through_warmup_and_measured_rounds(tmp_path: Path) -> None:
    log = tmp_path / "order"
    cases = [Case("A", _appender(log, "A")), Case("B", _appender(log, "B"))]

    report = run_cases(cases, runs=3, warmup=1)

    assert log.read_text().split() == ["A", "B"] * 4
    assert [(run.label, run.round) for run in report.runs] == [
        ("A", 0),
        ("B", 0),
        ("A", 1),
        ("B", 1),
        ("A", 2),
        ("B", 2),
    ]


def test_setup_and_teardown_run_untimed_around_each_run(tmp_path: Path) -> None:
    log = tmp_path / "order"
    cases = [
        Case(
            "A",
            _appender(log, "A"),
            setup=_appender(log, "setup-A"),
            teardown=_appender(log, "teardown-A"),
        ),
        Case("B", _appender(log, "B")),
    ]

    run_cases(cases, runs=2, warmup=0)

    assert log.read_text().split() == ["setup-A", "A", "teardown-A", "B"] * 2


def test_failed_setup_stops_the_benchmark(tmp_path: Path) -> None:
    case = Case("A", ("/bin/true",), setup=("/bin/sh", "-c", "exit 1"))

    with pytest.raises(HarnessError, match="setup"):
        run_cases([case], runs=1, warmup=0)


def test_sleep_is_measured_as_wall_time_not_cpu() -> None:
    cases = [Case("true", ("/bin/true",)), Case("sleep", ("sleep", "0.05"))]

    sleep = run_cases(cases, runs=3, warmup=0).summaries()[1]

    assert sleep.wall_ms.min >= 50.0
    assert sleep.cpu_ms.median < 25.0
    assert sleep.wall_ratio.of_medians is not None and sleep.wall_ratio.of_medians > 1.0


def test_peak_rss_of_a_50_mib_allocation_is_measured() -> None:
    cases = [
        Case("idle", (*PYTHON, "pass")),
        Case("alloc", (*PYTHON, f"b = b'x' * {50 * MIB}")),
    ]

    report = run_cases(cases, runs=2, warmup=0)
    idle, alloc = report.summaries()

    assert alloc.rss_mib.min >= 50.0
    if report.exact_rss:
        assert alloc.rss_mib.median - idle.rss_mib.median >= 45.0
        assert idle.rss_mib.median < 40.0  # not the pytest process's own peak


@needs_launcher
def test_launcher_keeps_the_harness_memory_out_of_peak_rss() -> None:
    # Why bench/launcher.c exists: spawned from this (large) Python, even /bin/true would report
    # the harness's own high-water RSS.
    ballast = b"x" * (100 * MIB)
    true = [Case("true", ("/bin/true",))]

    exact = run_cases(true, runs=1, warmup=0).summaries()[0]
    direct = run_cases(true, runs=1, warmup=0, spawner=DirectSpawner()).summaries()[0]

    assert exact.rss_mib.median < 10.0
    assert direct.rss_mib.median >= 100.0
    del ballast


def test_non_zero_exit_is_recorded_and_flagged_not_raised() -> None:
    cases = [Case("ok", ("/bin/true",)), Case("bad", ("/bin/sh", "-c", "exit 3"))]

    report = run_cases(cases, runs=2, warmup=1)
    ok, bad = report.summaries()

    assert not ok.failed
    assert (bad.failed, bad.failures, bad.exit_codes) == (True, 2, (3,))
    assert "**FAILED** 2/2 (exit 3)" in report.markdown()
    assert [case["failed"] for case in report.to_json()["cases"]] == [False, True]


def test_death_by_signal_is_a_negative_exit_code() -> None:
    report = run_cases([Case("killed", ("/bin/sh", "-c", "kill -9 $$"))], runs=1, warmup=0)

    assert report.runs[0].exit_code == -9


def test_missing_program_is_an_error_before_anything_runs(tmp_path: Path) -> None:
    log = tmp_path / "order"
    cases = [Case("A", _appender(log, "A")), Case("ghost", ("no-such-tool-here",))]

    with pytest.raises(HarnessError, match="ghost"):
        run_cases(cases, runs=1, warmup=0)
    assert not log.exists()


@pytest.mark.parametrize(
    ("cases", "runs", "warmup", "baseline"),
    [
        ([], 1, 0, None),
        ([Case("A", ("/bin/true",)), Case("A", ("/bin/true",))], 1, 0, None),
        ([Case("A", ("/bin/true",))], 0, 0, None),
        ([Case("A", ("/bin/true",))], 1, -1, None),
        ([Case("A", ("/bin/true",))], 1, 0, "B"),
    ],
)
def test_bad_arguments_are_rejected(
    cases: list[Case], runs: int, warmup: int, baseline: str | None
) -> None:
    with pytest.raises(HarnessError):
        run_cases(cases, runs, warmup, baseline=baseline)


def test_ratio_of_medians_and_median_of_ratios() -> None:
    # One round where the baseline was hit by load: the paired median shrugs it off.
    values = [10.0, 10.0, 10.0, 10.0, 30.0]
    base = [5.0, 5.0, 5.0, 20.0, 20.0]

    assert ratio_of_medians(values, base) == 2.0
    assert median_of_ratios(values, base) == 2.0
    assert ratio_of_medians([3.0, 1.0, 2.0], [1.0, 1.0, 1.0]) == 2.0
    assert median_of_ratios([3.0, 1.0, 2.0], [1.0, 2.0, 4.0]) == 0.5
    assert ratio_of_medians([1.0], [0.0]) is None
    assert median_of_ratios([1.0, 4.0], [0.0, 2.0]) == 2.0
    assert median_of_ratios([1.0], [0.0]) is None


def _run(label: str, round_: int, wall_ms: float, rss_mib: float, exit_code: int = 0) -> Run:
    return Run(
        label,
        round_,
        int(wall_ms * 1e6),
        int(wall_ms * 5e5),
        int(wall_ms * 5e5),
        int(rss_mib * 1024),
        exit_code,
    )


def test_summary_statistics() -> None:
    base = [_run("b", i, w, 2.0) for i, w in enumerate([4.0, 2.0, 6.0])]
    walls_and_codes = [(8.0, 0), (8.0, 1), (6.0, 0)]
    runs = [_run("a", i, w, 8.0, code) for i, (w, code) in enumerate(walls_and_codes)]

    summary = summarise(runs, base)

    assert summary.wall_ms == Stat(median=8.0, min=6.0, max=8.0)
    assert summary.cpu_ms == Stat(median=8.0, min=6.0, max=8.0)
    assert summary.rss_mib == Stat(median=8.0, min=8.0, max=8.0)
    assert summary.wall_ratio.of_medians == 2.0
    assert summary.wall_ratio.paired == 2.0  # per-round ratios 2, 4, 1
    assert summary.rss_ratio.of_medians == 4.0
    assert (summary.failures, summary.exit_codes) == (1, (1,))


def _synthetic_report() -> Report:
    cases = (Case("runc", ("runc", "--version")), Case("ours", ("ours", "--version")))
    runs = tuple(
        run
        for i in range(3)
        for run in (_run("runc", i, 4.0 + i, 8.0), _run("ours", i, 40.0 + i, 12.0, 1 if i else 0))
    )
    return Report(
        name="synthetic",
        cases=cases,
        runs=runs,
        runs_per_case=3,
        warmup=0,
        baseline="runc",
        host=HostInfo.current(),
        spawner="launcher",
        exact_rss=True,
    )


def test_write_produces_json_markdown_and_png(tmp_path: Path) -> None:
    out = _synthetic_report().write(tmp_path / "out")

    data = json.loads((out / "results.json").read_text())
    assert data["baseline"] == "runc"
    assert {"kernel", "nproc", "date", "python"} <= data["host"].keys()
    assert [case["label"] for case in data["cases"]] == ["runc", "ours"]
    assert data["cases"][1]["wall_ms"]["median"] == 41.0
    assert data["cases"][1]["wall_ratio"]["of_medians"] == 41.0 / 5.0
    assert len(data["runs"]) == 6
    markdown = (out / "results.md").read_text()
    assert "| command | wall ms |" in markdown
    assert "| ours | 41.0 [40.0-42.0] |" in markdown
    png = (out / "results.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000


def test_markdown_says_when_peak_rss_is_only_an_upper_bound() -> None:
    report = run_cases([Case("true", ("/bin/true",))], runs=1, warmup=0, spawner=DirectSpawner())

    assert not report.exact_rss
    assert "upper bound" in report.markdown()


def test_cli_runs_labelled_commands_and_writes_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "order"
    status = main(
        [
            "--name",
            "cli",
            "-n",
            "2",
            "--warmup",
            "0",
            "--out",
            str(tmp_path / "out"),
            "--cmd",
            f"a=sh -c 'echo a >> {log}'",
            "--cmd",
            "b=/bin/true",
            "--setup",
            f"a=sh -c 'echo setup >> {log}'",
            "--baseline",
            "b",
        ]
    )

    assert status == 0
    assert log.read_text().split() == ["setup", "a"] * 2
    out = capsys.readouterr().out
    assert "| a | " in out and "wall / b" in out
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "results.json",
        "results.md",
        "results.png",
    }


def test_cli_reports_unusable_arguments_without_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--name", "x", "--cmd", "a=/bin/true", "--setup", "b=/bin/true"]) == 2
    assert main(["--name", "x", "--cmd", "no label"]) == 2
    assert main(["--name", "x", "--cmd", "a=no-such-tool-here"]) == 2
    assert capsys.readouterr().err.count("bench: error:") == 3


def test_cases_from_args_splits_labels_and_shell_quoting() -> None:
    cases = cases_from_args(
        ["create=runc create -b 'my bundle' c1", "noop=/bin/true"],
        ["create=sh -c 'mkdir -p x'"],
        ["create=runc delete -f c1"],
    )

    assert cases == [
        Case(
            "create",
            ("runc", "create", "-b", "my bundle", "c1"),
            setup=("sh", "-c", "mkdir -p x"),
            teardown=("runc", "delete", "-f", "c1"),
        ),
        Case("noop", ("/bin/true",)),
    ]
