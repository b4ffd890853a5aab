"""Container commands: run, create, start, stop, kill, rm, ps, logs, wait, inspect, and
``container <sub>``. Exit codes as docker's: 125 when the engine fails, else the container's."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from dockyard.cli import attach
from dockyard.cli.parser import CommandParser, EngineFailure
from dockyard.errors import DockyardError, FailedPrecondition, NotFound

if TYPE_CHECKING:
    from dockyard.cli.main import Globals
    from dockyard.engine.containers import Container, ContainerService

EXIT_ENGINE = 125


def service(g: Globals) -> ContainerService:
    from dockyard.cli.main import main
    from dockyard.engine import supervision
    from dockyard.engine.config import load_config
    from dockyard.engine.containers import ContainerService
    from dockyard.engine.images import ImageService

    supervision.serve_commands(main, _warm_imports)   # should this command spawn a monitor
    config = load_config(g.root, g.config)
    return ContainerService(config, ImageService(config))


def _warm_imports() -> None:
    """What the warm commands (cli/fastpath.py) use, imported once in the monitor."""
    import importlib

    for name in ("dockyard.cli.runflags", "dockyard.cli.inspect", "dockyard.cli.formatter",
                 "dockyard.cli.template", "dockyard.cli.units", "dockyard.engine.specgen",
                 "dockyard.engine.runopts", "dockyard.engine.create", "dockyard.engine.inspect",
                 "dockyard.engine.logread",
                 "dockyard.engine.logopts", "dockyard.image.snapshot", "dockyard.image.mounter",
                 "dockyard.runtime.create", "dockyard.runtime.start", "dockyard.runtime.delete",
                 "dockyard.runtime.kill", "dockyard.monitor.health", "dockyard.monitor.logfile",
                 "dockyard.engine.create", "dockyard.engine.createvolumes",
                 "dockyard.engine.networks", "dockyard.linux.rtnl", "pyroute2",
                 "dockyard.network.nft", "dockyard.engine.netjoin", "dockyard.engine.dns"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    from dockyard.linux import nftables

    nftables.preload()      # libnftables and its libraries, loaded once for every fork


# --- run / create -----------------------------------------------------------------------------


def _create_parser(command: str) -> CommandParser:
    p = CommandParser(command, "[OPTIONS] IMAGE [COMMAND] [ARG...]",
                      "Create and run a new container from an image" if command.endswith("run")
                      else "Create a new container", short_help=False)
    add = p.add_argument
    if command.endswith("run"):
        add("-d", "--detach", action="store_true", help="Run container in background")
        add("--rm", action="store_true", help="Automatically remove the container when it exits")
    add("--name", default="", help="Assign a name to the container")
    add("-e", "--env", action="append", default=[], help="Set environment variables")
    add("--env-file", action="append", default=[], help="Read in a file of environment variables")
    add("-w", "--workdir", default=None, help="Working directory inside the container")
    add("-u", "--user", default=None, help="Username or UID (format: <name|uid>[:<group|gid>])")
    add("--entrypoint", default=None, help="Overwrite the default ENTRYPOINT of the image")
    add("-h", "--hostname", default=None, help="Container host name")
    add("-l", "--label", action="append", default=[], help="Set meta data on a container")
    add("--read-only", action="store_true", help="Mount the root filesystem read-only")
    add("--tmpfs", action="append", default=[], help="Mount a tmpfs directory")
    add("-v", "--volume", action="append", default=[], help="Bind mount a volume")
    add("--mount", action="append", default=[],
        help="Attach a filesystem mount to the container")
    add("--volumes-from", action="append", default=[],
        help="Mount volumes from the specified container(s)")
    add("--init", action="store_true",
        help="Run an init inside the container that forwards signals and reaps processes")
    add("--memory", "-m", default=None, help="Memory limit")
    add("--memory-swap", default=None, help="Swap limit equal to memory plus swap")
    add("--cpus", default=None, help="Number of CPUs")
    add("--cpu-shares", "-c", default=None, help="CPU shares (relative weight)")
    add("--cpuset-cpus", default=None, help="CPUs in which to allow execution")
    add("--pids-limit", default=None, help="Tune container pids limit")
    add("--ulimit", action="append", default=[], help="Ulimit options")
    add("--cap-add", action="append", default=[], help="Add Linux capabilities")
    add("--cap-drop", action="append", default=[], help="Drop Linux capabilities")
    add("--privileged", action="store_true", help="Give extended privileges")
    add("--security-opt", action="append", default=[], help="Security Options")
    add("--device", action="append", default=[], help="Add a host device")
    add("--shm-size", default=None, help="Size of /dev/shm")
    add("--stop-signal", default=None, help="Signal to stop the container")
    add("--stop-timeout", default=None, type=int, help="Timeout (in seconds) to stop")
    add("--restart", default="", help="Restart policy to apply when a container exits")
    add("--health-cmd", default=None, help="Command to run to check health")
    add("--health-interval", default=None, help="Time between running the check")
    add("--health-timeout", default=None, help="Maximum time to allow one check to run")
    add("--health-retries", default=None, type=int,
        help="Consecutive failures needed to report unhealthy")
    add("--health-start-period", default=None,
        help="Start period for the container to initialize before counting retries")
    add("--no-healthcheck", action="store_true", help="Disable any container-specified "
        "HEALTHCHECK")
    add("--log-driver", default="json-file", help="Logging driver for the container")
    add("--log-opt", action="append", default=[], help="Log driver options")
    add("--runtime", default="", help="Runtime to use for this container")
    add("--pull", default="missing", choices=("missing", "always", "never"),
        help='Pull image before running ("always", "missing", "never")')
    add("--platform", default="", help="Set platform if server is multi-platform capable")
    add("--network", "--net", default="default", help="Connect a container to a network")
    add("-p", "--publish", action="append", default=[],
        help="Publish a container's port(s) to the host")
    _add_network_flags(add)
    add("-i", "--interactive", action="store_true", help=argparse.SUPPRESS)
    add("-t", "--tty", action="store_true", help=argparse.SUPPRESS)
    add("image")
    add("command", nargs=argparse.REMAINDER)
    return p


def _add_network_flags(add: Any) -> None:
    add("-P", "--publish-all", action="store_true",
        help="Publish all exposed ports to random ports")
    add("--network-alias", "--net-alias", action="append", default=[],
        help="Add network-scoped alias for the container")
    add("--ip", default="", help="IPv4 address (e.g., 172.30.100.104)")
    add("--mac-address", default="", help="Container MAC address (e.g., 92:d0:c6:0a:29:33)")
    add("--add-host", action="append", default=[],
        help="Add a custom host-to-IP mapping (host:ip)")
    add("--dns", action="append", default=[], help="Set custom DNS servers")
    add("--dns-search", action="append", default=[], help="Set custom DNS search domains")
    add("--dns-option", "--dns-opt", action="append", default=[], help="Set DNS options")


def _ensure_image(g: Globals, a: argparse.Namespace) -> None:
    from dockyard.cli.images import cmd_pull
    from dockyard.cli.images import service as image_service

    svc = image_service(g)
    have = svc.exists(a.image)
    if have and a.platform:
        from dockyard.image.platform import matches, parse_platform

        want = parse_platform(a.platform)
        got = svc.image_config(svc.resolve(a.image)).platform
        if not matches(want, got):
            if a.pull == "never":
                raise EngineFailure(f"image with reference {a.image} was found but does not "
                                    f"match the specified platform: wanted {want}, actual: "
                                    f"{got}")
            have = False    # docker pulls the wanted platform's image instead
    if a.pull == "never" and not have:
        raise NotFound(f"No such image: {a.image}")
    if a.pull == "always" or not have:
        if not have:
            sys.stderr.write(f"Unable to find image '{a.image}' locally\n")
        args = ["-q"] if a.detach else []
        if a.platform:
            args += ["--platform", a.platform]
        old_stdout = sys.stdout
        sys.stdout = sys.stderr      # docker prints the pull's progress on stderr here
        try:
            cmd_pull(g, [*args, a.image])
        finally:
            sys.stdout = old_stdout


def _create(g: Globals, a: argparse.Namespace, svc: ContainerService) -> Container:
    from dockyard.cli.runflags import create_container

    if a.network == "default" and os.geteuid() != 0:
        a.network = "none"      # bridges need root: rootless containers get no network yet
    if a.network not in ("none", "host"):
        a.network = _engine(lambda: svc.networks().check_mode(a.network))
    _ensure_image(g, a)
    return create_container(svc, a)


def cmd_create(g: Globals, argv: list[str], command: str = "create") -> int:
    a = _create_parser(command).parse_args(argv)
    a.detach, a.rm = True, False
    svc = service(g)
    c = _engine(lambda: _create(g, a, svc))
    sys.stdout.write(c.id + "\n")
    return 0


def cmd_run(g: Globals, argv: list[str], command: str = "run") -> int:
    a = _create_parser(command).parse_args(argv)
    svc = service(g)
    c = _engine(lambda: _create(g, a, svc))
    if a.detach:
        _started, conn = _engine(lambda: svc.start(c.id))
        with conn:
            attach.await_start(conn, c.id)
        sys.stdout.write(c.id + "\n")
        return 0
    sys.stdout.flush()
    svc.event(c, "attach")
    raw = a.tty and a.interactive
    size = attach.terminal_size() if a.tty else None
    _, conn = _engine(lambda: svc.start(c.id, attach=True, stdin=a.interactive and not a.tty,
                                        size=size))
    return attach.session(conn, c.id, raw=raw, keyboard=raw)


def _engine(fn: Any) -> Any:
    """Run an engine step of run/create/start; its errors exit 125, as docker's do."""
    try:
        return fn()
    except EngineFailure:
        raise
    except DockyardError as e:
        raise EngineFailure(e.message, hint=e.hint) from None


