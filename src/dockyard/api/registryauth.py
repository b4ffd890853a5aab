"""Registry credentials that clients send: ``POST /auth`` (check them, as ``dockyard login``
does, without storing them: the client keeps them) and the ``X-Registry-Auth`` header of push
and pull (base64url JSON of docker's ``AuthConfig``). Credentials never reach a log or an
error message."""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any

from dockyard.errors import InvalidArgument, PermissionDenied

if TYPE_CHECKING:
    from dockyard.api.handlers import App
    from dockyard.api.http import Handler, Request
    from dockyard.engine.config import EngineConfig
    from dockyard.image.auth import Credentials
    from dockyard.image.registry import RegistryClient

HEADER = "X-Registry-Auth"


def _credentials(doc: dict[str, Any]) -> Credentials | None:
    from dockyard.image.auth import Credentials

    username = str(doc.get("username") or "")
    password = str(doc.get("password") or "")
    token = str(doc.get("identitytoken") or "")
    if not (username and password) and doc.get("auth"):
        try:
            pair = base64.b64decode(str(doc["auth"])).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidArgument("invalid X-Registry-Auth: bad 'auth' field") from None
        username, _, password = pair.partition(":")
    if token:
        return Credentials(username or "<token>", "", identity_token=token)
    if username or password:
        return Credentials(username, password)
    return None


def header_credentials(req: Request) -> Credentials | None:
    """The credentials in the request's ``X-Registry-Auth`` (None when it has none)."""
    raw = (req.headers.get(HEADER) or "").strip()
    if not raw:
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        doc = json.loads(text)
    except (binascii.Error, ValueError):
        raise InvalidArgument("invalid X-Registry-Auth header: not base64url JSON") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("invalid X-Registry-Auth header: expected a JSON object")
    return _credentials(doc)


def client_for(config: EngineConfig, req: Request, host: str) -> RegistryClient | None:
    """A registry client with the request's credentials for ``host`` (the daemon's own
    credentials file for the rest); None when the request brought none (the engine's client
    serves it). The caller closes it."""
    creds = header_credentials(req)
    if creds is None:
        return None
    from dockyard.engine.registries import GivenCredentials, registry_client
    from dockyard.image.auth import AuthStore

    return registry_client(config, GivenCredentials(creds, host, AuthStore()))


def auth(app: App, h: Handler, req: Request) -> None:
    """``POST /auth``: docker's answer to good credentials, 401 to bad ones."""
    from dockyard.engine.registries import DEFAULT_SERVER, check_credentials, registry_host

    body = req.json()
    creds = _credentials(body)
    if creds is None or not creds.username or not creds.password:
        raise InvalidArgument("Username and password are required")
    host = registry_host(str(body.get("serveraddress") or DEFAULT_SERVER))
    try:
        check_credentials(app.config, host, creds.username, creds.password)
    except PermissionDenied as e:
        h.reply_json(401, {"message": e.message})
        return
    h.reply_json(200, {"Status": "Login Succeeded", "IdentityToken": ""})
