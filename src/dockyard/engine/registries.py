"""Registry clients for the engine, and credentials that come with a request.

The engine's own client reads the docker-compatible credentials file. ``login`` and the API's
``POST /auth`` check credentials the user typed without storing them; the API's pushes and
pulls carry the client's credentials in ``X-Registry-Auth``. Both use a client of their own
whose auth source answers with those credentials (:class:`GivenCredentials`).
Credentials never reach a log line or an error message.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from dockyard.errors import InvalidArgument, NotFound, PermissionDenied
from dockyard.image.auth import AuthStore, Credentials

if TYPE_CHECKING:
    from dockyard.engine.config import EngineConfig
    from dockyard.image.registry import RegistryClient

DEFAULT_SERVER = "docker.io"
_HUB_HOSTS = ("index.docker.io", "registry-1.docker.io", "docker.io")
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
                   r"(?::[0-9]{1,5})?")


def registry_host(server: str) -> str:
    """What ``login SERVER`` names: ``https://host:5000/v1/`` → ``host:5000``; Docker Hub's
    names → ``docker.io``."""
    for prefix in ("https://", "http://"):
        if server.startswith(prefix):
            server = server[len(prefix):]
    server = server.split("/", 1)[0]
    if server in _HUB_HOSTS:
        return DEFAULT_SERVER
    if not _HOST.fullmatch(server):
        raise InvalidArgument(f"invalid registry address {server!r}")
    return server


class GivenCredentials(AuthStore):
    """An auth source that answers with ``creds`` for ``host`` (every host when None) and
    asks ``fallback`` (the credentials file) about the others."""

    def __init__(self, creds: Credentials, host: str | None = None,
                 fallback: AuthStore | None = None) -> None:
        super().__init__(fallback.path if fallback is not None else None)
        self.creds = creds
        self.host = host
        self.fallback = fallback

    def __repr__(self) -> str:
        return f"GivenCredentials(host={self.host!r})"

    def lookup(self, host: str) -> Credentials | None:
        if self.host is None or _same_host(host, self.host):
            return self.creds
        return self.fallback.lookup(host) if self.fallback is not None else None


def _same_host(a: str, b: str) -> bool:
    try:
        return registry_host(a) == registry_host(b)
    except InvalidArgument:
        return a == b


def registry_client(config: EngineConfig, auth: AuthStore | None = None, *,
                    retries: int = 3) -> RegistryClient:
    """A registry client with the engine's hosts configuration (mirrors, insecure registries,
    certificates) and ``auth`` for credentials (the credentials file when None)."""
    from dockyard import __version__
    from dockyard.image.hosts import DEFAULT_CERTS_DIRS, HostsConfig
    from dockyard.image.registry import RegistryClient

    # "certs-dirs" (a Dockyard extension) replaces /etc/{dockyard,docker}/certs.d.
    certs = config.settings.get("certs-dirs") or DEFAULT_CERTS_DIRS
    hosts = HostsConfig.load(config.config_file, certs_dirs=certs)
    return RegistryClient(hosts, auth if auth is not None else AuthStore(),
                          user_agent=f"dockyard/{__version__}", retries=retries)


def check_credentials(config: EngineConfig, host: str, username: str, password: str) -> None:
    """Ask the registry at ``host`` whether these credentials are good, without storing them;
    PermissionDenied when they are not."""
    from dockyard.image.reference import Reference

    client = registry_client(config, GivenCredentials(Credentials(username, password)),
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


__all__ = ["DEFAULT_SERVER", "GivenCredentials", "check_credentials", "registry_client",
           "registry_host"]
