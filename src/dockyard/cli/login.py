"""``dockyard login`` and ``logout``: check credentials against the registry, then keep them in
the docker-compatible config file (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``)."""

from __future__ import annotations

import getpass
import sys
from typing import TYPE_CHECKING

from dockyard.cli.parser import CommandParser, UsageError
from dockyard.errors import InvalidArgument, NotFound

if TYPE_CHECKING:
    from dockyard.cli.main import Globals

DEFAULT_SERVER = "docker.io"


def cmd_login(g: Globals, argv: list[str], command: str = "login") -> int:
    p = CommandParser(command, "[OPTIONS] [SERVER]", "Log in to a registry")
    p.add_argument("-u", "--username", default="", help="Username")
    p.add_argument("-p", "--password", default=None, help="Password")
    p.add_argument("--password-stdin", action="store_true",
                   help="Take the password from stdin")
    p.add_argument("server", nargs="?", default=DEFAULT_SERVER)
    a = p.parse_args(argv)
    if a.password is not None and a.password_stdin:
        raise UsageError("--password and --password-stdin are mutually exclusive", command)
    username = a.username
    if a.password_stdin:
        if not username:
            raise UsageError("Must provide --username with --password-stdin", command)
        password = sys.stdin.read().rstrip("\r\n")
    elif a.password is not None:
        sys.stderr.write("WARNING! Using --password via the CLI is insecure. "
                         "Use --password-stdin.\n")
        password = a.password
    else:
        if not sys.stdin.isatty():
            raise InvalidArgument("cannot perform an interactive login from a non TTY device")
        if not username:
            username = input("Username: ").strip()
        password = getpass.getpass("Password: ")
    if not username or not password:
        raise InvalidArgument("Username and password are required")
    from dockyard.engine.config import load_config
    from dockyard.engine.registries import check_credentials, registry_host

    host = registry_host(a.server)
    check_credentials(load_config(g.root, g.config), host, username, password)
    from dockyard.image.auth import AuthStore

    store = AuthStore()
    store.login(host, username, password)
    sys.stdout.write("Login Succeeded\n")
    return 0


def cmd_logout(g: Globals, argv: list[str], command: str = "logout") -> int:
    p = CommandParser(command, "[SERVER]", "Log out from a registry")
    p.add_argument("server", nargs="?", default=DEFAULT_SERVER)
    a = p.parse_args(argv)
    from dockyard.engine.registries import registry_host
    from dockyard.image.auth import AuthStore

    host = registry_host(a.server)
    try:
        AuthStore().logout(host)
    except NotFound:
        sys.stdout.write(f"Not logged in to {host}\n")
        return 0
    sys.stdout.write(f"Removing login credentials for {host}\n")
    return 0
