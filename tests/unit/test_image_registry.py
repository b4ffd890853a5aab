"""The registry client's pure parts: WWW-Authenticate, Link headers, backoff."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.image.hosts import HostsConfig
from dockyard.image.registry import (
    Challenge,
    RegistryClient,
    _link_next,
    parse_www_authenticate,
)


def test_bearer_challenge() -> None:
    header = ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
              'scope="repository:library/busybox:pull",error="insufficient_scope"')
    assert parse_www_authenticate(header) == [Challenge("bearer", {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/busybox:pull",
        "error": "insufficient_scope",
    })]


def test_basic_and_several_challenges() -> None:
    assert parse_www_authenticate('Basic realm="dockyard-testbed"') == [
        Challenge("basic", {"realm": "dockyard-testbed"})]
    got = parse_www_authenticate('Basic realm="a", Bearer realm="https://x/t", service=x')
    assert got == [Challenge("basic", {"realm": "a"}),
                   Challenge("bearer", {"realm": "https://x/t", "service": "x"})]
    assert parse_www_authenticate('Bearer realm="q\\"uoted"') == [
        Challenge("bearer", {"realm": 'q"uoted'})]
    assert parse_www_authenticate("") == []


@given(st.text(max_size=100))
def test_www_authenticate_never_raises(header: str) -> None:
    for c in parse_www_authenticate(header):
        assert c.scheme == c.scheme.lower()


def test_link_next() -> None:
    assert _link_next('</v2/x/tags/list?last=b&n=2>; rel="next"') == "/v2/x/tags/list?last=b&n=2"
    assert _link_next('<https://r/a>; rel="prev", <https://r/b>; rel=next') == "https://r/b"
    assert _link_next("") is None


@pytest.mark.parametrize("attempt", [0, 1, 2, 5, 10])
def test_backoff_is_bounded_with_jitter(attempt: int) -> None:
    client = RegistryClient(HostsConfig(certs_dirs=[]), backoff=0.5, max_backoff=4.0)
    base = min(0.5 * 2 ** attempt, 4.0)
    for _ in range(20):
        assert base <= client._delay(attempt, None) <= base * 1.5
    assert client._delay(attempt, "3") == 3.0
    assert client._delay(attempt, "9999") == 30.0
    client.close()
