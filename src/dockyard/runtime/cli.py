"""``dockyard-runc``: runc's command line over the runtime library.

Errors are printed the way runc (logrus, text format) prints them, ``time=... level=error
msg=...`` on stderr with exit status 1, so engines that parse runc's errors can parse ours.
Imports stay lazy: this module is on the path of every container start. The hot verbs
(create, run, start, state, delete, kill) are parsed by :func:`_fast_args`, a table-driven
parser that needs no import; anything else (help, the other verbs, abbreviations, a malformed
line) goes through argparse, which costs ~15 ms to import and build, so only where needed.
"""

from __future__ import annotations

import os
import sys

from dockyard import OCI_SPEC_VERSION, __version__
from dockyard.errors import DockyardError
from dockyard.runtime.fastpath import default_root

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    import argparse
    from typing import Any, NoReturn

PROG = "dockyard-runc"


class Args:
    """A parsed command line: the attributes argparse would give (``argparse.Namespace``)."""

    def __init__(self, **kwargs: object) -> None:
        self.__dict__.update(kwargs)

    if TYPE_CHECKING:  # attributes are set per verb, as on argparse.Namespace
        def __getattr__(self, name: str) -> Any: ...


# option -> attribute, for the verbs on the hot path; a value option takes the next word.
_GLOBAL_VALUES = {"--root": "root", "--log": "log", "--log-format": "log_format"}
_GLOBAL_FLAGS = {"--debug": "debug", "--systemd-cgroup": "systemd_cgroup"}
_CREATE_VALUES = {"-b": "bundle", "--bundle": "bundle", "--console-socket": "console_socket",
                  "--pid-file": "pid_file", "--preserve-fds": "preserve_fds"}
_CREATE_FLAGS = {"--no-pivot": "no_pivot", "--no-new-keyring": "no_new_keyring"}
_CREATE_DEFAULTS: dict[str, object] = {
    "bundle": ".", "console_socket": None, "pid_file": None, "no_pivot": False,
    "no_new_keyring": False, "preserve_fds": "0"}
#: verb -> (value options, flag options, defaults, required positionals, optional ones)
_FAST_VERBS: dict[str, tuple[dict[str, str], dict[str, str], dict[str, object],
                             tuple[str, ...], tuple[str, ...]]] = {
    "create": (_CREATE_VALUES, _CREATE_FLAGS, _CREATE_DEFAULTS, ("id",), ()),
    "run": (_CREATE_VALUES, {**_CREATE_FLAGS, "-d": "detach", "--detach": "detach"},
            {**_CREATE_DEFAULTS, "detach": False}, ("id",), ()),
    "start": ({}, {}, {}, ("id",), ()),
    "state": ({}, {}, {}, ("id",), ()),
    "delete": ({}, {"-f": "force", "--force": "force"}, {"force": False}, ("id",), ()),
    "kill": ({}, {"-a": "all", "--all": "all"}, {"all": False, "signal": "SIGTERM"}, ("id",),
             ("signal",)),
}


def _fast_args(argv: list[str]) -> Args | None:
    """runc's command line for the hot verbs, or None when argparse must decide."""
    out: dict[str, object] = {
        "version": False, "root": default_root(), "log": None, "log_format": "text",
        "debug": False, "systemd_cgroup": False}
    values, flags = _GLOBAL_VALUES, _GLOBAL_FLAGS
    positional: list[str] = []
    verb = None
    i, n = 0, len(argv)
    while i < n:
        arg = argv[i]
        i += 1
        if arg.startswith("-") and arg != "-" and not (verb and arg == "--"):
            name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
            if name in values:
                if eq:
                    out[values[name]] = inline
                elif i < n:
                    out[values[name]] = argv[i]
                    i += 1
                else:
                    return None
            elif name in flags and not eq:
                out[flags[name]] = True
            else:
                return None  # unknown, abbreviated, help, version: argparse's job
        elif verb is None:
            if arg not in _FAST_VERBS:
                return None
            verb = arg
            values, flags, defaults, _, _ = _FAST_VERBS[arg]
            for key, default in defaults.items():
                out.setdefault(key, default)
        else:
            if arg == "--":
                positional.extend(argv[i:])
                break
            positional.append(arg)
    if verb is None:
        return None
    _, _, _, required, optional = _FAST_VERBS[verb]
    if not len(required) <= len(positional) <= len(required) + len(optional):
        return None
    out.update(zip(required + optional, positional, strict=False))
    if out["log_format"] not in ("text", "json"):
        return None
    if "preserve_fds" in out:
        try:
            out["preserve_fds"] = int(str(out["preserve_fds"]))
        except ValueError:
            return None
    out["command"] = verb
    return Args(**out)


