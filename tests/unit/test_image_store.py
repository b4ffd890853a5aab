"""The image store's rows: add, name, find, untag, delete, and what stays referenced."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dockyard.db import open_database
from dockyard.errors import InvalidArgument, NotFound
from dockyard.image.store import ImageRecord, ImageStore, Layer
from dockyard.model.image import Digest


def _d(s: str) -> Digest:
    return Digest("sha256:" + hashlib.sha256(s.encode()).hexdigest())


def _record(name: str) -> ImageRecord:
    layer = Layer(_d(name + "chain"), _d(name + "diff"), _d(name + "blob"),
                  "application/vnd.oci.image.layer.v1.tar+gzip", 10, 20)
    return ImageRecord(id=_d(name), manifest_digest=_d(name + "m"),
                       manifest_media_type="application/vnd.oci.image.manifest.v1+json",
                       index_digest="", platform="linux/amd64", size=20, created="",
                       added=0.0, repo_digests=(f"127.0.0.1:5000/{name}@{_d(name + 'm')}",),
                       layers=(layer,))


def test_add_find_tag_untag_delete(tmp_path: Path) -> None:
    st = ImageStore(open_database(str(tmp_path)))
    rec = st.add(_record("a"), [_d("a"), _d("am")], ["127.0.0.1:5000/a:latest"])
    assert rec.references == ("127.0.0.1:5000/a:latest",)
    assert rec.layers[0].size == 20
    assert st.find_id("x", ["127.0.0.1:5000/a:latest"]) == rec.id
    assert st.find_id("x", [f"127.0.0.1:5000/a@{_d('am')}"]) == rec.id
    assert st.find_id(rec.id[7:19]) == rec.id
    assert st.find_id(rec.id) == rec.id
    assert st.find_id("nope", ["docker.io/library/nope:latest"]) is None

    st.add(_record("b"), [], ["127.0.0.1:5000/a:latest"])      # the name moves to b
    assert st.get(rec.id).references == ()
    assert st.tag(rec.id, "127.0.0.1:5000/a:latest") == _d("b")
    assert st.untag("127.0.0.1:5000/a:latest") == rec.id
    with pytest.raises(NotFound):
        st.untag("127.0.0.1:5000/a:latest")
    assert st.referenced_blobs() == {_d("a"), _d("am")}
    assert st.layer_size(_d("achain")) == 20
    st.delete(rec.id)
    with pytest.raises(NotFound):
        st.get(rec.id)
    assert st.referenced_blobs() == set()
    assert [r.id for r in st.list()] == [_d("b")]


def test_ambiguous_prefix(tmp_path: Path) -> None:
    st = ImageStore(open_database(str(tmp_path)))
    for i in range(40):
        st.add(_record(str(i)), [])
    with pytest.raises(InvalidArgument, match="ambiguous"):
        for ch in "0123456789abcdef":
            st.find_id(ch)
