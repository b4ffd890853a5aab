"""The Docker Engine API (issue 7): ``dockyard serve`` against dockerd and ``podman system
service``, side by side in one run.

Each server gets the same busybox image and its own store on a new ext4 (bench.containers'
:func:`~bench.containers.environment`: a loop-mounted sparse file per tool; ``--shared-fs``
keeps them on /tmp), and is then started on a unix socket of its own: ``dockyard serve -H``
on the engine root the CLI uses, docker.io's dockerd (testbed/dockerd.py: no network of its own),
``podman system service --time=0`` with testbed/podman.py's configuration. One client, one
keep-alive connection (testbed/rawhttp.py: a raw socket and fixed request bytes, so the client
costs the same for every server), one request at a time. Phases, each tool in turn, ``--rounds``
times alternated:

``ping``
    ``GET /_ping`` for ``--seconds`` per tool and round: requests per second and latency
    (median, p99).
``lifecycle``
    ``--lifecycles`` times: ``POST /containers/create`` (busybox ``true``, ``NetworkMode
    none``), ``POST /containers/{id}/start``, ``POST /containers/{id}/wait``, ``DELETE
    /containers/{id}``; lifecycles per second and the latency of a whole lifecycle.
``list``
    With ``--containers`` containers running (``run -d --network none IMG sleep 3600`` through
    each tool's CLI, untimed), ``GET /containers/json`` for ``--seconds`` per tool and round.

Ratios are to dockerd's figure in the same run (req/s: higher is better; p99: lower is better).
Issue 7's target: at least dockerd's throughput and a lower p99.

    .venv/bin/python -m bench.api [--seconds 2] [--rounds 1] [--lifecycles 20]
        [--containers 100] [--phases ping,lifecycle,list] [--tools dockyard,podman,docker]
        [--out DIR] [--shared-fs]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.containers import (
    DockerTool,
    DockyardTool,
    PodmanTool,
    Tool,
    environment,
    remove_and_check,
)
from bench.harness import (
    HarnessError,
    HostInfo,
    comma_choices,
    default_out_dir,
    is_root,
    write_summary,
)
from testbed.procs import stop_child
from testbed.rawhttp import ConnectionClosed, RawClient, build_request

TOOLS = ("dockyard", "podman", "docker")
PHASES = ("ping", "lifecycle", "list")
BASELINE = "docker"
API = "/v1.41"          # dockerd 20.10's version; the others take it too
START_TIMEOUT = 60.0


@dataclass
class Phase:
    """One tool's figures in one phase: every latency measured (seconds) and the wall time."""

    tool: str
    phase: str
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def quantile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, Any]:
        return {"tool": self.tool, "phase": self.phase, "count": len(self.latencies),
                "per_second": self.rate,
                "median_ms": statistics.median(self.latencies) * 1e3 if self.latencies else 0,
                "p99_ms": self.quantile(0.99) * 1e3, "errors": self.errors[:5]}


# ------------------------------------------------------------------------------- the servers


class Server:
    """A tool's API server on a unix socket, started and stopped by PID."""

    def __init__(self, tool: Tool, socket_path: Path, argv: Sequence[str] | None,
                 env: dict[str, str] | None = None) -> None:
        self.tool = tool
        self.socket = socket_path
        self.argv = argv
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = socket_path.with_suffix(".log")

    def start(self) -> None:
        if self.argv is not None:
            with open(self.log, "wb") as log:
                self.proc = subprocess.Popen(list(self.argv), stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=log, env=self.env)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise HarnessError(f"{self.tool.label}'s API server exited: {self._tail()}")
            with contextlib.suppress(OSError, ConnectionClosed), RawClient(
                    str(self.socket), timeout=2) as client:
                if client.request(build_request("GET", "/_ping")).status == 200:
                    return
            if time.monotonic() > deadline:
                raise HarnessError(f"{self.tool.label}'s API server did not answer: "
                                   f"{self._tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        stop_child(proc, 30)

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-1500:]
        except OSError:
            return ""