def _version() -> str:
    py = ".".join(map(str, sys.version_info[:3]))
    return f"{PROG} version {__version__}\nspec: {OCI_SPEC_VERSION}\npython: {py}"


class _UsageError(DockyardError):
    pass


def _parser() -> argparse.ArgumentParser:
    import argparse

    class _Parser(argparse.ArgumentParser):
        """Usage errors go through the same error path as every other failure, so an engine
        that reads ``--log`` (in JSON) sees them too."""

        def error(self, message: str) -> NoReturn:
            raise _UsageError(f"{self.prog}: {message}")

    p = _Parser(prog=PROG, description="An OCI runtime (runc-compatible).")
    p.add_argument("-v", "--version", action="store_true", help="print the version")
    p.add_argument("--root", default=default_root(), help="where container state is kept")
    p.add_argument("--log", default=None, help="write errors to this file instead of stderr")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def cmd(name: str, help_text: str, container: bool = True) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_text)
        if container:
            c.add_argument("id")
        return c

    def create_flags(c: argparse.ArgumentParser) -> None:
        c.add_argument("-b", "--bundle", default=".")
        c.add_argument("--console-socket")
        c.add_argument("--pid-file")
        c.add_argument("--no-pivot", action="store_true")
        c.add_argument("--no-new-keyring", action="store_true")
        c.add_argument("--preserve-fds", type=int, default=0)

    c = cmd("spec", "write a default config.json into the bundle", container=False)
    c.add_argument("-b", "--bundle", default=".")
    c.add_argument("--rootless", action="store_true")
    create_flags(cmd("create", "create a container"))
    cmd("start", "start a created container")
    c = cmd("run", "create and start a container")
    create_flags(c)
    c.add_argument("-d", "--detach", action="store_true")
    cmd("state", "print a container's state as JSON")
    c = cmd("list", "list containers", container=False)
    c.add_argument("-f", "--format", choices=("table", "json"), default="table")
    c.add_argument("-q", "--quiet", action="store_true")
    c = cmd("exec", "run a process in a running container")
    c.add_argument("argv", nargs=argparse.REMAINDER, metavar="COMMAND")
    c.add_argument("-p", "--process", help="a process.json instead of a command")
    c.add_argument("-t", "--tty", action="store_true")
    c.add_argument("--console-socket")
    c.add_argument("-d", "--detach", action="store_true")
    c.add_argument("--pid-file")
    c.add_argument("-e", "--env", action="append", default=[])
    c.add_argument("--cwd")
    c.add_argument("-u", "--user")
    c.add_argument("-g", "--additional-gids", action="append", type=int, default=[])
    c.add_argument("-c", "--cap", action="append", default=[])
    c.add_argument("--no-new-privs", action="store_true")
    c.add_argument("--preserve-fds", type=int, default=0)
    c.add_argument("--ignore-paused", action="store_true")
    cmd("features", "print the features this runtime implements (JSON)", container=False)
    cmd("pause", "freeze every process of a container")
    cmd("resume", "thaw a paused container")
    c = cmd("ps", "list the processes of a container")
    c.add_argument("-f", "--format", choices=("table", "json"), default="table")
    c.add_argument("ps_args", nargs=argparse.REMAINDER)
    c = cmd("update", "change a container's resources")
    c.add_argument("-r", "--resources", help="a resources JSON file, - for stdin")
    for flag in ("blkio-weight", "cpu-period", "cpu-quota", "cpu-rt-period", "cpu-rt-runtime",
                 "cpu-share", "cpuset-cpus", "cpuset-mems", "kernel-memory",
                 "kernel-memory-tcp", "memory", "memory-reservation", "memory-swap",
                 "pids-limit", "l3-cache-schema", "mem-bw-schema"):
        c.add_argument(f"--{flag}")
    c = cmd("events", "print container statistics")
    c.add_argument("--stats", action="store_true", help="print one stats event and exit")
    c.add_argument("--interval", default="5s")
    c = cmd("kill", "send a signal to a container's init")
    c.add_argument("signal", nargs="?", default="SIGTERM")
    c.add_argument("-a", "--all", action="store_true")
    c = cmd("delete", "delete a container")
    c.add_argument("-f", "--force", action="store_true")
    return p


