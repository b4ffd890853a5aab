"""``dockyard``: the docker-compatible engine command line.

Global options come before the command (as with docker); each command lives in a module of
this package and is found through :data:`COMMANDS`. Errors are printed as one line (plus a
hint) and mapped to exit codes through :data:`EXIT_CODES`, the CLI's one error table.
"""

from __future__ import annotations

import os
import sys

from dockyard import __version__
from dockyard.errors import (
    AlreadyExists,
    DockyardError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

PROG = "dockyard"
EXIT_ENGINE_ERROR = 125

# Error category -> exit code, the most specific class first. docker's commands exit 1 on a
# daemon error; run/create/start exit 125 when the engine fails (EngineFailure); a command line
# that does not parse exits 125 (UsageError, handled before this table).
EXIT_CODES: dict[type[DockyardError], int] = {
    NotFound: 1,
    AlreadyExists: 1,
    InvalidArgument: 1,
    FailedPrecondition: 1,
    PermissionDenied: 1,
    Unavailable: 1,
    DockyardError: 1,
}

# command -> (module under dockyard.cli, function name). Modules are imported on use.
COMMANDS: dict[str, tuple[str, str]] = {
    "pull": ("images", "cmd_pull"),
    "push": ("images", "cmd_push"),
    "images": ("images", "cmd_images"),
    "tag": ("images", "cmd_tag"),
    "rmi": ("images", "cmd_rmi"),
    "history": ("images", "cmd_history"),
    "save": ("archive", "cmd_save"),
    "load": ("archive", "cmd_load"),
    "import": ("archive", "cmd_import"),
    "login": ("login", "cmd_login"),
    "logout": ("login", "cmd_logout"),
    "image": ("images", "cmd_image"),
    "run": ("containers", "cmd_run"),
    "create": ("containers", "cmd_create"),
    "start": ("containers", "cmd_start"),
    "stop": ("containers", "cmd_stop"),
    "kill": ("containers", "cmd_kill"),
    "rm": ("containers", "cmd_rm"),
    "ps": ("containers", "cmd_ps"),
    "logs": ("containers", "cmd_logs"),
    "wait": ("containers", "cmd_wait"),
    "container": ("containers", "cmd_container"),
    "exec": ("containers", "cmd_exec"),
    "pause": ("containers", "cmd_pause"),
    "unpause": ("containers", "cmd_unpause"),
    "top": ("containers", "cmd_top"),
    "rename": ("containers", "cmd_rename"),
    "restart": ("containers", "cmd_restart"),
    "port": ("containers", "cmd_port"),
    "stats": ("containers", "cmd_stats"),
    "update": ("containers", "cmd_update"),
    "system": ("containers", "cmd_system"),
    "version": ("system", "cmd_version"),
    "info": ("system", "cmd_info"),
    "diff": ("rootfs", "cmd_diff"),
    "export": ("rootfs", "cmd_export"),
    "commit": ("rootfs", "cmd_commit"),
    "cp": ("rootfs", "cmd_cp"),
    "inspect": ("inspect", "cmd_inspect"),
    "attach": ("attach", "cmd_attach"),
    "events": ("events", "cmd_events"),
    "network": ("networks", "cmd_network"),
    "volume": ("volumes", "cmd_volume"),
    "serve": ("serve", "cmd_serve"),
}

GLOBAL_HELP = f"""Usage:  {PROG} [OPTIONS] COMMAND

A container engine built straight from kernel primitives.

Container commands:
  run         Create and run a new container from an image
  create      Create a new container
  start       Start one or more stopped containers
  stop        Stop one or more running containers
  kill        Kill one or more running containers
  rm          Remove one or more containers
  ps          List containers
  logs        Fetch the logs of a container
  wait        Block until one or more containers stop, then print their exit codes
  exec        Execute a command in a running container
  pause       Pause all processes within one or more containers
  unpause     Unpause all processes within one or more containers
  top         Display the running processes of a container
  rename      Rename a container
  restart     Restart one or more containers
  port        List port mappings of a container
  stats       Display a live stream of container(s) resource usage statistics
  update      Update configuration of one or more containers
  diff        Inspect changes to files or directories on a container's filesystem
  export      Export a container's filesystem as a tar archive
  commit      Create a new image from a container's changes
  cp          Copy files/folders between a container and the local filesystem
  inspect     Return low-level information on containers or images
  container   Manage containers

Image commands:
  images      List images
  pull        Download an image from a registry
  push        Upload an image to a registry
  tag         Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
  rmi         Remove one or more images
  history     Show the history of an image
  save        Save one or more images to a tar archive
  load        Load an image from a tar archive or STDIN
  import      Import the contents from a tarball to create a filesystem image
  login       Log in to a registry
  logout      Log out from a registry
  network     Manage networks (create, ls, inspect, rm, prune)
  volume      Manage volumes (create, ls, inspect, rm, prune)
  image       Manage images (ls, pull, push, rm, tag, inspect, history, prune, fsck, ...)
  system      Manage Dockyard (df, info, prune, restore: restart-policy containers at boot,
              teardown: idle bridges and the nftables table go)
  info        Display system-wide information
  events      Get real time events from the engine
  version     Show the Dockyard version information
  serve       Run the engine daemon: the Docker Engine API on a unix socket

Global Options:
      --root string     Engine root (default "/var/lib/dockyard", or $DOCKYARD_ROOT)
      --config string   Engine config file (default "/etc/dockyard/daemon.json")
  -D, --debug           Enable debug output
  -v, --version         Print version information and quit
  -h, --help            Print usage
"""


class Globals:
    def __init__(self) -> None:
        self.root: str | None = None
        self.config: str | None = None
        self.debug = False


def _split_globals(args: list[str]) -> tuple[Globals, list[str]]:
    g = Globals()
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("-") or a == "-":
            break
        name, eq, val = a.partition("=")
        if name in ("--root", "--config"):
            if not eq:
                i += 1
                if i >= len(args):
                    raise InvalidArgument(f"flag needs an argument: {name}",
                                          hint=f"See '{PROG} --help'.")
                val = args[i]
            setattr(g, name[2:], val)
        elif a in ("-D", "--debug"):
            g.debug = True
        else:
            break
        i += 1
    return g, args[i:]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        g, rest = _split_globals(args)
    except DockyardError as e:
        return _report(e, EXIT_ENGINE_ERROR)
    if not rest or rest[0] in ("-h", "--help", "help"):
        sys.stdout.write(GLOBAL_HELP)
        return 0
    cmd, cmd_args = rest[0], rest[1:]
    if cmd in ("-v", "--version"):
        print(f"Dockyard version {__version__}, build python{sys.version_info[0]}."
              f"{sys.version_info[1]}")
        return 0
    if cmd.startswith("-"):
        return _report(InvalidArgument(f"unknown flag: {cmd}", hint=f"See '{PROG} --help'."),
                       EXIT_ENGINE_ERROR)
    if argv is None:    # a command the user typed: the warm monitor may run it for us
        from dockyard.cli.fastpath import run_warm

        code = run_warm(g.root, cmd, args)
        if code is not None:
            return code
    target = COMMANDS.get(cmd)
    if target is None:
        sys.stderr.write(f"{PROG}: '{cmd}' is not a {PROG} command.\nSee '{PROG} --help'\n")
        return EXIT_ENGINE_ERROR
    import importlib

    module = importlib.import_module(f"dockyard.cli.{target[0]}")
    func: Callable[[Globals, list[str]], int] = getattr(module, target[1])
    try:
        return func(g, cmd_args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except DockyardError as e:
        from dockyard.cli.parser import UsageError

        if isinstance(e, UsageError):
            return _report(e, EXIT_ENGINE_ERROR)
        if g.debug:
            import traceback

            traceback.print_exc()
        return _report(e, _exit_code(e))


def _exit_code(e: DockyardError) -> int:
    from dockyard.cli.parser import EngineFailure  # argparse: not before a warm command

    if isinstance(e, EngineFailure):
        return EXIT_ENGINE_ERROR
    for cls in type(e).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return EXIT_ENGINE_ERROR


def _report(e: DockyardError, code: int) -> int:
    from dockyard.cli.parser import UsageError

    prefix = "" if isinstance(e, UsageError) else "Error: "
    sys.stderr.write(f"{prefix}{e.message}\n")
    if e.hint:
        sys.stderr.write(f"{e.hint}\n")
    return code


def engine_root_for(g: Globals) -> str | None:
    return g.root or os.environ.get("DOCKYARD_ROOT")


if __name__ == "__main__":
    sys.exit(main())
