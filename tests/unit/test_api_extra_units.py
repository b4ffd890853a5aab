"""The pure parts of the archive, stats, update, commit, registry-auth and WebSocket endpoints."""

from __future__ import annotations

import base64
import io
import json
import stat
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.api import websocket
from dockyard.api.archive import go_file_mode
from dockyard.api.handlers import ROUTES, not_implemented
from dockyard.api.http import Request, find_route, route_table
from dockyard.api.images_extra import _config_changes
from dockyard.api.registryauth import header_credentials
from dockyard.api.resources import update_args
from dockyard.api.stats import frame, networks, zero_frame
from dockyard.engine.containers import Container
from dockyard.engine.registries import GivenCredentials, registry_host
from dockyard.errors import InvalidArgument
from dockyard.image.archive import apply_changes
from dockyard.image.auth import Credentials


def _req(headers: dict[str, str]) -> Request:
    return Request("POST", "/x", {}, headers=headers, body=b"", version="1.44")


def test_go_file_mode() -> None:
    assert go_file_mode(stat.S_IFDIR | 0o755) == (1 << 31) | 0o755
    assert go_file_mode(stat.S_IFLNK | 0o777) == (1 << 27) | 0o777
    assert go_file_mode(stat.S_IFREG | 0o4755) == (1 << 23) | 0o755
    assert go_file_mode(stat.S_IFCHR | 0o600) == (1 << 26) | (1 << 21) | 0o600
    assert go_file_mode(stat.S_IFREG | 0o1644) == (1 << 20) | 0o644


def test_routes_reach_the_new_endpoints() -> None:
    table = route_table(ROUTES)
    for method, path in (("HEAD", "/containers/abc/archive"), ("PUT", "/containers/abc/archive"),
                         ("GET", "/containers/abc/stats"), ("GET", "/containers/abc/changes"),
                         ("GET", "/containers/abc/export"), ("POST", "/containers/abc/update"),
                         ("GET", "/containers/abc/attach/ws"), ("POST", "/commit"),
                         ("POST", "/auth"), ("POST", "/images/load"), ("GET", "/images/get"),
                         ("GET", "/images/127.0.0.1:5000/a/b:v1/get"),
                         ("GET", "/images/busybox/history"),
                         ("POST", "/images/127.0.0.1:5000/a/b/push")):
        fn, _ = find_route(table, method, path)
        assert fn is not not_implemented, (method, path)
    _, groups = find_route(table, "POST", "/images/127.0.0.1:5000/a/b/push")
    assert groups == {"name": "127.0.0.1:5000/a/b"}


def test_update_args() -> None:
    body = {"Memory": 128 << 20, "MemorySwap": 0, "NanoCpus": 0, "CpuShares": 0,
            "CpusetCpus": "", "PidsLimit": None, "CpuPeriod": 0, "BlkioWeight": 0,
            "Devices": None, "RestartPolicy": {"Name": "", "MaximumRetryCount": 0}}
    assert update_args(body) == {"memory": 128 << 20, "memory_swap": 0, "nano_cpus": 0,
                                 "cpu_shares": 0, "cpuset_cpus": "", "pids_limit": None}
    assert update_args({"PidsLimit": 0})["pids_limit"] == -1
    assert update_args({"PidsLimit": 50})["pids_limit"] == 50
    for bad in ({"CpuQuota": 5000}, {"RestartPolicy": {"Name": "always"}},
                {"Memory": "1g"}, {"CpusetCpus": 3}):
        with pytest.raises(InvalidArgument):
            update_args(bad)


def test_update_limits_are_checked() -> None:
    from dockyard.engine.resources import Limits, check

    check(Limits(memory=64 << 20, memory_swap=-1, nano_cpus=1_500_000_000, cpuset_cpus="0-1,3"),
          cpus=4)
    for bad in (Limits(memory=1024), Limits(nano_cpus=-1), Limits(memory_swap=-2),
                Limits(memory=64 << 20, memory_swap=32 << 20), Limits(cpuset_cpus="abc"),
                Limits(cpuset_cpus="3-1"), Limits(cpuset_cpus="1,"), Limits(nano_cpus=5 * 10**9),
                Limits(nano_cpus=1000)):
        with pytest.raises(InvalidArgument):
            check(bad, cpus=4)