# --- start / stop / kill / rm / wait -----------------------------------------------------------


def cmd_start(g: Globals, argv: list[str], command: str = "start") -> int:
    p = CommandParser(command, "[OPTIONS] CONTAINER [CONTAINER...]",
                      "Start one or more stopped containers")
    p.add_argument("-a", "--attach", action="store_true", help="Attach STDOUT/STDERR")
    p.add_argument("-i", "--interactive", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)
    svc = service(g)
    if a.attach:
        if len(a.containers) > 1:
            raise EngineFailure("you cannot start and attach multiple containers at once")
        c0 = _engine(lambda: svc.get(a.containers[0]))
        if not c0.running:
            svc.event(c0, "attach")
        tty = bool((c0.config.get("Config") or {}).get("Tty")) if a.interactive else False
        raw = a.interactive and tty and os.isatty(0)
        c, conn = _engine(lambda: svc.start(c0.id, attach=True,
                                            stdin=a.interactive and not tty,
                                            size=attach.terminal_size() if tty else None))
        return attach.session(conn, c.id, raw=raw, keyboard=raw)
    code = 0
    for ref in a.containers:
        try:
            c = svc.get(ref)
            if c.running:
                sys.stdout.write(f"{ref}\n")
                continue
            _, conn = svc.start(ref)
            with conn:
                attach.await_start(conn, c.id)
            sys.stdout.write(f"{ref}\n")
        except DockyardError as e:
            sys.stderr.write(f"Error response from daemon: {e.message}\n")
            code = 1
    return code


