"""The engine's configuration: where its root is and what its config file says.

The config file is daemon.json-like JSON (``/etc/dockyard/daemon.json`` by default, or
``$DOCKYARD_CONFIG``); the root is ``/var/lib/dockyard`` (or ``--root`` / ``$DOCKYARD_ROOT``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from dockyard.errors import InvalidArgument, Unavailable
from dockyard.values import field, value

DEFAULT_ROOT = "/var/lib/dockyard"
DEFAULT_RUN_ROOT = "/run/dockyard"
DEFAULT_CONFIG_FILE = "/etc/dockyard/daemon.json"
# run --init's init when the config names none: Debian's static tini (package tini), which is
# what docker-init is; static, because it runs in images without a libc (busybox, scratch)
DEFAULT_INIT_PATH = "/usr/bin/tini-static"
# where dockerd looks for an init named without a path, before $PATH (FHS libexec and lib dirs)
_INIT_DIRS = ("/usr/local/libexec/docker", "/usr/libexec/docker", "/usr/local/lib/docker",
              "/usr/lib/docker")


@value
class EngineConfig:
    root: str = DEFAULT_ROOT
    run_root: str = DEFAULT_RUN_ROOT
    config_file: str = DEFAULT_CONFIG_FILE
    settings: Mapping[str, Any] = field(default_factory=dict)


def load_config(root: str | None = None, config_file: str | None = None,
                run_root: str | None = None) -> EngineConfig:
    root = os.path.abspath(root or os.environ.get("DOCKYARD_ROOT") or DEFAULT_ROOT)
    run_root = run_root or os.environ.get("DOCKYARD_RUN_ROOT")
    if not run_root:
        # Another engine root gets runtime state of its own (still under /run: a reboot
        # clears it), so two roots never see each other's containers.
        import hashlib

        run_root = DEFAULT_RUN_ROOT if root == DEFAULT_ROOT else os.path.join(
            DEFAULT_RUN_ROOT, "roots", hashlib.sha256(root.encode()).hexdigest()[:16])
    path = config_file or os.environ.get("DOCKYARD_CONFIG") or DEFAULT_CONFIG_FILE
    settings: dict[str, Any] = {}
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        if config_file is not None:
            raise InvalidArgument(f"config file {path} does not exist") from None
    else:
        try:
            doc = json.loads(raw or b"{}")
        except ValueError as e:
            raise InvalidArgument(f"config file {path}: invalid JSON: {e}") from None
        if not isinstance(doc, dict):
            raise InvalidArgument(f"config file {path}: expected a JSON object")
        settings = doc
    return EngineConfig(root=os.path.abspath(root), run_root=os.path.abspath(run_root),
                        config_file=path, settings=settings)


def lookup_init_path(config: EngineConfig) -> str:
    """The host's init binary for ``run --init``: the ``init-path`` setting (dockerd's name for
    it; a bare name is looked up as dockerd does: its libexec dirs, then $PATH) or Debian's
    static tini. Raises Unavailable when it is not an executable file."""
    name = config.settings.get("init-path") or DEFAULT_INIT_PATH
    if not isinstance(name, str):
        raise InvalidArgument(f'config file {config.config_file}: "init-path" must be a string')
    found: str | None = name
    if not os.path.isabs(name):
        import shutil

        found = next((p for d in _INIT_DIRS if _executable(p := os.path.join(d, name))), None)
        found = found or shutil.which(name)
    if found is None or not _executable(found):
        fix = (f'fix "init-path" in {config.config_file}' if name != DEFAULT_INIT_PATH
               else f'install Debian\'s tini package (or set "init-path" in {config.config_file})')
        raise Unavailable(f"--init: no init binary: {name} is not an executable file",
                          hint=f"To use --init, {fix}.")
    return os.path.abspath(found)


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def recorded(root: str, name: str, value: str) -> str:
    """``<root>/<name>``'s value, recording ``value`` there if it has none yet: the first
    process to get here wins (link(2) of a complete file), every later one reads its value."""
    path = os.path.join(root, name)
    try:
        with open(path) as f:
            found = f.read().strip()
        if found:
            return found
    except FileNotFoundError:
        pass
    os.makedirs(root, mode=0o711, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(value + "\n")
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    with open(path) as f:
        return f.read().strip() or value
