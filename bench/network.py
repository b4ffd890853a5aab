"""Networking (issue 6): dockyard against podman and docker, side by side in one run.

Every tool gets the same busybox image (:func:`testbed.images.busybox`'s docker archive) and a
bridge of its own on a private subnet; traffic stays on loopback and on those bridges:

=========  ==============  =============================================================
tool       subnet          bridge
=========  ==============  =============================================================
dockyard   10.217.1.0/24   its default bridge (``bip``), kept, removed by ``system teardown``
podman     10.217.2.0/24   ``dyb-pm0``: a CNI network of its own (bridge, host-local,
                           portmap, firewall: what ``podman network create`` writes)
docker     10.217.3.0/24   ``dyb-dk0``: made here and given to dockerd with ``--bridge``;
                           iptables on (its default), ``--ip-forward=false`` (so it never
                           changes the FORWARD policy), docker's userland proxy (its default)
=========  ==============  =============================================================

Two phases, the tools alternated round by round:

``throughput``
    A server container runs busybox ``nc -l`` (its output counted by ``wc -c``); a client
    container pushes ``--mib`` MiB of zeros to the server's address (``dd | nc``) and reads
    ``/proc/uptime`` (10 ms resolution) before and after: MB/s (10^6 bytes) of the transfer
    alone, without the containers' start. The server's count is checked. Note that busybox's
    nc copies in small buffers: the figure is what busybox can push through each tool's path
    (veth, bridge, netfilter hooks), the same program for all.
``publish``
    ``run -d -p 127.0.0.1:PORT:80 busybox httpd`` (a fresh free port each round); the time
    from launching the command until ``GET http://127.0.0.1:PORT/`` answers with the page
    (polled every 5 ms, each try given 0.25 s), and the command's own time. Untimed
    ``rm -f`` after each round.

What each tool adds to the host is removed at the end and checked: containers, dockyard's
bridge and nftables table (``system teardown``), podman's (``remove_podman``; CNI's address
records in /var/lib/cni, and the directories there if the run made them) and docker's
(``stop_dockerd``) state, the two bridges made here, and the iptables-nft rules and chains
that CNI and dockerd add: only rules and chains that were not there before the run and that
name our bridges, our subnets or a ``CNI-``/``DOCKER`` chain are deleted, and a table that the
run created is deleted once nothing else is left in it. Tables that differ from before at the
end are reported.

    .venv/bin/python -m bench.network [-n 5] [--mib 256] [--phases throughput,publish]
        [--tools dockyard,podman,docker] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import (
    HarnessError,
    Interrupted,
    comma_choices,
    is_root,
    raise_interrupted,
    write_summary,
)

REPO = Path(__file__).resolve().parents[1]
DOCKYARD = REPO / ".venv" / "bin" / "dockyard"
TOOLS = ("dockyard", "podman", "docker")
PHASES = ("throughput", "publish")
TIMEOUT = 300.0
NC_PORT = 5001
SUBNETS = {"dockyard": "10.217.1", "podman": "10.217.2", "docker": "10.217.3"}
BRIDGES = {"podman": "dyb-pm0", "docker": "dyb-dk0"}
PODMAN_NETWORK = "dybench"
HTTPD = ("sh", "-c", "mkdir -p /www && echo dybench-ok > /www/index.html && "
         "exec httpd -f -p 80 -h /www")
SERVER = ("sh", "-c", f"sleep 3600 | nc -l -p {NC_PORT} | wc -c")


def _quiet(argv: Sequence[str], timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _checked(argv: Sequence[str], what: str,
             timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    done = _quiet(argv, timeout)
    if done.returncode != 0:
        raise HarnessError(f"{what} exited {done.returncode}: "
                           f"{(done.stderr or done.stdout).strip()[-800:]}")
    return done


# ------------------------------------------------------------------------------- the tools


@dataclass
class Tool:
    label: str
    prefix: tuple[str, ...]
    image: str
    run_flags: tuple[str, ...] = ()         # what puts a container on the tool's bridge
    rm_flags: tuple[str, ...] = ("-f",)

    def argv(self, *args: str) -> tuple[str, ...]:
        return (*self.prefix, *args)

    def run(self, *args: str) -> tuple[str, ...]:
        return self.argv("run", *self.run_flags, *args)

    def ip_of(self, name: str) -> str:
        doc = json.loads(_checked(self.argv("inspect", name), f"{self.label} inspect").stdout)
        for net in (doc[0]["NetworkSettings"].get("Networks") or {}).values():
            if net.get("IPAddress"):
                return str(net["IPAddress"])
        raise HarnessError(f"{self.label}: {name} has no address")

    def remove(self, *names: str) -> None:
        _quiet(self.argv("rm", *self.rm_flags, *names))

    def remove_all(self) -> None:
        ids = _quiet(self.argv("ps", "-aq", "--no-trunc")).stdout.split()
        if ids:
            self.remove(*ids)


# ------------------------------------------------------------------------------- phases


@dataclass
class Results:
    throughput_mbs: dict[str, list[float]] = field(default_factory=dict)
    until_answer_s: dict[str, list[float]] = field(default_factory=dict)
    command_s: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def throughput_round(tool: Tool, mib: int) -> float:
    """One transfer of ``mib`` MiB from a client container to a server container: MB/s."""
    name = f"dyb-srv-{os.getpid()}"
    _checked(tool.run("-d", "--name", name, tool.image, *SERVER), f"{tool.label} run server")
    try:
        ip = tool.ip_of(name)
        time.sleep(0.3)         # nc listening: it has nothing to do before
        script = ("a=$(cut -d' ' -f1 /proc/uptime); "
                  f"dd if=/dev/zero bs=1M count={mib} 2>/dev/null | nc {ip} {NC_PORT}; "
                  "b=$(cut -d' ' -f1 /proc/uptime); echo $a $b")
        done = _checked(tool.run("--rm", tool.image, "sh", "-c", script),
                        f"{tool.label} run client")
        start, end = (float(x) for x in done.stdout.split()[-2:])
        want = str(mib * 1024 * 1024)
        deadline = time.monotonic() + 10
        while want not in _quiet(tool.argv("logs", name)).stdout.split():
            if time.monotonic() > deadline:
                raise HarnessError(f"{tool.label}: the server did not count {want} bytes")
            time.sleep(0.05)
    finally:
        tool.remove(name)
    seconds = max(end - start, 0.01)
    return mib * 1024 * 1024 / seconds / 1e6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        # short: docker's userland proxy accepts before the container listens, and then may
        # hold the connection; the next poll must not wait for it
        with urllib.request.urlopen(url, timeout=0.25) as r:
            return b"dybench-ok" in r.read()
    except OSError:
        return False


def publish_round(tool: Tool) -> tuple[float, float]:
    """``run -d -p 127.0.0.1:PORT:80`` httpd: (seconds until the page answers, seconds the
    command took)."""
    port = _free_port()
    name = f"dyb-web-{os.getpid()}"
    url = f"http://127.0.0.1:{port}/"
    argv = tool.run("-d", "--name", name, "-p", f"127.0.0.1:{port}:80", tool.image, *HTTPD)
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    command_s = None
    try:
        while True:
            if command_s is None and proc.poll() is not None:
                command_s = time.perf_counter() - started
                if proc.returncode != 0:
                    raise HarnessError(f"{tool.label} run -d -p exited {proc.returncode}: "
                                       f"{(proc.stderr.read() if proc.stderr else '')[-500:]}")
            if _answers(url):
                answered = time.perf_counter() - started
                break
            if time.perf_counter() - started > 30:
                raise HarnessError(f"{tool.label}: {url} did not answer within 30 s")
            time.sleep(0.005)
        proc.wait(timeout=TIMEOUT)
        if command_s is None:
            command_s = time.perf_counter() - started
    finally:
        if proc.poll() is None:
            proc.wait(timeout=TIMEOUT)
        tool.remove(name)
    return answered, command_s


# ------------------------------------------------------------------------------- host state


def _nft(*args: str) -> subprocess.CompletedProcess[str]:
    return _quiet(("nft", *args))


def _tables() -> set[str]:
    return {ln.strip() for ln in _nft("list", "tables").stdout.splitlines() if ln.strip()}


_CHAIN = re.compile(r"^\s*chain (\S+) \{")
_HANDLE = re.compile(r"# handle (\d+)$")


def _table_rules(family: str, name: str) -> dict[str, list[tuple[int, str]]]:
    """chain -> [(handle, rule text)] of one table."""
    out: dict[str, list[tuple[int, str]]] = {}
    chain = ""
    for line in _nft("-a", "list", "table", family, name).stdout.splitlines():
        m = _CHAIN.match(line)
        if m:
            chain = m.group(1)
            out[chain] = []
            continue
        h = _HANDLE.search(line)
        if chain and h and not line.strip().startswith(("type ", "chain ", "table ")):
            out[chain].append((int(h.group(1)), line.strip()))
    return out


def _iptables_snapshot() -> dict[str, dict[str, set[int]]]:
    """For each iptables-family table (ip, ip6): chain -> rule handles, before the run."""
    snap: dict[str, dict[str, set[int]]] = {}
    for table in _tables():
        _, family, name = table.split()
        if family in ("ip", "ip6"):
            snap[f"{family} {name}"] = {c: {h for h, _ in rules} for c, rules in
                                        _table_rules(family, name).items()}
    return snap


def _ours(text: str, marks: Sequence[str]) -> bool:
    return any(m in text for m in marks) or re.search(r"\b(jump|goto) (CNI-|DOCKER)",
                                                      text) is not None


def remove_added_rules(before: dict[str, dict[str, set[int]]], marks: Sequence[str]) -> list[str]:
    """Delete the iptables-nft rules and chains that CNI and dockerd added during the run (new,
    and naming our bridges, subnets or their chains), and the tables the run created once
    empty. Returns what could not be removed."""
    problems = []
    for table in sorted(_tables()):
        _, family, name = table.split()
        if family not in ("ip", "ip6"):
            continue
        key = f"{family} {name}"
        old = before.get(key, {})
        rules = _table_rules(family, name)
        for chain, items in rules.items():
            for handle, text in items:
                if handle in old.get(chain, set()) or not _ours(text, marks):
                    continue
                if _nft("delete", "rule", family, name, chain, "handle", str(handle)
                        ).returncode != 0:
                    problems.append(f"could not delete {key} {chain}: {text}")
        for chain in rules:
            if chain not in old and chain.startswith(("CNI-", "DOCKER")):
                _nft("flush", "chain", family, name, chain)
        for chain in rules:
            if chain not in old and chain.startswith(("CNI-", "DOCKER")) and _nft(
                    "delete", "chain", family, name, chain).returncode != 0:
                problems.append(f"could not delete chain {key} {chain}")
        if key not in before and not any(_table_rules(family, name).values()):
            _nft("delete", "table", family, name)
    return problems


CNI_STATE = Path("/var/lib/cni")
NETNS_DIR = Path("/run/netns")      # podman's CNI pins its namespaces there


def _remove_cni_state(existed: set[str]) -> None:
    """host-local's address records of our CNI network, and the directories the run made
    (CNI keeps its state outside podman's: /var/lib/cni/networks/<name>, results/)."""
    shutil.rmtree(CNI_STATE / "networks" / PODMAN_NETWORK, ignore_errors=True)
    for result in (CNI_STATE / "results").glob(f"{PODMAN_NETWORK}-*"):
        with contextlib.suppress(OSError):
            result.unlink()
    if str(NETNS_DIR) not in existed and NETNS_DIR.is_dir() and not any(NETNS_DIR.iterdir()):
        # podman made it, and bind-mounted it onto itself (shared, as ip-netns does)
        _quiet(("umount", str(NETNS_DIR)))
    for path in (CNI_STATE / "networks", CNI_STATE / "results", CNI_STATE, NETNS_DIR):
        if str(path) not in existed:
            with contextlib.suppress(OSError):
                path.rmdir()        # only when empty


#: host settings dockerd and CNI may change (dockerd sets bridge-nf-call-iptables to 1)
SYSCTLS = ("net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables",
           "net/ipv4/ip_forward")


def _sysctls() -> dict[str, str]:
    out = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            out[name] = Path("/proc/sys", name).read_text().strip()
    return out


def _restore_sysctls(before: dict[str, str]) -> list[str]:
    changed = []
    for name, value in before.items():
        with contextlib.suppress(OSError):
            now = Path("/proc/sys", name).read_text().strip()
            if now != value:
                Path("/proc/sys", name).write_text(value)
                changed.append(f"{name} was {now}, set back to {value}")
    return changed


def _delete_link(name: str) -> None:
    if os.path.exists(f"/sys/class/net/{name}"):
        _quiet(("ip", "link", "del", name))


# ------------------------------------------------------------------------------- environment


@contextlib.contextmanager
def environment(work: Path, wanted: Sequence[str], notes: list[str]) -> Iterator[list[Tool]]:
    """The image loaded into each tool with its bridge, daemons started; everything removed
    on the way out (and checked)."""
    from testbed import images
    from testbed.dockerd import DockerdError, start_dockerd, stop_dockerd
    from testbed.podman import PodmanError, remove_podman, start_podman, unmount_under

    archive = images.busybox().docker_archive
    if archive is None:
        raise HarnessError("testbed's busybox image has no docker archive")
    tables_before = _tables()
    rules_before = _iptables_snapshot()
    links_before = set(os.listdir("/sys/class/net"))
    sysctls_before = _sysctls()
    cni_existed = {str(p) for p in (CNI_STATE, CNI_STATE / "networks", CNI_STATE / "results",
                                    NETNS_DIR) if p.exists()}
    cleanups: list[Callable[[], None]] = []
    tools: list[Tool] = []
    try:
        for name in wanted:
            net = SUBNETS[name]
            if name == "dockyard":
                base = work / "dockyard"
                base.mkdir()
                config = base / "daemon.json"
                config.write_text(json.dumps({
                    "cgroup-parent": "", "bip": f"{net}.1/24", "ip-forward": False,
                    "default-address-pools": [{"base": "10.217.11.0/24", "size": 26}]}) + "\n")
                env = {"DOCKYARD_RUN_ROOT": str(base / "run"),
                       "PYTHONPYCACHEPREFIX": str(work / "pycache")}
                prefix = ("/usr/bin/env", "-u", "PYTHONDONTWRITEBYTECODE",
                          *(f"{k}={v}" for k, v in sorted(env.items())), str(DOCKYARD),
                          "--root", str(base / "root"), "--config", str(config))
                tool = Tool("dockyard", prefix, "busybox:latest")

                def dockyard_down(t: Tool = tool, run_root: Path = base / "run") -> None:
                    t.remove_all()
                    _quiet(t.argv("system", "teardown"))
                    with contextlib.suppress(OSError, ValueError, ProcessLookupError):
                        pid = int((run_root / "containers" / "monitor.pid").read_text())
                        os.kill(pid, signal.SIGTERM)    # leave now rather than linger

                cleanups.append(dockyard_down)
                _checked(tool.argv("load", "-i", str(archive)), "dockyard load")
            elif name == "podman":
                podman = start_podman(work / "podman")
                cleanups.append(functools.partial(_remove_cni_state, cni_existed))
                cleanups.append(lambda: _delete_link(BRIDGES["podman"]))
                cleanups.append(functools.partial(remove_podman, podman))
                _podman_bridge(podman.workdir, net)
                keys = ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF",
                        "CONTAINERS_REGISTRIES_CONF", "REGISTRY_AUTH_FILE")
                prefix = ("/usr/bin/env", *(f"{k}={podman.env[k]}" for k in keys),
                          *podman.argv())
                tool = Tool("podman", prefix, podman.load(archive),
                            run_flags=("--network", PODMAN_NETWORK),
                            rm_flags=("-f", "-t", "0"))
            else:
                bridge = BRIDGES["docker"]
                for cmd in (("ip", "link", "add", bridge, "type", "bridge"),
                            ("ip", "addr", "add", f"{net}.1/24", "dev", bridge),
                            ("ip", "link", "set", bridge, "up")):
                    _checked(cmd, " ".join(cmd))
                    if cmd[2] == "add" and cmd[1] == "link":
                        cleanups.append(lambda: _delete_link(BRIDGES["docker"]))
                daemon = start_dockerd(work / "dockerd", network_flags=(
                    "--bridge", bridge, "--iptables=true", "--ip6tables=false",
                    "--ip-masq=true", "--ip-forward=false", "--userland-proxy=true"))
                cleanups.append(functools.partial(stop_dockerd, daemon))
                prefix = ("/usr/bin/env", f"DOCKER_CONFIG={daemon.env['DOCKER_CONFIG']}",
                          *daemon.argv())
                tool = Tool("docker", prefix, daemon.load(archive))
            tools.append(tool)
        yield tools
    finally:
        problems = []
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except (DockerdError, PodmanError, HarnessError, subprocess.SubprocessError,
                    OSError) as exc:
                problems.append(str(exc))
        marks = [*BRIDGES.values(), *(f"{n}.0/24" for n in SUBNETS.values())]
        problems += remove_added_rules(rules_before, marks)
        problems += _restore_sysctls(sysctls_before)
        problems += unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)
        time.sleep(1)       # namespaces (and their veths) go asynchronously
        new_tables = _tables() - tables_before
        if new_tables:
            problems.append(f"nftables tables left: {sorted(new_tables)}")
        gone = _tables() ^ tables_before
        if gone - new_tables:
            problems.append(f"nftables tables that changed: {sorted(gone - new_tables)}")
        new_links = set(os.listdir("/sys/class/net")) - links_before
        ours = [ln for ln in new_links if ln.startswith(("dyb-", "veth", "dy", "cni"))]
        if ours:
            problems.append(f"links left (some may be other sessions'): {sorted(ours)}")
        for problem in problems:
            print(f"bench: clean-up: {problem}", file=sys.stderr)
            notes.append(f"clean-up: {problem}")


