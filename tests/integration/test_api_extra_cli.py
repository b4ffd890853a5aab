"""``dockyard serve``'s container filesystem, resource, statistics and image-archive/registry
endpoints, driven by the real docker CLI (/usr/local/bin/docker, 28.x): cp both ways (and
through symlinks that must stay inside the container), stats --no-stream, update, diff, export,
commit, history, save | load, push and pull back, login."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import secrets
import socket
import struct
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.apidaemon import DOCKER, Daemon
from testbed.fixtures_registry import RegistryFactory
from testbed.registry import Registry

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="no docker CLI")]


@pytest.fixture
def sleeper(api_daemon: Daemon) -> Iterator[str]:
    """A running busybox container (name returned), removed at the end."""
    name = f"x{secrets.token_hex(4)}"
    api_daemon.docker("run", "-d", "--name", name, "--network", "none", "busybox", "sh", "-c",
                      "trap 'exit 0' TERM; while true; do sleep 0.1; done")
    try:
        yield name
    finally:
        api_daemon.docker("rm", "-f", name, check=False)


def test_cp_files_and_directories_both_ways(api_daemon: Daemon, sleeper: str,
                                            tmp_path: Path) -> None:
    d, c = api_daemon, sleeper
    (tmp_path / "note.txt").write_text("from the host\n")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a").write_text("A\n")
    (tree / "sub" / "b").write_text("B\n")
    os.symlink("a", tree / "link-to-a")

    d.docker("cp", str(tmp_path / "note.txt"), f"{c}:/tmp/")
    d.docker("cp", str(tree), f"{c}:/tmp/tree")
    got = d.docker("exec", c, "sh", "-c", "cat /tmp/note.txt /tmp/tree/a /tmp/tree/sub/b; "
                   "readlink /tmp/tree/link-to-a; stat -c '%u:%g' /tmp/note.txt").stdout
    assert got == "from the host\nA\nB\na\n0:0\n"
    # -a keeps the owner
    os.chown(tmp_path / "note.txt", 1234, 4321)
    d.docker("cp", "-a", str(tmp_path / "note.txt"), f"{c}:/tmp/owned")
    assert d.docker("exec", c, "stat", "-c", "%u:%g", "/tmp/owned").stdout == "1234:4321\n"
    # a file renamed on the way, and the contents of a directory (dir/.) into another
    d.docker("cp", str(tmp_path / "note.txt"), f"{c}:/tmp/renamed")
    d.docker("exec", c, "mkdir", "/tmp/into")
    d.docker("cp", f"{tree}/.", f"{c}:/tmp/into")
    assert d.docker("exec", c, "sh", "-c", "cat /tmp/renamed; ls /tmp/into").stdout == \
        "from the host\na\nlink-to-a\nsub\n"

    d.docker("exec", c, "sh", "-c", "mkdir -p /made/deep && echo in-ctr > /made/deep/f && "
             "echo top > /made/top")
    d.docker("cp", f"{c}:/made", str(tmp_path / "back"))
    assert (tmp_path / "back" / "deep" / "f").read_text() == "in-ctr\n"
    assert (tmp_path / "back" / "top").read_text() == "top\n"
    d.docker("cp", f"{c}:/made/top", str(tmp_path / "top-copy"))
    assert (tmp_path / "top-copy").read_text() == "top\n"
    # - : a tar on stdout
    raw = subprocess.run([DOCKER, "-H", d.url, "cp", f"{c}:/made/deep", "-"],
                         capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        assert sorted(tar.getnames()) == ["deep", "deep/f"]

    # - : a tar from stdin, unpacked into a directory
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("from-stdin/f")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"stdin\n"))
    subprocess.run([DOCKER, "-H", d.url, "cp", "-", f"{c}:/tmp"], input=buf.getvalue(),
                   capture_output=True, check=True)
    assert d.docker("exec", c, "cat", "/tmp/from-stdin/f").stdout == "stdin\n"

    missing = d.docker("cp", f"{c}:/no/such/file", str(tmp_path / "x"), check=False)
    assert missing.returncode != 0 and "/no/such/file" in missing.stderr
    nowhere = d.docker("cp", str(tmp_path / "note.txt"), f"{c}:/no/such/dir/", check=False)
    assert nowhere.returncode != 0
    assert not (tmp_path / "x").exists()

    # a stopped container's filesystem is mounted for the time of the copy
    d.docker("stop", "-t", "5", c)
    d.docker("cp", str(tmp_path / "note.txt"), f"{c}:/made/while-stopped")
    d.docker("cp", f"{c}:/made/while-stopped", str(tmp_path / "stopped-copy"))
    assert (tmp_path / "stopped-copy").read_text() == "from the host\n"
    assert "A /made/while-stopped" in d.docker("diff", c).stdout.splitlines()


def test_cp_through_symlinks_stays_inside_the_container(api_daemon: Daemon, sleeper: str,
                                                        tmp_path: Path) -> None:
    d, c = api_daemon, sleeper
    marker = f"planted-{secrets.token_hex(4)}"
    # links that would lead out of the rootfs if they were followed on the host
    d.docker("exec", c, "sh", "-c", "ln -s / /escape && ln -s ../../../../../../.. /up && "
             "ln -s /tmp /tmplink && echo container-passwd > /tmp/passwd-mark")
    (tmp_path / marker).write_text("payload\n")
    d.docker("cp", str(tmp_path / marker), f"{c}:/up/tmp/")
    d.docker("cp", str(tmp_path / marker), f"{c}:/escape/tmp/{marker}-2")
    d.docker("cp", str(tmp_path / marker), f"{c}:/tmplink/")
    assert not Path("/tmp", marker).exists() and not Path("/tmp", f"{marker}-2").exists()
    listed = d.docker("exec", c, "ls", "/tmp").stdout.split()
    assert marker in listed and f"{marker}-2" in listed

    # reading through them gives the container's files, not the host's
    d.docker("cp", f"{c}:/escape/etc/passwd", str(tmp_path / "passwd"))
    assert (tmp_path / "passwd").read_text() == \
        d.docker("exec", c, "cat", "/etc/passwd").stdout
    d.docker("cp", f"{c}:/up/tmp/passwd-mark", str(tmp_path / "mark"))
    assert (tmp_path / "mark").read_text() == "container-passwd\n"
    # -L follows the link named; without it the link itself is copied
    d.docker("cp", "-L", f"{c}:/tmplink", str(tmp_path / "followed"))
    assert (tmp_path / "followed" / "passwd-mark").is_file()
    d.docker("cp", f"{c}:/tmplink", str(tmp_path / "as-link"))
    assert os.readlink(tmp_path / "as-link") == "/tmp"


def test_archive_endpoint_directly(api_daemon: Daemon, sleeper: str) -> None:
    """docker's path stat header, 404s, and a tar whose member climbs out refused."""
    d, c = api_daemon, sleeper
    d.docker("exec", c, "sh", "-c", "echo 12345 > /tmp/five && ln -s /tmp/five /five")
    status, _ = d.request("HEAD", f"/v1.44/containers/{c}/archive?path=/five")
    assert status == 200
    from testbed.apidaemon import UnixHTTPConnection

    conn = UnixHTTPConnection(d.socket)
    try:
        conn.request("HEAD", f"/v1.44/containers/{c}/archive?path=/five")
        resp = conn.getresponse()
        resp.read()
        stat = json.loads(base64.b64decode(resp.getheader("X-Docker-Container-Path-Stat")))
    finally:
        conn.close()
    assert stat["name"] == "five" and stat["linkTarget"] == "/tmp/five"
    assert stat["mode"] & (1 << 27)             # Go's os.ModeSymlink
    status, doc = d.request("GET", f"/v1.44/containers/{c}/archive?path=/nothing")
    assert status == 404 and "Could not find the file /nothing" in doc["message"]
    status, doc = d.request("GET", "/v1.44/containers/no-such-ctr/archive?path=/")
    assert status == 404
    status, doc = d.request("GET", f"/v1.44/containers/{c}/archive")
    assert status == 400
    status, doc = d.request("GET", f"/v1.44/containers/{c}/archive?path=/tmp%00x")
    assert status == 400
    status, doc = d.request("GET", f"/v1.44/containers/{c}/archive?path=/{'x' * 300}")
    assert status == 400 and "too long" in doc["message"]
    status, _ = d.request("HEAD", f"/v1.44/containers/{c}/archive?path=/{'x' * 300}")
    assert status == 400

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("../../../../../../tmp/evil")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    status, doc = d.request("PUT", f"/v1.44/containers/{c}/archive?path=/tmp", buf.getvalue(),
                            {"Content-Type": "application/x-tar"})
    assert status == 400 and "leads out" in doc["message"]
    assert not Path("/tmp/evil").exists()
    # a directory is not replaced by a file
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("tmp")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    status, doc = d.request("PUT", f"/v1.44/containers/{c}/archive?path=/&"
                            "noOverwriteDirNonDir=true", buf.getvalue(),
                            {"Content-Type": "application/x-tar"})
    assert status == 409 and "cannot overwrite directory" in doc["message"]
    assert d.docker("exec", c, "cat", "/tmp/five").stdout == "12345\n"


