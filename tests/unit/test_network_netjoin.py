"""``--network container:``: docker's checks against the other network options."""

from __future__ import annotations

import pytest

from dockyard.engine import netjoin
from dockyard.errors import InvalidArgument


def test_format() -> None:
    assert netjoin.is_join("container:web") and not netjoin.is_join("bridge")
    assert netjoin.target_ref("container:web") == "web"
    with pytest.raises(InvalidArgument, match=r"invalid container format container:<name\|id>"):
        netjoin.check_format("container:")


@pytest.mark.parametrize(("flags", "message"), [
    ({"hostname": True}, "conflicting options: hostname and the network mode"),
    ({"links": True}, "container type network can't be used with links"),
    ({"dns": True}, "conflicting options: dns and the network mode"),
    ({"extra_hosts": True}, "custom host-to-IP mapping and the network mode"),
    ({"mac": True}, "conflicting options: mac-address and the network mode"),
    ({"ports": True}, "port publishing and the container type network mode"),
    ({"exposed": True}, "port exposing and the container type network mode"),
    ({"ip": True}, "user specified IP address is supported on user defined networks only"),
    ({"aliases": True, "hostname": True}, "network-scoped aliases are only supported"),
    ({"hostname": True, "ports": True}, "hostname and the network mode"),   # docker's order
])
def test_conflicts(flags: dict[str, bool], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        netjoin.check_conflicts(**flags)
    netjoin.check_conflicts()


def test_api_request() -> None:
    base = {"HostConfig": {"NetworkMode": "container:web"}}
    netjoin.check_request(base)
    netjoin.check_request({"HostConfig": {"NetworkMode": "bridge", "PortBindings": {"80": []}},
                           "Hostname": "x"})
    for body, message in (
            ({**base, "Hostname": "x"}, "hostname"),
            ({**base, "ExposedPorts": {"80/tcp": {}}}, "port exposing"),
            ({"HostConfig": {"NetworkMode": "container:web", "PublishAllPorts": True}},
             "port publishing"),
            ({"HostConfig": {"NetworkMode": "container:web", "Dns": ["10.0.0.1"]}}, "dns"),
            ({**base, "NetworkingConfig": {"EndpointsConfig": {
                "container:web": {"IPAMConfig": {"IPv4Address": "10.0.0.9"}}}}},
             "user specified IP address"),
            ({"HostConfig": {"NetworkMode": "container:"}}, "invalid container format")):
        with pytest.raises(InvalidArgument, match=message):
            netjoin.check_request(body)
