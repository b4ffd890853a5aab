"""Fuzzing ``dockyard serve`` (issue 7, "Bad input"): thousands of generated requests to a real
daemon on a throwaway root, drawn with hypothesis from a trimmed description of docker's API
(the paths, methods and query parameters of the Docker Engine API's swagger that a client can
reach without leaving this machine) — odd query values, huge and negative numbers, malformed and
mistyped JSON bodies, unknown and strange ids, bad paths and methods — plus raw malformed HTTP
(bad request lines, headers, lengths and chunked framing).

After every request: no 5xx (a 501 only for what says it is not implemented), every error is
docker's ``{"message": "..."}``, the daemon is alive, and a request that failed changed nothing
the daemon stores (testbed/apifuzz.py's fingerprint; the list endpoints too, every few hundred).

Requests in the normal suite: ``ROUTE_EXAMPLES`` + ``CREATE_EXAMPLES`` + ``RAW_EXAMPLES``
(about 3,000, under 3 minutes here); ``DOCKYARD_API_FUZZ=N`` multiplies them by N, and
``HYPOTHESIS_PROFILE=explore`` draws fresh examples instead of the suite's fixed ones.
"""

from __future__ import annotations

import json
import os
import socket
import string
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from testbed.apidaemon import Daemon
from testbed.apifuzz import World
from testbed.rawhttp import ConnectionClosed, RawClient, Response, build_request

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCALE = float(os.environ.get("DOCKYARD_API_FUZZ") or 1)
ROUTE_EXAMPLES = max(1, int(1800 * SCALE))
CREATE_EXAMPLES = max(1, int(700 * SCALE))
RAW_EXAMPLES = max(1, int(500 * SCALE))
API_LISTS_EVERY = 250
# a developer's mode: record what fails instead of stopping at it, and print it all at the end
SOFT = bool(os.environ.get("DOCKYARD_API_FUZZ_SOFT"))

# --- the trimmed description of docker's API --------------------------------------------------
# (method, path, {query parameter: kind}, body kind); path parameters are {id} (a container),
# {exec}, {name} (an image), {net}, {vol}. Left out: what reaches outside this machine (image
# search, push to a registry, auth, plugin pull, distribution), prunes (they would take the
# world's objects), and endpoints that block by design (follow, wait, attach, exec start, events
# without an end) except with targets that fail before they block.

BOOL, INT, STR, FILTERS, SIGNAL, PS_ARGS = "bool", "int", "str", "filters", "signal", "ps_args"
Endpoint = tuple[str, str, dict[str, str], str]