def _podman_bridge(workdir: Path, net: str) -> None:
    """podman on a CNI network of its own: the conflist ``podman network create`` writes
    (podman 4.3 has no ``--interface-name``, so it is written here with our bridge name),
    and containers.conf's netns set to bridge."""
    conf = workdir / "containers.conf"
    text = conf.read_text().replace('netns = "none"', 'netns = "bridge"')
    text = text.replace("[network]\n", '[network]\nnetwork_backend = "cni"\n'
                        'cni_plugin_dirs = ["/usr/lib/cni"]\n'
                        f'default_network = "{PODMAN_NETWORK}"\n')
    conf.write_text(text)
    conflist = {
        "cniVersion": "0.4.0", "name": PODMAN_NETWORK,
        "plugins": [
            {"type": "bridge", "bridge": BRIDGES["podman"], "isGateway": True,
             "ipMasq": True, "hairpinMode": True,
             "ipam": {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}],
                      "ranges": [[{"subnet": f"{net}.0/24", "gateway": f"{net}.1"}]]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall", "backend": ""},
            {"type": "tuning"},
        ],
    }
    (workdir / "networks" / f"{PODMAN_NETWORK}.conflist").write_text(json.dumps(conflist))


# ------------------------------------------------------------------------------- report


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def report(res: Results, labels: Sequence[str], args: argparse.Namespace
           ) -> tuple[list[str], dict[str, Any]]:
    lines: list[str] = []
    summary: dict[str, Any] = {}
    others = [t for t in labels if t != "dockyard"]
    if res.throughput_mbs:
        lines += [f"#### container-to-container TCP over the bridge: {args.mib} MiB, busybox "
                  f"dd | nc ({args.runs} rounds)", "",
                  "| tool | median MB/s | min | max | dockyard / tool |", "|---|---|---|---|---|"]
        med = {t: _median(v) for t, v in res.throughput_mbs.items()}
        for t in labels:
            v = res.throughput_mbs.get(t, [])
            lines.append(f"| {t} | {_fmt(med.get(t), 1)} | {_fmt(min(v) if v else None, 1)} | "
                         f"{_fmt(max(v) if v else None, 1)} | "
                         f"{_fmt(_ratio(med.get('dockyard'), med.get(t)), 2)} |")
        lines.append("")
        summary["throughput"] = {"mib": args.mib, "mb_per_s": res.throughput_mbs,
                                 "ratio_dockyard_over": {
                                     t: _ratio(med.get("dockyard"), med.get(t))
                                     for t in others}}
    if res.until_answer_s:
        lines += [f"#### run -d -p 127.0.0.1:PORT:80 busybox httpd ({args.runs} rounds): "
                  "seconds until the page answers, and the command's own time", "",
                  "| tool | until answer, median | min | command, median | "
                  "dockyard / tool (answer) | dockyard / tool (command) |",
                  "|---|---|---|---|---|---|"]
        ans = {t: _median(v) for t, v in res.until_answer_s.items()}
        cmd = {t: _median(v) for t, v in res.command_s.items()}
        for t in labels:
            v = res.until_answer_s.get(t, [])
            lines.append(f"| {t} | {_fmt(ans.get(t))} | {_fmt(min(v) if v else None)} | "
                         f"{_fmt(cmd.get(t))} | {_fmt(_ratio(ans.get('dockyard'), ans.get(t)), 2)}"
                         f" | {_fmt(_ratio(cmd.get('dockyard'), cmd.get(t)), 2)} |")
        lines.append("")
        summary["publish"] = {"until_answer_s": res.until_answer_s, "command_s": res.command_s,
                              "ratio_dockyard_over": {
                                  t: {"answer": _ratio(ans.get("dockyard"), ans.get(t)),
                                      "command": _ratio(cmd.get("dockyard"), cmd.get(t))}
                                  for t in others}}
    return lines, summary


