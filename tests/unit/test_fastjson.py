"""fastjson writes and reads exactly what json does."""

from __future__ import annotations

import json

import pytest

from dockyard import fastjson

DOCS: list[object] = [
    {}, [], "", 0, -1.5, 1e300, True, None, "ünïcode \u2028 \"quoted\" \\ \n",
    {"ociVersion": "1.0.2", "id": "c1", "status": "running", "pid": 42,
     "bundle": "/b", "annotations": {}, "list": [1, [2, []], {"a": {}}], "nested": {"x": [None]}},
    {3: "int key", 2.5: "float key", True: "bool", False: "no", None: "none"},
    [[[]], [{}], {"k": [1, 2, {"z": False}]}],
]


@pytest.mark.parametrize("doc", DOCS)
@pytest.mark.parametrize("indent", [2, 4, "\t"])
def test_indented_matches_json(doc: object, indent: int | str) -> None:
    assert fastjson.dumps_indented(doc, indent) == json.dumps(doc, indent=indent)


@pytest.mark.parametrize("doc", DOCS)
def test_compact_round_trip(doc: object) -> None:
    text = fastjson.dumps(doc)
    assert text == json.dumps(doc)
    assert fastjson.loads(text) == json.loads(text)


def test_bad_key_and_value() -> None:
    with pytest.raises(TypeError):
        fastjson.dumps_indented({(1, 2): 3})
    with pytest.raises(TypeError):
        fastjson.dumps_indented({"a": object()})