def _each(refs: list[str], fn: Any) -> int:
    code = 0
    for ref in refs:
        try:
            fn(ref)
            sys.stdout.write(f"{ref}\n")
        except DockyardError as e:
            sys.stderr.write(f"Error response from daemon: {e.message}\n")
            code = 1
    return code


def _stop_args(command: str, description: str, argv: list[str]) -> argparse.Namespace:
    """stop's and restart's command line (the same flags)."""
    p = CommandParser(command, "[OPTIONS] CONTAINER [CONTAINER...]", description)
    p.add_argument("-t", "--time", "--timeout", dest="time", type=int, default=None,
                   help="Seconds to wait before killing the container")
    p.add_argument("-s", "--signal", default=None, help=argparse.SUPPRESS)
    p.add_argument("containers", nargs="+")
    return p.parse_args(argv)


def cmd_stop(g: Globals, argv: list[str], command: str = "stop") -> int:
    a = _stop_args(command, "Stop one or more running containers", argv)
    svc = service(g)
    return _each(a.containers, lambda ref: svc.stop(ref, a.time))


def cmd_kill(g: Globals, argv: list[str], command: str = "kill") -> int:
    from dockyard.engine.runopts import parse_stop_signal

    p = CommandParser(command, "[OPTIONS] CONTAINER [CONTAINER...]",
                      "Kill one or more running containers")
    p.add_argument("-s", "--signal", default="KILL", help="Signal to send to the container")
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)
    svc = service(g)
    sig = parse_stop_signal(a.signal)
    return _each(a.containers, lambda ref: svc.kill(ref, sig))


def cmd_rm(g: Globals, argv: list[str], command: str = "rm") -> int:
    p = CommandParser(command, "[OPTIONS] CONTAINER [CONTAINER...]",
                      "Remove one or more containers")
    p.add_argument("-f", "--force", action="store_true",
                   help="Force the removal of a running container (uses SIGKILL)")
    p.add_argument("-v", "--volumes", action="store_true",
                   help="Remove anonymous volumes associated with the container")
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)
    svc = service(g)
    return _each(a.containers, lambda ref: svc.remove(ref, force=a.force, volumes=a.volumes))