ENDPOINTS: list[Endpoint] = [
    ("GET", "/_ping", {}, ""),
    ("HEAD", "/_ping", {}, ""),
    ("GET", "/version", {}, ""),
    ("GET", "/info", {}, ""),
    ("GET", "/system/df", {"type": STR, "verbose": BOOL}, ""),
    ("GET", "/events", {"since": INT, "until": "past", "filters": FILTERS}, ""),
    ("GET", "/containers/json", {"all": BOOL, "limit": INT, "size": BOOL,
                                 "filters": FILTERS}, ""),
    ("POST", "/containers/create", {"name": STR, "platform": STR}, "json"),
    ("GET", "/containers/{id}/json", {"size": BOOL}, ""),
    ("GET", "/containers/{id}/top", {"ps_args": PS_ARGS}, ""),
    ("GET", "/containers/{id}/logs", {"follow": "false", "stdout": BOOL, "stderr": BOOL,
                                      "since": INT, "until": INT, "timestamps": BOOL,
                                      "tail": INT}, ""),
    ("GET", "/containers/{id}/changes", {}, ""),
    ("GET", "/containers/{id}/stats", {"stream": "false", "one-shot": BOOL}, ""),
    ("POST", "/containers/{id}/resize", {"h": INT, "w": INT}, ""),
    ("POST", "/containers/{id}/start", {"detachKeys": STR}, ""),
    ("POST", "/containers/{id}/stop", {"signal": SIGNAL, "t": "short"}, ""),
    ("POST", "/containers/{id}/restart", {"signal": SIGNAL, "t": "short"}, ""),
    ("POST", "/containers/{id}/kill", {"signal": SIGNAL}, ""),
    ("POST", "/containers/{id}/update", {}, "json"),
    ("POST", "/containers/{id}/rename", {"name": STR}, ""),
    ("POST", "/containers/{id}/pause", {}, ""),
    ("POST", "/containers/{id}/unpause", {}, ""),
    ("POST", "/containers/{id}/exec", {}, "exec"),
    ("DELETE", "/containers/{id}", {"v": BOOL, "force": BOOL, "link": BOOL}, ""),
    ("HEAD", "/containers/{id}/archive", {"path": STR}, ""),
    ("GET", "/containers/{id}/archive", {"path": STR}, ""),
    ("PUT", "/containers/{id}/archive", {"path": STR, "noOverwriteDirNonDir": BOOL}, "bytes"),
    ("POST", "/containers/{unknown}/wait", {"condition": STR}, ""),
    ("POST", "/containers/{unknown}/attach", {"stream": BOOL, "logs": BOOL, "stdin": BOOL,
                                              "stdout": BOOL, "stderr": BOOL}, ""),
    ("POST", "/containers/{id}/attach", {"stream": "false", "logs": "false"}, ""),
    ("POST", "/exec/{unknown}/start", {}, "json"),
    ("POST", "/exec/{exec}/resize", {"h": INT, "w": INT}, ""),
    ("GET", "/exec/{exec}/json", {}, ""),
    ("GET", "/images/json", {"all": BOOL, "filters": FILTERS, "digests": BOOL}, ""),
    ("POST", "/images/create", {"fromImage": "badref", "tag": STR, "fromSrc": STR,
                                "platform": STR}, ""),
    ("GET", "/images/{name}/json", {}, ""),
    ("GET", "/images/{name}/history", {}, ""),
    ("POST", "/images/{name}/tag", {"repo": STR, "tag": STR}, ""),
    ("DELETE", "/images/{image_victim}", {"force": BOOL, "noprune": BOOL}, ""),
    ("GET", "/images/{name}/get", {}, ""),
    ("POST", "/images/{unknown}/push", {"tag": STR}, ""),
    ("POST", "/images/load", {"quiet": BOOL}, "bytes"),
    ("POST", "/commit", {"container": "unknown", "repo": STR, "tag": STR}, "json"),
    ("POST", "/build", {"t": STR, "q": BOOL, "memory": INT}, "bytes"),
    ("GET", "/networks", {"filters": FILTERS}, ""),
    ("GET", "/networks/{net}", {"verbose": BOOL, "scope": STR}, ""),
    ("POST", "/networks/create", {}, "network"),
    ("DELETE", "/networks/{unknown}", {}, ""),
    ("POST", "/networks/{net}/connect", {}, "connect"),
    ("POST", "/networks/{net}/disconnect", {}, "connect"),
    ("GET", "/volumes", {"filters": FILTERS}, ""),
    ("POST", "/volumes/create", {}, "volume"),
    ("GET", "/volumes/{vol}", {}, ""),
    ("DELETE", "/volumes/{unknown}", {"force": BOOL}, ""),
    ("GET", "/swarm", {}, ""),
    ("GET", "/plugins", {}, ""),
]

# --- values ------------------------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
                | st.floats(allow_nan=True) | st.text(max_size=12))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=6)
odd_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "..", "../..", "/", "%", "%zz", "%00", "\x00", "\ufffd", "-1",
                     "a" * 300, "null", "[]", "{}", "true", "sha256:", "sha256:zz"]),
)
numbers = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["", "-1", "0", "1", "1e3", "0x10", " 5", "NaN", "inf", "1.5", "+3", "٣",
                     "99999999999999999999999999", "-99999999999999999999"]),
    st.text(max_size=6),
)
bools = st.one_of(st.sampled_from(["1", "0", "true", "false", "True", "yes", "", "2", "-1"]),
                  st.text(max_size=5))
filters = st.one_of(
    json_values.map(json.dumps),
    st.sampled_from(['{"status":["exited"]}', '{"label":{"a":true}}', '{"name":["fz"]}',
                     '{"dangling":["true"]}', '{"status":"exited"}', '{"id":[1]}',
                     '{"until":["nope"]}', '{', '[]', 'null', '{"status":{"x":"y"}}']),
    st.text(max_size=20),
)
signals = st.one_of(st.sampled_from(["", "KILL", "SIGKILL", "term", "HUP", "USR1", "CONT",
                                     "WINCH", "0", "-1", "15", "65", "999999999999999999999",
                                     "SIGNOPE", "RTMIN+3", "RTMAX-99", "9x"]),
                    st.integers(-(2**40), 2**40).map(str), st.text(max_size=6))
