"""``dockyard login`` and ``logout``: check credentials against the registry, then keep them in
the docker-compatible config file (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``)."""

from __future__ import annotations

import getpass
import sys
from typing import TYPE_CHECKING

from dockyard.cli.parser import CommandParser, UsageError
from dockyard.errors import InvalidArgument, NotFound, PermissionDenied

if TYPE_CHECKING:
    from dockyard.cli.main import Globals
    from dockyard.image.auth import Credentials

DEFAULT_SERVER = "docker.io"


class _Only:
    """An auth source that knows exactly one set of credentials (the ones being checked)."""

    def __init__(self, creds: Credentials) -> None:
        self.creds = creds

    def lookup(self, host: str) -> Credentials | None:
        return self.creds


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
    host = _host(a.server)
    _check(g, host, username, password)
    from dockyard.image.auth import AuthStore

    store = AuthStore()
    store.login(host, username, password)
    sys.stdout.write("Login Succeeded\n")
    return 0


def cmd_logout(g: Globals, argv: list[str], command: str = "logout") -> int:
    p = CommandParser(command, "[SERVER]", "Log out from a registry")
    p.add_argument("server", nargs="?", default=DEFAULT_SERVER)
    a = p.parse_args(argv)
    from dockyard.image.auth import AuthStore

    host = _host(a.server)
    try:
        AuthStore().logout(host)
    except NotFound:
        sys.stdout.write(f"Not logged in to {host}\n")
        return 0
    sys.stdout.write(f"Removing login credentials for {host}\n")
    return 0


def _host(server: str) -> str:
    for prefix in ("https://", "http://"):
        if server.startswith(prefix):
            server = server[len(prefix):]
    server = server.split("/", 1)[0]
    if server in ("index.docker.io", "registry-1.docker.io", "docker.io"):
        return DEFAULT_SERVER
    if not server:
        raise InvalidArgument("invalid registry address")
    return server


def _check(g: Globals, host: str, username: str, password: str) -> None:
    """Ask the registry whether these credentials are good, without storing them."""
    from dockyard.engine.config import load_config
    from dockyard.image.auth import Credentials
    from dockyard.image.hosts import HostsConfig
    from dockyard.image.reference import Reference
    from dockyard.image.registry import RegistryClient

    config = load_config(g.root, g.config)
    from dockyard.image.hosts import DEFAULT_CERTS_DIRS

    certs = config.settings.get("certs-dirs") or DEFAULT_CERTS_DIRS
    hosts = HostsConfig.load(config.config_file, certs_dirs=certs)
    client = RegistryClient(hosts, _Only(Credentials(username, password)),  # type: ignore[arg-type]
                            retries=1)
    try:
        # Any authenticated request answers the question; a repository that does not exist
        # is a "yes" (we got past authentication), a 401/403 is a "no".
        client.list_tags(Reference(host, "dockyard-login-check/probe", "latest"))
    except NotFound:
        pass
    except PermissionDenied:
        raise PermissionDenied(f"login to {host} failed: unauthorized: incorrect username or "
                               "password") from None
    finally:
        client.close()
