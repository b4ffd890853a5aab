"""Reference parsing: docker's grammar, normalization and familiar names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.errors import InvalidArgument
from dockyard.image.reference import Reference, parse_reference, parse_repository
from dockyard.model.image import Digest

D = "sha256:" + "ab" * 32
D2 = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("text", "domain", "path", "tag", "digest"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", None),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
        ("library/busybox", "docker.io", "library/busybox", "latest", None),
        ("docker.io/busybox", "docker.io", "library/busybox", "latest", None),
        ("index.docker.io/busybox", "docker.io", "library/busybox", "latest", None),
        ("docker.io/library/busybox:x", "docker.io", "library/busybox", "x", None),
        ("user/app", "docker.io", "user/app", "latest", None),
        ("user/team/app", "docker.io", "user/team/app", "latest", None),
        ("localhost/x", "localhost", "x", "latest", None),
        ("localhost:5000/x", "localhost:5000", "x", "latest", None),
        ("127.0.0.1:5000/ns/name:tag", "127.0.0.1:5000", "ns/name", "tag", None),
        (f"127.0.0.1:5000/ns/name:tag@{D}", "127.0.0.1:5000", "ns/name", "tag", D),
        (f"busybox@{D}", "docker.io", "library/busybox", None, D),
        ("quay.io/a-b/c_d.e__f", "quay.io", "a-b/c_d.e__f", "latest", None),
        ("[::1]:5000/x:v", "[::1]:5000", "x", "v", None),
        ("Registry/x", "Registry", "x", "latest", None),  # uppercase first part: a domain
        ("localhost:5000", "docker.io", "library/localhost", "5000", None),  # docker agrees
        ("a---b", "docker.io", "library/a---b", "latest", None),
    ],
)
def test_parse_examples(
    text: str, domain: str, path: str, tag: str | None, digest: str | None
) -> None:
    assert parse_reference(text) == Reference(domain, path, tag, Digest(digest) if digest else None)


def test_properties() -> None:
    r = parse_reference("busybox")
    assert r.repository == "docker.io/library/busybox"
    assert r.familiar_name == "busybox"
    assert r.familiar == "busybox:latest"
    assert str(r) == "docker.io/library/busybox:latest"
    assert r.registry_host == "registry-1.docker.io"
    assert r.reference == "latest"

    r = parse_reference("localhost:5000/x")
    assert r.familiar_name == "localhost:5000/x"
    assert r.registry_host == "localhost:5000"

    r = parse_reference("docker.io/library/a/b")
    assert r.familiar_name == "library/a/b"  # nested official names keep their prefix
    assert parse_reference("docker.io/a.b/c").familiar_name == "docker.io/a.b/c"

    r = parse_reference(f"x:t@{D}")
    assert r.reference == D
    assert r.familiar == f"x:t@{D}"
    assert r.with_tag("u").tag == "u"
    assert r.with_digest(D2).digest == D2
    assert r.without_digest().reference == "t"
    assert r.without_tag().familiar == f"x@{D}"
    with pytest.raises(InvalidArgument):
        r.with_tag("-bad")
    with pytest.raises(InvalidArgument):
        r.with_digest("sha256:short")


def test_parse_repository() -> None:
    assert parse_repository("busybox") == Reference("docker.io", "library/busybox")
    assert parse_repository("localhost:5000/x").domain == "localhost:5000"
    with pytest.raises(InvalidArgument):
        parse_repository("busybox:latest")
    with pytest.raises(InvalidArgument):
        parse_repository(f"busybox@{D}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Busybox", r"repository name \(library/Busybox\) must be lowercase"),
        ("user/App:1", r"repository name \(user/App\) must be lowercase"),
        ("ab" * 32, "cannot specify 64-byte hexadecimal strings"),
        ("", "at least one component"),
        (":tag", "at least one component"),
        ("x:", "invalid tag"),
        ("x:-a", "invalid tag"),
        ("x:" + "a" * 129, "invalid tag"),
        ("x@", "invalid reference format"),
        ("x@sha256:abc", "invalid digest"),
        ("x@md5:" + "a" * 32, "invalid reference format"),
        ("x@sha256:" + "A" * 64, "invalid reference format"),
        ("-x", "invalid reference format"),
        ("x_", "invalid reference format"),
        ("a//b", "invalid reference format"),
        ("a/b/", "invalid reference format"),
        ("a___b", "invalid reference format"),
        ("bad_host.com/x", "invalid registry domain"),
        ("-host.com/x", "invalid registry domain"),
        ("host.com:port/x", "invalid registry domain"),
        ("x y", "invalid reference format"),
        ("a/" + "b" * 250, "must not be more than 255"),
        ("localhost:5000/x:y:z", "invalid"),
    ],
)
def test_rejections(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_reference(text)


# --- properties -------------------------------------------------------------------------

_alnum = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6)
_sep = st.sampled_from([".", "_", "__", "-", "--"])
_path_component = st.builds(
    lambda first, rest: first + "".join(s + a for s, a in rest),
    _alnum, st.lists(st.tuples(_sep, _alnum), max_size=2),
)
_path = st.lists(_path_component, min_size=1, max_size=3).map("/".join)
_dcomp = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,5}[a-zA-Z0-9])?", fullmatch=True)
_domain = st.one_of(
    st.just("localhost"),
    st.builds(lambda a, b: f"{a}.{b}", _dcomp, _dcomp),
    st.builds(lambda a, p: f"{a}:{p}", _dcomp, st.integers(1, 65535)),
    st.builds(lambda p: f"127.0.0.1:{p}", st.integers(1, 65535)),
    st.just("[::1]:5000"),
)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_digest = st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda h: "sha256:" + h)


@st.composite
def _reference_text(draw: st.DrawFn) -> str:
    name = draw(_path)
    domain = draw(st.one_of(st.none(), _domain))
    if domain is None and "/" in name and "." in name.partition("/")[0]:
        # "a.b/c" names the registry a.b; such a first component needs a domain before it.
        domain = "docker.io"
    if domain is not None:
        name = f"{domain}/{name}"
    tag = draw(st.one_of(st.none(), _tag))
    digest = draw(st.one_of(st.none(), _digest))
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


@given(_reference_text())
def test_round_trip(text: str) -> None:
    r = parse_reference(text)
    assert parse_reference(str(r)) == r
    assert parse_reference(r.familiar) == r
    assert parse_reference(r.repository).repository == r.repository
    assert r.tag is not None or r.digest is not None
    assert str(r).startswith(r.domain + "/")
    assert r.familiar_name in text or text.startswith("docker.io/")


@given(_reference_text())
def test_uppercase_path_is_rejected(text: str) -> None:
    r = parse_reference(text)
    # Uppercase in the first path component would turn it into a domain; use the last one.
    upper = Reference(r.domain, r.path[:-1] + r.path[-1].upper(), r.tag, r.digest)
    if upper.path != r.path:
        with pytest.raises(InvalidArgument, match="must be lowercase"):
            parse_reference(str(upper))


@given(st.text(max_size=80))
def test_arbitrary_text_parses_or_is_invalid_argument(text: str) -> None:
    try:
        r = parse_reference(text)
    except InvalidArgument as e:
        assert str(e).startswith(("invalid reference format", "invalid repository name"))
    else:
        assert parse_reference(str(r)) == r


@given(_reference_text(), st.sampled_from([" ", "!", "/", ":", "@", "\n", "é", "A:"]))
def test_garbage_suffix_is_rejected_or_equivalent(text: str, junk: str) -> None:
    try:
        r = parse_reference(text + junk)
    except InvalidArgument:
        return
    # The only accepted suffixes extend the tag ("A:" never; ":" alone never).
    assert junk not in (" ", "!", "\n", "é", ":", "@", "/")
    assert parse_reference(str(r)) == r
