"""``python -m dockyard.engine.monitord``: the engine's monitor started as a program of its own.

A command forks the monitor (engine/supervision.py); the daemon (``dockyard serve``) must not:
it runs threads, and a fork of a multi-threaded process may inherit a lock some other thread
held. So the daemon starts this entry point with subprocess (fork+exec, nothing of the daemon
survives the exec). It gets the listening socket that :func:`dockyard.monitor.host.connect`
made under the lock, leaves the daemon's session, forks once more so that the monitor is not
the daemon's child (the daemon reaps only this short-lived parent), and serves.

Arguments: ROOT RUN_ROOT CONFIG_FILE SETTINGS_JSON RUN_DIR LISTENER_FD
"""

from __future__ import annotations

import json
import os
import socket
import sys


def main(argv: list[str]) -> int:
    from dockyard.engine.config import EngineConfig
    from dockyard.engine.supervision import EngineRecorder, linger
    from dockyard.monitor import host

    root, run_root, config_file, settings, run_dir, fd = argv
    config = EngineConfig(root=root, run_root=run_root, config_file=config_file,
                          settings=json.loads(settings))
    listener = socket.socket(fileno=int(fd))
    os.setsid()
    if os.fork():
        return 0        # a fresh, single-threaded process: forking here is safe
    code = 0
    try:
        host.keep_only([listener.fileno()])
        host.serve(run_dir, listener, EngineRecorder(config), linger=linger(config))
    except BaseException as e:
        code = 1
        host._note(run_dir, e)
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