def test_commit_config_becomes_changes() -> None:
    changes = _config_changes({"Cmd": ["echo", "a b"], "Env": ["A=1 2", "B=x"],
                               "Labels": {"k": "v w"}, "WorkingDir": "/w", "User": "nobody",
                               "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}},
                               "Hostname": "", "Tty": False})
    cfg = apply_changes({}, changes)
    assert cfg["Cmd"] == ["echo", "a b"]
    assert cfg["Env"] == ["A=1 2", "B=x"]
    assert cfg["Labels"] == {"k": "v w"}
    assert (cfg["WorkingDir"], cfg["User"]) == ("/w", "nobody")
    assert cfg["ExposedPorts"] == {"80/tcp": {}} and cfg["Volumes"] == {"/data": {}}
    assert _config_changes({}) == []
    with pytest.raises(InvalidArgument, match="Hostname"):
        _config_changes({"Hostname": "h"})
    assert _config_changes({"Cmd": "echo hi"}) == ['CMD ["/bin/sh", "-c", "echo hi"]']
    for bad in ({"Labels": "/"}, {"Env": 5}, {"Cmd": [1]}, {"User": 0.5}, {"Volumes": ["/v"]}):
        with pytest.raises(InvalidArgument):
            _config_changes(bad)


def _auth_header(doc: object, *, pad: bool = True) -> dict[str, str]:
    raw = base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()
    return {"X-Registry-Auth": raw if pad else raw.rstrip("=")}


def test_registry_auth_header() -> None:
    assert header_credentials(_req({})) is None
    assert header_credentials(_req(_auth_header({}))) is None
    creds = header_credentials(_req(_auth_header(
        {"username": "u", "password": "p?>>", "serveraddress": "h"}, pad=False)))
    assert creds == Credentials("u", "p?>>")
    auth = base64.b64encode(b"v:w").decode()
    assert header_credentials(_req(_auth_header({"auth": auth}))) == Credentials("v", "w")
    token = header_credentials(_req(_auth_header({"identitytoken": "tok"})))
    assert token is not None and token.identity_token == "tok"
    for bad in ({"X-Registry-Auth": "%%%"}, _auth_header([1, 2])):
        with pytest.raises(InvalidArgument):
            header_credentials(_req(bad))
    assert "p?>>" not in repr(creds)


def test_given_credentials_answer_only_their_host() -> None:
    creds = Credentials("u", "p")
    given_ = GivenCredentials(creds, "127.0.0.1:5000")
    assert given_.lookup("127.0.0.1:5000") == creds
    assert given_.lookup("other:5000") is None
    assert GivenCredentials(creds).lookup("anywhere") == creds
    assert registry_host("https://index.docker.io/v1/") == "docker.io"
    assert registry_host("http://127.0.0.1:5000/v2/") == "127.0.0.1:5000"
    assert registry_host("[::1]:5000") == "[::1]:5000"
    assert registry_host("localhost") == "localhost"
    for bad in ("", "a\x00b", "host:port", "sp ace", "-x.org"):
        with pytest.raises(InvalidArgument):
            registry_host(bad)


def _container() -> Container:
    return Container(id="c" * 64, name="n", image_id="sha256:x", image_name="busybox",
                     created=0.0, config={}, state="running", pid=1)