def cmd_wait(g: Globals, argv: list[str], command: str = "wait") -> int:
    p = CommandParser(command, "CONTAINER [CONTAINER...]",
                      "Block until one or more containers stop, then print their exit codes")
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)
    svc = service(g)
    code = 0
    for ref in a.containers:
        try:
            result = svc.wait(ref)
        except DockyardError as e:
            sys.stderr.write(f"Error response from daemon: {e.message}\n")
            code = 1
            continue
        sys.stdout.write(f"{result if result is not None else -1}\n")
        sys.stdout.flush()
    return code


# --- ps / logs / inspect ---------------------------------------------------------------------

_PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
               "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Status": "STATUS",
               "Ports": "PORTS", "Names": "NAMES", "Labels": "LABELS", "State": "STATE",
               "Size": "SIZE", "Mounts": "MOUNTS", "Networks": "NETWORKS",
               "LocalVolumes": "LOCAL VOLUMES"}


def cmd_ps(g: Globals, argv: list[str], command: str = "ps") -> int:
    p = CommandParser(command, "[OPTIONS]", "List containers")
    p.add_argument("-a", "--all", action="store_true", help="Show all containers")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display container IDs")
    p.add_argument("-n", "--last", type=int, default=-1, help="Show n last created containers")
    p.add_argument("-l", "--latest", action="store_true",
                   help="Show the latest created container")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-f", "--filter", action="append", default=[], help="Filter output")
    p.add_argument("--format", default=None, help="Format output using a custom template")
    a = p.parse_args(argv)
    from dockyard.cli.formatter import fields_used, render_rows

    svc = service(g)
    shown = svc.containers()
    if a.latest:
        a.last = 1
    if not a.all and a.last < 0:
        shown = [c for c in shown if c.running]
    if a.last >= 0:
        shown = shown[:a.last]
    shown = [c for c in shown if _ps_match(c, a.filter)]
    rows = [_ps_row(c, a.no_trunc, svc) for c in shown]
    if a.quiet:
        sys.stdout.write("".join(f"{r['ID']}\n" for r in rows))
        return 0
    if a.size or (a.format and rows and "Size" in fields_used(a.format, rows[0])):
        from dockyard.cli.system import size_text
        from dockyard.engine.diskusage import container_sizes

        for row, c in zip(rows, shown, strict=True):
            row["Size"] = size_text(*container_sizes(svc, c))
    default = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t"
               "{{.Ports}}\t{{.Names}}" + ("\t{{.Size}}" if a.size else ""))
    sys.stdout.write(render_rows(a.format, rows, default_table=default, headers=_PS_HEADERS))
    return 0


def _ps_match(c: Container, filters: list[str]) -> bool:
    from dockyard.engine.containers import filter_matches

    return all(filter_matches(c, *f.partition("=")[::2]) for f in filters)


def _ps_row(c: Container, no_trunc: bool, svc: ContainerService | None = None
            ) -> dict[str, Any]:
    """One ``ps`` row; ``svc`` (when given) adds health and paused to the status."""
    from dockyard.cli.units import human_duration

    now = time.time()
    args = c.config.get("Path", ""), *(c.config.get("Args") or [])
    cmd = " ".join(x for x in args if x)
    if not no_trunc and len(cmd) > 20:
        cmd = cmd[:19] + "…"
    from dockyard.engine.containers import state_word
    from dockyard.engine.inspect import ps_status

    paused = svc is not None and svc.is_paused(c)
    health = svc.health(c) if svc is not None and c.running else None
    status = ps_status(c, health, now, paused=paused)
    return {
        "ID": c.id if no_trunc else c.short_id,
        "Image": c.image_name,
        "Command": json.dumps(cmd, ensure_ascii=False),   # Go's strconv.Quote keeps "…"
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(c.created)),
        "RunningFor": human_duration(now - c.created) + " ago",
        "Status": status,
        "Ports": "",
        "Names": c.name,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(c.labels.items())),
        "State": state_word(c, paused),
        "Size": "0B",       # without -s (or .Size in --format) sizes are not computed
        "Mounts": "",
        "Networks": "" if str(c.config.get("HostConfig", {}).get("NetworkMode", "")).startswith(
            "container:") else c.config.get("HostConfig", {}).get("NetworkMode", "none"),
        "LocalVolumes": "0",
    }


