"""Registry credentials in a file compatible with docker's ``~/.docker/config.json``.

Owns reading and writing ``auths`` entries (base64 ``user:password`` in ``auth``, or an
``identitytoken``), and the credential helpers named by ``credHelpers`` / ``credsStore``
(``docker-credential-<name> get|store|erase``, JSON over stdin/stdout). Keys unknown to us are
kept when the file is rewritten; writes are tmp + fsync + rename with mode 0600.

Docker Hub's key is ``https://index.docker.io/v1/``; other registries are keyed by host[:port],
and entries written by older clients as URLs (``https://host/v1/``) are found too.
Credentials never reach a repr, a log line or an error message.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.atomicfile import replace_file
from dockyard.errors import InvalidArgument, NotFound, Unavailable

log = logging.getLogger(__name__)

HUB_AUTH_KEY = "https://index.docker.io/v1/"
_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", HUB_AUTH_KEY,
                        "https://index.docker.io/v1", "registry.hub.docker.com"})
HELPER_PREFIX = "docker-credential-"
# A helper's answer when it has nothing for the server (docker-credential-helpers' message).
_HELPER_NOT_FOUND = "credentials not found in native keychain"
# Docker's placeholder user name meaning "Secret is an identity (refresh) token".
_TOKEN_USERNAME = "<token>"  # noqa: S105 - a marker, not a secret
_HELPER_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)  # an OAuth2 refresh token

    def __repr__(self) -> str:
        secret = "password=***" if self.password else "identity_token=***"
        return f"Credentials(username={self.username!r}, {secret})"

    __str__ = __repr__


def default_config_path() -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    base = os.environ.get("DOCKER_CONFIG")
    if base:
        return Path(base) / "config.json"
    return Path.home() / ".docker" / "config.json"


def auth_key(host: str) -> str:
    """The ``auths`` key for a registry host (docker.io → ``https://index.docker.io/v1/``)."""
    return HUB_AUTH_KEY if host.lower() in _HUB_NAMES else host


def _hostname_of_key(key: str) -> str:
    """docker's ConvertToHostname: ``https://host:5000/v1/`` → ``host:5000``."""
    if key in _HUB_NAMES:
        return HUB_AUTH_KEY
    out = key
    for prefix in ("http://", "https://"):
        if out.startswith(prefix):
            out = out[len(prefix):]
            break
    return out.partition("/")[0]


class AuthStore:
    """A docker-compatible credentials file. Each call re-reads the file (other tools write
    it too); nothing is cached in memory."""

    def __init__(self, path: Path | str | None = None, *,
                 helper_path: str | None = None) -> None:
        self.path = Path(path) if path is not None else default_config_path()
        # Where docker-credential-* helpers are searched (PATH when None).
        self.helper_path = helper_path

    def __repr__(self) -> str:
        return f"AuthStore({str(self.path)!r})"

    # --- public API ----------------------------------------------------------------------

    def lookup(self, host: str) -> Credentials | None:
        """Credentials for ``host`` (host[:port] or docker.io), or None."""
        doc = self._load()
        key = auth_key(host)
        helper = self._helper_for(doc, key)
        if helper is not None:
            return self._helper_get(helper, key)
        entry = self._find_entry(doc, key)
        if entry is None:
            return None
        return self._decode_entry(entry, key)

    def login(self, host: str, username: str, password: str) -> None:
        """Store credentials for ``host`` (in its helper when one is configured)."""
        if not username or ":" in username:
            raise InvalidArgument("username must be non-empty and must not contain ':'")
        doc = self._load()
        key = auth_key(host)
        auths = doc.setdefault("auths", {})
        if not isinstance(auths, dict):
            raise InvalidArgument(f"{self.path}: 'auths' is not an object")
        self._remove_entry(auths, key)
        helper = self._helper_for(doc, key)
        if helper is not None:
            self._helper_call(helper, "store", json.dumps(
                {"ServerURL": key, "Username": username, "Secret": password}))
            auths[key] = {}  # docker records the host, the secret lives in the helper
        else:
            raw = base64.b64encode(f"{username}:{password}".encode()).decode()
            auths[key] = {"auth": raw}
        self._save(doc)
        log.debug("stored credentials for %s in %s", key, self.path)

    def logout(self, host: str) -> None:
        """Forget ``host``'s credentials; NotFound when there were none."""
        doc = self._load()
        key = auth_key(host)
        auths = doc.get("auths")
        removed = isinstance(auths, dict) and self._remove_entry(auths, key)
        helper = self._helper_for(doc, key)
        if helper is not None:
            try:
                self._helper_call(helper, "erase", key)
                removed = True
            except NotFound:
                pass
        if not removed:
            raise NotFound(f"not logged in to {host}")
        self._save(doc)

    # --- the file ------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise Unavailable(f"{self.path}: cannot read: {e.strerror}") from None
        if not raw.strip():
            return {}
        try:
            doc = json.loads(raw)
        except ValueError as e:
            # The position only, never the text: the file holds secrets.
            raise InvalidArgument(f"{self.path}: invalid JSON at line {e.lineno}"
                                  if isinstance(e, json.JSONDecodeError)
                                  else f"{self.path}: invalid JSON") from None
        if not isinstance(doc, dict):
            raise InvalidArgument(f"{self.path}: expected a JSON object")
        return doc

    def _save(self, doc: dict[str, Any]) -> None:
        target = Path(os.path.realpath(self.path))  # a symlinked config stays a symlink
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = (json.dumps(doc, indent="\t") + "\n").encode()
        replace_file(str(target), lambda f: f.write(data), mode=0o600)
        dfd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    @staticmethod
    def _find_entry(doc: dict[str, Any], key: str) -> dict[str, Any] | None:
        auths = doc.get("auths")
        if not isinstance(auths, dict):
            return None
        entry = auths.get(key)
        if isinstance(entry, dict):
            return entry
        want = _hostname_of_key(key)
        for k, v in auths.items():
            if isinstance(v, dict) and _hostname_of_key(k) == want:
                return v
        return None

    @staticmethod
    def _remove_entry(auths: dict[str, Any], key: str) -> bool:
        want = _hostname_of_key(key)
        stale = [k for k in auths if k == key or _hostname_of_key(k) == want]
        for k in stale:
            del auths[k]
        return bool(stale)

    def _decode_entry(self, entry: dict[str, Any], key: str) -> Credentials | None:
        token = entry.get("identitytoken")
        raw = entry.get("auth")
        username = entry.get("username")
        password = entry.get("password")
        if isinstance(raw, str) and raw:
            try:
                decoded = base64.b64decode(raw, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise InvalidArgument(
                    f"{self.path}: the 'auth' entry for {key} is not base64 user:password"
                ) from None
            username, sep, password = decoded.partition(":")
            if not sep:
                raise InvalidArgument(
                    f"{self.path}: the 'auth' entry for {key} is not base64 user:password")
        if not isinstance(username, str) or not username:
            username = ""
        if not isinstance(password, str):
            password = ""
        if not isinstance(token, str):
            token = ""
        if not username and not token:
            return None
        return Credentials(username, password, token)

    # --- credential helpers --------------------------------------------------------------

    @staticmethod
    def _helper_for(doc: dict[str, Any], key: str) -> str | None:
        helpers = doc.get("credHelpers")
        if isinstance(helpers, dict):
            want = _hostname_of_key(key)
            for k, v in helpers.items():
                if isinstance(v, str) and v and (k == key or _hostname_of_key(k) == want):
                    return v
        store = doc.get("credsStore")
        return store if isinstance(store, str) and store else None

    def _helper_get(self, helper: str, key: str) -> Credentials | None:
        try:
            out = self._helper_call(helper, "get", key)
        except NotFound:
            return None
        try:
            doc = json.loads(out)
            username, secret = doc["Username"], doc["Secret"]
        except (ValueError, KeyError, TypeError):
            raise Unavailable(
                f"credential helper {HELPER_PREFIX}{helper} gave an unreadable answer") from None
        if not isinstance(username, str) or not isinstance(secret, str):
            raise Unavailable(
                f"credential helper {HELPER_PREFIX}{helper} gave an unreadable answer")
        if username == _TOKEN_USERNAME:
            return Credentials("", "", secret)
        if not username and not secret:
            return None
        return Credentials(username, secret)

    def _helper_call(self, helper: str, verb: str, stdin: str) -> str:
        name = HELPER_PREFIX + helper
        exe = shutil.which(name, path=self.helper_path)
        if exe is None:
            raise Unavailable(f"credential helper {name} not found on PATH",
                              hint=f"install {name} or remove it from {self.path}")
        try:
            proc = subprocess.run([exe, verb], input=stdin.encode(), capture_output=True,
                                  timeout=_HELPER_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise Unavailable(f"credential helper {name} {verb} timed out") from None
        except OSError as e:
            raise Unavailable(f"credential helper {name}: {e.strerror}") from None
        if proc.returncode != 0:
            # The helper's message names the failure; it carries no secret (it got the
            # secret on stdin, and prints on failure only what went wrong).
            message = (proc.stdout or proc.stderr).decode(errors="replace").strip()
            if _HELPER_NOT_FOUND in message:
                raise NotFound(f"{name}: no credentials for {stdin if verb != 'store' else ''}")
            first_line = message.splitlines()[0][:200] if message else f"exit {proc.returncode}"
            raise Unavailable(f"credential helper {name} {verb} failed: {first_line}")
        return proc.stdout.decode(errors="replace")
