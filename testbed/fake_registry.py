"""A tiny, scriptable, lying OCI registry on 127.0.0.1 for the registry client's fault tests.

Owns a ``ThreadingHTTPServer`` in a thread that serves manifests, blobs (with ``Range``), tag
lists and monolithic uploads from memory, optionally behind a Bearer token flow (realm
``/token`` on the same server) or Basic auth, and that misbehaves on request: scripted
statuses (``500`` twice, ``429`` with ``Retry-After``), truncated bodies, wrong
``Content-Length``, corrupted content, redirects to a second server, ignored ranges and slow
answers. Every request is recorded (method, path, headers) so tests can check what was sent.

Use as a context manager; ``stop()`` shuts the server down and joins its thread, so nothing
outlives a test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import parse_qs, urlsplit

FaultKind = Literal["status", "truncate", "wrong_length", "corrupt", "redirect", "delay",
                    "ignore_range", "drop"]


@dataclass
class Fault:
    """Applies to the next ``times`` requests whose path contains ``match``."""

    match: str
    kind: FaultKind
    times: int = 1
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    keep: int = 0            # truncate: bytes sent before the connection is cut
    length: int = 0          # wrong_length: the Content-Length announced
    location: str = ""       # redirect target
    seconds: float = 0.0     # delay
    method: str = ""         # only this method ("" = any)


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lowercased names

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    def __init__(
        self,
        *,
        auth: Literal["none", "bearer", "basic"] = "none",
        users: dict[str, str] | None = None,
        token_ttl: int = 300,
        page_size: int = 0,
        refresh_tokens: set[str] | None = None,
    ) -> None:
        self.auth = auth
        self.users = dict(users or {})
        # Identity tokens accepted by the OAuth2 form (POST /token, grant_type=refresh_token).
        self.refresh_tokens = set(refresh_tokens or ())
        self.token_ttl = token_ttl
        self.page_size = page_size
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.faults: list[Fault] = []
        self.requests: list[Recorded] = []
        self.tokens: dict[str, set[str]] = {}  # token -> scopes it grants
        self.token_requests = 0
        self._uploads: dict[str, str] = {}   # upload id -> repo
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        port = self._server.server_address[1]
        self.host = f"127.0.0.1:{port}"
        self.url = f"http://{self.host}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    # --- content -----------------------------------------------------------------------

    def add_blob(self, data: bytes) -> str:
        d = sha256(data)
        with self._lock:
            self.blobs[d] = data
        return d

    def add_manifest(self, repo: str, tag: str, raw: bytes, media_type: str) -> str:
        d = sha256(raw)
        with self._lock:
            self.manifests[(repo, tag)] = (raw, media_type)
            self.manifests[(repo, d)] = (raw, media_type)
        return d

    def fault(self, match: str, kind: FaultKind, **kw: object) -> Fault:
        f = Fault(match, kind, **kw)  # type: ignore[arg-type]
        with self._lock:
            self.faults.append(f)
        return f

    def expire_tokens(self) -> None:
        """Every token handed out so far stops working (as if its lifetime ended)."""
        with self._lock:
            self.tokens.clear()

    def requests_to(self, fragment: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if fragment in r.path]

    # --- lifecycle ---------------------------------------------------------------------

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> FakeRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- used by the handler -----------------------------------------------------------

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.times > 0 and f.match in path and f.method in ("", method):
                    f.times -= 1
                    return f
        return None

    def _issue_token(self, scopes: set[str]) -> str:
        token = "tok-" + secrets.token_hex(8)
        with self._lock:
            self.tokens[token] = scopes
            self.token_requests += 1
        return token

    def _token_grants(self, token: str, scope: str) -> bool:
        with self._lock:
            granted = self.tokens.get(token)
        if granted is None:
            return False
        repo, _, actions = scope.rpartition(":")
        for g in granted:
            g_repo, _, g_actions = g.rpartition(":")
            if g_repo == repo and set(actions.split(",")) <= set(g_actions.split(",")):
                return True
        return False


_V2 = re.compile(r"^/v2/(?P<repo>.+)/(?P<kind>manifests|blobs|tags)/(?P<rest>.*)$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-registry"

    @property
    def fake(self) -> FakeRegistry:
        fake: FakeRegistry = self.server.fake  # type: ignore[attr-defined]
        return fake

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: tests read fake.requests instead

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # --- plumbing ------------------------------------------------------------------------

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              *, method: str = "GET", fault: Fault | None = None) -> None:
        hdrs = {"Content-Length": str(len(body)),
                "Docker-Distribution-API-Version": "registry/2.0"}
        hdrs.update(headers or {})
        if fault is not None and fault.kind == "wrong_length":
            hdrs["Content-Length"] = str(fault.length)
        if fault is not None and fault.kind == "corrupt" and body:
            body = bytes([body[0] ^ 0x01]) + body[1:]
        self.send_response(status)
        for k, v in hdrs.items():
            self.send_header(k, v)
        self.end_headers()
        if method == "HEAD":
            return
        if fault is not None and fault.kind == "truncate":
            self.wfile.write(body[: fault.keep])
            self.wfile.flush()
            self.close_connection = True
            return
        if fault is not None and fault.kind == "wrong_length":
            self.wfile.write(body)
            self.close_connection = True  # the stream is out of step: start afresh
            return
        self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, method: str,
               headers: dict[str, str] | None = None) -> None:
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self._send(status, body, {"Content-Type": "application/json", **(headers or {})},
                   method=method)

    def _handle(self, method: str) -> None:
        fake = self.fake
        with fake._lock:
            fake.requests.append(Recorded(method, self.path,
                                          {k.lower(): v for k, v in self.headers.items()}))
        body = self._body() if method in ("POST", "PUT") else b""
        url = urlsplit(self.path)
        fault = fake._take_fault(method, self.path)
        if fault is not None:
            if fault.kind == "delay":
                time.sleep(fault.seconds)
                fault = None
            elif fault.kind == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            elif fault.kind == "status":
                self._send(fault.status, b"", fault.headers, method=method)
                return
            elif fault.kind == "redirect":
                self._send(307, b"", {"Location": fault.location}, method=method)
                return
        if url.path == "/token":
            if method == "POST":
                self._oauth2_token(body.decode(), method)
            else:
                self._token(url.query, method)
            return
        if url.path.startswith("/storage/"):
            self._blob(url.path[len("/storage/"):], method, fault)
            return
        if url.path in {"/v2/", "/v2"}:
            if self._authorized("", method):
                self._send(200, b"{}", {"Content-Type": "application/json"}, method=method)
            return
        m = _V2.match(url.path)
        if m is None:
            self._error(404, "NOT_FOUND", "no such route", method)
            return
        repo, kind, rest = m["repo"], m["kind"], m["rest"]
        push = method in ("POST", "PUT", "DELETE")
        if not self._authorized(f"repository:{repo}:{'pull,push' if push else 'pull'}", method):
            return
        if kind == "manifests":
            self._manifest(repo, rest, method, body, fault)
        elif kind == "tags":
            self._tags(repo, url.query, method)
        elif rest.startswith("uploads/"):
            self._upload(repo, rest[len("uploads/"):], url.query, method, body)
        else:
            self._blob(rest, method, fault)

    def _authorized(self, scope: str, method: str) -> bool:
        fake = self.fake
        given = self.headers.get("Authorization", "")
        if fake.auth == "none":
            return True
        if fake.auth == "basic":
            if given.startswith("Basic "):
                user, _, pw = base64.b64decode(given[6:]).decode().partition(":")
                if fake.users.get(user) == pw:
                    return True
            self._error(401, "UNAUTHORIZED", "authentication required", method,
                        {"WWW-Authenticate": 'Basic realm="fake"'})
            return False
        if given.startswith("Bearer ") and (
                not scope or fake._token_grants(given[7:], scope)):
            with fake._lock:
                valid = given[7:] in fake.tokens
            if valid:
                return True
        challenge = f'Bearer realm="{fake.url}/token",service="fake"'
        if scope:
            challenge += f',scope="{scope}"'
        self._error(401, "UNAUTHORIZED", "authentication required", method,
                    {"WWW-Authenticate": challenge})
        return False

    def _token(self, query: str, method: str) -> None:
        fake = self.fake
        q = parse_qs(query)
        given = self.headers.get("Authorization", "")
        if fake.users:
            ok = False
            if given.startswith("Basic "):
                user, _, pw = base64.b64decode(given[6:]).decode().partition(":")
                ok = fake.users.get(user) == pw
            if not ok:
                self._error(401, "UNAUTHORIZED", "bad credentials", method)
                return
        token = fake._issue_token(set(q.get("scope", [])))
        body = json.dumps({"token": token, "expires_in": fake.token_ttl}).encode()
        self._send(200, body, {"Content-Type": "application/json"}, method=method)

    def _oauth2_token(self, form: str, method: str) -> None:
        fake = self.fake
        q = parse_qs(form)
        if (q.get("grant_type") != ["refresh_token"]
                or q.get("refresh_token", [""])[0] not in fake.refresh_tokens):
            self._error(401, "UNAUTHORIZED", "bad refresh token", method)
            return
        scopes = {s for v in q.get("scope", []) for s in v.split(" ")}
        token = fake._issue_token(scopes)
        body = json.dumps({"access_token": token, "expires_in": fake.token_ttl}).encode()
        self._send(200, body, {"Content-Type": "application/json"}, method=method)

    def _manifest(self, repo: str, ref: str, method: str, body: bytes,
                  fault: Fault | None) -> None:
        fake = self.fake
        if method == "PUT":
            d = fake.add_manifest(repo, ref, body,
                                  self.headers.get("Content-Type", "application/json"))
            self._send(201, b"", {"Docker-Content-Digest": d,
                                  "Location": f"/v2/{repo}/manifests/{d}"}, method=method)
            return
        with fake._lock:
            found = fake.manifests.get((repo, ref))
        if found is None:
            self._error(404, "MANIFEST_UNKNOWN", "manifest unknown", method)
            return
        raw, media_type = found
        self._send(200, raw, {"Content-Type": media_type,
                              "Docker-Content-Digest": sha256(raw)}, method=method, fault=fault)

    def _blob(self, digest: str, method: str, fault: Fault | None) -> None:
        fake = self.fake
        with fake._lock:
            data = fake.blobs.get(digest)
        if data is None:
            self._error(404, "BLOB_UNKNOWN", "blob unknown to registry", method)
            return
        headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest}
        rng = self.headers.get("Range", "")
        m = re.fullmatch(r"bytes=(\d+)-", rng)
        if m and not (fault is not None and fault.kind == "ignore_range"):
            start = int(m.group(1))
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            self._send(206, data[start:], headers, method=method, fault=fault)
            return
        self._send(200, data, headers, method=method, fault=fault)

    def _tags(self, repo: str, query: str, method: str) -> None:
        fake = self.fake
        with fake._lock:
            tags = sorted({t for (r, t) in fake.manifests if r == repo and ":" not in t})
        q = parse_qs(query)
        n = int(q.get("n", [str(fake.page_size or 0)])[0]) or len(tags)
        last = q.get("last", [""])[0]
        rest = [t for t in tags if t > last]
        page, more = rest[:n], rest[n:]
        headers = {"Content-Type": "application/json"}
        if more:
            headers["Link"] = f'</v2/{repo}/tags/list?n={n}&last={page[-1]}>; rel="next"'
        body = json.dumps({"name": repo, "tags": page}).encode()
        self._send(200, body, headers, method=method)

    def _upload(self, repo: str, upload_id: str, query: str, method: str, body: bytes) -> None:
        fake = self.fake
        q = parse_qs(query)
        if method == "POST":
            new_id = secrets.token_hex(8)
            with fake._lock:
                fake._uploads[new_id] = repo
            # Relative, with a query of its own, as some registries answer.
            self._send(202, b"", {"Location": f"/v2/{repo}/blobs/uploads/{new_id}?_state=s1",
                                  "Docker-Upload-UUID": new_id}, method=method)
            return
        with fake._lock:
            known = fake._uploads.pop(upload_id, None)
        if known is None:
            self._error(404, "BLOB_UPLOAD_UNKNOWN", "upload unknown", method)
            return
        if method == "DELETE":
            self._send(204, b"", method=method)
            return
        digest = q.get("digest", [""])[0]
        if q.get("_state") != ["s1"] or sha256(body) != digest:
            self._error(400, "DIGEST_INVALID", "provided digest did not match", method)
            return
        fake.add_blob(body)
        self._send(201, b"", {"Docker-Content-Digest": digest,
                              "Location": f"/v2/{repo}/blobs/{digest}"}, method=method)