QUERY_VALUES: dict[str, st.SearchStrategy[str]] = {
    BOOL: bools, INT: numbers, STR: odd_text, FILTERS: filters, SIGNAL: signals,
    PS_ARGS: st.sampled_from(["", "-ef", "aux", "-o pid", "--nope", "-o", "x y z"]),
    # the ones bounded so that a request never blocks for long
    "past": st.sampled_from(["1", "0", "-5", "abc", "1.5", "99999999999999999999x"]),
    "false": st.sampled_from(["0", "false"]),
    "short": st.sampled_from(["0", "1", "abc", "", "-x", "1.5", "1e9", "99999999999999999999999"]),
    # references that do not parse, and a registry on loopback that refuses: a pull never
    # leaves this machine
    "badref": st.sampled_from(["", "bad ref", "127.0.0.1:1/nothing", "a@b", "::", "-x",
                               "x/-y", "UPPER", "a@sha256:zz"]),
    "unknown": st.sampled_from(["", "nope", "0" * 64, "fz-none"]),
}
UNKNOWN_IDS = st.one_of(
    st.sampled_from(["nope", "0" * 64, "f" * 64, "fz-none", ".", "..", "%2F", "%00",
                     "x" * 2000, "%ff%fe", "sha256:" + "0" * 64]),
    # never a prefix of an id (a container the fuzzer made is removed at once, but ids of the
    # world's own must not be hit by chance)
    st.text(alphabet=string.ascii_letters + string.digits + "-_.:@%", max_size=40).map(
        lambda t: "zz" + t),
)


@dataclass
class FuzzRequest:
    method: str
    path: str                       # with {placeholders} the world fills in when sent
    query: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raw_query: str = ""             # appended as it is (not percent-encoded)

    def target(self, world: World) -> str:
        names = {"{running}": world.ids["running"], "{created}": world.ids["created"],
                 "{exited}": world.ids["exited"], "{victim}": world.ids["victim"],
                 "{exec}": world.exec_id}
        path = self.path
        for k, v in names.items():
            path = path.replace(k, v)
        q = urllib.parse.urlencode(self.query, quote_via=urllib.parse.quote)
        if self.raw_query:
            q = f"{q}&{self.raw_query}" if q else self.raw_query
        return f"{path}?{q}" if q else path


def _segment(text: str) -> str:
    return urllib.parse.quote(text, safe="")


container_refs = st.one_of(
    st.sampled_from(["{running}", "{created}", "{exited}", "{victim}", "fz-running", "fz-exited"]),
    UNKNOWN_IDS.map(_segment),
)
image_refs = st.one_of(
    st.sampled_from(["busybox", "busybox:latest", "fz-victim", "fz-victim:latest",
                     "docker.io/library/busybox", "nope:nope", "sha256:nope"]),
    UNKNOWN_IDS.map(_segment),
)
PATH_PARAMS: dict[str, st.SearchStrategy[str]] = {
    "{id}": container_refs,
    "{unknown}": UNKNOWN_IDS.map(_segment),
    "{exec}": st.one_of(st.just("{exec}"), UNKNOWN_IDS.map(_segment)),
    "{name}": image_refs,
    "{image_victim}": st.one_of(st.sampled_from(["fz-victim", "fz-victim:latest"]),
                                UNKNOWN_IDS.map(_segment)),
    "{net}": st.one_of(st.sampled_from(["none", "host", "bridge"]),
                       UNKNOWN_IDS.map(_segment)),
    "{vol}": UNKNOWN_IDS.map(_segment),
}
CONNECT_TARGETS = st.sampled_from(["nope", "0" * 64, "", "fz-none"])


