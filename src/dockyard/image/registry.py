"""The registry client: the OCI distribution API over HTTP/1.1 (pull and push).

Owns choosing an endpoint (mirrors, https-then-http for insecure hosts, see
:mod:`dockyard.image.hosts`), authentication (Basic, and Bearer tokens fetched from the realm a
``WWW-Authenticate`` challenge names, cached per host and scope, fetched again when the registry
says 401), retries with exponential backoff and jitter on transient failures, redirects to blob
storage (the registry's Authorization never leaves its origin), and translating HTTP outcomes
into :mod:`dockyard.errors` categories. It verifies manifests (small, fetched whole); blobs are
streamed raw and verified by the content store while it writes them.

Credentials and tokens never appear in errors or logs: messages name the registry, the
repository, the request and the status, nothing else.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal, TypeVar
from urllib.parse import urljoin, urlsplit

import httpx

from dockyard.errors import (
    DockyardError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from dockyard.image.auth import AuthStore, Credentials
from dockyard.image.hosts import Endpoint, HostsConfig
from dockyard.image.reference import Reference
from dockyard.model.image import ACCEPT_MANIFESTS, Descriptor, Digest, is_digest

log = logging.getLogger(__name__)

DEFAULT_USER_AGENT = "dockyard/0.1"
CHUNK_SIZE = 1 << 20
# Manifests are read whole into memory; containerd caps them the same way.
MAX_MANIFEST_SIZE = 4 << 20
MAX_REDIRECTS = 5
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 30.0
# A token is used up to this many seconds before the expiry the server announced.
_TOKEN_LEEWAY = 5.0
_DEFAULT_TOKEN_LIFETIME = 60.0
# A dead endpoint is pinged again after this long (a daemon's client lives for days).
_PING_FAILURE_TTL = 30.0

T = TypeVar("T")
Action = Literal["pull", "push"]


class DigestMismatch(FailedPrecondition):
    """Content from a registry does not match the digest it was asked for or announced."""

    def __init__(self, message: str, *, expected: str, actual: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class _BrokenBody(Unavailable):
    """A response body broke off mid-way."""


@dataclass(frozen=True, slots=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: scheme (lowercase) and its parameters."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)


_AUTH_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Parse ``Bearer realm="…",service="…",scope="…"`` (and several challenges in one)."""
    out: list[Challenge] = []
    pos = 0
    text = header.strip()
    while pos < len(text):
        m = re.match(r"\s*,?\s*([A-Za-z][A-Za-z0-9_-]*)(?:\s+|$)", text[pos:])
        if not m:
            break
        pos += m.end()
        params: dict[str, str] = {}
        while pos < len(text):
            p = _AUTH_PARAM.match(text, pos)
            if not p or p.end() == pos:
                break
            value = p.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[p.group(1).lower()] = value
            pos = p.end()
        out.append(Challenge(m.group(1).lower(), params))
    return out


@dataclass(slots=True)
class _Token:
    value: str
    expires_at: float  # time.monotonic()


@dataclass(slots=True)
class BlobStream:
    """An open blob download: iterate for raw (still compressed) chunks.

    ``offset`` is where the bytes start: the requested offset, or 0 when the server ignored the
    Range header (``resumed`` False) and sends the whole blob again.
    """

    offset: int
    resumed: bool
    length: int | None  # Content-Length of this response, if the server sent one
    _chunks: Iterator[bytes]

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks


def _sha256(data: bytes) -> Digest:
    return Digest("sha256:" + hashlib.sha256(data).hexdigest())


def _origin(url: str) -> tuple[str, str]:
    p = urlsplit(url)
    return (p.scheme, p.netloc.lower())


def _scope(path: str, action: Action) -> str:
    return f"repository:{path}:{'pull' if action == 'pull' else 'pull,push'}"


def _describe(exc: httpx.HTTPError) -> str:
    """An httpx error without anything that could carry a header or URL credentials."""
    kind = type(exc).__name__
    msg = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{kind}: {msg}" if msg else kind


def _registry_errors(resp: httpx.Response) -> str:
    """The ``errors`` of a distribution error body as ``CODE: message`` (bounded)."""
    try:
        doc = resp.json()
        errs = doc.get("errors") if isinstance(doc, dict) else None
    except (ValueError, UnicodeDecodeError, httpx.ResponseNotRead):
        return ""
    if not isinstance(errs, list):
        return ""
    parts = []
    for e in errs[:3]:
        if isinstance(e, dict):
            code, message = str(e.get("code", "")), str(e.get("message", ""))
            parts.append(f"{code.lower().replace('_', ' ')}: {message}" if code else message)
    return "; ".join(parts)[:300]


