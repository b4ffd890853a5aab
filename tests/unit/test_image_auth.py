"""Credentials in a docker-compatible config.json, and docker-credential-* helpers."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from dockyard.errors import InvalidArgument, NotFound, Unavailable
from dockyard.image.auth import (
    HUB_AUTH_KEY,
    AuthStore,
    Credentials,
    auth_key,
    default_config_path,
)

SECRET = "pa55:w0rd-with-colon"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_login_writes_docker_format(tmp_path: Path) -> None:
    path = tmp_path / "docker" / "config.json"
    store = AuthStore(path)
    store.login("127.0.0.1:5000", "alice", SECRET)
    doc = json.loads(path.read_text())
    assert doc == {"auths": {"127.0.0.1:5000": {"auth": b64(f"alice:{SECRET}")}}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.lookup("127.0.0.1:5000") == Credentials("alice", SECRET)
    assert store.lookup("127.0.0.1:5001") is None
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]  # no tmp files left


def test_hub_key_and_other_keys_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({
        "auths": {"quay.io": {"auth": b64("q:qq")}},
        "psFormat": "table {{.ID}}",
        "proxies": {"default": {"httpProxy": "http://127.0.0.1:3128"}},
    }))
    store = AuthStore(path)
    store.login("docker.io", "bob", "hub-secret")
    doc = json.loads(path.read_text())
    assert doc["auths"][HUB_AUTH_KEY] == {"auth": b64("bob:hub-secret")}
    assert doc["auths"]["quay.io"] == {"auth": b64("q:qq")}
    assert doc["psFormat"] == "table {{.ID}}" and "proxies" in doc
    for name in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        assert store.lookup(name) == Credentials("bob", "hub-secret")
    assert auth_key("docker.io") == "https://index.docker.io/v1/"


def test_reads_what_docker_wrote(tmp_path: Path) -> None:
    # Older docker clients keyed entries by URL; some carry an identity token.
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {
        "https://registry.example.com/v1/": {"auth": b64("u:p")},
        "http://plain.example:5000": {"auth": b64("u2:p2")},
        "token.example": {"auth": "", "identitytoken": "refresh-me"},
        "empty.example": {},
    }}))
    store = AuthStore(path)
    assert store.lookup("registry.example.com") == Credentials("u", "p")
    assert store.lookup("plain.example:5000") == Credentials("u2", "p2")
    assert store.lookup("token.example") == Credentials("", "", "refresh-me")
    assert store.lookup("empty.example") is None


def test_logout(tmp_path: Path) -> None:
    store = AuthStore(tmp_path / "config.json")
    store.login("a.example", "u", "p")
    store.login("b.example", "u", "p")
    store.logout("a.example")
    assert store.lookup("a.example") is None
    assert store.lookup("b.example") is not None
    with pytest.raises(NotFound, match=r"not logged in to a\.example"):
        store.logout("a.example")


def test_missing_and_empty_files(tmp_path: Path) -> None:
    assert AuthStore(tmp_path / "nope.json").lookup("x") is None
    (tmp_path / "empty.json").write_text("")
    assert AuthStore(tmp_path / "empty.json").lookup("x") is None


def test_bad_files_do_not_leak_secrets(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"auths": {"x": {"auth": "' + SECRET + '"}')
    with pytest.raises(InvalidArgument) as excinfo:
        AuthStore(path).lookup("x")
    assert SECRET not in str(excinfo.value)
    path.write_text(json.dumps({"auths": {"x": {"auth": "!!" + SECRET}}}))
    with pytest.raises(InvalidArgument, match="not base64") as excinfo:
        AuthStore(path).lookup("x")
    assert SECRET not in str(excinfo.value)


def test_credentials_repr_hides_secrets() -> None:
    c = Credentials("alice", SECRET, "idtok-123")
    assert SECRET not in repr(c) and SECRET not in str(c) and SECRET not in f"{c}"
    assert "idtok-123" not in repr(c)
    assert "alice" in repr(c)


def test_symlinked_config_stays_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("{}")
    link = tmp_path / "config.json"
    link.symlink_to(real)
    AuthStore(link).login("x.example", "u", "p")
    assert link.is_symlink()
    assert "x.example" in json.loads(real.read_text())["auths"]


def test_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert default_config_path() == tmp_path / "config.json"
    assert AuthStore().path == tmp_path / "config.json"
    monkeypatch.delenv("DOCKER_CONFIG")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_config_path() == tmp_path / "home" / ".docker" / "config.json"


# --- credential helpers -------------------------------------------------------------------

HELPER = """#!{python}
import json, os, sys
db_path = {db!r}
db = json.load(open(db_path)) if os.path.exists(db_path) else {{}}
verb = sys.argv[1]
data = sys.stdin.read()
with open({log!r}, "a") as log:
    log.write(verb + "\\n")
