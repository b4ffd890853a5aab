"""image.archive without root: tar indexing and confinement, archive formats, save, --change."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from dockyard.errors import InvalidArgument
from dockyard.image.archive import (
    ArchiveError,
    SaveItem,
    TarFiles,
    _name_from_annotations,
    apply_changes,
    clean_name,
    import_config,
    read_archive,
    write_archive,
)
from dockyard.image.content import ContentStore
from dockyard.image.store import ImageRecord, Layer
from dockyard.model.image import (
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Digest,
    Platform,
    chain_ids,
)


def _sha(data: bytes) -> Digest:
    return Digest("sha256:" + hashlib.sha256(data).hexdigest())


def _layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _config(diff_ids: list[str]) -> bytes:
    return json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                       "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()


def _write_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tar.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tar.addfile(info, io.BytesIO(m[1]))
    return path


def _link(name: str, target: str, *, hard: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info


def test_clean_name() -> None:
    assert clean_name("./a/b") == "a/b"
    assert clean_name("/a//b/") == "a/b"
    assert clean_name("a/../b") == "b"
    for bad in ("../x", "a/../../x", "..", "/../x"):
        with pytest.raises(ArchiveError):
            clean_name(bad)


def test_tar_links_followed_inside_only(tmp_path: Path) -> None:
    path = _write_tar(tmp_path / "a.tar", [
        ("abc.tar", b"layer"), _link("id/layer.tar", "../abc.tar"),
        _link("hard.tar", "abc.tar", hard=True), _link("loop", "loop")])
    files = TarFiles(str(path))
    assert files.span("id/layer.tar").read() == b"layer"
    assert files.span("hard.tar").read() == b"layer"
    with pytest.raises(ArchiveError, match="too many links"):
        files.span("loop")
    with pytest.raises(ArchiveError, match="outside"):
        TarFiles(str(_write_tar(tmp_path / "b.tar", [_link("x", "../../etc/passwd")])))
    with pytest.raises(ArchiveError, match="outside"):
        TarFiles(str(_write_tar(tmp_path / "c.tar", [("../evil", b"x")])))
    (tmp_path / "d.tar").write_bytes(b"not a tar" * 100)
    with pytest.raises(ArchiveError, match="not a tar"):
        TarFiles(str(tmp_path / "d.tar"))


def test_docker_archive_synthesizes_a_manifest(tmp_path: Path) -> None:
    plain = _layer({"a": b"1"})
    second = _layer({"b": b"2"})
    gz = gzip.compress(second)
    config = _config([_sha(plain), _sha(second)])
    manifest = [{"Config": "cfg.json", "RepoTags": ["busybox:latest", "x/y:1"],
                 "Layers": ["l1/layer.tar", f"blobs/sha256/{_sha(gz)[7:]}"]}]
    path = _write_tar(tmp_path / "a.tar", [
        ("cfg.json", config), ("l1/layer.tar", plain), (f"blobs/sha256/{_sha(gz)[7:]}", gz),
        ("manifest.json", json.dumps(manifest).encode())])
    archive = read_archive(TarFiles(str(path)))
    assert archive.kind == "docker-archive"
    (image,) = archive.images
    assert image.names == ("docker.io/library/busybox:latest", "docker.io/x/y:1")
    assert image.parsed.media_type == OCI_MANIFEST
    assert image.parsed.config.digest == _sha(config)
    assert [(d.media_type, d.digest) for d in image.parsed.layers] == \
        [(OCI_LAYER, _sha(plain)), (OCI_LAYER_GZIP, _sha(gz))]
    assert image.manifest_digest == _sha(image.manifest)
    # the same bytes every time: a reload keeps the manifest digest
    assert read_archive(TarFiles(str(path))).images[0].manifest == image.manifest


def test_docker_archive_uncompressed_layer_must_match_diff_id(tmp_path: Path) -> None:
    plain = _layer({"a": b"1"})
    manifest = [{"Config": "c.json", "RepoTags": None, "Layers": ["l.tar"]}]
    path = _write_tar(tmp_path / "a.tar", [
        ("c.json", _config([_sha(b"other")])), ("l.tar", plain),
        ("manifest.json", json.dumps(manifest).encode())])
    with pytest.raises(ArchiveError, match="does not match the image config"):
        read_archive(TarFiles(str(path)))


def test_oci_names() -> None:
    assert _name_from_annotations({"io.containerd.image.name": "busybox:1",
                                   "org.opencontainers.image.ref.name": "1"}) == \
        "docker.io/library/busybox:1"
    assert _name_from_annotations({"org.opencontainers.image.ref.name":
                                   "localhost/torture:latest"}) == "localhost/torture:latest"
    assert _name_from_annotations({"org.opencontainers.image.ref.name": "latest"}) is None
    assert _name_from_annotations({}) is None


def test_save_is_both_formats_and_deterministic(tmp_path: Path) -> None:
    content = ContentStore(str(tmp_path / "content"))
    layer = gzip.compress(_layer({"f": b"x"}), mtime=0)
    diff_id = _sha(_layer({"f": b"x"}))
    config = _config([diff_id])
    content.put_bytes(layer)
    content.put_bytes(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": _sha(config), "size": len(config)},
                           "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": _sha(layer),
                                       "size": len(layer)}]}).encode()
    content.put_bytes(manifest)
    chain = chain_ids([diff_id])[0]
    record = ImageRecord(_sha(config), _sha(manifest), OCI_MANIFEST, "", "linux/amd64", 1, "",
                         0.0, layers=(Layer(chain, diff_id, _sha(layer), OCI_LAYER_GZIP,
                                            len(layer), 1),))
    item = SaveItem(record, ("docker.io/library/busybox:latest",))
    out1, out2 = io.BytesIO(), io.BytesIO()
    write_archive(content, [item], out1)
    write_archive(content, [item], out2)
    assert out1.getvalue() == out2.getvalue()
    path = tmp_path / "saved.tar"
    path.write_bytes(out1.getvalue())
    with tarfile.open(path) as tar:
        assert all(m.mtime == 0 and m.uid == 0 for m in tar.getmembers())
        manifest_json = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        repositories = json.loads(tar.extractfile("repositories").read())  # type: ignore[union-attr]
    assert manifest_json == [{"Config": f"blobs/sha256/{_sha(config)[7:]}",
                              "RepoTags": ["busybox:latest"],
                              "Layers": [f"blobs/sha256/{_sha(layer)[7:]}"]}]
    assert repositories == {"busybox": {"latest": _sha(config)[7:]}}
    archive = read_archive(TarFiles(str(path)))
    assert archive.kind == "docker+oci"
    (image,) = archive.images
    assert image.manifest == manifest
    assert image.names == ("docker.io/library/busybox:latest",)


def test_apply_changes() -> None:
    cfg = apply_changes({}, [
        "CMD echo hi", 'ENTRYPOINT ["/bin/env", "-i"]', "ENV A=1 B='two words'",
        "ENV LEGACY value with spaces", "ENV A=3", "LABEL x=y", "EXPOSE 80 8000-8001/UDP",
        "WORKDIR /srv", "WORKDIR app", "USER 1000:1000", "VOLUME /data /logs",
        'VOLUME ["/v"]', "STOPSIGNAL SIGINT", "onbuild RUN true",
        "HEALTHCHECK --interval=1m30s --retries=3 CMD curl -f http://x/"])
    assert cfg == {
        "Cmd": ["/bin/sh", "-c", "echo hi"], "Entrypoint": ["/bin/env", "-i"],
        "Env": ["A=3", "B=two words", "LEGACY=value with spaces"], "Labels": {"x": "y"},
        "ExposedPorts": {"80/tcp": {}, "8000/udp": {}, "8001/udp": {}},
        "WorkingDir": "/srv/app", "User": "1000:1000",
        "Volumes": {"/data": {}, "/logs": {}, "/v": {}}, "StopSignal": "SIGINT",
        "OnBuild": ["RUN true"],
        "Healthcheck": {"Interval": 90_000_000_000, "Retries": 3,
                        "Test": ["CMD-SHELL", "curl -f http://x/"]}}
    assert apply_changes({}, ["HEALTHCHECK NONE"]) == {"Healthcheck": {"Test": ["NONE"]}}
    for bad in ("RUN true", "FROM x", "EXPOSE 70000", "EXPOSE 80/xyz", "USER", "ENV A"):
        with pytest.raises(InvalidArgument):
            apply_changes({}, [bad])


def test_import_config() -> None:
    raw = import_config(_sha(b"x"), platform=Platform("linux", "arm64", "v8"),
                        changes=["CMD ['sh']"], message="hello", now=lambda: 0.5)
    doc = json.loads(raw)
    assert doc == {"architecture": "arm64", "os": "linux", "variant": "v8",
                   "created": "1970-01-01T00:00:00.500000Z",
                   "config": {"Cmd": ["/bin/sh", "-c", "['sh']"]},
                   "rootfs": {"type": "layers", "diff_ids": [_sha(b"x")]},
                   "history": [{"created": "1970-01-01T00:00:00.500000Z", "comment": "hello"}],
                   "comment": "hello"}
