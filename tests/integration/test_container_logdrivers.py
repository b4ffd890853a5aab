"""`dockyard run --log-driver local|none|…` and `dockyard logs` on what they leave, with real
busybox containers."""

from __future__ import annotations

import json
import re

import pytest

from testbed.engine import Engine

pytestmark = pytest.mark.integration


def test_local_driver_logs_tail_and_timestamps(busybox_engine: Engine) -> None:
    eng = busybox_engine
    p = eng.run("run", "--name", "loc", "--log-driver", "local", "busybox", "sh", "-c",
                "echo two >&2; sleep 0.2; echo one; echo three; printf unfinished")
    assert p.stdout == "one\nthree\nunfinished" and p.stderr == "two\n"
    doc = json.loads(eng.run("inspect", "loc").stdout)[0]
    assert doc["HostConfig"]["LogConfig"] == {"Type": "local", "Config": {}}
    assert doc["LogPath"] == ""     # as docker: only json-file's path is shown
    cdir = eng.root / "containers" / doc["Id"]
    data = (cdir / "local-logs" / "container.log").read_bytes()
    assert int.from_bytes(data[:4], "big") < 100 and data[4:5] == b"\x0a"   # protobuf, framed
    assert not (cdir / f"{doc['Id']}-json.log").exists()
    logs = eng.run("logs", "loc")
    assert (logs.stdout, logs.stderr) == ("one\nthree\nunfinished", "two\n")
    assert eng.run("logs", "--tail", "2", "loc").stdout == "three\nunfinished"
    stamped = eng.run("logs", "-t", "--tail", "1", "loc").stdout
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z unfinished", stamped), stamped


def test_local_driver_rotates_at_max_size_keeping_max_file_files(busybox_engine: Engine) -> None:
    eng = busybox_engine
    cid = eng.run("run", "-d", "--log-driver", "local", "--log-opt", "max-size=1k",
                  "--log-opt", "max-file=3", "busybox", "sh", "-c",
                  "i=0; while [ $i -lt 400 ]; do echo line$i; i=$((i+1)); done").stdout.strip()
    assert eng.run("wait", cid).stdout.strip() == "0"
    logs = eng.root / "containers" / cid / "local-logs"
    assert sorted(p.name for p in logs.iterdir()) == [
        "container.log", "container.log.1", "container.log.2"]
    # a file exceeds max-size by one record at most (docker's check comes before a write)
    assert all(p.stat().st_size < 1000 + 64 for p in logs.iterdir())
    lines = eng.run("logs", cid).stdout.split()
    first = int(lines[0].removeprefix("line"))
    assert 300 < first < 400 and lines == [f"line{n}" for n in range(first, 400)]
    assert eng.run("logs", "--tail", "3", cid).stdout.split() == ["line397", "line398",
                                                                  "line399"]


def test_local_driver_logs_follow(busybox_engine: Engine) -> None:
    eng = busybox_engine
    cid = eng.run("run", "-d", "--log-driver", "local", "busybox", "sh", "-c",
                  "echo a; sleep 1; echo b").stdout.strip()
    # follows until the container exits
    assert eng.run("logs", "-f", cid, timeout=30).stdout == "a\nb\n"


def test_unknown_and_none_drivers(busybox_engine: Engine) -> None:
    eng = busybox_engine
    p = eng.run("run", "--log-driver", "syslogx", "busybox", "true", check=False)
    assert p.returncode == 125
    assert p.stderr == "Error: logger: no log driver named 'syslogx' is registered\n"
    p = eng.run("run", "--log-driver", "local", "--log-opt", "max-file=1", "busybox", "true",
                check=False)
    assert p.returncode == 125
    assert "compression cannot be enabled when max file count is 1" in p.stderr
    assert eng.run("ps", "-aq").stdout == ""
    out = eng.run("run", "--name", "quiet", "--log-driver", "none", "busybox", "echo", "hi")
    assert out.stdout == "hi\n"     # attached output still comes through
    p = eng.run("logs", "quiet", check=False)
    assert p.returncode == 1
    assert p.stderr == "Error: configured logging driver does not support reading\n"