def _mutated(base: dict[str, Any], keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """``base`` with some of ``keys`` (dotted: ``HostConfig.Memory``) set to any JSON value, or
    removed."""
    edits = st.lists(st.tuples(st.sampled_from(keys), st.one_of(json_values,
                                                               st.just(_DELETE))),
                     max_size=4)

    def apply(changes: list[tuple[str, Any]]) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(json.dumps(base))
        for dotted, value in changes:
            *parents, last = dotted.split(".")
            node = doc
            for p in parents:
                if not isinstance(node.get(p), dict):
                    node[p] = {}
                node = node[p]
            if value is _DELETE:
                node.pop(last, None)
            else:
                node[last] = value
        return doc

    return edits.map(apply)


_DELETE = object()
CREATE_BASE = {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "none"}}
CREATE_KEYS = [
    "Image", "Cmd", "Entrypoint", "Env", "Labels", "WorkingDir", "User", "Hostname", "Tty",
    "OpenStdin", "AttachStdout", "StopSignal", "StopTimeout", "Healthcheck",
    "Healthcheck.Test", "Healthcheck.Interval", "ExposedPorts", "Volumes", "NetworkingConfig",
    "NetworkingConfig.EndpointsConfig", "HostConfig", "HostConfig.Binds", "HostConfig.Mounts",
    "HostConfig.NetworkMode", "HostConfig.PortBindings", "HostConfig.RestartPolicy",
    "HostConfig.RestartPolicy.Name", "HostConfig.RestartPolicy.MaximumRetryCount",
    "HostConfig.LogConfig", "HostConfig.LogConfig.Type", "HostConfig.LogConfig.Config",
    "HostConfig.Ulimits", "HostConfig.Devices", "HostConfig.Tmpfs", "HostConfig.Memory",
    "HostConfig.MemorySwap", "HostConfig.NanoCpus", "HostConfig.CpuShares",
    "HostConfig.CpusetCpus", "HostConfig.PidsLimit", "HostConfig.ShmSize", "HostConfig.CapAdd",
    "HostConfig.CapDrop", "HostConfig.SecurityOpt", "HostConfig.Privileged",
    "HostConfig.ReadonlyRootfs", "HostConfig.AutoRemove", "HostConfig.Init", "HostConfig.Links",
    "HostConfig.VolumesFrom", "HostConfig.Runtime", "HostConfig.Dns", "HostConfig.ExtraHosts",
]
# well-formed values of the kinds create takes, for mutations that are not just wrong types
CREATE_SHAPED: dict[str, st.SearchStrategy[Any]] = {
    "HostConfig.Ulimits": st.lists(st.fixed_dictionaries(
        {}, optional={"Name": odd_text, "Soft": json_scalars, "Hard": json_scalars}), max_size=2),
    "HostConfig.Devices": st.lists(st.fixed_dictionaries(
        {}, optional={"PathOnHost": odd_text, "PathInContainer": odd_text,
                      "CgroupPermissions": odd_text}), max_size=2),
    "HostConfig.Mounts": st.lists(st.fixed_dictionaries(
        {}, optional={"Type": st.sampled_from(["bind", "volume", "tmpfs", "npipe", "x"]),
                      "Source": odd_text, "Target": odd_text, "ReadOnly": json_scalars,
                      "TmpfsOptions": json_values, "VolumeOptions": json_values,
                      "BindOptions": json_values}), max_size=2),
    "HostConfig.PortBindings": st.dictionaries(
        st.sampled_from(["80", "80/tcp", "x", "70000/udp", "-1", ""]),
        st.one_of(json_values, st.lists(st.fixed_dictionaries(
            {}, optional={"HostIp": json_scalars, "HostPort": json_scalars}), max_size=2)),
        max_size=2),
    "HostConfig.RestartPolicy": st.fixed_dictionaries(
        {}, optional={"Name": st.sampled_from(["", "no", "always", "on-failure",
                                               "unless-stopped", "bogus"]),
                      "MaximumRetryCount": json_scalars}),
    "HostConfig.LogConfig": st.fixed_dictionaries(
        {}, optional={"Type": st.sampled_from(["json-file", "none", "local", "syslog", "x"]),
                      "Config": st.dictionaries(st.sampled_from(["max-size", "max-file", "x"]),
                                                json_scalars, max_size=2)}),
    "HostConfig.Binds": st.lists(st.sampled_from(
        ["/tmp:/x", "vol:/data", ":", "a:b:c:d", "/nonexistent-fz:/x", "relative:/x:ro",
         "fzvol:/data:rw,z"]), max_size=2),
    "HostConfig.Memory": st.integers(-(2**70), 2**70),
    "HostConfig.Tmpfs": st.dictionaries(odd_text, odd_text, max_size=2),
    "Healthcheck": st.fixed_dictionaries({}, optional={"Test": json_values,
                                                      "Interval": json_scalars,
                                                      "Retries": json_scalars}),
    "Env": st.lists(odd_text, max_size=3),
    "Labels": st.dictionaries(odd_text, json_scalars, max_size=2),
    "HostConfig.NetworkMode": st.sampled_from(["none", "host", "bridge", "default",
                                               "container:nope", "nope", ""]),
    "StopSignal": signals,
}