def cmd_logs(g: Globals, argv: list[str], command: str = "logs") -> int:
    p = CommandParser(command, "[OPTIONS] CONTAINER", "Fetch the logs of a container")
    p.add_argument("-f", "--follow", action="store_true", help="Follow log output")
    p.add_argument("--tail", "-n", default="all", help="Number of lines to show from the end")
    p.add_argument("--since", default=None, help="Show logs since timestamp or relative")
    p.add_argument("--until", default=None, help="Show logs before a timestamp or relative")
    p.add_argument("-t", "--timestamps", action="store_true", help="Show timestamps")
    p.add_argument("--details", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("container")
    a = p.parse_args(argv)
    from dockyard.engine.logread import format_entry, parse_time_arg, read_logs

    svc = service(g)
    c = svc.get(a.container)
    driver = str((c.config.get("LogConfig") or {}).get("Type") or "json-file")
    if driver == "none":
        raise FailedPrecondition("configured logging driver does not support reading")
    now = time.time_ns()
    tail = None if a.tail in ("all", "-1") else int(a.tail)
    since = parse_time_arg(a.since, now) if a.since else None
    until = parse_time_arg(a.until, now) if a.until else None
    cid = c.id

    def stop() -> bool:
        try:
            return not svc.get(cid).running
        except NotFound:
            return True

    out, err = sys.stdout.buffer, sys.stderr.buffer
    for entry in read_logs(svc.log_path(cid, driver), follow=a.follow, tail=tail,
                           since_ns=since, until_ns=until, stop=stop, driver=driver):
        target = out if entry.stream == "stdout" else err
        target.write(format_entry(entry, a.timestamps))
        target.flush()
    return 0


def cmd_inspect(g: Globals, argv: list[str], command: str = "container inspect") -> int:
    p = CommandParser(command, "[OPTIONS] CONTAINER [CONTAINER...]",
                      "Display detailed information on one or more containers")
    p.add_argument("-f", "--format", default=None, help="Format output using a custom template")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes")
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)
    from dockyard.engine.inspect import inspect_container

    svc = service(g)
    docs, errors = [], []
    for ref in a.containers:
        try:
            docs.append(inspect_container(svc, svc.get(ref)))
        except NotFound as e:
            errors.append(e.message)
    from dockyard.cli.formatter import write_inspect

    return write_inspect(docs, errors, a.format)


def cmd_exec(g: Globals, argv: list[str], command: str = "exec") -> int:
    p = CommandParser(command, "[OPTIONS] CONTAINER COMMAND [ARG...]",
                      "Execute a command in a running container")
    p.add_argument("-d", "--detach", action="store_true",
                   help="Detached mode: run command in the background")
    p.add_argument("-e", "--env", action="append", default=[],
                   help="Set environment variables")
    p.add_argument("--env-file", action="append", default=[],
                   help="Read in a file of environment variables")
    p.add_argument("-w", "--workdir", default="", help="Working directory inside the container")
    p.add_argument("-u", "--user", default="", help="Username or UID")
    p.add_argument("--privileged", action="store_true",
                   help="Give extended privileges to the command")
    p.add_argument("-i", "--interactive", action="store_true", help="Keep STDIN open")
    p.add_argument("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    if not a.command:
        from dockyard.cli.parser import UsageError

        raise UsageError(f'"{p.prog}" requires at least 2 arguments.', command)
    if a.tty and a.detach:
        raise EngineFailure("cannot allocate a terminal for a detached exec")
    from dockyard.engine import runopts as ro

    env = [x for f in a.env_file for x in ro.parse_env_file(f)]
    env += [ro.parse_env(e) for e in a.env]
    svc = service(g)
    argv_ = _engine(lambda: svc.exec_argv(a.container, a.command, env=env, workdir=a.workdir,
                                         user=a.user, detach=a.detach,
                                         privileged=a.privileged, tty=a.tty))
    import secrets
    import subprocess

    # docker's exec events: the action carries the command, the attributes an exec id
    c = svc.get(a.container)
    what = " ".join(a.command)
    exec_id = secrets.token_hex(32)
    svc.event(c, f"exec_create: {what}", execID=exec_id)
    svc.event(c, f"exec_start: {what}", execID=exec_id)
    stdin = None if a.interactive else subprocess.DEVNULL
    try:
        done = subprocess.run(argv_, stdin=stdin, check=False)
    except OSError as e:
        raise EngineFailure(f"cannot run the OCI runtime: {e}") from None
    if not a.detach:
        svc.event(c, "exec_die", execID=exec_id, exitCode=done.returncode)
    return done.returncode


def cmd_pause(g: Globals, argv: list[str], command: str = "pause") -> int:
    p = CommandParser(command, "CONTAINER [CONTAINER...]",
                      "Pause all processes within one or more containers")
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)
    svc = service(g)
    return _each(a.containers, svc.pause)