class RegistryClient:
    """Talks to registries for the engine. Thread-safe: one client serves parallel pulls."""

    def __init__(
        self,
        hosts: HostsConfig,
        auth: AuthStore | None = None,
        *,
        user_agent: str = DEFAULT_USER_AGENT,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        max_connections: int = 16,
    ) -> None:
        self.hosts = hosts
        self.auth = auth
        self.user_agent = user_agent
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._limits = httpx.Limits(max_connections=max(8, max_connections),
                                    max_keepalive_connections=max(8, max_connections))
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str, bool], httpx.Client] = {}
        self._pings: dict[str, tuple[str | None, float]] = {}
        self._challenges: dict[str, Challenge | None] = {}
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._credentials: dict[str, Credentials | None] = {}
        self._closed = False

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
            self._closed = True
        for c in clients:
            c.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- pull ----------------------------------------------------------------------------

    def get_manifest(
        self, ref: Reference, accept: Iterable[str] = ACCEPT_MANIFESTS
    ) -> tuple[bytes, str, Digest]:
        """Fetch a manifest or index by tag or digest: ``(raw bytes, media type, digest)``.

        The body is checked against the requested digest, else against the registry's
        ``Docker-Content-Digest``; a mismatch raises :class:`DigestMismatch`.
        """
        headers = {"Accept": ", ".join(accept)}

        def op(ep: Endpoint) -> tuple[bytes, str, Digest]:
            url = f"{ep.url}/v2/{ref.path}/manifests/{ref.reference}"
            for attempt in range(self.retries + 1):
                with self._request(ep, ref, "pull", "GET", url, headers=headers,
                                   what="manifest") as resp:
                    try:
                        body = self._read_limited(resp, MAX_MANIFEST_SIZE, ep, ref)
                        break
                    except _BrokenBody as e:
                        # A manifest is small: a cut-off body is fetched again whole.
                        if attempt == self.retries:
                            raise Unavailable(str(e)) from None
                        log.debug("%s; retrying", e)
                self._sleep(self._delay(attempt, None))
            digest = _sha256(body)
            self._check_manifest_digest(ref, resp, digest)
            return body, _media_type(resp, body), digest

        return self._over_endpoints(ref, "pull", op)

    def head_manifest(
        self, ref: Reference, accept: Iterable[str] = ACCEPT_MANIFESTS
    ) -> Descriptor:
        """The manifest's descriptor without its body (GET when the registry sends no digest)."""
        headers = {"Accept": ", ".join(accept)}

        def op(ep: Endpoint) -> Descriptor | None:
            url = f"{ep.url}/v2/{ref.path}/manifests/{ref.reference}"
            with self._request(ep, ref, "pull", "HEAD", url, headers=headers,
                               what="manifest") as resp:
                header = resp.headers.get("Docker-Content-Digest", "")
                ct = resp.headers.get("Content-Type", "").partition(";")[0].strip()
                size = resp.headers.get("Content-Length", "")
            if not is_digest(header) or not size.isdigit():
                return None
            if ref.digest is not None and header != ref.digest:
                raise DigestMismatch(
                    f"{ref}: registry announced digest {header} for the requested digest",
                    expected=ref.digest, actual=header)
            return Descriptor(ct, Digest(header), int(size))

        desc = self._over_endpoints(ref, "pull", op)
        if desc is not None:
            return desc
        body, media_type, digest = self.get_manifest(ref, accept)
        return Descriptor(media_type, digest, len(body))

    @contextlib.contextmanager
    def open_blob(self, ref: Reference, desc: Descriptor, offset: int = 0
                  ) -> Iterator[BlobStream]:
        """Stream a blob's raw bytes (never decompressed) from ``offset``.

        A server that ignores the Range header answers 200 with the whole blob: the stream
        then says ``offset=0, resumed=False`` and the caller starts over.
        """
        if offset < 0 or offset > desc.size:
            raise InvalidArgument(f"blob offset {offset} outside 0..{desc.size}")
        if offset and offset == desc.size:
            # Nothing left to fetch; a registry would answer 416 to "bytes=<size>-".
            yield BlobStream(offset, True, 0, iter(()))
            return
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"

        def op(ep: Endpoint) -> httpx.Response:
            url = f"{ep.url}/v2/{ref.path}/blobs/{desc.digest}"
            return self._open(ep, ref, "pull", "GET", url, headers=headers, what="blob",
                              digest=desc.digest, ok=(200, 206))

        resp = self._over_endpoints(ref, "pull", op)
        try:
            if resp.status_code == 206:
                start = _content_range_start(resp)
                if start != offset:
                    raise Unavailable(
                        f"{ref.registry_host}: blob {desc.digest} answered a range starting at "
                        f"{start}, asked for {offset}")
                got_offset, resumed = offset, True
            else:
                got_offset, resumed = 0, False
            length_header = resp.headers.get("Content-Length", "")
            length = int(length_header) if length_header.isdigit() else None
            if length is not None and length != desc.size - got_offset:
                raise DigestMismatch(
                    f"{ref.registry_host}: blob {desc.digest} is {length + got_offset} bytes, "
                    f"its descriptor says {desc.size}",
                    expected=desc.digest, actual="")
            yield BlobStream(got_offset, resumed, length, self._chunks(resp, ref, desc))
        finally:
            resp.close()

    def _chunks(self, resp: httpx.Response, ref: Reference, desc: Descriptor
                ) -> Iterator[bytes]:
        # Re-chunked by hand rather than iter_raw(CHUNK_SIZE): when the body breaks off, the
        # bytes already received still reach the caller, so a resume loses nothing.
        buf = bytearray()
        try:
            for piece in resp.iter_raw():
                buf += piece
                if len(buf) >= CHUNK_SIZE:
                    yield bytes(buf)
                    buf.clear()
        except httpx.HTTPError as e:
            if buf:
                yield bytes(buf)
            raise Unavailable(
                f"{ref.registry_host}: download of blob {desc.digest} for {ref.repository} "
                f"broke off ({_describe(e)}); it can be resumed") from None
        if buf:
            yield bytes(buf)

    # --- push ----------------------------------------------------------------------------

    def blob_exists(self, ref: Reference, digest: Digest) -> bool:
        def op(ep: Endpoint) -> bool:
            url = f"{ep.url}/v2/{ref.path}/blobs/{digest}"
            with self._request(ep, ref, "push", "HEAD", url, what="blob", digest=digest,
                               ok=(200, 404)) as resp:
                return bool(resp.status_code == 200)

        return self._over_endpoints(ref, "push", op)

    def mount_blob(self, ref: Reference, digest: Digest, from_repo: str) -> bool:
        """Cross-repository mount of ``digest`` from ``from_repo`` (a path on the same
        registry). False when the registry did not mount it (the caller pushes instead)."""
        def op(ep: Endpoint) -> bool:
            url = f"{ep.url}/v2/{ref.path}/blobs/uploads/"
            params = {"mount": digest, "from": from_repo}
            extra = f"repository:{from_repo}:pull"
            with self._request(ep, ref, "push", "POST", url, params=params, content=b"",
                               what="blob upload", ok=(201, 202), extra_scope=extra) as resp:
                if resp.status_code == 201:
                    return True
                location = resp.headers.get("Location")
            if location:
                # The registry opened an upload session instead; don't leave it dangling.
                self._cancel_upload(ep, ref, urljoin(ep.url + "/", location))
            return False

        return self._over_endpoints(ref, "push", op)

    def push_blob(self, ref: Reference, desc: Descriptor, reader: BinaryIO) -> None:
        """Upload a blob (POST, then one monolithic PUT ``?digest=``). ``reader`` must yield
        exactly ``desc.size`` bytes; a seekable reader lets a failed upload be retried."""
        try:
            start = reader.tell() if reader.seekable() else None
        except OSError:
            start = None

        sent = False

        def body() -> Iterator[bytes]:
            nonlocal sent
            if start is not None:
                reader.seek(start)
            elif sent:
                raise Unavailable(
                    f"blob {desc.digest}: upload must be sent again but its reader cannot seek")
            sent = True
            remaining = desc.size
            while remaining > 0:
                chunk = reader.read(min(CHUNK_SIZE, remaining))
                if not chunk:
                    raise InvalidArgument(
                        f"blob {desc.digest}: reader ended {remaining} bytes early")
                remaining -= len(chunk)
                yield chunk

        def op(ep: Endpoint) -> None:
            url = f"{ep.url}/v2/{ref.path}/blobs/uploads/"
            with self._request(ep, ref, "push", "POST", url, content=b"", what="blob upload",
                               ok=(202,)) as resp:
                location = resp.headers.get("Location")
            if not location:
                raise Unavailable(f"{ep.host}: blob upload answered without a Location")
            upload_url = httpx.URL(urljoin(f"{ep.url}/v2/{ref.path}/blobs/uploads/", location))
            upload_url = upload_url.copy_merge_params({"digest": desc.digest})
            headers = {"Content-Type": "application/octet-stream",
                       "Content-Length": str(desc.size)}
            try:
                with self._request(ep, ref, "push", "PUT", str(upload_url), headers=headers,
                                   content=body, what="blob upload", digest=desc.digest,
                                   ok=(201, 204), retry=start is not None):
                    pass
            except DockyardError:
                self._cancel_upload(ep, ref, str(upload_url.copy_remove_param("digest")))
                raise

        self._over_endpoints(ref, "push", op)

    def put_manifest(self, ref: Reference, raw: bytes, media_type: str) -> Digest:
        """PUT a manifest under ``ref``'s tag (or digest); returns its digest."""
        digest = _sha256(raw)
        if ref.digest is not None and ref.digest != digest:
            raise DigestMismatch(f"manifest is {digest}, not {ref.digest}",
                                 expected=ref.digest, actual=digest)
        target = ref.tag if ref.tag is not None else digest

        def op(ep: Endpoint) -> Digest:
            url = f"{ep.url}/v2/{ref.path}/manifests/{target}"
            with self._request(ep, ref, "push", "PUT", url, content=raw,
                               headers={"Content-Type": media_type}, what="manifest",
                               ok=(201, 200, 204)) as resp:
                header = resp.headers.get("Docker-Content-Digest", "")
            if header and is_digest(header) and header != digest:
                raise DigestMismatch(
                    f"{ep.host}: registry stored manifest as {header}, we sent {digest}",
                    expected=digest, actual=header)
            return digest

        return self._over_endpoints(ref, "push", op)

    def list_tags(self, ref: Reference, page_size: int | None = None) -> list[str]:
        """Every tag of ``ref``'s repository, following ``Link`` pagination."""
        def op(ep: Endpoint) -> list[str]:
            tags: list[str] = []
            url: str | None = f"{ep.url}/v2/{ref.path}/tags/list"
            params = {"n": str(page_size)} if page_size else None
            seen: set[str] = set()
            while url is not None:
                if url in seen:
                    raise Unavailable(f"{ep.host}: tag list pagination loops at {url}")
                seen.add(url)
                with self._request(ep, ref, "pull", "GET", url, params=params,
                                   what="tags") as resp:
                    resp.read()
                    try:
                        doc = resp.json()
                    except ValueError:
                        raise Unavailable(f"{ep.host}: tag list is not JSON") from None
                    page = doc.get("tags") if isinstance(doc, dict) else None
                    tags.extend(t for t in (page or []) if isinstance(t, str))
                    nxt = _link_next(resp.headers.get("Link", ""))
                url = urljoin(url, nxt) if nxt else None
                params = None  # the Link URL carries its own query
            return tags

        return self._over_endpoints(ref, "pull", op)

    # --- endpoints -----------------------------------------------------------------------

    def _over_endpoints(self, ref: Reference, action: Action, op: Callable[[Endpoint], T]
                        ) -> T:
        """Run ``op`` on the first endpoint that answers; a failing mirror falls through to
        the next endpoint. Endpoints are pinged lazily, so a working mirror spares the
        registry behind it a round trip."""
        candidates = self.hosts.endpoints(ref.domain, push=action == "push")
        failures: list[str] = []
        answered: set[str] = set()
        mirror_error: DockyardError | None = None
        for ep in candidates:
            if not ep.mirror and ep.host in answered:
                continue  # the https variant of this insecure host answered already
            reason = self._ping_cached(ep)
            if reason is not None:
                failures.append(reason)
                continue
            answered.add(ep.host)
            try:
                return op(ep)
            except (NotFound, Unavailable, PermissionDenied) as e:
                if not ep.mirror:
                    raise
                mirror_error = e
                log.info("mirror %s failed for %s (%s); trying the next endpoint",
                         ep.host, ref, e)
        if mirror_error is not None and not failures:
            raise mirror_error
        raise Unavailable(
            f"registry {ref.domain} is unreachable: {'; '.join(failures)}",
            hint="check that the registry is running and, for a registry without TLS, "
                 "that it is listed in insecure-registries")

    def _ping_cached(self, ep: Endpoint) -> str | None:
        """None when ``ep`` answered /v2/ (remembered); else why not (remembered briefly)."""
        now = time.monotonic()
        with self._lock:
            hit = self._pings.get(ep.url)
        if hit is not None and (hit[0] is None or now < hit[1]):
            return hit[0]
        reason = self._ping(ep)
        if reason is not None:
            reason = f"{ep.url}: {reason}"
            log.debug("registry endpoint unusable: %s", reason)
        with self._lock:
            self._pings[ep.url] = (reason, now + _PING_FAILURE_TTL)
        return reason

    def _ping(self, ep: Endpoint) -> str | None:
        """GET /v2/: None when ``ep`` is a registry (200, or 401 with a challenge)."""
        url = f"{ep.url}/v2/"
        insecure_https = ep.insecure and ep.scheme == "https"
        try:
            resp = self._with_retries(
                ep, f"GET {url}",
                lambda: self._send(ep, "GET", url, {}, content=None, authorization=None,
                                   stream=False),
                # A TLS handshake refused by a plain-HTTP server is an answer, not a glitch.
                retry_transport=lambda e: not (insecure_https and _is_tls_error(e)))
        except Unavailable as e:
            return str(e)
        if resp.status_code == 401:
            challenges = parse_www_authenticate(resp.headers.get("WWW-Authenticate", ""))
            chosen = _pick_challenge(challenges)
            with self._lock:
                self._challenges[ep.url] = chosen
            return None
        if resp.status_code in (200, 403):
            with self._lock:
                self._challenges.setdefault(ep.url, None)
            return None
        return f"/v2/ answered {resp.status_code} {resp.reason_phrase}"

    # --- requests ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _request(self, ep: Endpoint, ref: Reference, action: Action, method: str, url: str,
                 **kw: Any) -> Iterator[httpx.Response]:
        """:meth:`_open` as a context manager that closes the response."""
        resp = self._open(ep, ref, action, method, url, **kw)
        try:
            yield resp
        finally:
            resp.close()

    def _open(
        self,
        ep: Endpoint,
        ref: Reference,
        action: Action,
        method: str,
        url: str,
        *,
        what: str,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        content: bytes | Callable[[], Iterator[bytes]] | None = None,
        ok: tuple[int, ...] = (200,),
        digest: str | None = None,
        extra_scope: str | None = None,
        retry: bool = True,
    ) -> httpx.Response:
        """Send one API request with auth, retries and redirects; returns an open (streamed)
        response whose status is in ``ok``, or raises a translated error."""
        if params:
            url = str(httpx.URL(url).copy_merge_params(params))
        scope = _scope(ref.path, action)
        if extra_scope:
            scope = f"{scope} {extra_scope}"
        hdrs = dict(headers or {})
        retries = self.retries if retry else 0
        authorization = self._authorization(ep, scope, fresh=False)
        resp = self._with_retries(
            ep, f"{method} {what}",
            lambda: self._send(ep, method, url, hdrs, content=content,
                               authorization=authorization, stream=True),
            retries=retries)
        if resp.status_code == 401:
            challenge = _pick_challenge(
                parse_www_authenticate(resp.headers.get("WWW-Authenticate", "")))
            if challenge is not None:
                with self._lock:
                    self._challenges[ep.url] = challenge
            sent = authorization
            authorization = self._authorization(ep, scope, fresh=True)
            # Once more only with something new to offer: a freshly fetched token, or
            # credentials we had not sent. The same Basic credentials would fail again.
            bearer = challenge is not None and challenge.scheme == "bearer"
            if authorization is not None and (bearer or authorization != sent):
                resp.close()
                resp = self._with_retries(
                    ep, f"{method} {what}",
                    lambda: self._send(ep, method, url, hdrs, content=content,
                                       authorization=authorization, stream=True),
                    retries=retries)
        if resp.status_code in ok:
            return resp
        try:
            resp.read()
        except (httpx.HTTPError, httpx.StreamError):
            pass
        finally:
            resp.close()
        raise self._error(ep, ref, action, method, what=what, resp=resp, digest=digest)

    def _error(self, ep: Endpoint, ref: Reference, action: Action, method: str, *, what: str,
               resp: httpx.Response, digest: str | None) -> DockyardError:
        status = resp.status_code
        detail = _registry_errors(resp)
        detail_s = f" ({detail})" if detail else ""
        if status == 404:
            if detail.startswith(("manifest unknown", "blob unknown")):
                detail_s = ""  # says no more than our own message
            if what == "manifest":
                return NotFound(f"manifest unknown: {ref} not found{detail_s}")
            if what == "blob" and digest:
                return NotFound(f"blob unknown: {ref.repository}@{digest} not found{detail_s}")
            return NotFound(f"{ref.repository}: {what} not found{detail_s}")
        if status in (401, 403):
            creds = self._lookup_credentials(ep)
            challenge = self._challenge(ep)
            if (status == 401 and creds is not None and challenge is not None
                    and challenge.scheme == "basic"):
                return PermissionDenied(
                    f"{ep.host}: unauthorized: incorrect username or password for user "
                    f"{creds.username!r}",
                    hint=f"run 'dockyard login {ep.credentials_host}'")
            if action == "pull":
                return PermissionDenied(
                    f"pull access denied for {ref.familiar_name}, repository does not exist "
                    f"or may require 'dockyard login'{detail_s}",
                    hint=f"run 'dockyard login {ep.credentials_host}'")
            return PermissionDenied(
                f"push access denied for {ref.familiar_name}: requested access to the "
                f"resource is denied{detail_s}",
                hint=f"run 'dockyard login {ep.credentials_host}'")
        if status in RETRY_STATUSES:
            return Unavailable(
                f"registry {ep.host} answered {status} {resp.reason_phrase} to {method} "
                f"{what} for {ref.repository}{detail_s}")
        if status == 400 and detail:
            return InvalidArgument(f"registry {ep.host} refused {what} for "
                                   f"{ref.repository}: {detail}")
        return Unavailable(
            f"registry {ep.host} answered {status} {resp.reason_phrase} to {method} {what} "
            f"for {ref.repository}{detail_s}")

    def _with_retries(
        self,
        ep: Endpoint,
        what: str,
        send: Callable[[], httpx.Response],
        *,
        retries: int | None = None,
        retry_transport: Callable[[httpx.HTTPError], bool] = lambda e: True,
    ) -> httpx.Response:
        n = self.retries if retries is None else retries
        for attempt in range(n + 1):
            last = attempt == n
            try:
                resp = send()
            except httpx.HTTPError as e:
                if last or not retry_transport(e):
                    tries = f" after {attempt + 1} attempts" if attempt else ""
                    raise Unavailable(
                        f"registry {ep.host}: {what} failed{tries}: {_describe(e)}") from None
                delay = self._delay(attempt, None)
                log.debug("%s: %s to %s; retrying in %.2f s", what, _describe(e), ep.host, delay)
                self._sleep(delay)
                continue
            if resp.status_code in RETRY_STATUSES:
                if last:
                    resp.close()
                    raise Unavailable(
                        f"registry {ep.host} answered {resp.status_code} "
                        f"{resp.reason_phrase} to {what}"
                        + (f" after {attempt + 1} attempts" if attempt else ""))
                delay = self._delay(attempt, resp.headers.get("Retry-After"))
                resp.close()
                log.debug("%s: %s answered %d; retrying in %.2f s", what, ep.host,
                          resp.status_code, delay)
                self._sleep(delay)
                continue
            return resp
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None and retry_after.strip().isdigit():
            return min(float(retry_after.strip()), MAX_RETRY_AFTER)
        base: float = min(self.backoff * (2 ** attempt), self.max_backoff)
        return base + random.uniform(0, base / 2)  # noqa: S311 - jitter, not crypto

    def _client(self, url: str, insecure: bool) -> httpx.Client:
        scheme, netloc = _origin(url)
        key = (scheme, netloc, insecure)
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                return client
            if self._closed:
                raise Unavailable("registry client is closed")
        verify: object = True
        if scheme == "https":
            verify = self.hosts.ssl_context(netloc, verify=not insecure)
        client = httpx.Client(
            verify=verify,  # type: ignore[arg-type]
            timeout=httpx.Timeout(self.timeout),
            limits=self._limits,
            follow_redirects=False,  # followed by hand: Authorization stays at its origin
            trust_env=False,
            headers={"User-Agent": self.user_agent},
        )
        with self._lock:
            existing = self._clients.setdefault(key, client)
        if existing is not client:
            client.close()
        return existing

    def _send(
        self,
        ep: Endpoint,
        method: str,
        url: str,
        headers: dict[str, str],
        *,
        content: bytes | Callable[[], Iterator[bytes]] | None,
        authorization: str | None,
        stream: bool,
    ) -> httpx.Response:
        """One HTTP exchange, following redirects for GET/HEAD. The registry's Authorization
        goes only to the registry's own origin."""
        origin = _origin(ep.url)
        for _hop in range(MAX_REDIRECTS + 1):
            hdrs = dict(headers)
            if authorization is not None and _origin(url) == origin:
                hdrs["Authorization"] = authorization
            insecure = ep.insecure if _origin(url) == origin else \
                self.hosts.endpoint_for_url(url).insecure
            client = self._client(url, insecure)
            body = content() if callable(content) else content
            request = client.build_request(method, url, headers=hdrs, content=body)
            resp = client.send(request, stream=True)
            location = resp.headers.get("Location")
            if (resp.status_code in (301, 302, 303, 307, 308) and location
                    and method in ("GET", "HEAD")):
                resp.close()
                target = urljoin(url, location)
                if urlsplit(target).scheme not in ("http", "https"):
                    raise Unavailable(f"registry {ep.host} redirected to a non-HTTP URL")
                if (urlsplit(target).scheme == "http" and urlsplit(url).scheme == "https"
                        and not self.hosts.endpoint_for_url(target).insecure):
                    raise Unavailable(
                        f"registry {ep.host} redirected from https to plain http "
                        f"({urlsplit(target).netloc}); refused")
                log.debug("%s %s redirected to %s", method, _strip_query(url),
                          _strip_query(target))
                url = target
                continue
            if not stream:
                try:
                    resp.read()
                finally:
                    resp.close()
            return resp
        raise Unavailable(f"registry {ep.host}: more than {MAX_REDIRECTS} redirects")

    @staticmethod
    def _read_limited(resp: httpx.Response, limit: int, ep: Endpoint, ref: Reference
                      ) -> bytes:
        chunks: list[bytes] = []
        total = 0
        try:
            for chunk in resp.iter_bytes():
                total += len(chunk)
                if total > limit:
                    raise Unavailable(
                        f"registry {ep.host}: manifest for {ref} is larger than {limit} bytes")
                chunks.append(chunk)
        except httpx.HTTPError as e:
            raise _BrokenBody(
                f"registry {ep.host}: reading manifest for {ref} failed: {_describe(e)}"
            ) from None
        return b"".join(chunks)

    @staticmethod
    def _check_manifest_digest(ref: Reference, resp: httpx.Response, digest: Digest) -> None:
        if ref.digest is not None:
            if digest != ref.digest:
                raise DigestMismatch(
                    f"manifest for {ref} has digest {digest}: the registry served other "
                    f"content than requested", expected=ref.digest, actual=digest)
            return
        header = resp.headers.get("Docker-Content-Digest", "")
        if is_digest(header) and header != digest:
            raise DigestMismatch(
                f"manifest for {ref} has digest {digest}, the registry announced {header}",
                expected=header, actual=digest)

    def _cancel_upload(self, ep: Endpoint, ref: Reference, url: str) -> None:
        try:
            with self._request(ep, ref, "push", "DELETE", url, what="blob upload",
                               ok=(200, 202, 204, 404), retry=False):
                pass
        except DockyardError as e:
            log.debug("cancelling upload at %s failed: %s", ep.host, e)

    # --- authentication ------------------------------------------------------------------

    def _challenge(self, ep: Endpoint) -> Challenge | None:
        with self._lock:
            return self._challenges.get(ep.url)

    def _lookup_credentials(self, ep: Endpoint) -> Credentials | None:
        host = ep.credentials_host
        with self._lock:
            if host in self._credentials:
                return self._credentials[host]
        creds = self.auth.lookup(host) if self.auth is not None else None
        with self._lock:
            self._credentials[host] = creds
        return creds

    def _authorization(self, ep: Endpoint, scope: str, *, fresh: bool) -> str | None:
        """The Authorization header for ``scope`` at ``ep``; None for anonymous.

        ``fresh`` discards a cached token (the registry just refused it).
        """
        challenge = self._challenge(ep)
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            creds = self._lookup_credentials(ep)
            if creds is None or not creds.username:
                return None
            raw = f"{creds.username}:{creds.password}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        if challenge.scheme != "bearer":
            return None
        key = (ep.url, scope)
        now = time.monotonic()
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and (fresh or token.expires_at <= now):
                del self._tokens[key]
                token = None
        if token is None:
            token = self._fetch_token(ep, challenge, scope)
            with self._lock:
                self._tokens[key] = token
        return f"Bearer {token.value}"

    def _fetch_token(self, ep: Endpoint, challenge: Challenge, scope: str) -> _Token:
        realm = challenge.params.get("realm", "")
        try:
            realm_ep = self.hosts.endpoint_for_url(realm)
        except InvalidArgument:
            raise Unavailable(f"registry {ep.host} names an invalid token realm") from None
        creds = self._lookup_credentials(ep)
        if creds is not None and realm_ep.scheme == "http" and not realm_ep.insecure:
            raise PermissionDenied(
                f"registry {ep.host} asks for credentials over plain http at "
                f"{realm_ep.host}; refused")
        service = challenge.params.get("service", "")
        scopes = scope.split(" ")
        headers: dict[str, str] = {}
        basic: str | None = None
        if creds is not None and creds.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "client_id": "dockyard", "service": service, "scope": scope}
            method, url, body = "POST", realm, str(httpx.QueryParams(form)).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            query = httpx.QueryParams([("service", service)] if service else [])
            for s in scopes:
                query = query.add("scope", s)
            method, body = "GET", None
            url = str(httpx.URL(realm).copy_merge_params(query))
            if creds is not None and creds.username:
                raw = f"{creds.username}:{creds.password}".encode()
                basic = "Basic " + base64.b64encode(raw).decode()
        resp = self._with_retries(
            realm_ep, "token request",
            lambda: self._send(realm_ep, method, url, headers, content=body,
                               authorization=basic, stream=False))
        if resp.status_code in (401, 403):
            if creds is not None:
                raise PermissionDenied(
                    f"{ep.host}: unauthorized: incorrect username or password for user "
                    f"{creds.username!r}" if creds.username else
                    f"{ep.host}: unauthorized: the stored identity token was refused",
                    hint=f"run 'dockyard login {ep.credentials_host}'")
            raise PermissionDenied(
                f"{ep.host}: the token service at {realm_ep.host} refused anonymous access",
                hint=f"run 'dockyard login {ep.credentials_host}'")
        if resp.status_code != 200:
            raise Unavailable(f"token service {realm_ep.host} answered {resp.status_code} "
                              f"{resp.reason_phrase}")
        try:
            doc = resp.json()
        except ValueError:
            raise Unavailable(f"token service {realm_ep.host} answered no JSON") from None
        value = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(value, str) or not value:
            raise Unavailable(f"token service {realm_ep.host} answered without a token")
        expires_in = doc.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 \
            else _DEFAULT_TOKEN_LIFETIME
        return _Token(value, time.monotonic() + max(lifetime - _TOKEN_LEEWAY, 1.0))