@st.composite
def create_bodies(draw: st.DrawFn) -> dict[str, Any]:
    doc = draw(_mutated(CREATE_BASE, CREATE_KEYS))
    for key in draw(st.lists(st.sampled_from(sorted(CREATE_SHAPED)), max_size=2)):
        *parents, last = key.split(".")
        node = doc
        for p in parents:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[last] = draw(CREATE_SHAPED[key])
    return doc


def _json_body(kind: str) -> st.SearchStrategy[Any]:
    if kind == "exec":
        return _mutated({"Cmd": ["true"], "AttachStdout": True},
                        ["Cmd", "Env", "User", "WorkingDir", "Tty", "Privileged",
                         "AttachStdin", "DetachKeys"])
    if kind == "network":       # never valid: a network made here would be the world's to remove
        return _mutated({"Name": "", "Driver": "bridge"},
                        ["Driver", "IPAM", "IPAM.Config", "Options", "Labels", "Internal",
                         "EnableIPv6", "CheckDuplicate"]).map(
            lambda d: {**d, "Name": d.get("Name") or ""})
    if kind == "volume":
        return _mutated({"Name": "fz/bad name", "Driver": "local"},
                        ["Driver", "DriverOpts", "Labels"]).map(
            lambda d: {**d, "Name": "fz/bad name"})
    if kind == "connect":
        return st.fixed_dictionaries({"Container": CONNECT_TARGETS},
                                     optional={"EndpointConfig": json_values,
                                               "Force": json_scalars})
    return json_values


def _body(kind: str) -> st.SearchStrategy[bytes | None]:
    if not kind:
        return st.one_of(st.none(), st.sampled_from([b"", b"{}", b"junk"]))
    if kind == "bytes":
        return st.one_of(st.binary(max_size=600), st.sampled_from([b"", b"\x1f\x8b\x08junk",
                                                                    b"ustar" * 200]))
    return st.one_of(
        _json_body(kind).map(lambda d: json.dumps(d).encode()),
        st.sampled_from([b"", b"{", b"[]", b"null", b"1", b'"x"', b"\xff\xfe", b"{}" * 3,
                         b'{"a":' * 50, b"[" * 5000]),
        st.binary(max_size=200),
    )


@st.composite
def route_requests(draw: st.DrawFn) -> FuzzRequest:
    method, path, params, body_kind = draw(st.sampled_from(ENDPOINTS))
    for name, strategy in PATH_PARAMS.items():
        while name in path:
            path = path.replace(name, draw(strategy), 1)
    query: list[tuple[str, str]] = []
    for name, kind in params.items():
        forced = kind not in (BOOL, INT, STR, FILTERS, SIGNAL, PS_ARGS)
        if forced or draw(st.booleans()):
            query.append((name, draw(QUERY_VALUES[kind])))
    if draw(st.integers(0, 9)) == 0:         # a parameter no endpoint has
        query.append((draw(st.text(max_size=8)), draw(odd_text)))
    raw = draw(st.sampled_from(["", "", "", "", "%zz", "&&=&", "a=%ff", "=x", "x=1;y=2",
                                "all=1&all=0", "%", "limit=1&limit=abc"]))
    headers: dict[str, str] = {}
    body = draw(_body(body_kind))
    if body is not None:
        headers["Content-Type"] = draw(st.sampled_from(
            ["application/json", "application/json", "text/plain", "application/x-tar",
             "application/json; charset=utf-8", "", "multipart/form-data; boundary=x"]))
    version = draw(st.sampled_from(["", "", "", "/v1.44", "/v1.24", "/v1.41", "/v1.23",
                                    "/v1.99", "/v0.1", "/v1.x", "/v99999999999999999999.1"]))
    other = draw(st.sampled_from([method] * 12 + ["PATCH", "OPTIONS", "TRACE", "PUT", "FOO"]))
    return FuzzRequest(other, version + path, query, body, headers, raw)