def cmd_unpause(g: Globals, argv: list[str], command: str = "unpause") -> int:
    p = CommandParser(command, "CONTAINER [CONTAINER...]",
                      "Unpause all processes within one or more containers")
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)
    svc = service(g)
    return _each(a.containers, lambda ref: svc.pause(ref, resume=True))


def cmd_top(g: Globals, argv: list[str], command: str = "top") -> int:
    p = CommandParser(command, "CONTAINER [ps OPTIONS]",
                      "Display the running processes of a container")
    p.add_argument("container")
    p.add_argument("ps_args", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    import subprocess

    svc = service(g)
    pids = _engine(lambda: svc.pids(a.container))
    ps_args = a.ps_args or ["-ef"]
    out = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise DockyardError(f"ps: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    if not lines:
        return 0
    header = lines[0]
    try:
        col = header.split().index("PID")
    except ValueError:
        raise DockyardError("Couldn't find PID field in ps output") from None
    keep = [header]
    wanted = set(pids)
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in wanted:
            keep.append(line)
    sys.stdout.write("\n".join(keep) + "\n")
    return 0


def cmd_restart(g: Globals, argv: list[str], command: str = "restart") -> int:
    a = _stop_args(command, "Restart one or more containers", argv)
    svc = service(g)

    def restart(ref: str) -> None:
        c = svc.stop(ref, a.time)
        _, conn = svc.start(c.id)
        with conn:
            attach.await_start(conn, c.id)
        svc.event(svc.get(c.id), "restart")

    return _each(a.containers, restart)


def cmd_port(g: Globals, argv: list[str], command: str = "port") -> int:
    p = CommandParser(command, "CONTAINER [PRIVATE_PORT[/PROTO]]",
                      "List port mappings or a specific mapping for the container")
    p.add_argument("container")
    p.add_argument("port", nargs="?")
    a = p.parse_args(argv)
    svc = service(g)
    c = svc.get(a.container)
    published = svc.networks().published(c.id) if c.running else []
    if a.port:
        key = a.port if "/" in a.port else a.port + "/tcp"
        found = [p for p in published if f"{p.container_port}/{p.proto}" == key]
        if not found:
            raise NotFound(f"No public port '{key}' published for {c.short_id}")
        sys.stdout.write("".join(f"{p.host_ip or '0.0.0.0'}:{p.host_port}\n"  # noqa: S104
                                 for p in found))
        return 0
    sys.stdout.write("".join(f"{p.container_port}/{p.proto} -> {p.host_ip or '0.0.0.0'}:"  # noqa: S104
                             f"{p.host_port}\n" for p in published))
    return 0


_STATS_HEADERS = {"ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME",
                  "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %",
                  "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}


def cmd_stats(g: Globals, argv: list[str], command: str = "stats") -> int:
    p = CommandParser(command, "[OPTIONS] [CONTAINER...]",
                      "Display a live stream of container(s) resource usage statistics")
    p.add_argument("-a", "--all", action="store_true", help="Show all containers")
    p.add_argument("--no-stream", action="store_true", help="Disable streaming stats")
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate output")
    p.add_argument("--format", default=None, help="Format output using a custom template")
    p.add_argument("containers", nargs="*")
    a = p.parse_args(argv)
    from dockyard.cli.formatter import render_rows

    svc = service(g)
    default = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t"
               "{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}")
    while True:
        targets = [svc.get(r) for r in a.containers] if a.containers else [
            c for c in svc.containers() if c.running or a.all]
        rows = _stats_rows(svc, targets, a.no_trunc)
        text = render_rows(a.format, rows, default_table=default, headers=_STATS_HEADERS)
        if a.no_stream:
            sys.stdout.write(text)
            return 0
        sys.stdout.write("\x1b[2J\x1b[H" + text)
        sys.stdout.flush()


def _stats_rows(svc: ContainerService, targets: list[Container], no_trunc: bool
                ) -> list[dict[str, Any]]:
    from dockyard.cli.units import bytes_size, human_size

    first: dict[str, tuple[int, float]] = {}
    for c in targets:
        if c.running:
            try:
                first[c.id] = (_cpu_total(svc.stats(c.id)), time.monotonic())
            except DockyardError:
                pass
    time.sleep(0.5)
    rows = []
    cpus = os.cpu_count() or 1
    for c in targets:
        cpu = mem = limit = pids = rd = wr = 0.0
        if c.id in first:
            try:
                data = svc.stats(c.id)
            except DockyardError:
                data = {}
            used, t0 = first[c.id]
            elapsed = max(time.monotonic() - t0, 1e-6)
            cpu = max(0.0, (_cpu_total(data) - used) / 1e9 / elapsed * 100)
            memory = (data.get("memory") or {})
            usage = memory.get("usage") or {}
            cache = float((memory.get("raw") or {}).get("total_inactive_file") or 0)
            mem = max(0.0, float(usage.get("usage") or 0) - cache)
            limit = float(usage.get("limit") or 0)
            host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            if not limit or limit > host:
                limit = float(host)
            pids = float((data.get("pids") or {}).get("current") or 0)
            for entry in (data.get("blkio") or {}).get("ioServiceBytesRecursive") or []:
                op = str(entry.get("op", "")).lower()
                if op == "read":
                    rd += float(entry.get("value") or 0)
                elif op == "write":
                    wr += float(entry.get("value") or 0)
        rows.append({
            "ID": c.id if no_trunc else c.short_id, "Container": c.short_id, "Name": c.name,
            "CPUPerc": f"{min(cpu, 100.0 * cpus):.2f}%",
            "MemUsage": f"{bytes_size(mem)} / {bytes_size(limit)}",
            "MemPerc": f"{(mem / limit * 100 if limit else 0):.2f}%",
            "NetIO": "0B / 0B", "BlockIO": f"{human_size(rd)} / {human_size(wr)}",
            "PIDs": str(int(pids)),
        })
    return rows


def _cpu_total(data: dict[str, Any]) -> int:
    return int(((data.get("cpu") or {}).get("usage") or {}).get("total") or 0)


def cmd_update(g: Globals, argv: list[str], command: str = "update") -> int:
    p = CommandParser(command, "[OPTIONS] CONTAINER [CONTAINER...]",
                      "Update configuration of one or more containers")
    p.add_argument("-m", "--memory", default=None, help="Memory limit")
    p.add_argument("--memory-swap", default=None, help="Swap limit equal to memory plus swap")
    p.add_argument("--cpus", default=None, help="Number of CPUs")
    p.add_argument("-c", "--cpu-shares", default=None, help="CPU shares (relative weight)")
    p.add_argument("--cpuset-cpus", default="", help="CPUs in which to allow execution")
    p.add_argument("--pids-limit", default=None, help="Tune container pids limit")
    p.add_argument("--restart", default=None, help=argparse.SUPPRESS)
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)
    from dockyard.cli.parser import UsageError
    from dockyard.engine import runopts as ro
    from dockyard.errors import InvalidArgument

    try:    # a flag value that does not parse is a usage error (exit 125), as in docker
        memory = ro.parse_memory(a.memory) if a.memory else 0
        swap = ro.parse_memory_swap(a.memory_swap) if a.memory_swap else 0
        cpus = ro.parse_cpus(a.cpus) if a.cpus else 0
        shares = ro.parse_int_flag(a.cpu_shares, "-c, --cpu-shares") if a.cpu_shares else 0
        pids = ro.parse_int_flag(a.pids_limit, "--pids-limit") if a.pids_limit else None
    except InvalidArgument as e:
        raise UsageError(e.message, command) from None
    svc = service(g)
    return _each(a.containers, lambda ref: svc.update(
        ref, memory=memory, memory_swap=swap, nano_cpus=cpus, cpu_shares=shares,
        cpuset_cpus=a.cpuset_cpus, pids_limit=pids))


def cmd_rename(g: Globals, argv: list[str], command: str = "rename") -> int:
    p = CommandParser(command, "CONTAINER NEW_NAME", "Rename a container")
    p.add_argument("container")
    p.add_argument("new_name")
    a = p.parse_args(argv)
    service(g).rename(a.container, a.new_name)
    return 0


def cmd_prune(g: Globals, argv: list[str], command: str = "container prune") -> int:
    p = CommandParser(command, "[OPTIONS]", "Remove all stopped containers")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], help="Provide filter values")
    a = p.parse_args(argv)
    from dockyard.cli.units import human_size
    from dockyard.engine import prunefilter

    spare = prunefilter.parse_cli(a.filter)
    if not a.force:
        sys.stdout.write("WARNING! This will remove all stopped containers.\n"
                         "Are you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    removed, freed = service(g).prune(spare)
    if removed:
        sys.stdout.write("Deleted Containers:\n" + "".join(f"{c}\n" for c in removed) + "\n")
    sys.stdout.write(f"Total reclaimed space: {human_size(freed)}\n")
    return 0


def cmd_system(g: Globals, argv: list[str]) -> int:
    """``system restore``: bring back restart-policy containers (run it at boot: see README).
    ``system prune``: stopped containers, unused networks, with ``--volumes`` unused anonymous
    volumes, then unused images. ``system teardown``: cli/networks.py. ``system info`` and
    ``system df`` live in cli/system.py."""
    from dockyard.cli.parser import UsageError

    if argv and argv[0] in ("info", "df"):
        from dockyard.cli import system

        run = system.cmd_info if argv[0] == "info" else system.cmd_df
        return run(g, argv[1:], f"system {argv[0]}")
    if argv and argv[0] == "teardown":
        from dockyard.cli.networks import cmd_teardown

        return cmd_teardown(g, argv[1:])
    if not argv or argv[0] not in ("restore", "prune"):
        raise UsageError("usage: dockyard system df|info|prune|restore|teardown", "system")
    svc = service(g)
    if argv[0] == "restore":
        CommandParser("system restore", "", "Start the containers whose restart policy "
                      "brings them back").parse_args(argv[1:])
        for c in svc.restore():
            sys.stdout.write(f"{c.name}\n")
        return 0
    p = CommandParser("system prune", "[OPTIONS]", "Remove unused data")
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused images")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--volumes", action="store_true", help="Prune anonymous volumes")
    a = p.parse_args(argv[1:])
    from dockyard.cli.units import human_size

    if not a.force:
        warnings = ["all stopped containers", "all networks not used by at least one container"]
        if a.volumes:
            warnings.append("all anonymous volumes not used by at least one container")
        warnings.append("all images without at least one container associated to them"
                        if a.all else "all dangling images")
        sys.stdout.write("WARNING! This will remove:\n" + "".join(f"  - {w}\n" for w in warnings)
                         + "\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    removed, freed = svc.prune()
    if removed:
        sys.stdout.write("Deleted Containers:\n" + "".join(f"{c}\n" for c in removed) + "\n")
    networks = svc.networks().prune()
    if networks:
        sys.stdout.write("Deleted Networks:\n" + "".join(f"{n.name}\n" for n in networks)
                         + "\n")
    if a.volumes:   # docker: anonymous volumes only
        volumes, volumes_freed = svc.volumes().prune()
        freed += volumes_freed
        if volumes:
            sys.stdout.write("Deleted Volumes:\n" + "".join(f"{v}\n" for v in volumes) + "\n")
    rep = svc.images.prune(all_images=a.all)
    if rep.deleted:
        sys.stdout.write("Deleted Images:\n" + "".join(f"untagged: {u}\n" for u in rep.untagged)
                         + "".join(f"deleted: {d}\n" for d in rep.deleted) + "\n")
    sys.stdout.write(f"Total reclaimed space: {human_size(freed + rep.reclaimed)}\n")
    return 0


_SUBCOMMANDS = {
    "run": cmd_run, "create": cmd_create, "start": cmd_start, "stop": cmd_stop,
    "kill": cmd_kill, "rm": cmd_rm, "remove": cmd_rm, "ls": cmd_ps, "list": cmd_ps,
    "ps": cmd_ps, "logs": cmd_logs, "wait": cmd_wait, "inspect": cmd_inspect,
    "exec": cmd_exec, "pause": cmd_pause, "unpause": cmd_unpause, "top": cmd_top,
    "rename": cmd_rename, "prune": cmd_prune, "restart": cmd_restart, "port": cmd_port,
    "stats": cmd_stats, "update": cmd_update,
}


def cmd_container(g: Globals, argv: list[str]) -> int:
    from dockyard.cli.parser import UsageError

    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write("Usage:  dockyard container COMMAND\n\nManage containers\n\n"
                         "Commands:\n" + "".join(f"  {n}\n" for n in sorted(_SUBCOMMANDS)))
        return 0
    fn = _SUBCOMMANDS.get(argv[0])
    if fn is None:
        raise UsageError(f"unknown command: dockyard container {argv[0]}", "container")
    return int(fn(g, argv[1:], f"container {argv[0]}"))