def server_for(tool: Tool, work: Path) -> Server:
    if isinstance(tool, DockyardTool):
        path = work / "dockyard-api.sock"
        return Server(tool, path, tool.argv("serve", "-H", f"unix://{path}"))
    if isinstance(tool, PodmanTool):
        path = work / "podman-api.sock"
        return Server(tool, path, tool.podman.argv("system", "service", "--time=0",
                                                   f"unix://{path}"), dict(tool.podman.env))
    if isinstance(tool, DockerTool):
        return Server(tool, tool.daemon.socket, None)      # dockerd serves already
    raise HarnessError(f"no API server for {tool.label}")


@contextlib.contextmanager
def servers(tools: Sequence[Tool], work: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        for tool in tools:
            server = server_for(tool, work)
            started.append(server)
            server.start()
        yield started
    finally:
        for server in started:
            server.stop()


# ------------------------------------------------------------------------------- phases


def throughput(server: Server, target: str, seconds: float, phase: str) -> Phase:
    """One fixed ``GET`` again and again on one connection for ``seconds``."""
    request = build_request("GET", target)
    out = Phase(server.tool.label, phase)
    with RawClient(str(server.socket), timeout=60) as client:
        for _ in range(3):              # untimed: the connection, a first answer
            client.request(request)
        started = time.perf_counter()
        end = started + seconds
        now = started
        while now < end:
            resp = client.request(request)
            after = time.perf_counter()
            out.latencies.append(after - now)
            if resp.status != 200:
                out.errors.append(f"{resp.status} {resp.body[:200]!r}")
            now = after
        out.elapsed = now - started
    return out


def lifecycle(server: Server, image: str, count: int) -> Phase:
    """create + start + wait + delete, ``count`` times on one connection."""
    out = Phase(server.tool.label, "lifecycle")
    body = json.dumps({"Image": image, "Cmd": ["true"],
                       "HostConfig": {"NetworkMode": "none"}}).encode()
    create = build_request("POST", f"{API}/containers/create", body=body,
                           headers={"Content-Type": "application/json"})
    with RawClient(str(server.socket), timeout=120) as client:
        started = time.perf_counter()
        for _ in range(count):
            t0 = time.perf_counter()
            resp = client.request(create)
            if resp.status != 201:
                out.errors.append(f"create: {resp.status} {resp.body[:200]!r}")
                continue
            cid = json.loads(resp.body)["Id"]
            for method, path in (("POST", "start"), ("POST", "wait"), ("DELETE", "")):
                target = f"{API}/containers/{cid}" + (f"/{path}" if path else "")
                resp = client.request(build_request(method, target, body=b""))
                if resp.status >= 300:
                    out.errors.append(f"{path or 'delete'}: {resp.status} {resp.body[:200]!r}")
                    break
            else:
                out.latencies.append(time.perf_counter() - t0)
        out.elapsed = time.perf_counter() - started
    return out


def start_containers(tool: Tool, count: int) -> list[str]:
    problems = []
    for _ in range(count):
        done = subprocess.run(tool.run_d(), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=120, check=False)
        if done.returncode != 0:
            problems.append(done.stderr.strip()[-300:])
    return problems


# ------------------------------------------------------------------------------- report


def table(results: Sequence[Phase]) -> list[str]:
    lines = ["| phase | tool | requests | per second | median ms | p99 ms | rate / dockerd |"
             " p99 / dockerd |", "|---|---|---|---|---|---|---|---|"]
    by_phase: dict[str, dict[str, Phase]] = {}
    for r in results:
        merged = by_phase.setdefault(r.phase, {}).setdefault(r.tool, Phase(r.tool, r.phase))
        merged.latencies += r.latencies
        merged.elapsed += r.elapsed
        merged.errors += r.errors
    for phase, tools in by_phase.items():
        base = tools.get(BASELINE)
        for name, r in tools.items():
            s = r.summary()
            rate = f"{r.rate / base.rate:.2f}" if base and base.rate else "-"
            p99 = f"{r.quantile(0.99) / base.quantile(0.99):.2f}" \
                if base and base.quantile(0.99) else "-"
            flag = f" ({len(r.errors)} errors)" if r.errors else ""
            lines.append(f"| {phase} | {name}{flag} | {s['count']} | {s['per_second']:,.1f} | "
                         f"{s['median_ms']:.2f} | {s['p99_ms']:.2f} | {rate} | {p99} |")
    return lines


def measure(args: argparse.Namespace, wanted: Sequence[str], phases: Sequence[str]
            ) -> tuple[list[Phase], list[str]]:
    notes: list[str] = []
    results: list[Phase] = []
    work = Path(tempfile.mkdtemp(prefix="dya-", dir="/tmp"))   # short: unix socket paths
    notes.append("each tool's store is on " + (
        "/tmp's filesystem (--shared-fs)" if args.shared_fs else
        "a new ext4 of its own (loop-mounted sparse file, mkfs defaults)"))
    with environment(work, wanted, notes, fresh_fs=not args.shared_fs, pycache=True) as tools:
        if not tools:
            raise HarnessError("no tool left to measure")
        with servers(tools, work) as running:
            for round_ in range(args.rounds):
                if "ping" in phases:
                    for server in running:
                        results.append(throughput(server, "/_ping", args.seconds, "ping"))
                if "lifecycle" in phases:
                    for server in running:
                        if round_ == 0:      # untimed: caches, the first supervisor
                            lifecycle(server, server.tool.image, 1)
                        results.append(lifecycle(server, server.tool.image, args.lifecycles))
            if "list" in phases and args.containers > 0:
                for server in running:
                    print(f"bench: {server.tool.label}: starting {args.containers} containers",
                          file=sys.stderr)
                    problems = start_containers(server.tool, args.containers)
                    if problems:
                        notes.append(f"{server.tool.label}: {len(problems)} run -d failed: "
                                     f"{problems[0]}")
                for _ in range(args.rounds):
                    for server in running:
                        results.append(throughput(server, f"{API}/containers/json",
                                                  args.seconds, "list"))
                for server in running:
                    remove_and_check(server.tool, notes, "list")
    return results, notes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="per tool and round of the ping and list phases")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--lifecycles", type=int, default=20)
    parser.add_argument("--containers", type=int, default=100,
                        help="containers running during the list phase")
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--out", type=Path, help="output dir (default bench/results/api-TIME)")
    parser.add_argument("--shared-fs", action="store_true",
                        help="every store on /tmp's filesystem instead of a new ext4 per tool")
    args = parser.parse_args(argv)
    wanted = comma_choices(parser, "--tools", args.tools, TOOLS)
    phases = comma_choices(parser, "--phases", args.phases, PHASES)
    if not is_root("containers, dockerd"):
        return 2
    out: Path = args.out or default_out_dir("api")
    out.mkdir(parents=True, exist_ok=True)
    host = HostInfo.current()
    try:
        results, notes = measure(args, wanted, phases)
    except (HarnessError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    lines = [f"### Docker Engine API (issue 7): {', '.join(wanted)}", "",
             f"one keep-alive client; {args.seconds:g} s per tool and round for ping and list, "
             f"{args.lifecycles} lifecycles, {args.containers} containers running for list, "
             f"{args.rounds} round(s)", "", *table(results), "",
             *(f"- note: {n}" for n in notes), ""]
    write_summary(out, "api", "\n".join(lines), {
        "host": asdict(host), "args": {k: str(v) for k, v in vars(args).items()},
        "results": [{**r.summary(), "latencies": r.latencies, "elapsed": r.elapsed}
                    for r in results], "notes": notes})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
