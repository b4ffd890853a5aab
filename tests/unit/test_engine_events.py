"""The event journal: appends from many processes, trimming, since/until, following, docker's
filters, and how ``dockyard events`` prints an event."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from dockyard.cli import events as cli_events
from dockyard.db import open_database, transaction
from dockyard.engine import events
from dockyard.engine.events import Event, matches, parse_filters, record, watch
from dockyard.errors import InvalidArgument

S = 1_000_000_000


def all_events(root: str, **kw: object) -> list[Event]:
    return list(watch(root, since_ns=0, follow=False, **kw))  # type: ignore[arg-type]


def ev(action: str = "start", type_: str = "container", actor: str = "a" * 64,
       **attrs: str) -> Event:
    return Event(seq=1, time_nano=TS, type=type_, action=action, actor_id=actor,
                 attributes=attrs)


TS = 1_764_318_601_123_456_789   # 2025-11-28T08:30:01.123456789Z


# --- the journal -------------------------------------------------------------------------------


def test_record_then_read_in_order(tmp_path: Path) -> None:
    root = str(tmp_path)
    record(root, "container", "create", "c1", {"name": "foo", "image": "busybox"})
    record(root, "container", "die", "c1", {"exitCode": 3})
    record(root, "image", "tag", "sha256:x", {"name": "foo:1"})
    got = all_events(root)
    assert [(e.type, e.action, e.actor_id) for e in got] == [
        ("container", "create", "c1"), ("container", "die", "c1"), ("image", "tag", "sha256:x")]
    assert got[1].attributes == {"exitCode": "3"}
    assert [e.seq for e in got] == sorted(e.seq for e in got)
    assert [e.time_nano for e in got] == sorted(e.time_nano for e in got)


def test_record_shares_a_connection(tmp_path: Path) -> None:
    db = open_database(str(tmp_path))
    try:
        record(str(tmp_path), "container", "pause", "c1", db=db)
        assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1
    finally:
        db.close()


def test_message_is_dockers_shape() -> None:
    doc = ev("die", exitCode="0", image="busybox", name="foo").message()
    assert list(doc) == ["status", "id", "from", "Type", "Action", "Actor", "scope", "time",
                         "timeNano"]
    assert doc["from"] == "busybox" and doc["scope"] == "local"
    assert doc["time"] == TS // S and doc["timeNano"] == TS
    assert doc["Actor"] == {"ID": "a" * 64,
                            "Attributes": {"exitCode": "0", "image": "busybox", "name": "foo"}}
    assert "from" not in ev("tag", "image", name="x:1").message()
    assert "status" not in ev("create", "network").message()


def test_the_journal_is_trimmed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "KEEP", 20)
    monkeypatch.setattr(events, "TRIM_EVERY", 5)
    root = str(tmp_path)
    for n in range(103):
        record(root, "container", "start", f"c{n}")
    got = all_events(root)
    assert len(got) < 20 + 5
    assert got[-1].actor_id == "c102"
    assert [int(e.actor_id[1:]) for e in got] == list(range(103 - len(got), 103))


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    root = str(tmp_path)
    record(root, "container", "create", "warm-up")    # the schema exists before the fork
    children = []
    for w in range(8):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                for n in range(40):
                    record(root, "container", "start", f"w{w}-{n}")
            except BaseException:
                code = 1
            os._exit(code)
        children.append(pid)
    for pid in children:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    got = [e.actor_id for e in all_events(root)][1:]
    assert len(got) == len(set(got)) == 8 * 40
    for w in range(8):     # each writer's events keep its order
        mine = [a for a in got if a.startswith(f"w{w}-")]
        assert mine == [f"w{w}-{n}" for n in range(40)]


def test_a_writer_that_dies_mid_append_leaves_nothing_behind(tmp_path: Path) -> None:
    root = str(tmp_path)
    record(root, "container", "create", "before")
    pid = os.fork()
    if pid == 0:
        db = open_database(root)
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO events (time_nano, type, action, actor_id, attributes)"
                   " VALUES (1, 'container', 'half', 'x', '{')")
        os._exit(0)     # no commit, no rollback: a crash
    os.waitpid(pid, 0)
    record(root, "container", "start", "after")
    assert [e.actor_id for e in all_events(root)] == ["before", "after"]


def test_since_and_until_are_inclusive(tmp_path: Path) -> None:
    root = str(tmp_path)
    db = open_database(root)
    record(root, "container", "create", "warm-up", db=db)
    with transaction(db):
        db.execute("DELETE FROM events")
        for n, t in enumerate((10, 20, 30, 40)):
            db.execute("INSERT INTO events (time_nano, type, action, actor_id, attributes)"
                       " VALUES (?, 'container', 'start', ?, '{}')", (t * S, f"c{n}"))
    db.close()
    ids = [e.actor_id for e in watch(root, since_ns=20 * S, until_ns=30 * S)]
    assert ids == ["c1", "c2"]
    assert [e.actor_id for e in watch(root, since_ns=25 * S, until_ns=100 * S)] == ["c2", "c3"]


def test_without_since_only_new_events_stream(tmp_path: Path) -> None:
    root = str(tmp_path)
    record(root, "container", "create", "old")
    seen: list[str] = []
    started = threading.Event()

    def follow() -> None:
        until = time.time_ns() + 3 * S
        gen = watch(root, until_ns=until, poll=0.01)
        started.set()
        for e in gen:
            seen.append(e.actor_id)
            if e.actor_id == "new2":
                return

    t = threading.Thread(target=follow)
    t.start()
    started.wait()
    time.sleep(0.2)         # the watcher has taken its starting point
    record(root, "container", "start", "new1")
    record(root, "container", "die", "new2")
    t.join(10)
    assert not t.is_alive()
    assert seen == ["new1", "new2"]


def test_until_in_the_future_stops_once_it_passed(tmp_path: Path) -> None:
    root = str(tmp_path)
    t0 = time.monotonic()
    assert list(watch(root, until_ns=time.time_ns() + S // 5, poll=0.05)) == []
    assert 0.15 < time.monotonic() - t0 < 5


# --- filters -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "message"), [
    ("container", "bad format of filter (expected name=value): container"),
    ("colour=red", "invalid filter 'colour'"),
])
def test_bad_filters(spec: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_filters([spec])
    assert e.value.message == message


@pytest.mark.parametrize(("specs", "event", "want"), [
    ([], ev(), True),
    (["container=foo"], ev(name="foo"), True),
    (["container=fo"], ev(name="foo"), True),              # docker matches by prefix
    (["container=aaaa"], ev(name="foo"), True),            # an id prefix
    (["container=bar"], ev(name="foo"), False),
    (["container=bar", "container=foo"], ev(name="foo"), True),   # one key: any value
    (["container=foo"], ev("tag", "image", "sha256:1", name="x:1"), False),
    (["event=start"], ev(), True),
    (["event=die"], ev(), False),
    (["event=health_status"], ev("health_status: healthy"), True),
    (["event=exec_start"], ev("exec_start: sh -c ls"), True),
    (["event=exec"], ev("exec_start: sh -c ls"), False),
    (["type=image"], ev(), False),
    (["type=container", "event=start"], ev(), True),      # keys: all of them
    (["type=container", "event=die"], ev(), False),
    (["image=busybox"], ev(image="busybox:latest"), True),
    (["image=busybox:latest"], ev(image="busybox"), False),
    (["image=busybox"], ev("pull", "image", "busybox:latest", name="busybox"), True),
    (["image=docker.io/library/busybox"], ev(image="busybox"), False),
    (["label=tier"], ev(tier="web"), True),
    (["label=tier=web"], ev(tier="web"), True),
    (["label=tier=db"], ev(tier="web"), False),
    (["label=tier", "label=app=x"], ev(tier="web"), False),   # labels: all of them
    (["scope=local"], ev(), True),
    (["scope=swarm"], ev(), False),
])
def test_filters_match_like_dockers(specs: list[str], event: Event, want: bool) -> None:
    assert matches(parse_filters(specs), event) is want


# --- what `dockyard events` prints ---------------------------------------------------------------


def test_default_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        line = cli_events.pretty(ev("die", exitCode="0", name="foo", image="busybox"))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert line == (f"2025-11-28T08:30:01.123456789Z container die {'a' * 64} "
                    "(exitCode=0, image=busybox, name=foo)\n")


def test_default_line_in_a_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        stamp = cli_events.format_time_local(TS)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert stamp == "2025-11-28T14:00:01.123456789+05:30"


def test_formats() -> None:
    e = ev("start", name="foo", image="busybox")
    assert cli_events.renderer("{{.Action}} {{.Actor.Attributes.name}} {{.Type}}")(e) == \
        "start foo container\n"
    out = cli_events.renderer("{{json .}}")(e)
    assert out.endswith("\n")
    assert out.startswith('{"status":"start","id":"')        # docker's field order
    assert json.loads(out) == e.message()
    assert cli_events.renderer("json")(e) == out
    assert cli_events.renderer("{{.Status}} {{.From}} {{.TimeNano}}")(e) == \
        f"start busybox {TS}\n"


def test_a_bad_format_fails_before_any_event() -> None:
    with pytest.raises(InvalidArgument) as e:
        cli_events.renderer("{{.Nope}}")
    assert "can't evaluate field Nope in type events.Message" in e.value.message
