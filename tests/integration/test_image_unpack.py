"""Layer unpacking against the real kernel: the torture image stacked with overlayfs, hostile
layers that try to write outside their directory, diff_ids and the tar dialects."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import struct
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.errors import InvalidArgument
from dockyard.image.mounter import mount_all, unmount
from dockyard.image.snapshot import CopySnapshotter, Mount
from dockyard.image.unpack import OPAQUE_XATTR, UnpackResult, unpack_layer
from dockyard.model.image import chain_ids
from testbed import images

pytestmark = pytest.mark.integration


# --- building tars -------------------------------------------------------------------------


def _info(name: str, kind: bytes = tarfile.REGTYPE, *, mode: int = 0o644, uid: int = 0,
          gid: int = 0, linkname: str = "", mtime: int = 1_000_000) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.linkname = linkname
    info.mtime = mtime
    return info


Entry = tuple[tarfile.TarInfo, bytes]


def f(name: str, data: bytes = b"", **kw: int) -> Entry:
    return _info(name, **kw), data  # type: ignore[arg-type]


def d(name: str, mode: int = 0o755, **kw: int) -> Entry:
    return _info(name, tarfile.DIRTYPE, mode=mode, **kw), b""  # type: ignore[arg-type]


def sym(name: str, target: str) -> Entry:
    return _info(name, tarfile.SYMTYPE, linkname=target, mode=0o777), b""


def hard(name: str, target: str) -> Entry:
    return _info(name, tarfile.LNKTYPE, linkname=target), b""


def chardev(name: str, major: int = 1, minor: int = 3) -> Entry:
    info = _info(name, tarfile.CHRTYPE, mode=0o666)
    info.devmajor, info.devminor = major, minor
    return info, b""


def make_tar(*entries: Entry, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in entries:
            if info.isreg():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def unpack(tar: bytes, dest: Path, compression: str = "") -> UnpackResult:
    return unpack_layer(io.BytesIO(tar), str(dest), compression=compression)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the layer that a hostile layer must not touch."""
    out = tmp_path / "outside"
    out.mkdir()
    (out / "sentinel").write_bytes(b"untouched\n")
    return out


def _snapshot(path: Path) -> dict[str, tuple[int, int, int, bytes]]:
    state = {}
    for p in sorted(path.rglob("*")):
        st = p.lstat()
        body = p.read_bytes() if stat.S_ISREG(st.st_mode) else b""
        state[str(p)] = (st.st_mode, st.st_nlink, st.st_size, body)
    return state


# --- torture image ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torture() -> images.BuiltImage:
    return images.torture()


def _blob(image: images.BuiltImage, digest: str) -> Path:
    return image.oci_layout / "blobs" / "sha256" / digest.removeprefix("sha256:")


@pytest.fixture
def torture_layers(torture: images.BuiltImage, tmp_path: Path) -> list[Path]:
    dirs = []
    for i, (digest, diff_id) in enumerate(zip(torture.layer_digests, torture.diff_ids,
                                              strict=True)):
        dest = tmp_path / f"layer{i}"
        with open(_blob(torture, digest), "rb") as blob:
            result = unpack_layer(blob, str(dest), compression="gzip")
        assert result.diff_id == diff_id
        dirs.append(dest)
    return dirs