def _table(rows: list[list[str]]) -> str:
    """Go's tabwriter as runc configures it: min width 12, padding 3, last column unpadded."""
    widths = [max(12, max(len(r[i]) for r in rows) + 3) for i in range(len(rows[0]) - 1)]
    return "".join("".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False))
                   + r[-1] + "\n" for r in rows)


def _dispatch(args: argparse.Namespace | Args) -> int:

    from dockyard.runtime import state

    root: str = args.root
    command = args.command
    if command == "spec":
        from dockyard.runtime.specgen import default_spec, rootless_spec

        target = os.path.join(args.bundle, "config.json")
        if os.path.exists(target):
            raise DockyardError("File config.json exists. Remove it first")
        spec = rootless_spec(os.getuid(), os.getgid()) if args.rootless else default_spec()
        import json

        with open(target, "w") as f:
            f.write(json.dumps(spec, indent="\t") + "\n")
        return 0
    if command in ("create", "run"):
        pid_file = os.path.abspath(args.pid_file) if args.pid_file else None
        console_socket = os.path.abspath(args.console_socket) if args.console_socket else None
        if command == "create":
            from dockyard.runtime.create import create

            create(root, args.id, args.bundle, pid_file=pid_file,
                   no_pivot=args.no_pivot, preserve_fds=args.preserve_fds,
                   console_socket=console_socket, systemd_cgroup=args.systemd_cgroup,
                   no_new_keyring=args.no_new_keyring)
            return 0
        from dockyard.runtime.run import run

        return run(root, args.id, args.bundle, detach=args.detach, pid_file=pid_file,
                   no_pivot=args.no_pivot, preserve_fds=args.preserve_fds,
                   console_socket=console_socket, systemd_cgroup=args.systemd_cgroup,
                   no_new_keyring=args.no_new_keyring)
    if command == "exec":
        return _exec(root, args)
    if command in ("pause", "resume"):
        from dockyard.runtime import pause

        (pause.pause if command == "pause" else pause.resume)(root, args.id)
        return 0
    if command == "ps":
        from dockyard.runtime.ps import ps

        ps_args = args.ps_args[1:] if args.ps_args[:1] == ["--"] else args.ps_args
        sys.stdout.write(ps(root, args.id, args.format, ps_args))
        return 0
    if command == "update":
        from dockyard.runtime import update

        if args.l3_cache_schema or args.mem_bw_schema:
            raise DockyardError("Intel RDT is not supported by this runtime")
        raw = (update.load_resources_file(args.resources) if args.resources
               else update.resources_from_flags({k.replace("_", "-"): v
                                                 for k, v in vars(args).items()}))
        update.update(root, args.id, raw)
        return 0
    if command == "events":
        from dockyard.runtime.events import events, parse_interval

        events(root, args.id, stats_once=args.stats, interval=parse_interval(args.interval))
        return 0
    if command == "features":
        from dockyard import fastjson
        from dockyard.runtime.features import features

        print(fastjson.dumps_indented(features(), indent=4))
        return 0
    if command == "start":
        from dockyard.runtime.start import start

        start(root, args.id)
        return 0
    if command == "state":
        rec = state.load(root, args.id)
        from dockyard import fastjson

        print(fastjson.dumps_indented(state.to_oci_state(root, rec), indent=2))
        return 0
    if command == "list":
        docs = [state.to_oci_state(root, state.load(root, i)) for i in state.list_ids(root)]
        if args.quiet:
            sys.stdout.write("".join(f"{d['id']}\n" for d in docs))
        elif args.format == "json":
            from dockyard import fastjson

            print(fastjson.dumps(docs))
        else:
            rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
            rows += [[str(d["id"]), str(d["pid"]), str(d["status"]), str(d["bundle"]),
                      str(d["created"]), str(d["owner"]) or "root"] for d in docs]
            sys.stdout.write(_table(rows))
        return 0
    if command == "kill":
        from dockyard.runtime.kill import kill

        kill(root, args.id, state.parse_signal(args.signal), all_processes=args.all)
        return 0
    if command == "delete":
        from dockyard.runtime.delete import delete

        delete(root, args.id, force=args.force)
        return 0
    raise DockyardError(f"unknown command {command!r}")


