"""Volumes and mounts with real busybox containers (``--network none``): named volumes shared
and kept, ``volume rm`` refused while in use, read-only binds, copy-up, anonymous volumes and
``rm -v``, ``--volumes-from``, the image's VOLUME, tmpfs volumes, bad ``--mount`` input, and no
mount left behind."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import images as tb_images
from testbed.engine import Engine

pytestmark = pytest.mark.integration

RUN = ("run", "--network", "none")


@pytest.fixture(scope="module")
def busybox() -> tb_images.BuiltImage:
    return tb_images.busybox()


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if str(path) in line.split()[4]]


@pytest.fixture
def eng(tmp_path: Path, busybox: tb_images.BuiltImage) -> Iterator[Engine]:
    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({"cgroup-parent": ""}))
    e = Engine(tmp_path / "root", config, env={"DOCKYARD_RUN_ROOT": str(tmp_path / "run")})
    assert busybox.docker_archive is not None
    e.run("load", "-i", str(busybox.docker_archive))
    try:
        yield e
    finally:
        for cid in e.run("ps", "-aq", "--no-trunc", check=False).stdout.split():
            e.run("rm", "-f", "-v", cid, check=False)
        for name in e.run("volume", "ls", "-q", check=False).stdout.split():
            e.run("volume", "rm", name, check=False)
        e.run("system", "teardown", check=False)    # the kept default bridge, nftables table
        assert _mounts_under(tmp_path) == []


def _volumes(e: Engine) -> set[str]:
    return set(e.run("volume", "ls", "-q").stdout.split())


def test_volume_survives_and_is_shared(eng: Engine) -> None:
    assert eng.run("volume", "create", "--label", "team=a", "shared").stdout == "shared\n"
    writer = eng.run(*RUN, "-d", "-v", "shared:/data", "busybox", "sh", "-c",
                     "echo from-writer > /data/msg; sleep 30").stdout.strip()
    out = eng.run(*RUN, "--rm", "-v", "shared:/in:ro", "busybox", "sh", "-c",
                  "for i in $(seq 50); do [ -s /in/msg ] && break; sleep 0.1; done; "
                  "cat /in/msg").stdout
    assert out == "from-writer\n"
    eng.run("rm", "-f", writer)
    # the volume outlives its containers, with its content
    assert eng.run(*RUN, "--rm", "-v", "shared:/data", "busybox", "cat",
                   "/data/msg").stdout == "from-writer\n"
    doc = json.loads(eng.run("volume", "inspect", "shared").stdout)[0]
    assert doc["Name"] == "shared" and doc["Driver"] == "local" and doc["Scope"] == "local"
    assert doc["Labels"] == {"team": "a"}
    assert doc["Mountpoint"] == str(eng.root / "volumes" / "shared" / "_data")
    ls = eng.run("volume", "ls").stdout.splitlines()
    assert ls[0].split() == ["DRIVER", "VOLUME", "NAME"] and ls[1].split() == ["local", "shared"]
    assert eng.run("volume", "ls", "--format", "{{.Name}} {{.Labels}}", "--filter",
                   "label=team").stdout == "shared team=a\n"


def test_rm_refused_while_in_use(eng: Engine) -> None:
    eng.run(*RUN, "--name", "user", "-v", "busy:/data", "busybox", "true")
    cid = eng.run("inspect", "-f", "{{.Id}}", "user").stdout.strip()
    refused = eng.run("volume", "rm", "busy", check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"Error response from daemon: remove busy: volume is in use - [{cid}]")
    assert eng.run("volume", "ls", "-q", "--filter", "dangling=true").stdout == ""
    eng.run("rm", "user")
    assert eng.run("volume", "ls", "-q", "--filter", "dangling=true").stdout == "busy\n"
    assert eng.run("volume", "rm", "busy").stdout == "busy\n"
    assert _volumes(eng) == set()


def test_bind_mount_read_only_and_created(eng: Engine, tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "in.txt").write_text("host data\n")
    ro = eng.run(*RUN, "--rm", "-v", f"{host}:/h:ro", "busybox", "sh", "-c",
                 "cat /h/in.txt; touch /h/new", check=False)
    assert ro.stdout == "host data\n"
    assert ro.returncode != 0 and "Read-only file system" in ro.stderr
    assert not (host / "new").exists()
    eng.run(*RUN, "--rm", "-v", f"{host}:/h:rw", "busybox", "touch", "/h/new")
    assert (host / "new").exists()
    missing = tmp_path / "made" / "by" / "run"
    eng.run(*RUN, "--rm", "-v", f"{missing}:/m", "busybox", "touch", "/m/x")
    assert (missing / "x").exists()     # docker's -v makes a missing host directory
    eng.run(*RUN, "--rm", "--mount", f"type=bind,src={host},dst=/b,readonly", "busybox",
            "test", "-f", "/b/in.txt")
    gone = eng.run(*RUN, "--rm", "--mount", f"type=bind,src={tmp_path}/nope,dst=/b",
                   "busybox", "true", check=False)
    assert gone.returncode == 125
    assert "bind source path does not exist" in gone.stderr
    assert not (tmp_path / "nope").exists()


def test_copy_up_fills_new_volume(eng: Engine) -> None:
    out = eng.run(*RUN, "--rm", "-v", "etc:/etc", "busybox", "sh", "-c",
                  "grep ^root: /etc/passwd").stdout
    assert out.startswith("root:")
    data = eng.root / "volumes" / "etc" / "_data"
    image_passwd = eng.run(*RUN, "--rm", "busybox", "stat", "-c", "%a %u %g",
                           "/etc/passwd").stdout.split()
    st = os.stat(data / "passwd")
    assert [f"{st.st_mode & 0o7777:o}", str(st.st_uid), str(st.st_gid)] == image_passwd
    # a volume that has content is not filled again
    (data / "passwd").write_text("changed\n")
    assert eng.run(*RUN, "--rm", "--mount", "type=volume,src=etc,dst=/etc", "busybox", "cat",
                   "/etc/passwd").stdout == "changed\n"
    # nocopy: a new volume stays empty
    assert eng.run(*RUN, "--rm", "-v", "empty:/etc:nocopy", "busybox", "ls",
                   "/etc").stdout == ""


def test_anonymous_volume_rm_v(eng: Engine) -> None:
    eng.run(*RUN, "--name", "keep", "-v", "/data", "busybox", "sh", "-c", "echo k > /data/k")
    doc = json.loads(eng.run("inspect", "keep").stdout)[0]
    (mount,) = doc["Mounts"]
    assert mount["Type"] == "volume" and mount["Destination"] == "/data"
    assert len(mount["Name"]) == 64 and mount["Driver"] == "local" and mount["RW"] is True
    assert set(mount) == {"Type", "Name", "Source", "Destination", "Driver", "Mode", "RW",
                          "Propagation"}
    assert doc["Config"]["Volumes"] == {"/data": {}}
    anon = mount["Name"]
    labels = json.loads(eng.run("volume", "inspect", anon).stdout)[0]["Labels"]
    assert labels == {"com.docker.volume.anonymous": ""}
    eng.run("rm", "keep")
    assert anon in _volumes(eng)        # plain rm keeps it

    eng.run(*RUN, "--name", "drop", "-v", "/data", "-v", "named:/n", "busybox", "true")
    anon2 = json.loads(eng.run("inspect", "drop").stdout)[0]["Mounts"]
    anon2_name = next(m["Name"] for m in anon2 if m["Destination"] == "/data")
    eng.run("rm", "-v", "drop")
    assert anon2_name not in _volumes(eng) and {anon, "named"} <= _volumes(eng)

    eng.run(*RUN, "--rm", "-v", "/tmpdata", "busybox", "true")   # --rm takes them too
    assert _volumes(eng) == {anon, "named"}

    # prune: anonymous ones only, unless -a
    pruned = eng.run("volume", "prune", "-f").stdout
    assert pruned.startswith(f"Deleted Volumes:\n{anon}\n")
    assert _volumes(eng) == {"named"}
    assert "named" in eng.run("volume", "prune", "-af").stdout
    assert _volumes(eng) == set()


def test_volumes_from(eng: Engine) -> None:
    eng.run(*RUN, "--name", "src", "-v", "/data", "-v", "nv:/nv", "busybox", "sh", "-c",
            "echo anon > /data/a; echo named > /nv/b")
    out = eng.run(*RUN, "--rm", "--volumes-from", "src", "busybox", "cat", "/data/a",
                  "/nv/b").stdout
    assert out == "anon\nnamed\n"
    ro = eng.run(*RUN, "--rm", "--volumes-from", "src:ro", "busybox", "touch", "/data/x",
                 check=False)
    assert ro.returncode != 0 and "Read-only file system" in ro.stderr
    unknown = eng.run(*RUN, "--rm", "--volumes-from", "nosuch", "busybox", "true",
                      check=False)
    assert unknown.returncode == 125 and "No such container: nosuch" in unknown.stderr


def _image_with_volume(busybox: tb_images.BuiltImage, out: Path, volume: str) -> Path:
    """The busybox archive again, as busybox-vol with a VOLUME (config digest renamed)."""
    assert busybox.docker_archive is not None
    with tarfile.open(busybox.docker_archive) as tin:
        members = [(m, tin.extractfile(m).read() if m.isfile() else None)  # type: ignore[union-attr]
                   for m in tin.getmembers()]
    files = {m.name: data for m, data in members}
    manifest = json.loads(files["manifest.json"] or b"")
    config = json.loads(files[manifest[0]["Config"]] or b"")
    config["config"]["Volumes"] = {volume: {}}
    config_bytes = json.dumps(config).encode()
    name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    old = manifest[0]["Config"]
    manifest[0]["Config"] = name
    manifest[0]["RepoTags"] = ["busybox-vol:latest"]
    path = out / "busybox-vol.tar"
    with tarfile.open(path, "w") as tout:
        for m, data in members:
            if m.name in (old, "manifest.json", "repositories"):
                continue
            tout.addfile(m, io.BytesIO(data) if data is not None else None)
        for member_name, blob in ((name, config_bytes),
                                  ("manifest.json", json.dumps(manifest).encode())):
            info = tarfile.TarInfo(member_name)
            info.size = len(blob)
            tout.addfile(info, io.BytesIO(blob))
    return path


def test_image_volume_is_anonymous_and_copied_up(eng: Engine, tmp_path: Path,
                                                 busybox: tb_images.BuiltImage) -> None:
    eng.run("load", "-i", str(_image_with_volume(busybox, tmp_path, "/etc")))
    eng.run(*RUN, "--name", "iv", "busybox-vol", "test", "-s", "/etc/passwd")
    (mount,) = json.loads(eng.run("inspect", "iv").stdout)[0]["Mounts"]
    assert mount["Destination"] == "/etc" and mount["Type"] == "volume"
    assert (Path(mount["Source"]) / "passwd").exists()
    eng.run("rm", "-v", "iv")
    assert _volumes(eng) == set()
    # a -v at the same place replaces the image's volume
    eng.run(*RUN, "--rm", "-v", "mine:/etc", "busybox-vol", "true")
    assert _volumes(eng) == {"mine"}


def test_tmpfs_volume_and_tmpfs_mount(eng: Engine, tmp_path: Path) -> None:
    eng.run("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=2m",
            "tv")
    opts = json.loads(eng.run("volume", "inspect", "tv").stdout)[0]["Options"]
    assert opts == {"type": "tmpfs", "device": "tmpfs", "o": "size=2m"}
    out = eng.run(*RUN, "--rm", "-v", "tv:/tv", "busybox", "sh", "-c",
                  "df -k /tv | tail -n1").stdout.split()
    assert out[0] == "tmpfs" and out[1] == "2048"
    assert _mounts_under(tmp_path) == []       # unmounted once no container runs with it
    out = eng.run(*RUN, "--rm", "--mount", "type=tmpfs,dst=/t,tmpfs-size=1m", "busybox",
                  "sh", "-c", "df -k /t | tail -n1").stdout.split()
    assert out[0] == "tmpfs" and out[1] == "1024"
    bad = eng.run("volume", "create", "-o", "type=tmpfs", "bad", check=False)
    assert bad.returncode == 1 and 'missing required option: "device"' in bad.stderr


@pytest.mark.parametrize(("spec", "message"), [
    ("type=floppy,target=/x", 'invalid mount config for type "floppy": mount type unknown'),
    ("type=volume,source=vv", "target is required"),
    ("type=volume,src=vv,target=/x,colour=red", "unexpected key 'colour' in 'colour=red'"),
    ("type=tmpfs,target=/x,volume-opt=a=b", "cannot mix 'volume-*' options with mount type "
                                            "'tmpfs'"),
])
def test_malformed_mount_changes_nothing(eng: Engine, spec: str, message: str) -> None:
    before = eng.run("ps", "-aq").stdout
    got = eng.run(*RUN, "--rm", "-v", "/anon", "-v", "named:/n", "--mount", spec, "busybox",
                  "true", check=False)
    assert got.returncode == 125
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert eng.run("ps", "-aq").stdout == before
    assert _volumes(eng) == set()


def test_nothing_left_after_removal(eng: Engine, tmp_path: Path) -> None:
    eng.run("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "tv")
    running = eng.run(*RUN, "-d", "-v", "tv:/tv", "-v", "/anon", "-v", f"{tmp_path}/b:/b",
                      "--mount", "type=tmpfs,dst=/t", "busybox", "sleep", "60").stdout.strip()
    assert any("volumes/tv/_data" in m for m in _mounts_under(tmp_path))
    eng.run("rm", "-f", "-v", running)
    eng.run("volume", "rm", "tv")
    assert _volumes(eng) == set()
    assert _mounts_under(tmp_path) == []


def test_bind_device_volume_and_failed_mount(eng: Engine, tmp_path: Path) -> None:
    src = tmp_path / "dev-src"
    src.mkdir()
    (src / "f").write_text("on the device\n")
    eng.run("volume", "create", "-o", "type=none", "-o", "o=bind", "-o", f"device={src}", "bv")
    assert eng.run(*RUN, "--rm", "-v", "bv:/b", "busybox", "sh", "-c",
                   "cat /b/f; echo back > /b/g").stdout == "on the device\n"
    assert (src / "g").read_text() == "back\n"
    assert _mounts_under(tmp_path) == []
    eng.run("volume", "create", "-o", "type=none", "-o", "o=bind", "-o",
            f"device={tmp_path}/absent", "broken")
    failed = eng.run(*RUN, "--rm", "-v", "broken:/b", "busybox", "true", check=False)
    assert failed.returncode == 125 and "failed to mount local volume" in failed.stderr
    assert eng.run("ps", "-aq").stdout == ""        # --rm: the container went with the start
    assert _mounts_under(tmp_path) == []
    eng.run("volume", "rm", "broken", "bv")


def test_system_df_volumes_and_prune_volumes(eng: Engine) -> None:
    import re
    import time

    def rows(text: str) -> dict[str, list[str]]:
        table = [re.split(r" {3,}", ln.rstrip()) for ln in text.splitlines() if ln.strip()]
        return {r[0]: r[1:] for r in table[1:]}

    eng.run("volume", "create", "named")
    eng.run(*RUN, "--name", "user", "-v", "named:/data", "busybox", "sh", "-c",
            "printf 12345 > /data/f")
    anon = eng.run(*RUN, "-d", "-v", "/scratch", "busybox", "sh", "-c",
                   "dd if=/dev/zero of=/scratch/x bs=1000 count=10 2>/dev/null; sleep 30"
                   ).stdout.strip()
    anon_vol = json.loads(eng.run("inspect", anon).stdout)[0]["Mounts"][0]["Name"]
    eng.run(*RUN, "--rm", "-v", "/gone", "busybox", "true")     # --rm takes its volume along
    for _ in range(50):         # dd in the running one fills its volume
        df = rows(eng.run("system", "df").stdout)
        if df["Local Volumes"][2] == "10.01kB":
            break
        time.sleep(0.1)
    # two volumes, both mounted by a container (one running, one exited): active, not
    # reclaimable; sizes are what _data holds
    assert df["Local Volumes"] == ["2", "2", "10.01kB", "0B (0%)"]
    verbose = eng.run("system", "df", "-v").stdout
    section = verbose.split("Local Volumes space usage:")[1].split("Build cache")[0]
    vol_rows = rows(section)
    assert vol_rows[anon_vol] == ["1", "10kB"] and vol_rows["named"] == ["1", "5B"]
    doc = json.loads(eng.run("system", "df", "-v", "--format", "{{json .Volumes}}").stdout)
    assert {v["Name"]: v["Links"] for v in doc} == {anon_vol: "1", "named": "1"}
    # the named volume's user goes: it is reclaimable, but prune --volumes takes only
    # anonymous volumes no container uses (docker 23+)
    eng.run("rm", "user")
    assert rows(eng.run("system", "df").stdout)["Local Volumes"] == [
        "2", "1", "10.01kB", "5B (0%)"]
    out = eng.run("system", "prune", "-f", "--volumes").stdout
    assert "Deleted Volumes:" not in out        # the anonymous one is still in use
    eng.run("rm", "-f", anon)
    out = eng.run("system", "prune", "-f", "--volumes").stdout
    assert f"Deleted Volumes:\n{anon_vol}\n\n" in out
    assert out.endswith("Total reclaimed space: 10kB\n")
    assert _volumes(eng) == {"named"}
    assert rows(eng.run("system", "df").stdout)["Local Volumes"] == ["1", "0", "5B", "5B (100%)"]
    plain = eng.run("system", "prune", "-f").stdout
    assert "Deleted Volumes" not in plain and _volumes(eng) == {"named"}
