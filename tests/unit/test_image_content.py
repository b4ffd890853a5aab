"""The content store: verified, staged, resumable, shared between processes."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
from pathlib import Path

import pytest

from dockyard.errors import NotFound
from dockyard.image.content import ContentStore, DigestMismatch, sha256_bytes


def test_put_and_read(tmp_path: Path) -> None:
    cs = ContentStore(str(tmp_path))
    d = cs.put_bytes(b"hello")
    assert d == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert cs.has(d) and cs.read_bytes(d) == b"hello" and cs.size(d) == 5
    assert cs.digests() == [d]
    assert os.stat(cs.path(d)).st_mode & 0o777 == 0o444
    assert cs.put_bytes(b"hello", d) == d      # idempotent
    assert os.listdir(tmp_path / "ingest") == []


def test_mismatch_keeps_nothing(tmp_path: Path) -> None:
    cs = ContentStore(str(tmp_path))
    wrong = sha256_bytes(b"other")
    with pytest.raises(DigestMismatch, match="content has digest"):
        cs.put_bytes(b"hello", wrong)
    assert not cs.has(wrong)
    assert not (tmp_path / "ingest" / (wrong[7:] + ".data")).exists()
    with pytest.raises(DigestMismatch, match="more data than its size 3"):
        cs.put_file(io.BytesIO(b"hello"), sha256_bytes(b"hello"), 3)
    assert cs.digests() == []


def test_resume_after_interruption(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    d = sha256_bytes(data)
    cs = ContentStore(str(tmp_path))
    with cs.ingest(d, len(data)) as ing:
        ing.write(data[:1000_000])
        # no commit: the process "dies" here, partial data stays
    with cs.ingest(d, len(data)) as ing:
        assert ing.offset == 1000_000
        assert b"".join(ing.read_existing()) == data[:1000_000]
        ing.write(data[1000_000:])
        ing.commit()
    assert cs.read_bytes(d) == data


def test_restart_when_range_ignored(tmp_path: Path) -> None:
    data = b"x" * 5000
    d = sha256_bytes(data)
    cs = ContentStore(str(tmp_path))
    with cs.ingest(d, len(data)) as ing:
        ing.write(data[:100])
    with cs.ingest(d, len(data)) as ing:
        ing.restart()
        assert ing.offset == 0
        ing.write(data)
        ing.commit()
    assert cs.read_bytes(d) == data


def _writer(root: str, data: bytes, out: multiprocessing.Queue[bool]) -> None:
    cs = ContentStore(root)
    with cs.ingest(sha256_bytes(data), len(data)) as ing:
        wrote = not ing.committed
        if wrote:
            for i in range(0, len(data), 65536):
                ing.write(data[i:i + 65536])
            ing.commit()
    out.put(wrote)


def test_two_processes_store_a_blob_once(tmp_path: Path) -> None:
    data = os.urandom(8 << 20)
    ctx = multiprocessing.get_context("fork")
    q: multiprocessing.Queue[bool] = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), data, q)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert sorted([q.get(), q.get()]) == [False, True]
    cs = ContentStore(str(tmp_path))
    assert cs.read_bytes(sha256_bytes(data)) == data


def test_fsck_reports_damage(tmp_path: Path) -> None:
    cs = ContentStore(str(tmp_path))
    good = cs.put_bytes(b"good")
    bad = cs.put_bytes(b"bad")
    os.chmod(cs.path(bad), 0o644)
    Path(cs.path(bad)).write_bytes(b"tampered")
    damage = cs.fsck()
    assert [x.digest for x in damage] == [bad]
    assert "content has digest" in damage[0].problem
    assert good not in [x.digest for x in damage]


def test_clean_ingest_and_missing(tmp_path: Path) -> None:
    cs = ContentStore(str(tmp_path))
    d = sha256_bytes(b"abc")
    with cs.ingest(d, 3) as ing:
        ing.write(b"a")
    assert cs.clean_ingest() == 2
    assert os.listdir(tmp_path / "ingest") == []
    with pytest.raises(NotFound):
        cs.read_bytes(d)