def _check(req: FuzzRequest, resp: Response) -> None:
    what = f"{req.method} {req.path} {req.query} {req.raw_query} {req.body!r:.200} -> " \
           f"{resp.status} {resp.body!r:.400}"
    # 501: not implemented; 503: a registry this machine cannot reach (a pull's real fault)
    assert resp.status < 500 or resp.status == 501 or (
        resp.status == 503 and "/images/" in req.path), what
    if resp.status >= 400 and req.method != "HEAD":
        assert resp.header("content-type").startswith("application/json"), what
        doc = json.loads(resp.body)
        assert isinstance(doc, dict) and isinstance(doc.get("message"), str) \
            and doc["message"], what
        if resp.status == 501:
            assert "not implemented" in doc["message"].lower() \
                or "not supported" in doc["message"].lower(), what


class Fuzzer:
    """Sends requests into the world and checks each (see the module's docstring)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.before = world.fingerprint()
        self.lists = world.api_lists()
        self.statuses: dict[int, int] = {}
        self.failures: dict[str, str] = {}
        self.slowest: list[tuple[float, str]] = []
        self.recent: list[str] = []         # the last requests, for a failure's report

    def send(self, req: FuzzRequest) -> None:
        w = self.world
        target = req.target(w)
        data = build_request(req.method, target, body=req.body, headers=req.headers)
        started = time.monotonic()
        try:
            resp = w.client.request(data, head=req.method == "HEAD")
        except ConnectionClosed:
            w.alive()
            raise
        except TimeoutError:
            w.client.close()
            w.alive()
            raise AssertionError(f"no answer in {w.client.timeout:.0f} s: {req}") from None
        took = time.monotonic() - started
        self.recent = [*self.recent[-11:], f"{req.method} {target} -> {resp.status}"[:300]]
        self.slowest = sorted([*self.slowest, (took, f"{req.method} {target}"[:200])])[-5:]
        w.sent += 1
        self.statuses[resp.status] = self.statuses.get(resp.status, 0) + 1
        try:
            _check(req, resp)
            self.after(f"{req.method} {target} {req.body!r:.200}", resp)
        except AssertionError as e:
            if not SOFT:
                raise
            self.soft_failure(e)

    def soft_failure(self, e: AssertionError) -> None:
        text = str(e)
        key = text[:120]
        if key not in self.failures:
            self.failures[key] = text[:3000] + "\n  after: " + "\n  after: ".join(self.recent)
        try:
            self.world.repair()
        except AssertionError as again:
            self.failures.setdefault(str(again)[:120], "repair: " + str(again)[:1500] +
                                     "\n  after: " + "\n  after: ".join(self.recent))
        self.before = self.world.fingerprint()
        self.lists = self.world.api_lists()

    def after(self, what: str, resp: Response | None) -> None:
        w = self.world
        w.alive()
        if resp is not None and resp.status >= 400:
            now = w.fingerprint()
            assert now == self.before, \
                f"{what[:300]} -> {resp.status} {resp.body[:200]!r} changed the store: " \
                f"{_diff(self.before, now)}"
            if w.sent % API_LISTS_EVERY == 0:
                assert w.api_lists() == self.lists, what
        else:
            if resp is not None and resp.status == 201 and what.startswith("POST ") \
                    and "/containers/create" in what:
                made = json.loads(resp.body)["Id"]      # a container made: it goes again
                w.ok("DELETE", f"/containers/{made}?force=1")
            w.repair()
            self.before = w.fingerprint()
            self.lists = w.api_lists()


def _diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    out = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            gone = sorted(set(a.get(k) or []) - set(b.get(k) or []))
            new = sorted(set(b.get(k) or []) - set(a.get(k) or []))
            out.append(f"{k}: was {gone} now {new}")
    return "; ".join(out)


@pytest.fixture(scope="module")
def fuzzer(api_daemon: Daemon) -> Iterator[Fuzzer]:
    world = World(api_daemon)
    world.setup()
    f = Fuzzer(world)
    yield f
    world.client.close()
    print(f"\napi fuzz: {world.sent} requests, statuses {sorted(f.statuses.items())}")
    for took, what in reversed(f.slowest):
        print(f"slow: {took:.2f} s {what}")
    for failure in f.failures.values():
        print("FAILED:", failure)
    keep = os.environ.get("DOCKYARD_API_FUZZ_LOG")
    if keep:
        Path(keep).write_text(api_daemon.log())


# no shrinking: each step of it is requests to a real daemon (minutes); the failing example is
# reported as drawn
SETTINGS: dict[str, Any] = {"deadline": None, "database": None,
                            "phases": [Phase.explicit, Phase.reuse, Phase.generate],
            "suppress_health_check": list(HealthCheck)}


@settings(max_examples=ROUTE_EXAMPLES, **SETTINGS)
@given(req=route_requests())
def test_fuzz_routes(fuzzer: Fuzzer, req: FuzzRequest) -> None:
    fuzzer.send(req)


@settings(max_examples=CREATE_EXAMPLES, **SETTINGS)
@given(body=create_bodies(), name=st.one_of(st.just(""), odd_text),
       raw=st.sampled_from([False, False, False, True]))
def test_fuzz_container_create(fuzzer: Fuzzer, body: dict[str, Any], name: str,
                               raw: bool) -> None:
    data = json.dumps(body).encode()
    if raw:         # the same body, chunked
        data = b"".join(f"{len(data[i:i + 7]):x}\r\n".encode() + data[i:i + 7] + b"\r\n"
                        for i in range(0, len(data), 7)) + b"0\r\n\r\n"
    headers = {"Content-Type": "application/json"}
    if raw:
        headers["Transfer-Encoding"] = "chunked"
    fuzzer.send(FuzzRequest("POST", "/containers/create", [("name", name)] if name else [],
                            data, headers))


# --- raw HTTP ----------------------------------------------------------------------------------

GOOD_LINE = "GET /containers/json HTTP/1.1"
raw_lines = st.one_of(
    st.sampled_from([
        "GET /_ping HTTP/1.1", "GET /_ping HTTP/1.0", "GET /_ping", "GET  /_ping HTTP/1.1",
        "GET /_ping HTTP/2.0", "GET /_ping HTTP/9", "GET /_ping FOO/1.1", "/_ping HTTP/1.1",
        "GET", "", " ", "GET /" + "a" * 70000 + " HTTP/1.1", "G\x00T /_ping HTTP/1.1",
        "GET _ping HTTP/1.1", "GET http://x/_ping HTTP/1.1", "GET //_ping HTTP/1.1",
        "GET /../../_ping HTTP/1.1", "GET /%2e%2e/_ping HTTP/1.1", "GET /_ping?%zz HTTP/1.1",
        "GET /containers/%ff/json HTTP/1.1", "GET * HTTP/1.1", "CONNECT x:1 HTTP/1.1",
        "get /_ping HTTP/1.1", "GET /_ping HTTP/1.1 extra", "GET /\ufffd HTTP/1.1",
    ]),
    st.text(max_size=40).map(lambda t: f"GET /{t} HTTP/1.1"),
    st.text(max_size=40),
)
raw_headers = st.lists(st.one_of(
    st.sampled_from([
        "Content-Length: -5", "Content-Length: abc", "Content-Length: 1e3",
        "Content-Length: 99999999999999999999999", "Content-Length: 0", "Content-Length: 3",
        "Transfer-Encoding: chunked", "Transfer-Encoding: gzip, chunked",
        "Transfer-Encoding: identity", "Content-Type: application/json",
        "Connection: close", "Connection: Upgrade", "Upgrade: tcp", "Expect: 100-continue",
        "Host:", "NoColonHere", ": empty name", "X-" + "a" * 70000 + ": b", " folded: line",
        "Content-Length: 2\r\nContent-Length: 5",
    ]),
    st.text(alphabet=string.printable.replace("\r", "").replace("\n", ""), max_size=30),
), max_size=4)
raw_bodies = st.one_of(
    st.sampled_from([b"", b"{}", b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}\r\n0\r\n\r\n",
                     b"ffffffffffffffffffff\r\n", b"-1\r\n", b"2\r\n{}", b"0\r\n",
                     b"2;ext=1\r\n{}\r\n0\r\ntrailer: x\r\n\r\n"]),
    st.binary(max_size=100),
)


@settings(max_examples=RAW_EXAMPLES, **SETTINGS)
@given(line=raw_lines, headers=raw_headers, body=raw_bodies,
       path=st.sampled_from(["/containers/create", "/containers/json", "/_ping",
                             "/containers/{running}/kill?signal=CONT"]))
def test_fuzz_raw_http(fuzzer: Fuzzer, line: str, headers: list[str], body: bytes,
                       path: str) -> None:
    """Malformed HTTP on a connection of its own: an answer that is a JSON error (or a
    response at all) or a closed connection, within the client's timeout; never a dead
    daemon."""
    w = fuzzer.world
    if line.startswith("GET /containers/json") or not line:
        line = line or GOOD_LINE
    if "{running}" in path:
        path = path.replace("{running}", w.ids["running"])
    text = line.replace("/_ping", path, 1) if "/_ping" in line else line
    data = ("\r\n".join([text, "Host: docker", *headers]) + "\r\n\r\n").encode(
        "utf-8", "surrogateescape") + body
    with RawClient(w.daemon.socket, timeout=10) as client:
        try:
            client.send(data)
            if client.sock is not None:     # no more: a short body ends here, not in a timeout
                client.sock.shutdown(socket.SHUT_WR)
            resp: Response | None = client.read_response()
        except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
            resp = None
        except TimeoutError:
            # the server waits for a body the request announced and never sent: as it should
            resp = None
    w.sent += 1
    try:
        if resp is not None:
            fuzzer.statuses[resp.status] = fuzzer.statuses.get(resp.status, 0) + 1
            _check_raw(data, resp)
        fuzzer.after(repr(data[:200]), resp)
    except AssertionError as e:
        if not SOFT:
            raise
        fuzzer.soft_failure(e)


def _check_raw(data: bytes, resp: Response) -> None:
    what = (data[:300], resp.status, resp.body[:300])
    assert resp.status < 500 or resp.status in (501, 505), what
    if resp.status >= 400:
        assert resp.header("content-type").startswith("application/json"), what
        doc = json.loads(resp.body)
        assert isinstance(doc.get("message"), str), what


def test_start_right_after_a_kill(fuzzer: Fuzzer) -> None:
    """A start that comes while the supervisor still tears the last run down (it unmounts the
    rootfs after recording the exit) waits for it, rather than running in an unmounted rootfs
    (found by the fuzzer: a 500, "sh" not found)."""
    w = fuzzer.world
    cid = w.ids["running"]
    for _ in range(10):
        w.ok("POST", f"/containers/{cid}/kill?signal=KILL")
        for _ in range(200):
            resp = w.call("POST", f"/containers/{cid}/start")
            # 304 (the API) or 409 (the engine): its exit not recorded yet
            assert resp.status in (204, 304, 409), resp.body
            if resp.status == 204:
                break
            time.sleep(0.01)
        else:
            raise AssertionError("the container never started again")
    w.repair()


def test_stop_and_remove_of_a_paused_container(fuzzer: Fuzzer) -> None:
    """A paused container's frozen cgroup holds even SIGKILL: restart and rm -f thaw it (found
    by the fuzzer: a restart hung 30 s, then a 409)."""
    w = fuzzer.world
    cid = w.ids["running"]
    w.ok("POST", f"/containers/{cid}/pause")
    started = time.monotonic()
    w.ok("POST", f"/containers/{cid}/restart?t=0")
    state = w.state(cid)
    assert state is not None and state["Running"] and not state["Paused"], state
    w.ok("POST", f"/containers/{cid}/pause")
    w.ok("DELETE", f"/containers/{cid}?force=1")
    assert w.state(cid) is None
    assert time.monotonic() - started < 20      # not 30 s of waiting for a frozen SIGKILL
    w.repair()


def test_fuzz_left_the_world_whole(fuzzer: Fuzzer) -> None:
    """After the fuzzing: the daemon answers, its lists read, and what the world made is
    still there."""
    w = fuzzer.world
    w.alive()
    assert w.call("GET", "/_ping").status == 200
    w.repair()
    lists = w.api_lists()
    ids = {c[0] for c in lists["containers"]}
    assert w.ids["running"] in ids and w.ids["created"] in ids