def _pick_challenge(challenges: list[Challenge]) -> Challenge | None:
    for scheme in ("bearer", "basic"):
        for c in challenges:
            if c.scheme == scheme:
                return c
    return None


def _is_tls_error(exc: httpx.HTTPError) -> bool:
    if not isinstance(exc, httpx.ConnectError):
        return False
    text = str(exc)
    return "SSL" in text or "TLS" in text or "record" in text or "WRONG_VERSION" in text


def _media_type(resp: httpx.Response, body: bytes) -> str:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        doc = None
    mt = doc.get("mediaType") if isinstance(doc, dict) else None
    if isinstance(mt, str) and mt:
        return mt
    ct: str = resp.headers.get("Content-Type", "")
    return ct.partition(";")[0].strip()


def _content_range_start(resp: httpx.Response) -> int:
    m = re.match(r"\s*bytes\s+(\d+)-", resp.headers.get("Content-Range", ""))
    return int(m.group(1)) if m else -1


def _link_next(header: str) -> str | None:
    for part in header.split(","):
        m = re.match(r'\s*<([^>]*)>\s*;(.*)', part)
        if m and re.search(r'rel\s*=\s*"?next"?', m.group(2)):
            return m.group(1)
    return None


def _strip_query(url: str) -> str:
    # Presigned storage URLs carry signatures in the query: keep them out of logs.
    return url.partition("?")[0]
