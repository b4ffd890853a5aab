"""The registry client against a lying registry (testbed.fake_registry): auth flows, retries,
broken bodies, redirects, slow answers."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.errors import NotFound, PermissionDenied, Unavailable
from dockyard.image.auth import AuthStore
from dockyard.image.hosts import HostsConfig
from dockyard.image.reference import Reference, parse_reference
from dockyard.image.registry import DigestMismatch, RegistryClient
from dockyard.model.image import OCI_LAYER_GZIP, OCI_MANIFEST, Descriptor, Digest
from testbed.fake_registry import FakeRegistry, sha256

pytestmark = pytest.mark.integration

BLOB = bytes(range(256)) * 4096 * 3  # 3 MiB: several 1 MiB chunks
PASSWORD = "s3cret-pw-value"


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    with FakeRegistry() as reg:
        yield reg


@pytest.fixture
def bearer() -> Iterator[FakeRegistry]:
    with FakeRegistry(auth="bearer") as reg:
        yield reg


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_client(reg: FakeRegistry, tmp_path: Path, *, creds: tuple[str, str] | None = None,
                **kw: object) -> tuple[RegistryClient, Sleeps]:
    store = AuthStore(tmp_path / "config.json")
    if creds is not None:
        store.login(reg.host, *creds)
    sleeps = Sleeps()
    client = RegistryClient(HostsConfig(certs_dirs=[tmp_path / "certs.d"]), store,
                            sleep=sleeps, **kw)  # type: ignore[arg-type]
    return client, sleeps


def seed(reg: FakeRegistry, repo: str = "app", tag: str = "v1") -> tuple[bytes, Descriptor]:
    blob_digest = reg.add_blob(BLOB)
    layer = Descriptor(OCI_LAYER_GZIP, Digest(blob_digest), len(BLOB))
    cfg = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    cfg_digest = reg.add_blob(cfg)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cfg_digest, "size": len(cfg)},
        "layers": [layer.to_json()],
    }).encode()
    reg.add_manifest(repo, tag, manifest, OCI_MANIFEST)
    return manifest, layer


def ref(reg: FakeRegistry, rest: str = "app:v1") -> Reference:
    return parse_reference(f"{reg.host}/{rest}")


def read_all(client: RegistryClient, r: Reference, desc: Descriptor, offset: int = 0) -> bytes:
    with client.open_blob(r, desc, offset) as stream:
        return b"".join(stream)


# --- token auth ---------------------------------------------------------------------------


def test_anonymous_token_flow_and_cache(bearer: FakeRegistry, tmp_path: Path) -> None:
    manifest, layer = seed(bearer)
    client, _ = make_client(bearer, tmp_path)
    with client:
        raw, media_type, digest = client.get_manifest(ref(bearer))
        assert (raw, media_type, digest) == (manifest, OCI_MANIFEST, sha256(manifest))
        assert read_all(client, ref(bearer), layer) == BLOB
        client.get_manifest(ref(bearer))
    # One token for repository:app:pull, reused for the blob and the second manifest.
    assert bearer.token_requests == 1
    token_req = bearer.requests_to("/token")[0]
    assert "scope=repository%3Aapp%3Apull" in token_req.path
    assert "service=fake" in token_req.path
    assert token_req.authorization is None
    # The ping's challenge lets even the first request carry a token.
    app_requests = bearer.requests_to("/v2/app/")
    assert len(app_requests) == 3
    assert all(r.authorization and r.authorization.startswith("Bearer tok-")
               for r in app_requests)


def test_token_with_credentials(tmp_path: Path) -> None:
    with FakeRegistry(auth="bearer", users={"alice": PASSWORD}) as reg:
        manifest, _ = seed(reg)
        client, _ = make_client(reg, tmp_path, creds=("alice", PASSWORD))
        with client:
            assert client.get_manifest(ref(reg))[0] == manifest
        token_req = reg.requests_to("/token")[0]
        assert token_req.authorization is not None
        assert token_req.authorization.startswith("Basic ")


def test_wrong_password_for_token_is_permission_denied(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    with FakeRegistry(auth="bearer", users={"alice": PASSWORD}) as reg:
        seed(reg)
        client, _ = make_client(reg, tmp_path, creds=("alice", "wrong-" + PASSWORD))
        with client, pytest.raises(PermissionDenied) as excinfo:
            client.get_manifest(ref(reg))
    message = str(excinfo.value)
    assert "incorrect username or password" in message
    assert "alice" in message
    assert PASSWORD not in message and "wrong-" not in message
    assert excinfo.value.hint is not None and "dockyard login" in excinfo.value.hint
    assert PASSWORD not in caplog.text and "tok-" not in caplog.text


def test_identity_token_uses_the_oauth2_form(tmp_path: Path) -> None:
    with FakeRegistry(auth="bearer", users={"alice": PASSWORD},
                      refresh_tokens={"refresh-123"}) as reg:
        manifest, _ = seed(reg)
        (tmp_path / "config.json").write_text(json.dumps(
            {"auths": {reg.host: {"identitytoken": "refresh-123"}}}))
        client, _ = make_client(reg, tmp_path)
        with client:
            assert client.get_manifest(ref(reg))[0] == manifest
        token_req = reg.requests_to("/token")[0]
        assert token_req.method == "POST"
        assert token_req.authorization is None
        assert "refresh-123" not in token_req.path  # in the form body, not the URL


def test_anonymous_refused_by_token_service(tmp_path: Path) -> None:
    with FakeRegistry(auth="bearer", users={"alice": PASSWORD}) as reg:
        seed(reg)
        client, _ = make_client(reg, tmp_path)
        with client, pytest.raises(PermissionDenied, match="refused anonymous access"):
            client.get_manifest(ref(reg))


def test_expired_token_is_fetched_again(bearer: FakeRegistry, tmp_path: Path) -> None:
    manifest, _ = seed(bearer)
    client, _ = make_client(bearer, tmp_path)
    with client:
        client.get_manifest(ref(bearer))
        bearer.expire_tokens()
        assert client.get_manifest(ref(bearer))[0] == manifest
    assert bearer.token_requests == 2


def test_push_scope_is_asked_for_push(bearer: FakeRegistry, tmp_path: Path) -> None:
    client, _ = make_client(bearer, tmp_path)
    data = b"pushed blob"
    desc = Descriptor("application/octet-stream", Digest(sha256(data)), len(data))
    with client:
        client.push_blob(ref(bearer, "up:x"), desc, io.BytesIO(data))
    assert bearer.blobs[desc.digest] == data
    scopes = [r.path for r in bearer.requests_to("/token")]
    assert any("repository%3Aup%3Apull%2Cpush" in s for s in scopes)


def test_basic_auth(tmp_path: Path) -> None:
    with FakeRegistry(auth="basic", users={"bob": PASSWORD}) as reg:
        manifest, _ = seed(reg)
        client, _ = make_client(reg, tmp_path, creds=("bob", PASSWORD))
        with client:
            assert client.get_manifest(ref(reg))[0] == manifest
        anon, _ = make_client(reg, tmp_path / "anon")
        with anon, pytest.raises(PermissionDenied, match="pull access denied for") as e:
            anon.get_manifest(ref(reg))
        assert "may require 'dockyard login'" in str(e.value)
        wrong, _ = make_client(reg, tmp_path / "wrong", creds=("bob", "nope-" + PASSWORD))
        with wrong, pytest.raises(PermissionDenied, match="incorrect username") as e:
            wrong.get_manifest(ref(reg))
        assert PASSWORD not in str(e.value)


# --- retries ------------------------------------------------------------------------------


def test_500_twice_then_ok(fake: FakeRegistry, tmp_path: Path) -> None:
    manifest, _ = seed(fake)
    fake.fault("manifests/v1", "status", status=500, times=2)
    client, sleeps = make_client(fake, tmp_path)
    with client:
        assert client.get_manifest(ref(fake))[0] == manifest
    assert len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 0.75 and 1.0 <= sleeps[1] <= 1.5  # backoff with jitter


def test_503_forever_is_unavailable(fake: FakeRegistry, tmp_path: Path) -> None:
    seed(fake)
    fake.fault("manifests/v1", "status", status=503, times=100)
    client, sleeps = make_client(fake, tmp_path, retries=2)
    with client, pytest.raises(Unavailable) as excinfo:
        client.get_manifest(ref(fake))
    message = str(excinfo.value)
    assert fake.host in message and "503" in message and "3 attempts" in message
    assert len(sleeps) == 2
    assert len(fake.requests_to("manifests/v1")) == 3


def test_429_honours_retry_after(fake: FakeRegistry, tmp_path: Path) -> None:
    _, layer = seed(fake)
    fake.fault(f"blobs/{layer.digest}", "status", status=429, headers={"Retry-After": "2"})
    client, sleeps = make_client(fake, tmp_path)
    with client:
        assert read_all(client, ref(fake), layer) == BLOB
    assert sleeps == [2.0]


def test_dropped_connection_is_retried(fake: FakeRegistry, tmp_path: Path) -> None:
    manifest, _ = seed(fake)
    fake.fault("manifests/v1", "drop")
    client, sleeps = make_client(fake, tmp_path)
    with client:
        assert client.get_manifest(ref(fake))[0] == manifest
    assert len(sleeps) == 1


def test_connection_refused_is_unavailable(tmp_path: Path) -> None:
    with FakeRegistry() as reg:
        host = reg.host
    client = RegistryClient(HostsConfig(certs_dirs=[]), None, sleep=lambda s: None, retries=1)
    with client, pytest.raises(Unavailable, match=f"registry {host} is unreachable"):
        client.get_manifest(parse_reference(f"{host}/x:y"))


# --- broken bodies ------------------------------------------------------------------------


def test_truncated_blob_breaks_off_and_resumes(fake: FakeRegistry, tmp_path: Path) -> None:
    _, layer = seed(fake)
    fake.fault(f"blobs/{layer.digest}", "truncate", keep=(1 << 20) + 1000)
    client, _ = make_client(fake, tmp_path)
    got = bytearray()
    with client:
        with pytest.raises(Unavailable, match="broke off"), \
                client.open_blob(ref(fake), layer) as stream:
            for chunk in stream:
                got += chunk
        # Everything received before the cut reaches the caller.
        assert len(got) == (1 << 20) + 1000
        with client.open_blob(ref(fake), layer, len(got)) as stream:
            assert stream.resumed and stream.offset == len(got)
            got += b"".join(stream)
    assert bytes(got) == BLOB
    assert fake.requests_to(f"blobs/{layer.digest}")[-1].headers["range"] == \
        f"bytes={(1 << 20) + 1000}-"


def test_range_ignored_starts_over(fake: FakeRegistry, tmp_path: Path) -> None:
    _, layer = seed(fake)
    fake.fault(f"blobs/{layer.digest}", "ignore_range")
    client, _ = make_client(fake, tmp_path)
    with client, client.open_blob(ref(fake), layer, 1000) as stream:
        assert not stream.resumed and stream.offset == 0
        assert b"".join(stream) == BLOB


def test_offset_at_the_end_is_an_empty_stream(fake: FakeRegistry, tmp_path: Path) -> None:
    _, layer = seed(fake)
    client, _ = make_client(fake, tmp_path)
    with client, client.open_blob(ref(fake), layer, layer.size) as stream:
        assert stream.resumed and stream.offset == layer.size
        assert list(stream) == []
    assert fake.requests_to("/blobs/") == []


def test_blob_with_wrong_content_length(fake: FakeRegistry, tmp_path: Path) -> None:
    _, layer = seed(fake)
    fake.fault(f"blobs/{layer.digest}", "wrong_length", length=len(BLOB) - 10)
    client, _ = make_client(fake, tmp_path)
    with client, pytest.raises(DigestMismatch, match="its descriptor says"):
        read_all(client, ref(fake), layer)


def test_blob_not_matching_its_digest_is_passed_on(fake: FakeRegistry, tmp_path: Path) -> None:
    # The client streams raw bytes; verifying blobs is the content store's job.
    _, layer = seed(fake)
    fake.fault(f"blobs/{layer.digest}", "corrupt")
    client, _ = make_client(fake, tmp_path)
    with client:
        data = read_all(client, ref(fake), layer)
    assert len(data) == len(BLOB) and sha256(data) != layer.digest


def test_truncated_manifest_is_fetched_again(fake: FakeRegistry, tmp_path: Path) -> None:
    manifest, _ = seed(fake)
    fake.fault("manifests/v1", "truncate", keep=10)
    client, sleeps = make_client(fake, tmp_path)
    with client:
        assert client.get_manifest(ref(fake))[0] == manifest
    assert len(sleeps) == 1


def test_manifest_with_short_content_length(fake: FakeRegistry, tmp_path: Path) -> None:
    seed(fake)
    fake.fault("manifests/v1", "wrong_length", length=20)
    client, _ = make_client(fake, tmp_path)
    with client, pytest.raises(DigestMismatch, match="the registry announced"):
        client.get_manifest(ref(fake))


def test_manifest_by_digest_is_verified(fake: FakeRegistry, tmp_path: Path) -> None:
    manifest, _ = seed(fake)
    digest = sha256(manifest)
    fake.fault(f"manifests/{digest}", "corrupt")
    client, _ = make_client(fake, tmp_path)
    with client:
        with pytest.raises(DigestMismatch) as excinfo:
            client.get_manifest(ref(fake, f"app@{digest}"))
        assert excinfo.value.expected == digest
        # Uncorrupted, the same request passes.
        assert client.get_manifest(ref(fake, f"app@{digest}"))[2] == digest


def test_manifest_by_tag_checked_against_header(fake: FakeRegistry, tmp_path: Path) -> None:
    seed(fake)
    fake.fault("manifests/v1", "corrupt")
    client, _ = make_client(fake, tmp_path)
    with client, pytest.raises(DigestMismatch):
        client.get_manifest(ref(fake))


# --- redirects ----------------------------------------------------------------------------


def test_redirect_to_storage_drops_authorization(bearer: FakeRegistry, tmp_path: Path) -> None:
    _, layer = seed(bearer)
    with FakeRegistry() as storage:
        storage.add_blob(BLOB)
        bearer.fault(f"blobs/{layer.digest}", "redirect",
                     location=f"{storage.url}/storage/{layer.digest}?X-Sig=abc")
        client, _ = make_client(bearer, tmp_path)
        with client:
            assert read_all(client, ref(bearer), layer) == BLOB
        to_storage = storage.requests_to("/storage/")
    assert len(to_storage) == 1
    assert to_storage[0].authorization is None
    assert "X-Sig=abc" in to_storage[0].path
    redirected = bearer.requests_to(f"blobs/{layer.digest}")[-1]
    assert redirected.authorization is not None and redirected.authorization.startswith("Bearer")


def test_redirect_on_same_origin_keeps_authorization(bearer: FakeRegistry,
                                                      tmp_path: Path) -> None:
    _, layer = seed(bearer)
    bearer.fault(f"/v2/app/blobs/{layer.digest}", "redirect",
                 location=f"/storage/{layer.digest}")
    client, _ = make_client(bearer, tmp_path)
    with client:
        assert read_all(client, ref(bearer), layer) == BLOB
    assert bearer.requests_to("/storage/")[0].authorization is not None


# --- slow answers -------------------------------------------------------------------------


def test_slow_answer_times_out_then_unavailable(fake: FakeRegistry, tmp_path: Path) -> None:
    seed(fake)
    fake.fault("manifests/v1", "delay", seconds=1.0, times=10)
    client, sleeps = make_client(fake, tmp_path, timeout=0.2, retries=1)
    with client, pytest.raises(Unavailable, match="ReadTimeout"):
        client.get_manifest(ref(fake))
    assert len(sleeps) == 1


def test_slow_answer_within_timeout(fake: FakeRegistry, tmp_path: Path) -> None:
    manifest, _ = seed(fake)
    fake.fault("manifests/v1", "delay", seconds=0.1)
    client, sleeps = make_client(fake, tmp_path, timeout=5.0)
    with client:
        assert client.get_manifest(ref(fake))[0] == manifest
    assert sleeps == []


# --- misc API -----------------------------------------------------------------------------


def test_not_found_messages(fake: FakeRegistry, tmp_path: Path) -> None:
    seed(fake)
    client, _ = make_client(fake, tmp_path)
    with client:
        with pytest.raises(NotFound, match=rf"manifest unknown: {fake.host}/app:nope not found"):
            client.get_manifest(ref(fake, "app:nope"))
        missing = Descriptor(OCI_LAYER_GZIP, Digest("sha256:" + "0" * 64), 1)
        with pytest.raises(NotFound, match="blob unknown"):
            read_all(client, ref(fake), missing)


def test_head_manifest(fake: FakeRegistry, tmp_path: Path) -> None:
    manifest, _ = seed(fake)
    client, _ = make_client(fake, tmp_path)
    with client:
        desc = client.head_manifest(ref(fake))
    assert desc == Descriptor(OCI_MANIFEST, Digest(sha256(manifest)), len(manifest))
    assert fake.requests_to("manifests/v1")[-1].method == "HEAD"


def test_push_with_relative_location_and_tags_pagination(fake: FakeRegistry,
                                                         tmp_path: Path) -> None:
    client, _ = make_client(fake, tmp_path)
    data = b"x" * 5000
    desc = Descriptor("application/octet-stream", Digest(sha256(data)), len(data))
    r = ref(fake, "pushed:t0")
    with client:
        assert not client.blob_exists(r, desc.digest)
        client.push_blob(r, desc, io.BytesIO(data))
        assert client.blob_exists(r, desc.digest)
        raw = b'{"schemaVersion":2}'
        for i in range(5):
            assert client.put_manifest(r.with_tag(f"t{i}"), raw, OCI_MANIFEST) == sha256(raw)
        assert client.list_tags(r, page_size=2) == [f"t{i}" for i in range(5)]
    puts = [x for x in fake.requests_to("/blobs/uploads/") if x.method == "PUT"]
    assert "_state=s1" in puts[0].path and f"digest={desc.digest.replace(':', '%3A')}" in \
        puts[0].path


def test_mirrors_are_tried_in_order(tmp_path: Path) -> None:
    with FakeRegistry() as empty, FakeRegistry() as full:
        manifest, layer = seed(full, "library/busybox", "latest")
        hosts = HostsConfig(registry_mirrors=[empty.url, full.url], certs_dirs=[])
        client = RegistryClient(hosts, None, sleep=lambda s: None)
        r = parse_reference("busybox")
        with client:
            assert client.get_manifest(r)[0] == manifest
            assert read_all(client, r, layer) == BLOB
        assert empty.requests_to("/v2/library/busybox/manifests/latest")


def test_parallel_downloads_share_one_client(bearer: FakeRegistry, tmp_path: Path) -> None:
    _, layer = seed(bearer)
    client, _ = make_client(bearer, tmp_path)
    results: list[bytes] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(read_all(client, ref(bearer), layer))
        except BaseException as e:
            errors.append(e)

    with client:
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert results == [BLOB] * 8