def test_stats_no_stream_and_update(api_daemon: Daemon) -> None:
    d = api_daemon
    name = f"busy{secrets.token_hex(3)}"
    d.docker("run", "-d", "--name", name, "--network", "none", "--memory", "64m", "busybox",
             "sh", "-c", "while :; do :; done")
    try:
        row = d.docker("stats", "--no-stream", "--format",
                       "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}", name).stdout.strip()
        got_name, cpu, mem, pids = row.split("|")
        assert got_name == name
        assert float(cpu.rstrip("%")) > 10.0          # a busy loop
        used, limit = (x.strip() for x in mem.split("/"))
        assert limit == "64MiB" and used != "0B"
        assert int(pids) >= 1
        table = d.docker("stats", "--no-stream").stdout.splitlines()      # every running one
        assert table[0].split()[:3] == ["CONTAINER", "ID", "NAME"]
        assert name in [line.split()[1] for line in table[1:]]

        assert d.docker("update", "--memory", "128m", name).stdout.strip() == name
        assert d.docker("inspect", "-f", "{{.HostConfig.Memory}}", name).stdout.strip() == \
            str(128 << 20)
        row = d.docker("stats", "--no-stream", "--format", "{{.MemUsage}}", name).stdout
        assert row.strip().endswith("/ 128MiB")
        # the new limit is in the container's bundle too: a restart keeps it
        d.docker("restart", "-t", "1", name)
        row = d.docker("stats", "--no-stream", "--format", "{{.MemUsage}}", name).stdout
        assert row.strip().endswith("/ 128MiB")
        bad = d.docker("update", "--cpu-quota", "50000", name, check=False)
        assert bad.returncode != 0 and "CpuQuota" in bad.stderr
        small = d.docker("update", "--memory", "1m", name, check=False)
        assert small.returncode != 0 and "Minimum memory limit" in small.stderr

        status, doc = d.request("GET", f"/v1.44/containers/{name}/stats?stream=false")
        assert status == 200
        assert doc["precpu_stats"]["cpu_usage"]["total_usage"] > 0
        assert doc["cpu_stats"]["system_cpu_usage"] > 0 and doc["cpu_stats"]["online_cpus"] >= 1
        assert doc["memory_stats"]["limit"] == 128 << 20
        assert doc["pids_stats"]["current"] >= 1
        assert doc["name"] == f"/{name}"
    finally:
        d.docker("rm", "-f", name, check=False)
    stopped = d.docker("create", "--network", "none", "busybox", "sleep", "60").stdout.strip()
    try:
        status, doc = d.request("GET", f"/v1.44/containers/{stopped}/stats?stream=false")
        assert status == 200 and doc["read"] == "0001-01-01T00:00:00Z"
        # a container that is not running is updated too (docker's): its next start has it
        d.docker("update", "--memory", "96m", stopped)
        assert d.docker("inspect", "-f", "{{.HostConfig.Memory}}", stopped).stdout.strip() == \
            str(96 << 20)
        d.docker("start", stopped)
        row = d.docker("stats", "--no-stream", "--format", "{{.MemUsage}}", stopped).stdout
        assert row.strip().endswith("/ 96MiB")
    finally:
        d.docker("rm", "-f", stopped)
    status, _ = d.request("GET", "/v1.44/containers/no-such/stats?stream=false")
    assert status == 404
    status, _ = d.request("GET", f"/v1.44/containers/{stopped}/stats?one-shot=true")
    assert status == 400        # one-shot needs stream=false


