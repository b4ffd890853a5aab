"""pytest plugin: real registries on loopback (see testbed.registry).

Fixtures:
    registry        session-scoped, plain HTTP, no auth
    tls_registry    session-scoped, TLS with a throwaway CA + htpasswd user ``dockyard``
    fresh_registry  function-scoped factory: ``fresh_registry(tls=..., auth=...)`` -> Registry

Every registry is stopped by PID and its temp dir removed when its scope ends; teardown fails
the test (as an error) if the PID is still alive afterwards. ``pytest_unconfigure`` stops any
registry a fixture started and did not get to stop (an interrupted run), so none outlives the
session.

Enable with ``-p testbed.fixtures_registry`` or ``pytest_plugins = ["testbed.fixtures_registry"]``.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest

from testbed.registry import (
    Registry,
    pid_alive,
    registry_pids,
    start_registry,
    stop_registry,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

TLS_USERNAME = "dockyard"

# Registries started through this plugin and not yet stopped; and every one ever started.
_live: dict[int, Registry] = {}
_started: dict[int, Registry] = {}


class RegistryFactory(Protocol):
    def __call__(self, *, tls: bool = False, auth: tuple[str, str] | None = None) -> Registry: ...


def _start(tls: bool, auth: tuple[str, str] | None, prefix: str) -> Registry:
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        reg = start_registry(workdir, tls=tls, auth=auth)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    _live[reg.pid] = reg
    _started[reg.pid] = reg
    return reg


def _stop(reg: Registry) -> None:
    try:
        stop_registry(reg)
    finally:
        _live.pop(reg.pid, None)
        shutil.rmtree(reg.workdir, ignore_errors=True)
    assert not pid_alive(reg.pid), f"registry pid {reg.pid} survived stop_registry"


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    """A plain-HTTP registry without auth, shared by the session."""
    reg = _start(tls=False, auth=None, prefix="dockyard-registry-")
    try:
        yield reg
    finally:
        _stop(reg)


@pytest.fixture(scope="session")
def tls_registry() -> Iterator[Registry]:
    """A TLS registry (CA in ``.ca_cert``/``.cert_dir``) with basic auth ``dockyard``/random."""
    reg = _start(
        tls=True, auth=(TLS_USERNAME, secrets.token_urlsafe(16)), prefix="dockyard-registry-tls-"
    )
    try:
        yield reg
    finally:
        _stop(reg)


@pytest.fixture
def fresh_registry() -> Iterator[RegistryFactory]:
    """A factory for registries private to one test, all stopped when the test ends."""
    started: list[Registry] = []

    def factory(*, tls: bool = False, auth: tuple[str, str] | None = None) -> Registry:
        reg = _start(tls=tls, auth=auth, prefix="dockyard-registry-fresh-")
        started.append(reg)
        return reg

    try:
        yield factory
    finally:
        errors: list[BaseException] = []
        for reg in reversed(started):
            try:
                _stop(reg)
            except Exception as e:  # stop the rest before reporting
                errors.append(e)
        if errors:
            raise errors[0]


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a registry we started is still running; then stop it.

    Session fixtures are torn down before this hook, so anything still alive here leaked.
    """
    leaked = sorted(_started.keys() & set(registry_pids()))
    for pid in {*leaked, *_live}:
        reg = _started[pid]
        stop_registry(reg)
        _live.pop(pid, None)
        shutil.rmtree(reg.workdir, ignore_errors=True)
    if leaked:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = f"testbed.fixtures_registry: registry processes leaked: {leaked}"
        if reporter is not None:
            reporter.write_line(message, red=True)
        else:
            print(message)


def pytest_unconfigure(config: pytest.Config) -> None:
    # Last resort (e.g. a crash before sessionfinish): nothing we started may outlive pytest.
    for reg in list(_live.values()):
        _stop(reg)