@pytest.fixture
def mountpoint(tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "rootfs"
    target.mkdir()
    yield target
    unmount(str(target))


def test_torture_layers_stacked_with_overlay(torture_layers: list[Path], tmp_path: Path,
                                             mountpoint: Path) -> None:
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir(mode=0o755)
    work.mkdir()
    lowers = ":".join(str(p) for p in reversed(torture_layers))
    mount_all([Mount("overlay", "overlay", (f"lowerdir={lowers}", f"upperdir={upper}",
                                            f"workdir={work}"))], str(mountpoint))
    assert images.check_rootfs(mountpoint) == []


def test_torture_layers_in_the_overlay_format(torture_layers: list[Path]) -> None:
    top = torture_layers[1]
    st = os.lstat(top / "whole-dir")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 and (st.st_uid, st.st_gid) == (0, 0)
    assert stat.S_ISCHR(os.lstat(top / "data" / "to-delete.txt").st_mode)
    assert os.getxattr(top / "opaque", OPAQUE_XATTR) == b"y"
    assert not any(p.name.startswith(".wh.") for p in top.rglob("*"))


def test_torture_layers_merged_by_the_copy_snapshotter(torture: images.BuiltImage,
                                                       tmp_path: Path, mountpoint: Path) -> None:
    snap = CopySnapshotter(str(tmp_path / "snap"))
    chain = chain_ids(list(torture.diff_ids))  # type: ignore[arg-type]
    for digest, chain_id in zip(torture.layer_digests, chain, strict=True):
        tmp = snap.prepare_layer(chain_id)
        with open(_blob(torture, digest), "rb") as blob:
            unpack_layer(blob, tmp, compression="gzip")
        snap.commit_layer(chain_id, tmp)
    mount_all(snap.prepare("c", chain), str(mountpoint))
    assert images.check_rootfs(mountpoint) == []


# --- hostile layers --------------------------------------------------------------------------


def _refused(tar: bytes, dest: Path, outside: Path, match: str) -> None:
    before = _snapshot(outside)
    with pytest.raises(InvalidArgument, match=match):
        unpack(tar, dest)
    assert _snapshot(outside) == before
    assert not dest.exists(), "a refused layer leaves nothing behind"


def test_dotdot_escape_is_refused(tmp_path: Path, outside: Path) -> None:
    _refused(make_tar(f("ok", b"1"), f("../outside/evil", b"x")), tmp_path / "layer", outside,
             "outside the layer")
    _refused(make_tar(d("a"), f("a/../../outside/evil", b"x")), tmp_path / "layer", outside,
             "outside the layer")


def test_absolute_names_stay_inside(tmp_path: Path, outside: Path) -> None:
    dest = tmp_path / "layer"
    unpack(make_tar(f(f"{outside}/evil", b"x"), f("/abs/path", b"y")), dest)
    assert not (outside / "evil").exists()
    assert (dest / str(outside).lstrip("/") / "evil").read_bytes() == b"x"
    assert (dest / "abs/path").read_bytes() == b"y"


def test_writing_through_a_symlinked_parent_is_refused(tmp_path: Path, outside: Path) -> None:
    for evil in (f("link/evil", b"x"), d("link/evil"), sym("link/evil", "/"),
                 chardev("link/null"), f("link/.wh.sentinel"), f("link/.wh..wh..opq"),
                 f("link/deeper/evil", b"x")):
        _refused(make_tar(sym("link", str(outside)), evil), tmp_path / "layer", outside,
                 "symlink")
    assert OPAQUE_XATTR not in os.listxattr(outside)


def test_relative_symlink_parent_is_refused_too(tmp_path: Path, outside: Path) -> None:
    _refused(make_tar(sym("up", ".."), f("up/outside/evil", b"x")), tmp_path / "layer",
             outside, "symlink")


def test_hardlinks_out_of_the_layer_are_refused(tmp_path: Path, outside: Path) -> None:
    passwd_links = os.lstat("/etc/passwd").st_nlink
    _refused(make_tar(hard("pw", "/etc/passwd")), tmp_path / "layer", outside, "not in this")
    assert os.lstat("/etc/passwd").st_nlink == passwd_links
    _refused(make_tar(hard("x", "../outside/sentinel")), tmp_path / "layer", outside,
             "outside the layer")
    _refused(make_tar(sym("link", str(outside)), hard("h", "link/sentinel")),
             tmp_path / "layer", outside, "symlink")
    _refused(make_tar(d("dir"), hard("h", "dir")), tmp_path / "layer", outside, "not a file")
    _refused(make_tar(f("a", b"1"), hard("a", "a")), tmp_path / "layer", outside, "itself")


def test_hardlink_to_a_symlink_links_the_symlink_itself(tmp_path: Path, outside: Path) -> None:
    dest = tmp_path / "layer"
    before = _snapshot(outside)
    unpack(make_tar(sym("s", str(outside / "sentinel")), hard("h", "s")), dest)
    assert os.readlink(dest / "h") == str(outside / "sentinel")
    assert os.lstat(dest / "h").st_ino == os.lstat(dest / "s").st_ino
    assert _snapshot(outside) == before


def test_hardlink_to_a_directory_over_a_file_is_refused(tmp_path: Path, outside: Path) -> None:
    """Found by hypothesis: the link replaces an existing file, then EPERM from link(2)."""
    tar = make_tar(d("b"), f("a", b"x"), hard("a", "b"))
    _refused(tar, tmp_path / "layer", outside, "the target is not a file")


def test_device_outside_is_refused(tmp_path: Path, outside: Path) -> None:
    _refused(make_tar(chardev("../outside/null")), tmp_path / "layer", outside, "outside")


def test_entries_replace_what_is_there(tmp_path: Path, outside: Path) -> None:
    dest = tmp_path / "layer"
    before = _snapshot(outside)
    unpack(make_tar(
        d("d"), f("d/inner", b"gone"), f("d", b"now a file"),           # file replaces dir
        sym("s", str(outside)), d("s", mode=0o700), f("s/x", b"in"),     # dir replaces link
        f("sf", b"file"), sym("sf", "target"),                           # link replaces file
        d("keep", mode=0o700), f("keep/a", b"a"), d("keep", mode=0o750),  # dir stays a dir
    ), dest)
    assert (dest / "d").read_bytes() == b"now a file"
    assert (dest / "s").is_dir() and not (dest / "s").is_symlink()
    assert (dest / "s/x").read_bytes() == b"in"
    assert os.readlink(dest / "sf") == "target"
    assert (dest / "keep/a").read_bytes() == b"a"
    assert stat.S_IMODE(os.lstat(dest / "keep").st_mode) == 0o750
    assert _snapshot(outside) == before


def test_root_entry_that_is_not_a_directory_is_refused(tmp_path: Path, outside: Path) -> None:
    _refused(make_tar(f("./", b"x")), tmp_path / "layer", outside, "root")


def test_truncated_and_corrupt_layers(tmp_path: Path, outside: Path) -> None:
    tar = make_tar(f("big", os.urandom(10_000)))
    _refused(tar[:4096], tmp_path / "layer", outside, "unexpected end")
    bad = bytearray(tar)
    bad[0] ^= 0x20
    _refused(bytes(bad), tmp_path / "layer", outside, "checksum")
    with pytest.raises(InvalidArgument, match="gzip"):
        unpack(gzip.compress(tar)[:-30], tmp_path / "layer", "gzip")
    assert not (tmp_path / "layer").exists()


# --- diff_ids and compression ----------------------------------------------------------------


SAMPLE = (d("etc"), f("etc/hostname", b"box\n"), f("blob", os.urandom(300_000)))


@pytest.mark.parametrize("compression", ["", "gzip", "zstd", "auto"])
def test_diff_id_is_the_sha256_of_the_tar(compression: str, tmp_path: Path) -> None:
    tar = make_tar(*SAMPLE) + bytes(4096) + b"trailing bytes count too"
    blob = {"": tar, "gzip": gzip.compress(tar), "auto": gzip.compress(tar),
            "zstd": zstandard.ZstdCompressor().compress(tar)}[compression]
    result = unpack(blob, tmp_path / "layer", compression)
    assert result.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert result.size == len(tar)
    assert result.files == 3
    assert (tmp_path / "layer/etc/hostname").read_bytes() == b"box\n"


def test_multi_member_gzip(tmp_path: Path) -> None:
    tar = make_tar(*SAMPLE)
    cut = len(tar) // 3
    members = [tar[:cut], tar[cut:2 * cut], tar[2 * cut:]]
    blob = b"".join(gzip.compress(m) for m in members)
    result = unpack(blob, tmp_path / "layer", "gzip")
    assert result.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    raw = zlib.compressobj(1, zlib.DEFLATED, 31)
    blob = raw.compress(tar) + raw.flush() + bytes(100)
    assert unpack(blob, tmp_path / "layer2", "gzip").diff_id == result.diff_id


def test_empty_layer(tmp_path: Path) -> None:
    result = unpack(make_tar(), tmp_path / "layer")
    assert result.files == 0
    assert result.size == 10240  # tarfile pads to a record
    assert list((tmp_path / "layer").iterdir()) == []


# --- tar dialects and metadata ----------------------------------------------------------------


LONG = "a" * 60 + "/" + "b" * 70 + "/" + "c" * 80


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_long_names(fmt: int, tmp_path: Path) -> None:
    entries = [d("a" * 60), d("a" * 60 + "/" + "b" * 70), f(LONG, b"long")]
    if fmt != tarfile.USTAR_FORMAT:  # ustar has no room for a 212-character link target
        entries += [sym("link", "/" + LONG), hard("x" * 120, LONG)]
    dest = tmp_path / "layer"
    unpack(make_tar(*entries, fmt=fmt), dest)
    assert (dest / LONG).read_bytes() == b"long"
    if fmt != tarfile.USTAR_FORMAT:
        assert os.readlink(dest / "link") == "/" + LONG
        assert os.lstat(dest / ("x" * 120)).st_ino == os.lstat(dest / LONG).st_ino


# A struct vfs_cap_data (revision 2, effective) granting CAP_NET_RAW, as PAX carries it.
_CAP = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)
CAP_NET_RAW = _CAP.decode("utf-8", "surrogateescape")