def test_diff_export_commit_history(api_daemon: Daemon, tmp_path: Path) -> None:
    d = api_daemon
    name = f"chg{secrets.token_hex(3)}"
    d.docker("run", "--name", name, "--network", "none", "busybox", "sh", "-c",
             "echo new > /added && rm /etc/group && mkdir /newdir && touch /newdir/f")
    image = f"committed{secrets.token_hex(3)}"
    try:
        diff = d.docker("diff", name).stdout.splitlines()
        for line in ("A /added", "C /etc", "D /etc/group", "A /newdir", "A /newdir/f"):
            assert line in diff, diff
        exported = subprocess.run([DOCKER, "-H", d.url, "export", name],
                                  capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
            names = set(tar.getnames())
            member = tar.extractfile("added")
            assert member is not None and member.read() == b"new\n"
        assert {"added", "bin/busybox", "newdir/f"} <= names and "etc/group" not in names
        d.docker("export", "-o", str(tmp_path / "fs.tar"), name)
        assert (tmp_path / "fs.tar").stat().st_size == len(exported)

        iid = d.docker("commit", "-a", "Ann Author", "-m", "a message", "-c", "ENV COMMITTED=1",
                       "-c", 'CMD ["cat", "/added"]', name, f"{image}:v1").stdout.strip()
        assert iid.startswith("sha256:")
        assert d.docker("run", "--rm", "--network", "none", f"{image}:v1").stdout == "new\n"
        env = d.docker("image", "inspect", "-f", "{{json .Config.Env}}", f"{image}:v1").stdout
        assert "COMMITTED=1" in json.loads(env)
        hist = d.docker("history", "--no-trunc", "--format",
                        "{{.ID}}|{{.CreatedBy}}|{{.Comment}}", f"{image}:v1").stdout.splitlines()
        assert hist[0].split("|")[0] == iid and hist[0].split("|")[2] == "a message"
        assert len(hist) == 2 and hist[1].startswith("<missing>|")
        assert d.docker("history", "-q", f"{image}:v1").stdout.split()[0] == iid[7:19]
        gone = d.docker("history", "no-such-image:v9", check=False)
        assert gone.returncode != 0 and "No such image" in gone.stderr
    finally:
        d.docker("rm", "-f", name, check=False)
        d.docker("rmi", f"{image}:v1", check=False)


def test_save_pipe_load(api_daemon: Daemon, tmp_path: Path) -> None:
    d = api_daemon
    tag = f"saved{secrets.token_hex(3)}:v1"
    d.docker("tag", "busybox", tag)
    iid = d.docker("image", "inspect", "-f", "{{.Id}}", tag).stdout.strip()
    try:
        d.docker("save", "-o", str(tmp_path / "img.tar"), tag)
        with tarfile.open(tmp_path / "img.tar") as tar:
            manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest[0]["RepoTags"] == [tag]
        d.docker("rmi", tag)
        gone = subprocess.run(f"{DOCKER} -H {d.url} save {tag} > /dev/null", shell=True,
                              capture_output=True, text=True, check=False)
        assert gone.returncode != 0 and "No such image" in gone.stderr
        assert d.docker("load", "-i", str(tmp_path / "img.tar")).stdout == \
            f"Loaded image: {tag}\n"
        other = tag.replace(":v1", ":v2")
        d.docker("tag", tag, other)
        d.docker("rmi", tag, other)
        d.docker("load", "-i", str(tmp_path / "img.tar"))
        d.docker("tag", tag, other)
        piped = subprocess.run(f"{DOCKER} -H {d.url} save {tag} {other} | "
                               f"{DOCKER} -H {d.url} load -q",
                               shell=True, capture_output=True, text=True, check=True)
        assert sorted(piped.stdout.splitlines()) == [f"Loaded image: {tag}",
                                                     f"Loaded image: {other}"]
        d.docker("rmi", other)
        assert d.docker("image", "inspect", "-f", "{{.Id}}", tag).stdout.strip() == iid
        bad = d.docker("load", stdin="not a tar at all" * 100, check=False)
        assert bad.returncode != 0
    finally:
        d.docker("rmi", tag, check=False)


def test_push_and_pull_back(api_daemon: Daemon, registry: Registry) -> None:
    d = api_daemon
    name = f"{registry.host}/extra/pushed:v1"
    d.docker("tag", "busybox", name)
    iid = d.docker("image", "inspect", "-f", "{{.Id}}", name).stdout.strip()
    try:
        out = d.docker("push", name).stdout
        assert f"The push refers to repository [{registry.host}/extra/pushed]" in out
        assert "v1: digest: sha256:" in out
        again = d.docker("push", name).stdout
        assert "Layer already exists" in again
        d.docker("rmi", name)
        pulled = d.docker("pull", name).stdout
        assert f"Downloaded newer image for {name}" in pulled
        assert d.docker("image", "inspect", "-f", "{{.Id}}", name).stdout.strip() == iid
        missing = d.docker("push", f"{registry.host}/extra/never-tagged:v1", check=False)
        assert missing.returncode != 0
        assert "No such image" in missing.stderr
    finally:
        d.docker("rmi", name, check=False)


def test_login_and_push_with_credentials(api_daemon: Daemon,
                                         fresh_registry: RegistryFactory) -> None:
    d = api_daemon
    password = secrets.token_urlsafe(12)
    reg = fresh_registry(auth=("pusher", password))
    bad = d.docker("login", "-u", "pusher", "--password-stdin", reg.host, stdin="wrong\n",
                   check=False)
    assert bad.returncode != 0 and "unauthorized" in bad.stderr.lower()
    name = f"{reg.host}/auth/bb:v1"
    d.docker("tag", "busybox", name)
    try:
        anonymous = d.docker("push", name, check=False)
        assert anonymous.returncode != 0
        ok = d.docker("login", "-u", "pusher", "--password-stdin", reg.host,
                      stdin=password + "\n")
        assert "Login Succeeded" in ok.stdout
        assert "v1: digest: sha256:" in d.docker("push", name).stdout
        d.docker("rmi", name)
        d.docker("pull", name)
        d.docker("logout", reg.host)
    finally:
        d.docker("rmi", name, check=False)
    status, doc = d.request("POST", "/v1.44/auth", json.dumps(
        {"username": "pusher", "password": password, "serveraddress": reg.host}).encode(),
        {"Content-Type": "application/json"})
    assert (status, doc) == (200, {"Status": "Login Succeeded", "IdentityToken": ""})
    status, doc = d.request("POST", "/v1.44/auth", json.dumps(
        {"username": "pusher", "password": "nope", "serveraddress": reg.host}).encode(),
        {"Content-Type": "application/json"})
    assert status == 401 and password not in doc["message"]


def test_search_says_there_is_no_index(api_daemon: Daemon) -> None:
    d = api_daemon
    got = d.docker("search", "busybox", check=False)
    assert got.returncode != 0 and "no index" in got.stderr
    status, _ = d.request("GET", "/v1.44/images/search?term=busybox")
    assert status == 501


class _WebSocket:
    """A minimal RFC 6455 client over the daemon's unix socket (none is installed here)."""

    def __init__(self, path: str, target: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(path)
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        self.sock.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            got = self.sock.recv(1)
            assert got, head
            head += got
        self.head = head.decode()
        want = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode(),
            usedforsecurity=False).digest()).decode()
        assert self.head.startswith("HTTP/1.1 101"), self.head
        assert f"Sec-WebSocket-Accept: {want}" in self.head

    def _exactly(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            got = self.sock.recv(n - len(out))
            assert got, "connection closed mid-frame"
            out += got
        return out

    def frame(self) -> tuple[int, bytes]:
        b0, b1 = self._exactly(2)
        assert not b1 & 0x80                    # the server does not mask
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._exactly(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._exactly(8))[0]
        return b0 & 0x0F, self._exactly(n)

    def send(self, opcode: int, payload: bytes) -> None:
        mask = secrets.token_bytes(4)
        assert len(payload) < 126
        self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask +
                          bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def read_until(self, text: bytes) -> bytes:
        seen = b""
        while text not in seen:
            opcode, payload = self.frame()
            assert opcode == 2, (opcode, payload)
            seen += payload
        return seen


def test_attach_over_websocket(api_daemon: Daemon) -> None:
    d = api_daemon
    ticker = d.docker("run", "-d", "--network", "none", "busybox", "sh", "-c",
                      "trap 'exit 0' TERM; while true; do echo tick; echo tock >&2; "
                      "sleep 0.1; done").stdout.strip()
    shell = d.docker("run", "-dit", "--network", "none", "busybox", "sh").stdout.strip()
    cat = d.docker("run", "-di", "--network", "none", "busybox", "cat").stdout.strip()
    try:
        ws = _WebSocket(d.socket, f"/v1.44/containers/{ticker}/attach/ws?stream=1&stdout=1")
        try:
            assert b"tick" in ws.read_until(b"tick\n")
            ws.send(0x9, b"hello?")                        # ping -> pong
            while (got := ws.frame())[0] == 2:
                assert b"tock" not in got[1]               # stderr was not asked for
            assert got == (0xA, b"hello?")
            ws.send(0x8, struct.pack(">H", 1000))          # close -> close
            while (got := ws.frame())[0] == 2:
                pass
            assert got[0] == 0x8
        finally:
            ws.sock.close()
        ws = _WebSocket(d.socket, f"/v1.44/containers/{ticker}/attach/ws?logs=1&stream=1&"
                        "stderr=1")
        try:
            first = ws.frame()
            assert first[0] == 2 and first[1].startswith(b"tock")     # the oldest line
        finally:
            ws.sock.close()
        ws = _WebSocket(d.socket, f"/v1.44/containers/{shell}/attach/ws?stream=1&stdin=1&"
                        "stdout=1&stderr=1")
        try:
            ws.send(0x2, b"echo ws-$((40+2))\n")
            assert b"ws-42" in ws.read_until(b"ws-42")
        finally:
            ws.sock.close()
        ws = _WebSocket(d.socket, f"/v1.44/containers/{cat}/attach/ws?stream=1&stdin=1&"
                        "stdout=1")
        try:        # no terminal: stdin kept open by -i
            ws.send(0x1, b"through a websocket\n")
            assert ws.read_until(b"websocket\n") == b"through a websocket\n"
        finally:
            ws.sock.close()
        status, doc = d.request("GET", f"/v1.44/containers/{ticker}/attach/ws?stream=1")
        assert status == 400 and "WebSocket" in doc["message"]
        d.docker("stop", "-t", "5", ticker)
        ws_headers = {"Upgrade": "websocket", "Connection": "Upgrade",
                      "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                      "Sec-WebSocket-Version": "13"}
        status, doc = d.request("GET", f"/v1.44/containers/{ticker}/attach/ws?stream=1",
                                headers=ws_headers)
        assert status == 409 and "stopped" in doc["message"]
    finally:
        d.docker("rm", "-f", ticker, shell, cat, check=False)


def test_the_daemon_logged_no_internal_error(api_daemon: Daemon) -> None:
    """Runs last in this module: none of the requests above was a 500 (a handler's crash)."""
    errors = [line for line in api_daemon.log().splitlines() if " ERROR " in line]
    assert not errors, "\n".join(errors)
