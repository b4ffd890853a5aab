"""The daemon's way of starting the engine's monitor: fork+exec of engine/monitord.py, never a
fork of the (multi-threaded) daemon. The monitor then is nobody's child but init's (or a
subreaper's), and containers run under it as under a forked one."""

from __future__ import annotations

import pytest

from testbed.engine import Engine

pytestmark = pytest.mark.integration


def test_exec_spawned_monitor_runs_a_container(busybox_engine: Engine,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from dockyard.engine import supervision
    from dockyard.engine.config import load_config
    from dockyard.engine.containers import ContainerService, read_status
    from dockyard.engine.images import ImageService

    cid = busybox_engine.run("create", "--network", "none", "busybox", "sh", "-c",
                             "echo from-exec-monitor; exit 3").stdout.strip()
    monkeypatch.setenv("DOCKYARD_RUN_ROOT", busybox_engine.env["DOCKYARD_RUN_ROOT"])
    config = load_config(str(busybox_engine.root), str(busybox_engine.config))
    svc = ContainerService(config, ImageService(config))
    monkeypatch.setattr(supervision, "_spawn_mode", ["exec"])
    _, conn = svc.start(cid)
    with conn:
        status = read_status(conn)
    assert status.startswith("started ")
    monitor_pid = int(status.split()[2])
    assert monitor_pid > 0
    with open(f"/proc/{monitor_pid}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    assert b"dockyard.engine.monitord" in argv, argv     # a program of its own: no fork of ours
    assert svc.wait(cid, timeout=30) == 3
    assert "from-exec-monitor" in busybox_engine.run("logs", cid).stdout
    svc.images.close_db()