def test_metadata(tmp_path: Path) -> None:
    setuid = _info("bin/su", mode=0o4755, uid=1000, gid=1000, mtime=123_456_789)
    setuid.pax_headers = {"SCHILY.xattr.user.note": "hi",
                          "SCHILY.xattr.trusted.overlay.opaque": "y",
                          "SCHILY.xattr.security.capability": CAP_NET_RAW}
    fifo = _info("run/fifo", tarfile.FIFOTYPE, mode=0o620, uid=5, gid=6)
    blk = _info("dev/sda", tarfile.BLKTYPE, mode=0o660, gid=6)
    blk.devmajor, blk.devminor = 8, 0
    link = sym("bin/sh", "busybox")
    link[0].uid, link[0].gid = 7, 8
    dest = tmp_path / "layer"
    unpack(make_tar(
        d("bin", mtime=42), (setuid, b"#!/bin/sh\n"), link,
        d("tmp", mode=0o1777), d("ro", mode=0o555), f("ro/inside", b"still written"),
        d("run"), (fifo, b""), d("dev"), (blk, b""), d("shared", mode=0o2775, gid=50),
        f("shared/file", b"x", gid=0),
    ), dest)
    st = os.lstat(dest / "bin/su")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o4755, 1000, 1000)
    assert int(st.st_mtime) == 123_456_789
    assert os.getxattr(dest / "bin/su", "user.note") == b"hi"
    assert os.getxattr(dest / "bin/su", "security.capability") == _CAP, "set after chown"
    assert OPAQUE_XATTR not in os.listxattr(dest / "bin/su"), "trusted.overlay.* is dropped"
    assert os.lstat(dest / "bin").st_mtime == 42, "dir mtimes are set after their entries"
    assert (os.lstat(dest / "bin/sh").st_uid, os.lstat(dest / "bin/sh").st_gid) == (7, 8)
    assert stat.S_IMODE(os.lstat(dest / "tmp").st_mode) == 0o1777
    assert stat.S_IMODE(os.lstat(dest / "ro").st_mode) == 0o555
    assert (dest / "ro/inside").read_bytes() == b"still written"
    st = os.lstat(dest / "run/fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o620
    assert (st.st_uid, st.st_gid) == (5, 6)
    st = os.lstat(dest / "dev/sda")
    assert stat.S_ISBLK(st.st_mode) and st.st_rdev == os.makedev(8, 0)
    assert stat.S_IMODE(os.lstat(dest / "shared").st_mode) == 0o2775
    assert os.lstat(dest / "shared/file").st_gid == 0, "the entry's gid, not the setgid dir's"


def test_implicit_parents_and_aufs_metadata(tmp_path: Path) -> None:
    dest = tmp_path / "layer"
    unpack(make_tar(f("deep/er/file", b"x"), d(".wh..wh.plnk"), f(".wh..wh.plnk/123.4", b"z"),
                    f(".wh..wh.aufs"), f("dir/.wh..wh.orph")), dest)
    assert (dest / "deep/er/file").read_bytes() == b"x"
    assert stat.S_IMODE(os.lstat(dest / "deep").st_mode) == 0o755
    assert sorted(p.name for p in dest.iterdir()) == ["deep", "dir"]
    assert list((dest / "dir").iterdir()) == []


@pytest.mark.slow
def test_debian_layers_diff_ids(tmp_path: Path) -> None:
    debian = images.debian()
    for i, (digest, diff_id) in enumerate(zip(debian.layer_digests, debian.diff_ids,
                                              strict=True)):
        with open(_blob(debian, digest), "rb") as blob:
            result = unpack_layer(blob, str(tmp_path / str(i)), compression="gzip")
        assert result.diff_id == diff_id
    assert (tmp_path / "0/usr/bin/bash").exists()
    assert (tmp_path / "1/usr/local/bin/hello").exists()


# --- property tests ----------------------------------------------------------------------------

_NAMES = st.sampled_from(["a", "b", "c", ".wh.a", "..", ".", "", "/", "x y"])


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(paths=st.lists(st.lists(_NAMES, min_size=1, max_size=4).map("/".join), min_size=1,
                      max_size=8),
       kinds=st.lists(st.sampled_from("fdsl"), min_size=8, max_size=8))
def test_any_layer_stays_inside(paths: list[str], kinds: list[str], tmp_path: Path) -> None:
    """Whatever names and types a layer holds, unpacking it succeeds or is refused with
    InvalidArgument/PermissionDenied, and nothing outside the layer changes."""
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "sentinel").write_bytes(b"untouched\n")
    before = _snapshot(outside)
    maker = {"f": lambda n: f(n, b"data"), "d": d, "s": lambda n: sym(n, str(outside)),
             "l": lambda n: hard(n, paths[0])}
    entries = (maker[k](p) for p, k in zip(paths, kinds, strict=False))
    tar = make_tar(sym("out", str(outside)), *entries)
    dest = tmp_path / "layer"
    try:
        unpack(tar, dest)
    except InvalidArgument:
        assert not dest.exists()
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    assert _snapshot(outside) == before


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_tars_fail_cleanly(data: st.DataObject, tmp_path: Path) -> None:
    tar = bytearray(make_tar(d("dir"), f("dir/file", b"x" * 700), sym("dir/link", "file"),
                             hard("dir/hard", "dir/file"), fmt=tarfile.GNU_FORMAT))
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, 3 * 512 + 700))
        tar[pos] = data.draw(st.integers(0, 255))
    dest = tmp_path / "layer"
    try:
        unpack(bytes(tar), dest)
    except InvalidArgument:
        assert not dest.exists()
    finally:
        shutil.rmtree(dest, ignore_errors=True)
