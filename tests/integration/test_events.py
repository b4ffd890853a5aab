"""`dockyard events` as a user runs it, with real containers from the busybox image on a
throwaway engine root: the history of a container's life, a stream that sees it live, filters
and formats, and many writers at once."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed import images as tb_images
from testbed.engine import DOCKYARD, Engine, loaded_engine

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def busybox() -> tb_images.BuiltImage:
    return tb_images.busybox()


@pytest.fixture
def eng(tmp_path: Path, busybox: tb_images.BuiltImage) -> Iterator[Engine]:
    with loaded_engine(tmp_path) as e:
        yield e


def now() -> str:
    return f"{time.time():.9f}"


def history(eng: Engine, since: str, *flags: str) -> list[dict[str, Any]]:
    out = eng.run("events", "--since", since, "--until", now(), "--format", "{{json .}}",
                  *flags, timeout=60).stdout
    return [json.loads(line) for line in out.splitlines()]


def actions_of(docs: list[dict[str, Any]], actor: str) -> list[str]:
    return [d["Action"] for d in docs if d["Actor"]["ID"] == actor]


class Stream:
    """A streaming ``dockyard events`` subprocess whose lines a thread collects."""

    def __init__(self, eng: Engine, *flags: str) -> None:
        cmd = [*DOCKYARD, "--root", str(eng.root)]
        if eng.config is not None:
            cmd += ["--config", str(eng.config)]
        self.proc = subprocess.Popen([*cmd, "events", *flags], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=eng.env)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, found: Callable[[str], bool], timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"not seen; got {self.seen}"
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(line)
            if found(line):
                return line

    def end(self, sig: int) -> tuple[int, str]:
        self.proc.send_signal(sig)
        try:
            _, err = self.proc.communicate(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(10)
        return self.proc.returncode, err


@pytest.fixture
def streams() -> Iterator[list[Stream]]:
    made: list[Stream] = []
    yield made
    for s in made:     # a failed test's stream goes too
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def test_a_containers_life_in_order(eng: Engine) -> None:
    since = now()
    cid = eng.run("run", "-d", "--name", "web", "-l", "tier=front", "busybox", "sh", "-c",
                  "trap 'exit 3' TERM; while :; do sleep 0.1; done").stdout.strip()
    eng.run("stop", "web")
    eng.run("rm", "web")
    docs = history(eng, since)
    assert actions_of(docs, cid) == ["create", "start", "kill", "die", "stop", "destroy"]
    by_action = {d["Action"]: d for d in docs if d["Actor"]["ID"] == cid}
    for d in by_action.values():
        assert d["Type"] == "container" and d["scope"] == "local"
        assert d["status"] == d["Action"] and d["id"] == cid and d["from"] == "busybox"
        attrs = d["Actor"]["Attributes"]
        assert (attrs["name"], attrs["image"], attrs["tier"]) == ("web", "busybox", "front")
        assert d["time"] == d["timeNano"] // 10**9
    assert by_action["die"]["Actor"]["Attributes"]["exitCode"] == "3"
    assert by_action["kill"]["Actor"]["Attributes"]["signal"] == "15"
    stamps = [d["timeNano"] for d in docs]
    assert stamps == sorted(stamps)
    # docker's own line, and --until in the past: printed, then the command exits
    lines = eng.run("events", "--since", since, "--until", now(), "-f", "event=die",
                    timeout=60).stdout.splitlines()
    assert len(lines) == 1
    stamp, rest = lines[0].split(" ", 1)
    assert len(stamp) == len("2026-11-28T08:30:01.123456789Z") and stamp.endswith("Z")
    assert rest == f"container die {cid} (exitCode=3, image=busybox, name=web, tier=front)"


def test_a_stream_sees_start_and_die_live(eng: Engine, streams: list[Stream]) -> None:
    everything = Stream(eng, "--since", now(), "--format", "{{json .}}")
    mine = Stream(eng, "--since", now(), "-f", "container=live", "--format",
                  "{{.Action}} {{.Actor.Attributes.name}}")
    streams += [everything, mine]
    cid = eng.run("run", "-d", "--name", "live", "busybox", "sleep", "60").stdout.strip()
    started = json.loads(everything.wait_for(lambda x: '"Action":"start"' in x))
    assert started["Actor"]["ID"] == cid
    assert mine.wait_for(lambda x: x.startswith("start")) == "start live\n"
    assert eng.run("inspect", "-f", "{{.State.Running}}", "live").stdout.strip() == "true"
    eng.run("kill", "live")
    died = json.loads(everything.wait_for(lambda x: '"Action":"die"' in x))
    assert died["Actor"]["Attributes"]["exitCode"] == "137"
    assert mine.wait_for(lambda x: x.startswith("die")) == "die live\n"
    eng.run("rm", "live")
    mine.wait_for(lambda x: x.startswith("destroy"))
    assert mine.seen == ["create live\n", "start live\n", "kill live\n", "die live\n",
                         "destroy live\n"]
    for s, sig in ((everything, signal.SIGINT), (mine, signal.SIGTERM)):
        code, err = s.end(sig)
        assert code == 0 and err == "", err


def test_filters_and_formats(eng: Engine) -> None:
    since = now()
    eng.run("run", "--rm", "--name", "one", "-l", "app=x", "busybox", "true")
    eng.run("run", "--name", "two", "busybox", "sh", "-c", "exit 2", check=False)
    eng.run("tag", "busybox", "mybox:1")
    until = now()

    def run(*flags: str) -> list[str]:
        return eng.run("events", "--since", since, "--until", until, *flags,
                       timeout=60).stdout.splitlines()

    fmt = ["--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}"]
    assert run("-f", "container=two", "-f", "event=die", *fmt) == ["container die two"]
    assert run("-f", "event=die", "--format", "{{.Actor.Attributes.exitCode}}") == ["0", "2"]
    assert run("-f", "label=app=x", "-f", "event=destroy", *fmt) == ["container destroy one"]
    assert run("-f", "type=image", *fmt) == ["image tag mybox:1"]
    assert run("-f", "image=mybox", *fmt) == ["image tag mybox:1"]
    assert run("-f", "container=one", "-f", "container=two", "-f", "event=start", *fmt) == [
        "container start one", "container start two"]
    assert [json.loads(x)["Action"] for x in run("-f", "container=one", "--format", "json")] \
        == ["create", "attach", "start", "die", "destroy"]
    for flags, message in ((["-f", "colour=red"], "invalid filter 'colour'"),
                           (["--since", "yesterday"], "failed to parse value as time"),
                           (["--format", "{{.Nope}}"], "can't evaluate field Nope")):
        p = eng.run("events", "--until", until, *flags, check=False)
        assert p.returncode != 0 and message in p.stderr and "Traceback" not in p.stderr


def test_concurrent_runs_lose_no_events(eng: Engine) -> None:
    since = now()
    cmd = [*DOCKYARD, "--root", str(eng.root), "--config", str(eng.config)]
    procs = [subprocess.Popen([*cmd, "run", "-d", "busybox", "true"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=eng.env)
             for _ in range(20)]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        ids.append(out.strip())
    assert eng.run("wait", *ids, timeout=120).stdout.split() == ["0"] * 20
    docs = history(eng, since)     # every line parsed: none torn, none interleaved
    assert {d["Actor"]["ID"] for d in docs} == set(ids)
    for cid in ids:
        assert actions_of(docs, cid) == ["create", "start", "die"]
    seen_by_every_reader = history(eng, since, "-f", "event=die")
    assert sorted(d["Actor"]["ID"] for d in seen_by_every_reader) == sorted(ids)
    assert os.path.exists(eng.root / "dockyard.db")


def test_image_events(eng: Engine, tmp_path: Path) -> None:
    since = now()
    image_id = eng.run("inspect", "-f", "{{.Id}}", "busybox").stdout.strip()
    eng.run("tag", "busybox", "mybox:1")
    eng.run("save", "-o", str(tmp_path / "saved.tar"), "mybox:1")
    eng.run("rmi", "mybox:1")
    eng.run("rmi", "busybox")
    eng.run("load", "-i", str(tmp_path / "saved.tar"))
    got = [(d["Action"], d["Actor"]["ID"], d["Actor"]["Attributes"]["name"])
           for d in history(eng, since, "-f", "type=image")]
    assert got == [("tag", image_id, "mybox:1"), ("save", image_id, image_id),
                   ("untag", image_id, image_id), ("untag", image_id, image_id),
                   ("delete", image_id, image_id), ("load", image_id, image_id)]


def test_restarts_by_policy_die_and_start_again(eng: Engine) -> None:
    since = now()
    cid = eng.run("run", "-d", "--restart", "on-failure:2", "busybox", "sh", "-c",
                  "exit 1").stdout.strip()
    assert eng.run("wait", cid, timeout=60).stdout.strip() == "1"
    docs = [d for d in history(eng, since) if d["Actor"]["ID"] == cid]
    assert [(d["Action"], d["Actor"]["Attributes"].get("exitCode")) for d in docs] == [
        ("create", None), ("start", None), ("die", "1"), ("start", None), ("die", "1"),
        ("start", None), ("die", "1")]


def test_health_status_changes(eng: Engine) -> None:
    since = now()
    cid = eng.run("run", "-d", "--health-cmd", "true", "--health-interval", "1s", "busybox",
                  "sleep", "60").stdout.strip()
    deadline = time.monotonic() + 30
    while not (docs := history(eng, since, "-f", "event=health_status")):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert [(d["Action"], d["Actor"]["ID"]) for d in docs] == [("health_status: healthy", cid)]
    assert eng.run("inspect", "-f", "{{.State.Health.Status}}", cid).stdout.strip() == "healthy"
    eng.run("rm", "-f", cid)
