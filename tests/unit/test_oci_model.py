"""config.json parsing: valid specs become dataclasses, bad ones name the offending field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dockyard.errors import InvalidArgument
from dockyard.model.oci import parse_spec
from dockyard.runtime.specgen import default_spec
from testbed.specs import runtime_schema_dir

SPEC_TESTS = runtime_schema_dir() / "test"


def test_default_spec_round_trips() -> None:
    spec = parse_spec(default_spec())
    assert spec.process is not None
    assert spec.process.args == ("sh",)
    assert spec.process.rlimits[0].type == "RLIMIT_NOFILE"
    assert spec.root.readonly is True
    assert [ns.type for ns in spec.linux.namespaces] == [
        "pid",
        "network",
        "ipc",
        "uts",
        "mount",
        "cgroup",
    ]
    assert "/proc/kcore" in spec.linux.masked_paths


@pytest.mark.skipif(not SPEC_TESTS.is_dir(), reason="shared/specs not present")
def test_default_spec_validates_against_the_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    schema_dir = SPEC_TESTS.parent
    resources = []
    for f in schema_dir.glob("*.json"):
        contents = json.loads(f.read_text())
        resources.append(
            (
                f.name,
                referencing.Resource.from_contents(
                    contents, default_specification=referencing.jsonschema.DRAFT4
                ),
            )
        )
    registry = referencing.Registry().with_resources(resources)
    schema = json.loads((schema_dir / "config-schema.json").read_text())
    validator = jsonschema.Draft4Validator(schema, registry=registry)
    errors = list(validator.iter_errors(default_spec()))
    assert errors == []


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.pop("root"), "root is required"),
        (lambda c: c["process"].update(args=[]), "process.args"),
        (lambda c: c["process"].update(cwd="relative"), "cwd must be an absolute"),
        (lambda c: c["process"].update(terminal="yes"), "$.process.terminal must be true or false"),
        (lambda c: c["linux"]["namespaces"].append({"type": "pid"}), "listed twice"),
        (lambda c: c["linux"]["namespaces"].append({"type": "bogus"}), "unknown namespace"),
        (lambda c: c["mounts"].append({"destination": "rel"}), "must be absolute"),
        (lambda c: c["process"]["user"].update(uid="0"), "uid must be an integer"),
        (lambda c: c.update(hostname=5), "hostname must be a string"),
    ],
)
def test_bad_specs_name_the_field(mutate: Any, message: str) -> None:
    config = default_spec()
    mutate(config)
    with pytest.raises(InvalidArgument) as exc:
        parse_spec(config)
    assert message in str(exc.value)


def test_good_fixtures_from_the_spec_parse() -> None:
    good = SPEC_TESTS / "config" / "good"
    if not good.is_dir():
        pytest.skip("spec fixtures not present")
    for f in sorted(good.glob("*.json")):
        parse_spec(json.loads(f.read_text()))


def test_id_mappings_need_a_user_namespace(tmp_path: Path) -> None:
    from dockyard.runtime.create import resolve

    config = default_spec()
    config["process"]["terminal"] = False
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    (tmp_path / "rootfs").mkdir()
    spec = parse_spec(config)
    with pytest.raises(InvalidArgument, match="need a new user namespace"):
        resolve(spec, tmp_path, "fifo", no_pivot=False, preserve_fds=0, cons=None)
    config["linux"]["namespaces"].append({"type": "user"})
    del config["linux"]["gidMappings"]
    with pytest.raises(InvalidArgument, match=r"needs linux\.uidMappings and"):
        resolve(parse_spec(config), tmp_path, "fifo", no_pivot=False, preserve_fds=0,
                cons=None)


@pytest.mark.skipif(not SPEC_TESTS.is_dir(), reason="shared/specs not present")
def test_features_document_validates() -> None:
    import jsonschema
    import referencing
    import referencing.jsonschema

    from dockyard.runtime.features import features

    schema_dir = SPEC_TESTS.parent
    resources = [(f.name, referencing.Resource.from_contents(
        json.loads(f.read_text()), default_specification=referencing.jsonschema.DRAFT4))
        for f in schema_dir.glob("*.json")]
    registry = referencing.Registry().with_resources(resources)
    schema = json.loads((schema_dir / "features-schema.json").read_text())
    doc = features()
    assert list(jsonschema.Draft4Validator(schema, registry=registry).iter_errors(doc)) == []
    assert doc["ociVersionMax"] == "1.3.0"
    assert "createContainer" in doc["hooks"]  # type: ignore[operator]
    assert "rbind" in doc["mountOptions"]  # type: ignore[operator]


def test_rootless_spec() -> None:
    from dockyard.runtime.specgen import rootless_spec

    spec = parse_spec(rootless_spec(1000, 1000))
    assert [ns.type for ns in spec.linux.namespaces] == ["pid", "ipc", "uts", "mount", "user"]
    assert spec.linux.uid_mappings[0].host_id == 1000
    assert spec.linux.resources is None
    sys_mount = next(m for m in spec.mounts if m.destination == "/sys")
    assert "rbind" in sys_mount.options
    assert all(m.destination != "/sys/fs/cgroup" for m in spec.mounts)


@pytest.mark.parametrize(("edit", "direct"), [
    ({}, True),
    ({"network": "/proc/self/ns/net", "uts": "/proc/self/ns/uts"}, True),
    ({"pid": "/proc/self/ns/pid"}, False),
    ({"user": "/proc/self/ns/user"}, False),
    ({"time": ""}, False),
])
def test_which_containers_need_a_middle_child(tmp_path: Path, edit: dict[str, str],
                                              direct: bool) -> None:
    """The parent clones the init itself unless the init's birth must wait for something:
    a pid or user namespace joined by path, a time namespace's offsets (a new user namespace
    needs one too, its id maps: covered by the integration suite)."""
    import os

    from dockyard.runtime.create import resolve

    config = default_spec()
    config["process"]["terminal"] = False
    namespaces = {n["type"]: n for n in config["linux"]["namespaces"]}
    for ns_type, path in edit.items():
        namespaces.setdefault(ns_type, {"type": ns_type})
        if path:
            namespaces[ns_type]["path"] = path
    config["linux"]["namespaces"] = list(namespaces.values())
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "fifo").touch()
    cfg = resolve(parse_spec(config), tmp_path, str(tmp_path / "fifo"), no_pivot=False,
                  preserve_fds=0, cons=None)
    os.close(cfg.fifo_fd)
    assert cfg.direct is direct
