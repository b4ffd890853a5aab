"""`dockyard diff/export/commit/cp` with real containers from the busybox image on a throwaway
engine root, with both storage drivers (overlay2 reads the upper directory, vfs compares a
merged copy with the image's layers)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import images as tb_images
from testbed.engine import DOCKYARD, Engine, loaded_engine

pytestmark = pytest.mark.integration

CHANGES = ("echo hi > /tmp/new; echo x >> /etc/passwd; rm /bin/ls; mkdir -p /newdir/sub; "
           "echo y > /newdir/sub/f")
EXPECTED_DIFF = ["C /bin", "D /bin/ls", "C /etc", "C /etc/passwd", "A /newdir",
                 "A /newdir/sub", "A /newdir/sub/f", "C /tmp", "A /tmp/new"]


@pytest.fixture(scope="module")
def busybox() -> tb_images.BuiltImage:
    return tb_images.busybox()


@pytest.fixture(params=["overlay2", "vfs"])
def eng(request: pytest.FixtureRequest, tmp_path: Path,
        busybox: tb_images.BuiltImage) -> Iterator[Engine]:
    with loaded_engine(tmp_path, {"storage-driver": request.param}) as e:
        yield e


def _bytes(eng: Engine, *args: str, stdin: bytes | None = None,
           cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    cmd = [*DOCKYARD, "--root", str(eng.root)]
    if eng.config is not None:
        cmd += ["--config", str(eng.config)]
    return subprocess.run([*cmd, *args], input=stdin, capture_output=True, env=eng.env,
                          cwd=cwd, timeout=120, check=False)


def _mount_points() -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]


def _no_temp_mounts(eng: Engine) -> None:
    assert not [m for m in _mount_points() if m.startswith(str(eng.root / "tmp"))]
    tmp = eng.root / "tmp"
    assert not tmp.exists() or os.listdir(tmp) == []


def test_diff_lists_added_changed_and_deleted(eng: Engine) -> None:
    eng.run("run", "--name", "c1", "busybox", "sh", "-c", CHANGES)
    assert eng.run("diff", "c1").stdout.splitlines() == EXPECTED_DIFF
    fresh = eng.run("create", "busybox", "true").stdout.strip()
    assert eng.run("diff", fresh).stdout == ""
    missing = eng.run("diff", "nosuch", check=False)
    assert missing.returncode == 1 and "No such container: nosuch" in missing.stderr


def test_diff_of_a_replaced_directory(eng: Engine) -> None:
    # no network: /etc/hosts & co. would be mounted in /etc (busy, as with docker)
    eng.run("run", "--name", "c1", "--network", "none", "busybox", "sh", "-c",
            "rm -rf /etc && mkdir /etc && echo a > /etc/x")
    assert eng.run("diff", "c1").stdout.splitlines() == [
        "C /etc", "D /etc/group", "D /etc/passwd", "A /etc/x"]
    eng.run("commit", "c1", "replaced")
    out = eng.run("run", "--rm", "--network", "none", "replaced", "ls", "/etc").stdout.split()
    assert out == ["x"]


def test_export_is_the_merged_filesystem(eng: Engine, tmp_path: Path) -> None:
    eng.run("run", "--name", "c1", "busybox", "sh", "-c", CHANGES + "; chown 7:8 /tmp/new")
    p = _bytes(eng, "export", "c1")
    assert p.returncode == 0, p.stderr
    with tarfile.open(fileobj=io.BytesIO(p.stdout)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert "bin/ls" not in members
        assert members["tmp/new"].uid == 7 and members["tmp/new"].gid == 8
        assert members["newdir/sub"].isdir()
        assert members["bin/sh"].islnk() or members["bin/sh"].isreg()
        f = tar.extractfile("etc/passwd")
        assert f is not None and f.read().endswith(b"x\n")
        assert tar.extractfile("newdir/sub/f").read() == b"y\n"  # type: ignore[union-attr]
        assert not any(n.startswith(("/", "./")) for n in members)
    out = tmp_path / "c1.tar"
    eng.run("export", "-o", str(out), "c1")
    assert out.read_bytes() == p.stdout or tarfile.is_tarfile(out)
    _no_temp_mounts(eng)


def test_export_refuses_a_terminal(eng: Engine) -> None:
    eng.run("create", "--name", "c1", "busybox", "true")
    import pty

    primary, secondary = pty.openpty()
    try:
        cmd = [*DOCKYARD, "--root", str(eng.root), "--config", str(eng.config), "export", "c1"]
        p = subprocess.run(cmd, stdout=secondary, stderr=subprocess.PIPE, env=eng.env,
                           timeout=60, check=False)
    finally:
        os.close(primary)
        os.close(secondary)
    assert p.returncode == 1
    assert b"cowardly refusing to save to a terminal. Use the -o flag or redirect" in p.stderr


def test_commit_then_run_sees_the_changes(eng: Engine) -> None:
    eng.run("run", "--name", "c1", "-e", "GREETING=hello", "busybox", "sh", "-c", CHANGES)
    image_id = eng.run("commit", "-a", "Ann <ann@example.com>", "-m", "my change",
                       "-c", "ENV FOO=bar", "-c", "LABEL team=dock", "c1",
                       "committed:v1").stdout.strip()
    assert image_id.startswith("sha256:")
    out = eng.run("run", "--rm", "committed:v1", "sh", "-c",
                  "tail -1 /etc/passwd; cat /tmp/new /newdir/sub/f; echo $FOO $GREETING; "
                  "ls /bin/ls || echo gone").stdout.split()
    assert out == ["x", "hi", "y", "bar", "hello", "gone"]
    doc = json.loads(eng.run("image", "inspect", "committed:v1").stdout)[0]
    assert doc["Id"] == image_id
    assert doc["Author"] == "Ann <ann@example.com>" and doc["Comment"] == "my change"
    assert doc["Config"]["Labels"] == {"team": "dock"}
    assert doc["Config"]["Cmd"] == ["sh", "-c", CHANGES]
    base = json.loads(eng.run("image", "inspect", "busybox").stdout)[0]
    assert doc["RootFS"]["Layers"][:-1] == base["RootFS"]["Layers"]
    assert len(doc["RootFS"]["Layers"]) == len(base["RootFS"]["Layers"]) + 1
    history = eng.run("history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}",
                      "committed:v1").stdout.splitlines()
    assert history[0] == f"sh -c {CHANGES}|my change"
    # a container of the new image diffs against the new image
    eng.run("run", "--name", "c2", "committed:v1", "true")
    assert eng.run("diff", "c2").stdout == ""
    _no_temp_mounts(eng)


def test_commit_without_changes_adds_no_layer(eng: Engine) -> None:
    eng.run("create", "--name", "c1", "busybox", "true")
    eng.run("commit", "--pause=false", "c1", "same")
    doc = json.loads(eng.run("image", "inspect", "same").stdout)[0]
    base = json.loads(eng.run("image", "inspect", "busybox").stdout)[0]
    assert doc["RootFS"]["Layers"] == base["RootFS"]["Layers"]
    bad = eng.run("commit", "-c", "BOGUS x", "c1", check=False)
    assert bad.returncode == 1 and "BOGUS is not a valid change command" in bad.stderr


def test_commit_of_a_running_container(eng: Engine) -> None:
    eng.run("run", "-d", "--name", "c1", "busybox", "sh", "-c",
            "echo live > /live; touch /ready; sleep 60")
    eng.run("exec", "c1", "sh", "-c", "while [ ! -e /ready ]; do sleep 0.05; done")
    eng.run("commit", "c1", "live")
    assert eng.run("inspect", "-f", "{{.State.Status}}", "c1").stdout.strip() == "running"
    assert eng.run("run", "--rm", "live", "cat", "/live").stdout == "live\n"
    eng.run("rm", "-f", "c1")


def test_cp_both_directions(eng: Engine, tmp_path: Path) -> None:
    eng.run("run", "--name", "c1", "busybox", "sh", "-c",
            "mkdir -p /data/sub && echo one > /data/a && echo two > /data/sub/b && "
            "chown -R 5:6 /data")
    host = tmp_path / "host"
    host.mkdir()
    # a file to a new name, into a directory, a directory, a directory's contents
    p = _bytes(eng, "cp", "c1:/data/a", "newname", cwd=host)
    assert p.returncode == 0, p.stderr
    assert (host / "newname").read_text() == "one\n"
    assert p.stderr.decode().startswith("Successfully copied 2.05kB to newname")
    eng.run("cp", "-q", "c1:/data/a", str(host))
    assert (host / "a").read_text() == "one\n"
    assert (host / "a").stat().st_uid == os.geteuid()     # without -a: the invoking user
    eng.run("cp", "-a", "c1:/data", str(host))
    assert (host / "data" / "sub" / "b").read_text() == "two\n"
    assert (host / "data" / "sub" / "b").stat().st_uid == 5   # -a keeps ownership
    eng.run("cp", "c1:/data/.", str(host / "contents"))
    assert sorted(os.listdir(host / "contents")) == ["a", "sub"]
    eng.run("cp", "c1:/data/.", str(host / "contents"))   # again: merges into it
    refused = eng.run("cp", "c1:/data", str(host / "a"), check=False)
    assert refused.returncode == 1 and "cannot copy directory" in refused.stderr
    # into the container
    (host / "up.txt").write_text("up\n")
    os.chown(host / "up.txt", 11, 12)
    eng.run("cp", str(host / "up.txt"), "c1:/tmp/")
    eng.run("cp", str(host / "up.txt"), "c1:/tmp/renamed")
    eng.run("cp", "-a", str(host / "up.txt"), "c1:/tmp/kept")
    eng.run("cp", str(host / "data"), "c1:/copied")
    out = _bytes(eng, "cp", "c1:/tmp", "-")
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        m = {x.name: x for x in tar.getmembers()}
    assert {"tmp/up.txt", "tmp/renamed", "tmp/kept"} <= set(m)
    assert (m["tmp/up.txt"].uid, m["tmp/up.txt"].gid) == (0, 0)    # root without -a
    assert (m["tmp/kept"].uid, m["tmp/kept"].gid) == (11, 12)
    out = _bytes(eng, "cp", "c1:/copied/sub/b", "-")
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        assert [x.name for x in tar.getmembers()] == ["b"]
    missing = eng.run("cp", "c1:/nope", str(host), check=False)
    assert missing.returncode == 1
    assert "Could not find the file /nope in container c1" in missing.stderr
    both = eng.run("cp", "c1:/a", "c1:/b", check=False)
    assert "copying between containers is not supported" in both.stderr
    neither = eng.run("cp", "./a", "./b", check=False)
    assert "must specify at least one container source" in neither.stderr
    _no_temp_mounts(eng)


def test_cp_tar_streams(eng: Engine) -> None:
    eng.run("create", "--name", "c1", "busybox", "true")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("in/file.txt")
        data = b"from a tar\n"
        info.size, info.uid, info.gid, info.mode = len(data), 3, 4, 0o640
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("in/link")
        link.type, link.linkname = tarfile.SYMTYPE, "file.txt"
        tar.addfile(link)
    p = _bytes(eng, "cp", "-a", "-", "c1:/tmp", stdin=buf.getvalue())
    assert p.returncode == 0, p.stderr
    out = _bytes(eng, "cp", "c1:/tmp/in", "-")
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        m = {x.name: x for x in tar.getmembers()}
        assert m["in/file.txt"].mode == 0o640 and m["in/file.txt"].uid == 3
        assert m["in/link"].issym() and m["in/link"].linkname == "file.txt"
        assert tar.extractfile("in/file.txt").read() == data  # type: ignore[union-attr]
    not_dir = _bytes(eng, "cp", "-", "c1:/etc/passwd", stdin=buf.getvalue())
    assert not_dir.returncode == 1 and b"must be a directory" in not_dir.stderr
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        info = tarfile.TarInfo("../../../../../../tmp/dockyard-cp-escape")
        tar.addfile(info, io.BytesIO(b""))
    p = _bytes(eng, "cp", "-", "c1:/tmp", stdin=evil.getvalue())
    assert p.returncode == 1 and not Path("/tmp/dockyard-cp-escape").exists()


def test_cp_stays_inside_the_container(eng: Engine, tmp_path: Path) -> None:
    marker = f"dockyard-cp-{os.getpid()}"
    eng.run("run", "--name", "c1", "busybox", "sh", "-c",
            "ln -s /etc /abs && ln -s ../../../../../../../etc /rel && "
            f"echo inside > /etc/{marker}")
    # reading through the links reads the container's /etc, not the host's
    for src in (f"c1:/abs/{marker}", f"c1:/rel/{marker}"):
        out = _bytes(eng, "cp", src, "-")
        assert out.returncode == 0, out.stderr
        with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
            assert tar.extractfile(marker).read() == b"inside\n"  # type: ignore[union-attr]
    out = _bytes(eng, "cp", "c1:/rel/passwd", "-")
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        passwd = tar.extractfile("passwd").read()  # type: ignore[union-attr]
    assert passwd != Path("/etc/passwd").read_bytes()
    # -L copies what a link leads to (inside), under the link's name
    out = _bytes(eng, "cp", "-L", "c1:/abs", "-")
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        assert f"abs/{marker}" in tar.getnames()
    # writing through the links writes the container's /etc
    (tmp_path / marker).write_text("from the host\n")
    eng.run("cp", str(tmp_path / marker), "c1:/abs/")
    eng.run("cp", str(tmp_path / marker), f"c1:/rel/{marker}-2")
    assert not Path(f"/etc/{marker}").exists()
    assert not Path(f"/etc/{marker}-2").exists()
    out = _bytes(eng, "cp", "c1:/etc", "-")
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        names = tar.getnames()
        assert f"etc/{marker}-2" in names
        assert tar.extractfile(f"etc/{marker}").read() == b"from the host\n"  # type: ignore[union-attr]
    _no_temp_mounts(eng)


def test_cp_into_a_running_container(eng: Engine, tmp_path: Path) -> None:
    eng.run("run", "-d", "--name", "c1", "busybox", "sleep", "60")
    (tmp_path / "f").write_text("hot\n")
    eng.run("cp", str(tmp_path / "f"), "c1:/tmp/f")
    assert eng.run("exec", "c1", "cat", "/tmp/f").stdout == "hot\n"
    eng.run("exec", "c1", "sh", "-c", "echo back > /tmp/g")
    eng.run("cp", "c1:/tmp/g", str(tmp_path / "g"))
    assert (tmp_path / "g").read_text() == "back\n"
    assert "A /tmp/g" in eng.run("diff", "c1").stdout.splitlines()
    eng.run("rm", "-f", "c1")
