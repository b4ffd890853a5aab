"""``dockyard``: the docker-compatible engine command line.

The engine commands arrive with their issues; today this answers ``--version`` and ``version``
and says clearly that other commands are not there yet (exit 125, docker's engine-error code).
"""

from __future__ import annotations

import sys

from dockyard import __version__

PROG = "dockyard"
EXIT_ENGINE_ERROR = 125


def _usage() -> str:
    return (f"Usage:  {PROG} [OPTIONS] COMMAND\n\n"
            "A container engine built straight from kernel primitives.\n\n"
            "Commands available today:\n  version     Show the Dockyard version information\n\n"
            "Options:\n  -v, --version   Print version information and quit\n"
            "  -h, --help      Print usage\n")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(_usage())
        return 0
    if args[0] in ("-v", "--version"):
        print(f"Dockyard version {__version__}, build python{sys.version_info[0]}."
              f"{sys.version_info[1]}")
        return 0
    if args[0] == "version":
        print(f"Client:\n Version:           {__version__}\n"
              f" Python version:    {sys.version.split()[0]}\n OS/Arch:           linux/"
              f"{_arch()}")
        return 0
    sys.stderr.write(f"{PROG}: '{args[0]}' is not a {PROG} command yet.\n"
                     f"See '{PROG} --help'\n")
    return EXIT_ENGINE_ERROR


def _arch() -> str:
    import platform

    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


if __name__ == "__main__":
    sys.exit(main())