def test_stats_frame_shape() -> None:
    data = {"cpu": {"usage": {"total": 500, "percpu": [200, 300], "kernel": 100, "user": 400},
                    "throttling": {"periods": 3}},
            "memory": {"usage": {"usage": 4096, "max": 8192, "limit": 1 << 26},
                       "raw": {"total_inactive_file": 1024}},
            "pids": {"current": 2, "limit": 10},
            "blkio": {"ioServiceBytesRecursive": [{"major": 8, "op": "Read", "value": 7}]}}
    doc = frame(_container(), data, read="2026-01-01T00:00:00.000000Z", system=10**9, cpus=2,
                net={"eth0": {"rx_bytes": 1}})
    assert doc["cpu_stats"]["cpu_usage"] == {"total_usage": 500, "usage_in_kernelmode": 100,
                                             "usage_in_usermode": 400,
                                             "percpu_usage": [200, 300]}
    assert doc["cpu_stats"]["system_cpu_usage"] == 10**9 and doc["cpu_stats"]["online_cpus"] == 2
    assert doc["cpu_stats"]["throttling_data"]["periods"] == 3
    assert doc["memory_stats"] == {"usage": 4096, "max_usage": 8192, "limit": 1 << 26,
                                   "stats": {"total_inactive_file": 1024}}
    assert doc["pids_stats"] == {"current": 2, "limit": 10}
    assert doc["blkio_stats"]["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 7}]
    assert doc["blkio_stats"]["io_queue_recursive"] == []
    assert doc["networks"] == {"eth0": {"rx_bytes": 1}}
    assert doc["name"] == "/n" and doc["preread"] == "0001-01-01T00:00:00Z"
    unlimited = frame(_container(), {"memory": {"usage": {"limit": 1 << 62}}}, read="r",
                      system=0, cpus=1, net=None)
    assert 0 < unlimited["memory_stats"]["limit"] < 1 << 62      # the machine's memory
    assert "networks" not in unlimited
    assert zero_frame(_container())["memory_stats"] == {}
    assert networks(-1) == {}


def _client_frame(opcode: int, payload: bytes, *, final: bool = True,
                  mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes([(0x80 if final else 0) | opcode, 0x80 | n])
    elif n < 1 << 16:
        head = bytes([(0x80 if final else 0) | opcode, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([(0x80 if final else 0) | opcode, 0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@given(st.binary(max_size=70000), st.integers(0, 2))
def test_websocket_frames_round_trip(payload: bytes, opcode: int) -> None:
    stream = io.BytesIO(_client_frame(opcode, payload))
    assert websocket.read_frame(stream.read) == (True, opcode, payload)
    assert websocket.read_frame(stream.read) is None
    server = websocket.encode(websocket.BINARY, payload)
    assert server[0] == 0x82 and server.endswith(payload)


def test_websocket_refuses_unmasked_and_truncated_frames() -> None:
    with pytest.raises(websocket.ProtocolError):
        websocket.read_frame(io.BytesIO(b"\x82\x03abc").read)
    assert websocket.read_frame(io.BytesIO(_client_frame(2, b"hello")[:-2]).read) is None
    assert websocket.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


class _Chunks:
    """Records what a chunked response was sent (stands in for api.http.Chunks)."""

    def __init__(self, open_: bool = True) -> None:
        self.sent: list[bytes] = []
        self.ended = False
        self.open = open_

    def write(self, data: bytes) -> bool:
        if self.open:
            self.sent.append(data)
        return self.open

    def end(self) -> None:
        self.ended = True


def test_chunk_writer_gathers_and_trims_the_tar_padding() -> None:
    import tarfile

    from dockyard.api.bodies import ChunkWriter

    chunks = _Chunks()
    out = ChunkWriter(chunks)  # type: ignore[arg-type]
    with tarfile.open(fileobj=out, mode="w|") as tar:    # type: ignore[call-overload]
        info = tarfile.TarInfo("f")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
        size = tar.offset + 1024       # docker's archive: two zero blocks, no record padding
    out.close(size)
    body = b"".join(chunks.sent)
    assert chunks.ended and len(body) == 512 * 4
    with tarfile.open(fileobj=io.BytesIO(body)) as back:
        assert back.getnames() == ["f"]
    gone = ChunkWriter(_Chunks(open_=False))  # type: ignore[arg-type]
    with pytest.raises(BrokenPipeError):
        gone.write(b"x" * (1 << 17))


def test_update_patches_the_spec_resources() -> None:
    from dockyard.engine.resources import Limits, patch_spec

    spec = {"linux": {"resources": {"memory": {"limit": 1 << 26, "swap": 1 << 27},
                                    "pids": {"limit": 10}, "blockIO": {}}}, "ociVersion": "1"}
    out = patch_spec(spec, Limits(memory=1 << 27, memory_swap=1 << 28, nano_cpus=1_500_000_000,
                                  cpu_shares=512, cpuset_cpus="0", pids_limit=-1))
    assert out["linux"]["resources"] == {
        "memory": {"limit": 1 << 27, "swap": 1 << 28}, "blockIO": {},
        "cpu": {"period": 100_000, "quota": 150_000, "shares": 512, "cpus": "0"}}
    assert spec["linux"]["resources"]["pids"] == {"limit": 10}     # the input is left alone
    assert patch_spec(spec, Limits()) == spec
    assert patch_spec({}, Limits(pids_limit=20))["linux"]["resources"] == {"pids": {"limit": 20}}
