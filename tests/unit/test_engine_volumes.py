"""Volumes without a kernel: the mount flags' parsers, the local driver's rows and
directories, a container's mount points, prune and filters, and copy-up into a directory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.db import open_database
from dockyard.engine.config import EngineConfig
from dockyard.engine.mountspec import (
    check_duplicates,
    parse_mount,
    parse_volume,
    parse_volumes_from,
)
from dockyard.engine.volumes import VolumeService
from dockyard.errors import FailedPrecondition, InvalidArgument, NotFound
from dockyard.volumes.copyup import copy_up
from dockyard.volumes.local import ANONYMOUS_LABEL, VolumeStore, parse_mount_options

CID1, CID2 = "a" * 64, "b" * 64


# --- -v / --mount / --volumes-from ----------------------------------------------------------


def test_parse_volume_kinds() -> None:
    named = parse_volume("data:/data:ro")
    assert (named.type, named.source, named.target, named.readonly) == (
        "volume", "data", "/data", True)
    anon = parse_volume("/data/")
    assert (anon.type, anon.source, anon.target, anon.mode) == ("volume", "", "/data", "")
    assert parse_volume("data:/data").mode == "z"
    bind = parse_volume("/host/dir:/in")
    assert (bind.type, bind.source, bind.readonly, bind.propagation, bind.create_source) == (
        "bind", "/host/dir", False, "rprivate", True)
    assert parse_volume("/h:/in:ro,rshared").propagation == "rshared"


@pytest.mark.parametrize(("spec", "message"), [
    ("/data:rw", "invalid spec: /data:rw"),
    ("a:b:c:d", "invalid spec: a:b:c:d"),
    ("data:/x:bogus", "invalid mode: bogus"),
    ("data:/x:ro,rw", "invalid mode: ro,rw"),
    ("data:rel", "invalid mount path: 'rel' mount path must be absolute"),
    ("data:/", "destination can't be '/'"),
    ("bad/name:/x", 'includes invalid characters for a local volume name'),
    ("/h:/x:nocopy", "invalid mode: nocopy"),
])
def test_parse_volume_errors(spec: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(")):
        parse_volume(spec)


def test_parse_mount_keys() -> None:
    m = parse_mount("type=volume,src=v1,dst=/v,readonly,volume-opt=type=tmpfs,"
                    "volume-label=a=b,volume-nocopy")
    assert (m.type, m.source, m.target, m.readonly, m.nocopy) == ("volume", "v1", "/v", True,
                                                                  True)
    assert dict(m.volume_options) == {"type": "tmpfs"}
    assert dict(m.volume_labels) == {"a": "b"}
    t = parse_mount("type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1770")
    assert t.tmpfs_data() == "size=64m,mode=1770"
    b = parse_mount("type=bind,source=/src,target=/dst,ro=true,bind-propagation=rslave")
    assert (b.readonly, b.propagation) == (True, "rslave")


@pytest.mark.parametrize(("spec", "message"), [
    ("type=foo,target=/x", 'invalid mount config for type "foo": mount type unknown'),
    ("type=volume,source=v", "target is required"),
    ("target=/x", "type is required"),
    ("type=bind,src=/a,target=/x,color=red", "unexpected key 'color' in 'color=red'"),
    ("type=bind,target=/x,bogus", "invalid field 'bogus' must be a key=value pair"),
    ("type=bind,target=/x", 'invalid mount config for type "bind": field Source must not be '
                            'empty'),
    ("type=tmpfs,source=x,target=/x", "field Source must not be specified"),
    ("type=bind,src=/a,target=/x,volume-nocopy", "cannot mix 'volume-\\*' options with mount "
                                                 "type 'bind'"),
    ("type=tmpfs,target=/x,tmpfs-size=lots", "invalid value for tmpfs-size: lots"),
    ("type=volume,target=/x,readonly=maybe", "invalid value for readonly: maybe"),
])
def test_parse_mount_errors(spec: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_mount(spec)


def test_volumes_from_and_duplicates() -> None:
    assert parse_volumes_from("c1") == ("c1", "")
    assert parse_volumes_from("c1:ro") == ("c1", "ro")
    with pytest.raises(InvalidArgument, match="invalid mode: z"):
        parse_volumes_from("c1:z")
    with pytest.raises(InvalidArgument, match="Duplicate mount point: /d"):
        check_duplicates([parse_volume("a1:/d"), parse_mount("type=volume,target=/d")])


def test_mount_options() -> None:
    from dockyard.linux import libc

    assert parse_mount_options("size=64m,uid=1000") == (0, "size=64m,uid=1000")
    assert parse_mount_options("bind,ro") == (libc.MS_BIND | libc.MS_RDONLY, "")


# --- the local driver and the service -------------------------------------------------------


def _service(tmp_path: Path) -> VolumeService:
    db = open_database(str(tmp_path))
    return VolumeService(EngineConfig(root=str(tmp_path), run_root=str(tmp_path / "run")), db)


def test_store_create_remove_in_use(tmp_path: Path) -> None:
    store = VolumeStore(str(tmp_path), open_database(str(tmp_path)))
    vol, made = store.create("data", labels={"k": "v"}, ref=CID1)
    assert made and vol.mountpoint == str(tmp_path / "volumes" / "data" / "_data")
    assert os.path.isdir(vol.mountpoint)
    again, made = store.create("data", labels={"other": "x"})
    assert not made and dict(again.labels) == {"k": "v"}     # docker: the existing one
    store.add_ref("data", CID2)
    with pytest.raises(FailedPrecondition) as e:
        store.remove("data")
    assert e.value.message == f"remove data: volume is in use - [{CID1}, {CID2}]"
    store.drop_refs(CID1)
    store.drop_refs(CID2)
    store.remove("data")
    assert not (tmp_path / "volumes" / "data").exists()
    with pytest.raises(NotFound, match="get data: no such volume"):
        store.get("data")


@pytest.mark.parametrize(("opts", "message"), [
    ({"colour": "red"}, 'invalid option: "colour"'),
    ({"type": "tmpfs"}, 'missing required option: "device"'),
    ({"o": "size=1m", "device": "tmpfs"}, 'missing required option: "type"'),
])
def test_store_refuses_bad_options(tmp_path: Path, opts: dict[str, str], message: str) -> None:
    store = VolumeStore(str(tmp_path), open_database(str(tmp_path)))
    with pytest.raises(InvalidArgument, match=message):
        store.create("v1", options=opts)
    assert store.volumes() == []


def test_mount_points_and_forget(tmp_path: Path) -> None:
    svc = _service(tmp_path)
    host_dir = tmp_path / "host" / "made"
    points = svc.mount_points(
        CID1, [parse_volume("named:/n"), parse_volume("/anon"),
               parse_volume(f"{host_dir}:/h:ro"), parse_mount("type=tmpfs,target=/t")],
        image_volumes=["/img", "/n"])
    by_dest = {p["Destination"]: p for p in points}
    assert set(by_dest) == {"/n", "/anon", "/h", "/t", "/img"}
    assert host_dir.is_dir()                      # -v: a missing host directory is made
    assert by_dest["/h"]["RW"] is False and by_dest["/h"]["Type"] == "bind"
    anon = by_dest["/anon"]["Name"]
    assert len(anon) == 64 and svc.get(anon).anonymous
    assert ANONYMOUS_LABEL in svc.get(by_dest["/img"]["Name"]).labels
    assert by_dest["/n"]["Name"] == "named" and not svc.get("named").anonymous
    binds, tmpfs = VolumeService.binds(points)
    assert tmpfs == [("/t", "")]
    assert {b.destination for b in binds} == {"/n", "/anon", "/h", "/img"}
    mounts = VolumeService.mounts(points)
    assert {"Type": "bind", "Source": str(host_dir), "Destination": "/h", "Mode": "ro",
            "RW": False, "Propagation": "rprivate"} in mounts

    # a second container shares them through --volumes-from, read-only
    shared = svc.mount_points(CID2, [], volumes_from=[({"MountPoints": points}, "ro")])
    assert all(not p["RW"] for p in shared) and len(shared) == 4   # the tmpfs is not shared
    assert sorted(svc.users(anon)) == [CID1, CID2]
    assert svc.volumes({"dangling": ["true"]}) == []

    # rm -v of the first: its anonymous volumes stay while the second uses them
    assert svc.forget(CID1, remove_anonymous=True, points=points) == []
    removed = svc.forget(CID2, remove_anonymous=True, points=shared)
    assert removed == []        # CID2 did not create them
    assert {v.name for v in svc.volumes({"dangling": ["true"]})} == {
        "named", anon, by_dest["/img"]["Name"]}
    names, _ = svc.prune()
    assert sorted(names) == sorted([anon, by_dest["/img"]["Name"]])   # anonymous only
    assert [v.name for v in svc.volumes()] == ["named"]
    assert svc.prune(all_volumes=True)[0] == ["named"]


def test_rm_v_removes_own_anonymous(tmp_path: Path) -> None:
    svc = _service(tmp_path)
    points = svc.mount_points(CID1, [parse_volume("/anon"), parse_volume("keep:/k")])
    anon = next(p["Name"] for p in points if p["Destination"] == "/anon")
    assert svc.forget(CID1, remove_anonymous=True, points=points) == [anon]
    assert [v.name for v in svc.volumes()] == ["keep"]


def test_mount_points_failure_leaves_nothing(tmp_path: Path) -> None:
    svc = _service(tmp_path)
    with pytest.raises(InvalidArgument, match="bind source path does not exist"):
        svc.mount_points(CID1, [parse_volume("/anon"),
                                parse_mount(f"type=bind,src={tmp_path}/nope,target=/x")])
    assert svc.volumes() == []


def test_filters(tmp_path: Path) -> None:
    svc = _service(tmp_path)
    svc.create("alpha", labels={"team": "a"})
    svc.create("beta", labels={"team": "b", "x": ""})
    svc.mount_points(CID1, [parse_volume("beta:/b")])

    def names(**f: list[str]) -> list[str]:
        return [v.name for v in svc.volumes(f)]

    assert names(name=["alp"]) == ["alpha"]
    assert names(label=["team=b"]) == ["beta"]
    assert names(label=["x"]) == ["beta"]
    assert names(dangling=["true"]) == ["alpha"]
    assert names(dangling=["false"]) == ["beta"]
    assert names(driver=["local"]) == ["alpha", "beta"]
    with pytest.raises(InvalidArgument, match="invalid filter 'colour'"):
        svc.volumes({"colour": ["red"]})
    doc = svc.inspect(svc.get("alpha"))
    assert set(doc) == {"CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options",
                        "Scope"}
    assert (doc["Scope"], doc["Options"], doc["Labels"]) == ("local", None, {"team": "a"})


# --- copy-up ----------------------------------------------------------------------------------


def test_copy_up_keeps_modes_links_and_skips_non_empty(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    etc = rootfs / "etc"
    (etc / "sub").mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0\n")
    os.chmod(etc / "passwd", 0o640)
    os.link(etc / "passwd", etc / "passwd-link")
    os.symlink("passwd", etc / "alias")
    os.chmod(etc, 0o751)
    os.symlink("/etc", rootfs / "link-to-etc")      # resolved inside the rootfs
    vol = tmp_path / "vol"
    vol.mkdir()
    assert copy_up(str(rootfs), "/link-to-etc", str(vol))
    assert (vol / "passwd").read_text() == "root:x:0:0\n"
    assert stat.S_IMODE(os.stat(vol / "passwd").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(vol).st_mode) == 0o751
    assert os.readlink(vol / "alias") == "passwd"
    assert os.stat(vol / "passwd").st_ino == os.stat(vol / "passwd-link").st_ino
    assert (vol / "sub").is_dir()
    (etc / "new").write_text("x")
    assert not copy_up(str(rootfs), "/etc", str(vol))       # not empty: left alone
    assert not (vol / "new").exists()
    assert not copy_up(str(rootfs), "/missing", str(vol))


def test_relative_sources_are_host_directories(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_volume("./d:/x").source == str(tmp_path / "d")
    assert parse_volume("./d:/x").type == "bind"
    assert parse_mount("type=bind,src=.,dst=/x").source == str(tmp_path)


def test_stale_references_do_not_pin_volumes(tmp_path: Path) -> None:
    svc = _service(tmp_path)
    svc.db.execute("CREATE TABLE containers (id TEXT PRIMARY KEY)")
    svc.mount_points(CID1, [parse_volume("pinned:/p")])      # no container row: stale
    assert svc.remove("pinned") is not None


@given(st.text(alphabet="abc/:.,=-_rowz ", max_size=40))
def test_parsers_fail_only_with_invalid_argument(text: str) -> None:
    for parse in (parse_volume, parse_mount):
        try:
            parse(text)
        except InvalidArgument:
            pass
