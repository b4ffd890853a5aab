"""The API's pure parts: create JSON -> CreateRequest, stream framing, filters, routing and
the error table."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.api import errors, streams
from dockyard.api.handlers import ROUTES
from dockyard.api.http import Request, find_route, route_table
from dockyard.api.translate import create_request
from dockyard.errors import (
    AlreadyExists,
    DockyardError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)


def _req(query: dict[str, list[str]], body: bytes = b"") -> Request:
    return Request("GET", "/x", query, headers={}, body=body, version="1.44")


def test_create_request_from_docker_json() -> None:
    r = create_request({
        "Image": "busybox", "Cmd": ["sh", "-c", "echo hi"], "Entrypoint": None,
        "Env": ["A=1", "B"], "Tty": True, "OpenStdin": True, "AttachStdout": True,
        "Labels": {"k": "v"}, "StopSignal": "SIGINT", "StopTimeout": 3,
        "HostConfig": {"AutoRemove": True, "NetworkMode": "none", "Memory": 1 << 26,
                       "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2},
                       "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m"}},
                       "PortBindings": {"80": [{"HostPort": "8080"}]}, "CapAdd": ["NET_ADMIN"],
                       "Tmpfs": {"/run": "size=1m"}, "Init": True},
    }, "named")
    assert r.image == "busybox" and r.name == "named"
    assert r.opts.command == ("sh", "-c", "echo hi")
    assert r.opts.entrypoint is None
    assert r.opts.env == ("A=1", "B")      # a bare key is not taken from the daemon's env
    assert (r.opts.tty, r.opts.stdin_open, r.opts.network) == (True, True, "none")
    assert r.opts.memory == 1 << 26 and r.opts.cap_add == ("NET_ADMIN",)
    assert r.opts.tmpfs == (("/run", "size=1m"),) and r.opts.init
    assert r.restart == "on-failure:2" and r.auto_remove and r.attach_output
    assert r.log_config == {"Type": "json-file", "Config": {"max-size": "1000000"}}
    assert r.port_bindings == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
    assert r.stop_timeout == 3 and r.opts.stop_signal == "SIGINT"


@pytest.mark.parametrize("body", [
    {}, {"Image": ""}, {"Image": "busybox", "Cmd": "x", "Env": [1]},
    {"Image": "busybox", "HostConfig": {"Links": ["a:b"]}},
    {"Image": "busybox", "HostConfig": {"Links": ["a:b"], "NetworkMode": "bridge"}},
    {"Image": "busybox", "HostConfig": {"Mounts": "type=bind"}},
    {"Image": "busybox", "HostConfig": {"Binds": "/a:/b", "VolumesFrom": [3]}},
    {"Image": "busybox", "HostConfig": {"Memory": "lots"}},
    {"Image": "busybox", "HostConfig": {"LogConfig": {"Type": "nonsense"}}},
])
def test_create_request_refuses_what_it_cannot_do(body: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        create_request(body, "")


@given(st.integers(min_value=1, max_value=2), st.binary(max_size=300))
def test_frame_is_docker_stdcopy(stream: int, data: bytes) -> None:
    framed = streams.frame(stream, data)
    kind, size = struct.unpack(">BxxxL", framed[:8])
    assert (kind, size, framed[8:]) == (stream, len(data), data)


def test_filters_both_shapes_and_flags() -> None:
    assert _req({"filters": [json.dumps({"status": ["running"]})]}).filters() == \
        {"status": ["running"]}
    assert _req({"filters": [json.dumps({"label": {"a=b": True, "c": False}})]}).filters() == \
        {"label": ["a=b"]}
    with pytest.raises(InvalidArgument):
        _req({"filters": ["{nope"]}).filters()
    r = _req({"all": ["1"], "force": ["false"], "t": ["7"]})
    assert r.flag("all") and not r.flag("force") and r.int_arg("t") == 7
    with pytest.raises(InvalidArgument):
        _req({}, b"[1]").json()
    with pytest.raises(InvalidArgument):
        _req({}, b"{bad").json()


def test_routes() -> None:
    table = route_table(ROUTES)
    fn, groups = find_route(table, "GET", "/images/127.0.0.1:5000/a/b:v1/json")
    assert fn.__name__ == "image_inspect" and groups == {"name": "127.0.0.1:5000/a/b:v1"}
    fn, groups = find_route(table, "DELETE", "/containers/abc")
    assert fn.__name__ == "container_delete" and groups == {"id": "abc"}
    assert find_route(table, "HEAD", "/_ping")[0].__name__ == "ping"
    assert find_route(table, "GET", "/containers/json")[0].__name__ == "containers_list"
    with pytest.raises(NotFound):
        find_route(table, "GET", "/nowhere")
    with pytest.raises(NotFound):
        find_route(table, "PUT", "/containers/abc/start")


def test_error_table() -> None:
    assert errors.status_of(NotFound("x")) == 404
    assert errors.status_of(InvalidArgument("x")) == 400
    assert errors.status_of(AlreadyExists("x")) == 409
    assert errors.status_of(FailedPrecondition("x")) == 409
    assert errors.status_of(errors.NotModified("x")) == 304
    assert errors.status_of(errors.NotImplementedByUs("x")) == 501
    assert errors.status_of(DockyardError("x")) == 500


def test_mounts_become_the_mount_flag() -> None:
    from dockyard.api.translate import create_request, mount_flag

    assert mount_flag({"Type": "bind", "Source": "/s", "Target": "/t", "ReadOnly": True,
                       "BindOptions": {"Propagation": "rshared"}}) \
        == "type=bind,source=/s,target=/t,readonly,bind-propagation=rshared"
    assert mount_flag({"Target": "/t", "VolumeOptions": {"NoCopy": True}}) \
        == "type=volume,target=/t,volume-nocopy"
    assert mount_flag({"Type": "tmpfs", "Target": "/t",
                       "TmpfsOptions": {"SizeBytes": 1024, "Mode": 0o1777}}) \
        == "type=tmpfs,target=/t,tmpfs-size=1024,tmpfs-mode=1777"
    r = create_request({"Image": "busybox", "HostConfig": {
        "Binds": ["v:/data:ro"], "VolumesFrom": ["other"],
        "Mounts": [{"Type": "volume", "Source": "w", "Target": "/w"}]}}, "")
    assert (r.volumes, r.volumes_from, r.mounts) == (
        ("v:/data:ro",), ("other",), ("type=volume,source=w,target=/w",))
