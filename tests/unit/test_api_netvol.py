"""The pure parts of the networks and volumes endpoints: docker's create body -> the engine's
arguments, the list filters, routing and the API-version rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.api import networks as api_networks
from dockyard.api import volumes as api_volumes
from dockyard.api.handlers import ROUTES
from dockyard.api.http import find_route, route_table, version_before
from dockyard.engine.networks import Network
from dockyard.errors import InvalidArgument, NotFound


def _net(name: str, *, labels: dict[str, str] | None = None, driver: str = "bridge") -> Network:
    return Network(id=("ab" * 32 if name == "one" else "cd" * 32), name=name, driver=driver,
                   subnet="10.1.0.0/24", gateway="10.1.0.1", bridge="br", internal=False,
                   created=0.0, labels=labels or {})


def test_create_args_from_docker_json() -> None:
    args = api_networks._create_args({
        "Name": "app", "CheckDuplicate": True, "Driver": "", "Internal": True,
        "Attachable": True, "Labels": {"a": "b"}, "Options": {"x": 1},
        "IPAM": {"Driver": "default", "Options": {}, "Config": [
            {"Subnet": "10.2.0.0/16", "Gateway": "10.2.0.9"}]}})
    assert args == {"name": "app", "driver": "bridge", "subnet": "10.2.0.0/16",
                    "gateway": "10.2.0.9", "internal": True, "labels": {"a": "b"},
                    "options": {"x": "1"}}
    assert api_networks._create_args({"Name": "n"})["subnet"] == ""


@pytest.mark.parametrize("body", [
    {}, {"Name": ""}, {"Name": 3}, {"Name": "n", "EnableIPv6": True},
    {"Name": "n", "IPAM": {"Config": [{"Subnet": "10.0.0.0/24"}, {"Subnet": "10.1.0.0/24"}]}},
    {"Name": "n", "IPAM": {"Config": [{"Gateway": "10.0.0.1"}]}},
    {"Name": "n", "IPAM": {"Config": [{"Subnet": "10.0.0.0/24", "IPRange": "10.0.0.0/25"}]}},
    {"Name": "n", "IPAM": {"Config": "10.0.0.0/24"}}, {"Name": "n", "IPAM": "x"},
    {"Name": "n", "Labels": ["a"]}, {"Name": "n", "Ingress": True},
    {"Name": "n", "Scope": "swarm"},
])
def test_create_args_refuse_what_cannot_be_done(body: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        api_networks._create_args(body)


def test_unknown_ipam_driver_is_not_found() -> None:
    with pytest.raises(NotFound):
        api_networks._create_args({"Name": "n", "IPAM": {"Driver": "infoblox"}})


def test_list_filters() -> None:
    one = _net("one", labels={"env": "prod", "team": "a"})
    bridge = _net("bridge")
    used: set[str] = set()

    def ok(net: Network, **filters: list[str]) -> bool:
        return api_networks.list_matches(net, filters, used)

    assert ok(one, name=["on"]) and ok(one, name=["^one$"]) and not ok(one, name=["two"])
    assert ok(one, id=["abab"]) and not ok(one, id=["cd"])
    assert ok(one, label=["env=prod", "team"]) and not ok(one, label=["env=prod", "team=b"])
    assert ok(one, type=["custom"]) and not ok(bridge, type=["custom"])
    assert ok(bridge, type=["builtin"]) and ok(one, driver=["bridge"])
    assert ok(one, dangling=["true"]) and not ok(bridge, dangling=["1"])
    assert ok(bridge, dangling=["false"])
    used.add("one")
    assert not ok(one, dangling=["true"])
    assert ok(one, scope=["local"]) and not ok(one, scope=["swarm"])
    for bad in ({"type": ["odd"]}, {"dangling": ["maybe"]}, {"colour": ["red"]}):
        with pytest.raises(InvalidArgument):
            api_networks.list_matches(one, bad, used)


@given(st.text(max_size=20), st.text(max_size=20))
def test_match_never_raises(pattern: str, source: str) -> None:
    got = api_networks.match(pattern, source)
    assert got or pattern != source


def test_endpoint_body() -> None:
    assert api_networks._endpoint_body(None) == ([], "")
    assert api_networks._endpoint_body({"Aliases": ["a", "a", "b"], "IPAMConfig": {
        "IPv4Address": "10.0.0.5"}, "Links": []}) == (["a", "b"], "10.0.0.5")
    for bad in ("x", {"Aliases": "a"}, {"IPAMConfig": {"IPv6Address": "fe80::1"}},
                {"Links": ["a:b"]}, {"IPAMConfig": "x"}):
        with pytest.raises(InvalidArgument):
            api_networks._endpoint_body(bad)


def test_routes() -> None:
    table = route_table(ROUTES)
    for method, path, fn in [
        ("GET", "/networks", api_networks.networks_list),
        ("POST", "/networks/create", api_networks.network_create),
        ("POST", "/networks/prune", api_networks.networks_prune),
        ("GET", "/networks/abc", api_networks.network_inspect),
        ("DELETE", "/networks/abc", api_networks.network_delete),
        ("POST", "/networks/abc/connect", api_networks.network_connect),
        ("POST", "/networks/abc/disconnect", api_networks.network_disconnect),
        ("GET", "/volumes", api_volumes.volumes_list),
        ("POST", "/volumes/create", api_volumes.volume_create),
        ("POST", "/volumes/prune", api_volumes.volumes_prune),
        ("GET", "/volumes/v1", api_volumes.volume_inspect),
        ("DELETE", "/volumes/v1", api_volumes.volume_delete),
    ]:
        assert find_route(table, method, path)[0] is fn, (method, path)
    assert find_route(table, "GET", "/networks/abc")[1] == {"id": "abc"}


def test_version_before() -> None:
    assert version_before("1.41", "1.42") and not version_before("1.42", "1.42")
    assert version_before("1.9", "1.10") and not version_before("x", "1.42")