def _exec(root: str, args: argparse.Namespace | Args) -> int:
    import json

    from dockyard.errors import InvalidArgument
    from dockyard.model.oci import parse_process
    from dockyard.runtime import exec as exec_mod
    from dockyard.runtime import state

    if args.process:
        try:
            with open(args.process) as f:
                proc = parse_process(json.loads(f.read()))
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidArgument(f"--process {args.process}: {exc}") from None
    else:
        base = state.load_config(root, args.id).process
        if base is None:
            raise InvalidArgument("the container's config.json has no process")
        command = tuple(args.argv[1:] if args.argv[:1] == ["--"] else args.argv)
        proc = exec_mod.build_process(
            base, command, env=tuple(args.env), cwd=args.cwd,
            user=exec_mod.parse_user(args.user) if args.user else None,
            additional_gids=tuple(args.additional_gids), caps=tuple(args.cap),
            no_new_privs=args.no_new_privs, tty=args.tty)
    pid_file = os.path.abspath(args.pid_file) if args.pid_file else None
    console_socket = os.path.abspath(args.console_socket) if args.console_socket else None
    return exec_mod.exec_process(root, args.id, proc, detach=args.detach, pid_file=pid_file,
                                 console_socket=console_socket,
                                 preserve_fds=args.preserve_fds,
                                 ignore_paused=args.ignore_paused)


def _global_flags(argv: list[str]) -> Args:
    """--log and --log-format from a command line that failed to parse as a whole."""
    out = Args(log=None, log_format="text")
    for i, arg in enumerate(argv):
        for flag, attr in (("--log", "log"), ("--log-format", "log_format")):
            if arg == flag and i + 1 < len(argv):
                setattr(out, attr, argv[i + 1])
            elif arg.startswith(flag + "="):
                setattr(out, attr, arg.split("=", 1)[1])
    return out


def _log_error(args: argparse.Namespace | Args | None, message: str) -> None:
    import datetime as dt

    from dockyard import fastjson

    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    fmt = getattr(args, "log_format", "text")
    if fmt == "json":
        line = fastjson.dumps({"level": "error", "msg": message, "time": now})
    else:
        line = f'time="{now}" level=error msg={fastjson.dumps(message)}'
    log = getattr(args, "log", None)
    if log:
        with open(log, "a") as f:
            f.write(line + "\n")
    sys.stderr.write((line if not log else message) + "\n")


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    args: argparse.Namespace | Args | None = _fast_args(words)
    if args is None:
        parser = _parser()
        try:
            args = parser.parse_args(words)
        except _UsageError as exc:
            _log_error(_global_flags(words), str(exc))
            return 1
        if args.version:
            print(_version())
            return 0
        if args.command is None:
            parser.print_help()
            return 0
    try:
        return _dispatch(args)
    except DockyardError as exc:
        _log_error(args, str(exc))
        return 1
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    """The console script: ``main`` without the interpreter's teardown.

    Cyclic GC stays off (a short-lived CLI makes no cycles worth collecting; a foreground
    ``run`` turns it back on while it waits), and the process leaves through ``os._exit``
    once its output is flushed: tearing down the interpreter costs more than all the work
    of ``delete`` (~15 ms measured), and nothing is left to finalise.
    """
    import gc

    gc.disable()
    try:
        status = main()
    except SystemExit as exc:  # argparse's --help and errors
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        status = status or 1
    os._exit(status)


if __name__ == "__main__":
    entry()
