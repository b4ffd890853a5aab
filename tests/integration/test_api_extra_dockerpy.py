"""docker-py (the ``docker`` package) against ``dockyard serve``: archives, stats, update, diff,
export, commit, history, save/load and push."""

from __future__ import annotations

import io
import secrets
import tarfile
from collections.abc import Iterator

import docker
import pytest

from testbed.apidaemon import Daemon
from testbed.fixtures_registry import RegistryFactory
from testbed.registry import Registry

pytestmark = pytest.mark.integration


@pytest.fixture
def client(api_daemon: Daemon) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=api_daemon.url, version="auto", timeout=60)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def running(client: docker.DockerClient) -> Iterator[docker.models.containers.Container]:
    c = client.containers.run("busybox", ["sh", "-c", "trap 'exit 0' TERM; "
                                          "while true; do sleep 0.1; done"],
                              detach=True, name=f"py{secrets.token_hex(4)}",
                              network_mode="none", mem_limit="64m")
    try:
        yield c
    finally:
        c.remove(force=True)


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o640
            info.uid = info.gid = 1234
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_archives(running: docker.models.containers.Container) -> None:
    c = running
    assert c.put_archive("/tmp", _tar({"one": b"1\n", "dir/two": b"2\n"})) is True
    code, out = c.exec_run(["sh", "-c", "cat /tmp/one /tmp/dir/two; stat -c '%a %u' /tmp/one"])
    assert (code, out) == (0, b"1\n2\n640 0\n")
    stream, stat = c.get_archive("/tmp/dir")
    assert stat["name"] == "dir" and stat["mode"] & (1 << 31)      # Go's os.ModeDir
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        assert sorted(tar.getnames()) == ["dir", "dir/two"]
        member = tar.extractfile("dir/two")
        assert member is not None and member.read() == b"2\n"
    with pytest.raises(docker.errors.NotFound):
        c.get_archive("/no/such")
    with pytest.raises(docker.errors.NotFound):
        c.put_archive("/no/such", _tar({"x": b"x"}))
    assert c.diff() is not None
    assert {"Path": "/tmp/one", "Kind": 1} in c.diff()


def test_stats_update_export_commit(client: docker.DockerClient,
                                    running: docker.models.containers.Container) -> None:
    c = running
    one = c.stats(stream=False)
    assert one["id"] == c.id and one["memory_stats"]["limit"] == 64 << 20
    assert one["precpu_stats"]["cpu_usage"]["total_usage"] > 0
    assert c.stats(stream=False, one_shot=True)["preread"] == "0001-01-01T00:00:00Z"
    frames = c.stats(stream=True, decode=True)
    first, second = next(frames), next(frames)
    frames.close()
    assert second["preread"] == first["read"]
    assert second["precpu_stats"] == first["cpu_stats"]

    assert c.update(mem_limit="96m", memswap_limit="192m") == {"Warnings": None}
    c.reload()
    assert c.attrs["HostConfig"]["Memory"] == 96 << 20
    with pytest.raises(docker.errors.APIError) as bad:
        c.update(cpu_period=50000)
    assert bad.value.status_code == 400

    exported = b"".join(c.export())
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        assert "bin/busybox" in tar.getnames()

    repo = f"pycommit{secrets.token_hex(3)}"
    image = c.commit(repository=repo, tag="v1", message="from py", author="py",
                     changes=["LABEL made=by-py"], conf={"Env": ["FROM_CONF=yes"]})
    try:
        assert image.labels["made"] == "by-py"
        assert "FROM_CONF=yes" in image.attrs["Config"]["Env"]
        history = image.history()
        assert history[0]["Id"] == image.id and history[0]["Comment"] == "from py"
        assert history[0]["Tags"] == [f"{repo}:v1"]
    finally:
        client.images.remove(image.id, force=True)


def test_stats_of_a_bridged_container_count_its_interface(client: docker.DockerClient) -> None:
    c = client.containers.run("busybox", ["sleep", "30"], detach=True,
                              name=f"pynet{secrets.token_hex(3)}")
    try:
        doc = c.stats(stream=False, one_shot=True)
        assert set(doc["networks"]) == {"eth0"}
        assert set(doc["networks"]["eth0"]) == {
            "rx_bytes", "rx_packets", "rx_errors", "rx_dropped",
            "tx_bytes", "tx_packets", "tx_errors", "tx_dropped"}
    finally:
        c.remove(force=True)


def test_save_load_push(client: docker.DockerClient, registry: Registry) -> None:
    image = client.images.get("busybox")
    tag = f"pysaved{secrets.token_hex(3)}:v1"
    image.tag(tag)
    try:
        data = b"".join(client.images.get(tag).save(named=tag))
        client.images.remove(tag)
        loaded = client.images.load(data)
        assert [i.id for i in loaded] == [image.id]
        assert tag in client.images.get(tag).tags

        name = f"{registry.host}/py/pushed"
        image.tag(name, "v2")
        lines = list(client.images.push(name, tag="v2", stream=True, decode=True))
        assert lines[0]["status"] == f"The push refers to repository [{name}]"
        aux = [x["aux"] for x in lines if "aux" in x]
        assert aux and aux[0]["Tag"] == "v2" and aux[0]["Digest"].startswith("sha256:")
        assert not [x for x in lines if "error" in x]
        client.images.remove(f"{name}:v2")
        assert client.images.pull(name, tag="v2").id == image.id
        client.images.remove(f"{name}:v2")
    finally:
        client.images.remove(tag, force=True)


def test_login_then_push_and_pull_with_credentials(api_daemon: Daemon,
                                                   client: docker.DockerClient,
                                                   fresh_registry: RegistryFactory) -> None:
    password = secrets.token_urlsafe(12)
    reg = fresh_registry(auth=("pyuser", password))
    with pytest.raises(docker.errors.APIError) as denied:
        client.login("pyuser", "wrong", registry=reg.host, reauth=True)
    assert denied.value.status_code == 401
    assert client.login("pyuser", password, registry=reg.host, reauth=True)["Status"] == \
        "Login Succeeded"
    name = f"{reg.host}/py/authed"
    image = client.images.get("busybox")
    image.tag(name, "v1")
    try:
        # docker-py sends what login stored as X-Registry-Auth
        lines = list(client.images.push(name, tag="v1", stream=True, decode=True))
        assert not [x for x in lines if "error" in x], lines
        client.images.remove(f"{name}:v1")
        anonymous = docker.DockerClient(base_url=api_daemon.url, version="auto", timeout=60)
        try:
            with pytest.raises(docker.errors.APIError):
                anonymous.images.pull(name, tag="v1")
        finally:
            anonymous.close()
        creds = {"username": "pyuser", "password": password}
        assert client.images.pull(name, tag="v1", auth_config=creds).id == image.id
    finally:
        client.images.remove(f"{name}:v1", force=True)


def test_the_daemon_logged_no_internal_error(api_daemon: Daemon) -> None:
    """Runs last in this module: none of the requests above was a 500 (a handler's crash)."""
    errors = [line for line in api_daemon.log().splitlines() if " ERROR " in line]
    assert not errors, "\n".join(errors)
