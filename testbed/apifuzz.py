"""The world the API fuzzer (tests/integration/test_api_fuzz.py) sends its requests into: a
real ``dockyard serve`` on a throwaway root, a few objects that requests may name (a running
container, a created one, an exited one, a victim that may be removed or renamed, an exec
instance, an image tag that may be untagged), a fingerprint of everything the daemon stores,
and the repairs that put the world back after a request that succeeded.

A fingerprint is read from the engine's own store (every table of its SQLite database but the
event journal, and the directories where containers, layers and volumes live), so checking it
after each failed request costs no request of its own; the lists through the API are compared
too, less often.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from testbed.apidaemon import Daemon
from testbed.rawhttp import RawClient, Response, build_request

# PID 1 of a shell leaves on TERM (a bare sleep would ignore it, and every stop would wait
# out its grace period)
RUNNING_CMD = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
NOT_STORED = {"events", "sqlite_sequence", "schema_versions"}


class World:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.root = daemon.engine.root
        self.run_root = daemon.workdir / "run"
        self.client = RawClient(daemon.socket, timeout=30)
        self.ids: dict[str, str] = {}
        self.exec_id = ""
        self.image_id = ""
        self.sent = 0

    # --- requests ------------------------------------------------------------------------------

    def call(self, method: str, target: str, doc: Any = None) -> Response:
        body = None if doc is None else json.dumps(doc).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        resp = self.client.request(build_request(method, target, body=body, headers=headers),
                                   head=method == "HEAD")
        return resp

    def ok(self, method: str, target: str, doc: Any = None) -> Any:
        resp = self.call(method, target, doc)
        assert resp.status < 300, (method, target, resp.status, resp.body)
        if resp.header("content-type").startswith("application/json") and resp.body:
            return json.loads(resp.body)
        return None

    def alive(self) -> None:
        proc = self.daemon.proc
        assert proc is not None and proc.poll() is None, \
            f"dockyard serve died:\n{self.daemon.log()[-4000:]}"

    # --- the objects requests may name ---------------------------------------------------------

    def _create(self, name: str, cmd: list[str]) -> str:
        doc = self.ok("POST", f"/containers/create?name={name}",
                      {"Image": "busybox", "Cmd": cmd, "HostConfig": {"NetworkMode": "none"}})
        return str(doc["Id"])

    def state(self, cid: str) -> dict[str, Any] | None:
        resp = self.call("GET", f"/containers/{cid}/json")
        if resp.status == 404:
            return None
        assert resp.status == 200, resp.body
        state: dict[str, Any] = json.loads(resp.body)["State"]
        return state

    def setup(self) -> None:
        self.image_id = str(self.ok("GET", "/images/busybox/json")["Id"])
        self.ids["created"] = self._create("fz-created", ["true"])
        self.ids["exited"] = self._create("fz-exited", ["true"])
        self.ok("POST", f"/containers/{self.ids['exited']}/start")
        self.ids["running"] = self._create("fz-running", RUNNING_CMD)
        self.repair()

    def repair(self) -> None:
        """Put back what a request that succeeded took away, then wait for the containers it
        started to exit."""
        running = self.state(self.ids["running"])
        if running is None:
            self.ids["running"] = self._create(f"fz-running-{time.monotonic_ns()}", RUNNING_CMD)
            running = self.state(self.ids["running"])
            assert running is not None
        if running.get("Running"):
            # unpaused whatever inspect says (its State.Paused stays false while paused)
            resp = self.call("POST", f"/containers/{self.ids['running']}/unpause")
            assert resp.status in (204, 409), resp.body
            self.call("POST", f"/containers/{self.ids['running']}/kill?signal=CONT")
        else:
            self.ok("POST", f"/containers/{self.ids['running']}/start")
        for key, cmd in (("created", ["true"]), ("exited", ["true"]), ("victim", ["true"])):
            if key not in self.ids or self.state(self.ids[key]) is None:
                self.ids[key] = self._create(f"fz-{key}-{time.monotonic_ns()}", cmd)
        if not self.exec_id or self.call("GET", f"/exec/{self.exec_id}/json").status != 200:
            self.exec_id = str(self.ok("POST", f"/containers/{self.ids['running']}/exec",
                                       {"Cmd": ["true"]})["Id"])
        if self.call("GET", "/images/fz-victim:latest/json").status == 404:
            self.ok("POST", f"/images/{self.image_id}/tag?repo=fz-victim&tag=latest")
        self.settle()

    def settle(self, timeout: float = 20.0) -> None:
        """Until no container but the running one runs (what a request started has exited)."""
        deadline = time.monotonic() + timeout
        while True:
            busy = [r for r in self._rows("SELECT id, state FROM containers")
                    if r[1] not in ("created", "exited") and r[0] != self.ids["running"]]
            if not busy:
                break
            assert time.monotonic() < deadline, f"containers still busy: {busy}"
            time.sleep(0.05)
        # a supervisor records the last of an exit a moment after the state: until the store
        # holds still
        last = self.fingerprint()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.fingerprint()
            if now == last:
                return
            last = now

    # --- what is stored ------------------------------------------------------------------------

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(f"file:{self.root / 'dockyard.db'}?mode=ro", uri=True, timeout=10)
        try:
            return [tuple(r) for r in db.execute(sql).fetchall()]
        finally:
            db.close()

    def fingerprint(self) -> dict[str, Any]:
        """Every stored row (but the event journal) and the names of the directories where
        containers, layers, volumes and their runtime state live."""
        out: dict[str, Any] = {}
        db = sqlite3.connect(f"file:{self.root / 'dockyard.db'}?mode=ro", uri=True, timeout=10)
        try:
            tables = [r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")]
            for t in tables:
                if t == "containers":
                    # the running container's state may change after a request that
                    # succeeded (a kill lands later); what it is stays the same
                    out[t] = sorted(repr(tuple(r) if r[0] != self.ids.get("running")
                                         else tuple(r)[:2])
                                    for r in db.execute("SELECT * FROM containers"))
                elif t == "networks":
                    # docker's predefined networks are made on their first use
                    out[t] = sorted(repr(tuple(r)) for r in db.execute("SELECT * FROM networks")
                                    if r[1] not in ("bridge", "host", "none"))
                elif t not in NOT_STORED:   # (a table made empty by a first use is none)
                    out[t] = sorted(
                        repr(tuple(r)) for r in db.execute(f'SELECT * FROM "{t}"'))  # noqa: S608
        finally:
            db.close()
        out = {k: v for k, v in out.items() if v}
        for rel in ("containers", "overlay/containers", "overlay/layers", "volumes",
                    "networks"):
            out[f"dir:{rel}"] = _listing(self.root / rel)
        out["dir:run/containers"] = sorted(
            n for n in _listing(self.run_root / "containers") if len(n) == 64)
        return out

    def api_lists(self) -> dict[str, Any]:
        """What the list endpoints say (ids, names and states; networks and volumes by name)."""
        out: dict[str, Any] = {}
        out["containers"] = sorted((c["Id"], tuple(c["Names"]), c["State"])
                                   for c in self.ok("GET", "/containers/json?all=1"))
        out["images"] = sorted((i["Id"], tuple(i["RepoTags"] or ()))
                               for i in self.ok("GET", "/images/json"))
        for kind, path in (("networks", "/networks"), ("volumes", "/volumes")):
            resp = self.call("GET", path)
            if resp.status == 200:
                doc = json.loads(resp.body)
                items = doc.get("Volumes") or [] if isinstance(doc, dict) else doc
                out[kind] = sorted(str(x.get("Name")) for x in items)
            else:
                out[kind] = resp.status
        return out


def _listing(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []
