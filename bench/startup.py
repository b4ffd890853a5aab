"""Process start: ``dockyard-runc --version`` and ``dockyard --version`` against runc and crun.

Every OCI verb and every ``dockyard`` command pays this before doing any work, so it is the floor
of all the other benchmarks; for a Python tool it is interpreter start plus imports, which is why
the bare interpreter (``python -I -S -c pass``) is measured alongside as the part no import
discipline can remove. Ratios are against runc. Tools that are not installed are skipped with a
note (run bench/setup first).

    .venv/bin/python -m bench.startup [-n 20] [--warmup 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bench.harness import Case, HarnessError, run_cases
from bench.spawn import SpawnError

if TYPE_CHECKING:
    from collections.abc import Sequence

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
BASELINE = "runc"


def startup_cases() -> tuple[list[Case], list[str]]:
    """The cases whose program exists here, and a note for each one skipped."""
    wanted = [
        Case("dockyard-runc", (str(VENV_BIN / "dockyard-runc"), "--version")),
        Case("runc", ("runc", "--version")),
        Case("crun", ("crun", "--version")),
        Case("dockyard", (str(VENV_BIN / "dockyard"), "--version")),
        Case("python -I -S", (str(VENV_BIN / "python"), "-I", "-S", "-c", "pass")),
    ]
    cases: list[Case] = []
    skipped: list[str] = []
    for case in wanted:
        if shutil.which(case.argv[0]) is None:
            skipped.append(f"{case.label}: {case.argv[0]} not found, skipped")
        else:
            cases.append(case)
    return cases, skipped


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.startup",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-n", "--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, help="output dir (default bench/results/startup-TIME)")
    args = parser.parse_args(argv)
    cases, skipped = startup_cases()
    for note in skipped:
        print(f"bench: {note}", file=sys.stderr)
    labels = [case.label for case in cases]
    try:
        report = run_cases(
            cases,
            args.runs,
            args.warmup,
            name="startup",
            baseline=BASELINE if BASELINE in labels else None,
        )
    except (HarnessError, SpawnError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    out = report.write(args.out)
    print(report.markdown())
    print(f"wrote {os.path.relpath(out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
