"""Networks and volumes of ``dockyard serve`` driven by docker-py (``client.networks``,
``client.volumes``, the low-level ``APIClient``). Networks live in 10.213.250-253.x
(testbed.netdaemon)."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest
from docker.types import IPAMConfig, IPAMPool

from testbed import images as tb_images
from testbed.apidaemon import Daemon
from testbed.netdaemon import SUBNETS, net_daemon

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def d() -> Iterator[Daemon]:
    image = tb_images.busybox()
    assert image.docker_archive is not None
    with net_daemon(image.docker_archive) as daemon:
        yield daemon


@pytest.fixture
def client(d: Daemon) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=d.url, version="auto", timeout=60)
    try:
        yield c
    finally:
        for ctr in c.containers.list(all=True):
            ctr.remove(force=True)
        for net in c.networks.list(filters={"type": "custom"}):
            net.remove()
        for vol in c.volumes.list():
            vol.remove(force=True)
        c.close()


def test_networks_high_level(client: docker.DockerClient) -> None:
    ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=SUBNETS[1], gateway="10.213.253.1")])
    net = client.networks.create("py-net", driver="bridge", ipam=ipam, labels={"app": "py"},
                                 check_duplicate=True, attachable=True)
    assert net.name == "py-net"
    assert net.attrs["IPAM"]["Config"] == [{"Subnet": SUBNETS[1], "Gateway": "10.213.253.1"}]
    assert client.networks.get(net.id[:12]).name == "py-net"
    assert [n.name for n in client.networks.list(names=["py-net"])] == ["py-net"]
    assert [n.name for n in client.networks.list(filters={"label": "app=py"})] == ["py-net"]
    assert {n.name for n in client.networks.list(filters={"type": "builtin"})} == \
        {"bridge", "host", "none"}
    with pytest.raises(docker.errors.APIError) as dup:
        client.networks.create("py-net")
    assert dup.value.status_code == 409
    with pytest.raises(docker.errors.NotFound):
        client.networks.get("py-none-such")

    server = client.containers.run(
        "busybox", ["sh", "-c", "mkdir /www && echo hello-py > /www/index.html && "
                    "exec httpd -f -p 80 -h /www"],
        detach=True, name="py-web", network="py-net")
    server.reload()
    ep = server.attrs["NetworkSettings"]["Networks"]["py-net"]
    assert ep["IPAddress"].startswith("10.213.253.")
    assert ep["NetworkID"] == net.id
    # connect a second container with an alias and a fixed address
    other = client.containers.run("busybox", ["sleep", "600"], detach=True, name="py-other",
                                  network_mode="bridge")
    net.connect(other, aliases=["buddy"], ipv4_address="10.213.253.77")
    net.reload()
    assert {c.name for c in net.containers} == {"py-web", "py-other"}
    other.reload()
    got = other.attrs["NetworkSettings"]["Networks"]["py-net"]
    assert got["IPAddress"] == "10.213.253.77" and "buddy" in got["Aliases"]
    code, out = other.exec_run(["timeout", "5", "wget", "-q", "-O-",
                                f"http://{ep['IPAddress']}/"])
    assert (code, out) == (0, b"hello-py\n")
    code, out = server.exec_run(["nslookup", "buddy"])
    assert code == 0 and b"10.213.253.77" in out
    with pytest.raises(docker.errors.APIError) as busy:
        net.remove()
    assert busy.value.status_code == 403
    net.disconnect(other)
    other.reload()
    assert set(other.attrs["NetworkSettings"]["Networks"]) == {"bridge"}
    with pytest.raises(docker.errors.APIError):
        net.disconnect(other)
    server.remove(force=True)
    other.remove(force=True)
    net.remove()
    with pytest.raises(docker.errors.NotFound):
        client.networks.get("py-net")

    client.networks.create("py-unused")
    pruned = client.networks.prune()
    assert pruned["NetworksDeleted"] == ["py-unused"]
    assert client.networks.prune()["NetworksDeleted"] is None


def test_volumes_high_level(client: docker.DockerClient) -> None:
    vol = client.volumes.create("py-vol", driver="local", labels={"tier": "db"})
    assert vol.name == "py-vol" and vol.attrs["Labels"] == {"tier": "db"}
    assert client.volumes.get("py-vol").attrs["Mountpoint"].endswith("/py-vol/_data")
    assert [v.name for v in client.volumes.list(filters={"label": "tier=db"})] == ["py-vol"]
    out = client.containers.run("busybox", ["sh", "-c", "echo kept > /data/f"],
                                volumes={"py-vol": {"bind": "/data", "mode": "rw"}},
                                network_mode="none", remove=True)
    assert out == b""
    holder = client.containers.create("busybox", ["cat", "/data/f"],
                                      volumes=["py-vol:/data:ro"], network_mode="none")
    with pytest.raises(docker.errors.APIError) as busy:
        vol.remove()
    assert busy.value.status_code == 409
    holder.start()
    assert holder.wait()["StatusCode"] == 0
    assert holder.logs() == b"kept\n"
    holder.remove()
    vol.remove()
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get("py-vol")
    client.volumes.create("py-named")
    anon = client.volumes.create(labels={"com.docker.volume.anonymous": ""})
    pruned = client.volumes.prune()
    assert pruned["VolumesDeleted"] == [anon.name]
    pruned = client.volumes.prune(filters={"all": "true"})
    assert pruned["VolumesDeleted"] == ["py-named"]


def test_low_level_create_with_endpoint_config(d: Daemon,
                                               client: docker.DockerClient) -> None:
    api = docker.APIClient(base_url=d.url, version="auto", timeout=60)
    try:
        net = api.create_network("py-low", driver="bridge", internal=True,
                                 labels={"k": "v"})
        assert len(net["Id"]) == 64
        info = api.inspect_network(net["Id"])
        assert info["Internal"] is True and info["Labels"] == {"k": "v"}
        cfg = api.create_networking_config({"py-low": api.create_endpoint_config(
            aliases=["low-alias"])})
        ctr = api.create_container("busybox", ["sleep", "600"], name="py-low-c",
                                   host_config=api.create_host_config(network_mode="py-low"),
                                   networking_config=cfg)
        stopped = api.inspect_container(ctr["Id"])["NetworkSettings"]["Networks"]
        assert "low-alias" in stopped["py-low"]["Aliases"]
        api.start(ctr["Id"])
        running = api.inspect_container(ctr["Id"])["NetworkSettings"]["Networks"]["py-low"]
        assert running["IPAddress"] and "low-alias" in running["Aliases"]
        assert api.inspect_network("py-low")["Containers"][ctr["Id"]]["Name"] == "py-low-c"
        assert [n["Name"] for n in api.networks(names=["py-low"])] == ["py-low"]
        with pytest.raises(docker.errors.APIError) as bad:
            api.create_container("busybox", ["true"], host_config=api.create_host_config(
                network_mode="py-low"), networking_config=api.create_networking_config(
                {"py-low": api.create_endpoint_config(ipv4_address="192.0.2.1")}))
        assert bad.value.status_code == 400
        api.remove_container(ctr["Id"], force=True)
        api.remove_network("py-low")
        vol = api.create_volume("py-low-vol", driver_opts={"type": "tmpfs",
                                                           "device": "tmpfs", "o": "size=1m"})
        assert vol["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
        assert [v["Name"] for v in api.volumes()["Volumes"]] == ["py-low-vol"]
        api.remove_volume("py-low-vol")
        assert api.volumes()["Volumes"] == []
    finally:
        api.close()