# ------------------------------------------------------------------------------- main


def measure(args: argparse.Namespace, wanted: Sequence[str], phases: Sequence[str]
            ) -> tuple[list[str], dict[str, Any]]:
    notes: list[str] = []
    res = Results()
    work = Path(tempfile.mkdtemp(prefix="dyn-", dir="/tmp"))   # short: dockerd's sockets
    with environment(work, wanted, notes) as tools:
        if not tools:
            raise HarnessError("no tool left to measure")
        for tool in tools:      # untimed: each path once (dockyard's bytecode cache too)
            try:
                if "throughput" in phases:
                    throughput_round(tool, 8)
                if "publish" in phases:
                    publish_round(tool)
            except HarnessError as exc:
                res.failures.append(f"{tool.label} (check): {exc}")
        for i in range(args.runs):
            for tool in tools:
                if "throughput" in phases:
                    try:
                        res.throughput_mbs.setdefault(tool.label, []).append(
                            throughput_round(tool, args.mib))
                    except HarnessError as exc:
                        res.failures.append(f"{tool.label} throughput round {i}: {exc}")
                if "publish" in phases:
                    try:
                        answer, command = publish_round(tool)
                        res.until_answer_s.setdefault(tool.label, []).append(answer)
                        res.command_s.setdefault(tool.label, []).append(command)
                    except HarnessError as exc:
                        res.failures.append(f"{tool.label} publish round {i}: {exc}")
            print(f"bench: round {i + 1}/{args.runs} done", file=sys.stderr)
        labels = [t.label for t in tools]
    lines, summary = report(res, labels, args)
    notes += res.failures
    summary["notes"] = notes
    return [*lines, *(f"- note: {note}" for note in notes), ""], summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.network", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--runs", type=int, default=5, help="measured rounds per phase")
    parser.add_argument("--mib", type=int, default=256, help="MiB pushed per transfer")
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--out", type=Path, help="output dir (default bench/results/network-TIME)")
    args = parser.parse_args(argv)
    wanted = comma_choices(parser, "--tools", args.tools, TOOLS)
    phases = comma_choices(parser, "--phases", args.phases, PHASES)
    if not is_root("bridges, dockerd"):
        return 2
    from bench.harness import default_out_dir

    out: Path = args.out or default_out_dir("network")
    out.mkdir(parents=True, exist_ok=True)
    previous = signal.signal(signal.SIGTERM, raise_interrupted)
    try:
        lines, summary = measure(args, wanted, phases)
    except (HarnessError, Interrupted, RuntimeError, OSError,
            subprocess.SubprocessError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    text = "\n".join([f"### network (issue 6): {', '.join(wanted)}", "", *lines])
    write_summary(out, "network", text, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