if verb == "get":
    if data not in db:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps({{"ServerURL": data, **db[data]}}))
elif verb == "store":
    req = json.loads(data)
    db[req["ServerURL"]] = {{"Username": req["Username"], "Secret": req["Secret"]}}
    json.dump(db, open(db_path, "w"))
elif verb == "erase":
    if data not in db:
        print("credentials not found in native keychain")
        sys.exit(1)
    del db[data]
    json.dump(db, open(db_path, "w"))
else:
    print("unknown verb " + verb)
    sys.exit(1)
"""


@pytest.fixture
def helper_dir(tmp_path: Path) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "docker-credential-fake"
    script.write_text(HELPER.format(python=sys.executable, db=str(tmp_path / "db.json"),
                                    log=str(tmp_path / "helper.log")))
    script.chmod(0o755)
    return bindir


def test_creds_store_helper(tmp_path: Path, helper_dir: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"credsStore": "fake"}))
    store = AuthStore(path, helper_path=str(helper_dir))
    assert store.lookup("reg.example") is None
    store.login("reg.example", "carol", SECRET)
    doc = json.loads(path.read_text())
    # docker records the host with an empty entry; the secret lives only in the helper.
    assert doc == {"credsStore": "fake", "auths": {"reg.example": {}}}
    assert SECRET not in path.read_text()
    assert json.loads((tmp_path / "db.json").read_text())["reg.example"]["Secret"] == SECRET
    assert store.lookup("reg.example") == Credentials("carol", SECRET)
    store.logout("reg.example")
    assert store.lookup("reg.example") is None
    assert (tmp_path / "helper.log").read_text().split() == [
        "get", "store", "get", "erase", "get"]


def test_cred_helpers_per_host(tmp_path: Path, helper_dir: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({
        "credHelpers": {"helped.example": "fake"},
        "auths": {"plain.example": {"auth": b64("d:e")}},
    }))
    store = AuthStore(path, helper_path=str(helper_dir))
    store.login("helped.example", "u", "p")
    assert store.lookup("helped.example") == Credentials("u", "p")
    assert store.lookup("plain.example") == Credentials("d", "e")
    assert "helped.example" in json.loads((tmp_path / "db.json").read_text())


def test_helper_identity_token(tmp_path: Path, helper_dir: Path) -> None:
    (tmp_path / "db.json").write_text(json.dumps(
        {HUB_AUTH_KEY: {"Username": "<token>", "Secret": "refresh-token"}}))
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"credsStore": "fake"}))
    creds = AuthStore(path, helper_path=str(helper_dir)).lookup("docker.io")
    assert creds == Credentials("", "", "refresh-token")


def test_missing_helper_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"credsStore": "nonexistent"}))
    store = AuthStore(path, helper_path=str(tmp_path))
    with pytest.raises(Unavailable, match="docker-credential-nonexistent not found"):
        store.lookup("x.example")


def test_failing_helper_message(tmp_path: Path, helper_dir: Path) -> None:
    broken = helper_dir / "docker-credential-broken"
    broken.write_text("#!/bin/sh\necho 'keychain locked' >&2\nexit 3\n")
    broken.chmod(0o755)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"credsStore": "broken"}))
    store = AuthStore(path, helper_path=str(helper_dir))
    with pytest.raises(Unavailable, match="get failed: keychain locked"):
        store.lookup("x.example")
    with pytest.raises(Unavailable) as excinfo:
        store.login("x.example", "u", SECRET)
    assert SECRET not in str(excinfo.value)


def test_login_validates_username(tmp_path: Path) -> None:
    store = AuthStore(tmp_path / "config.json")
    with pytest.raises(InvalidArgument):
        store.login("x", "", "p")
    with pytest.raises(InvalidArgument):
        store.login("x", "a:b", "p")
    assert not os.path.exists(tmp_path / "config.json")
