"""``json.loads``/``json.dumps`` for the container start path, without importing ``json``.

The ``json`` package imports ``re`` (and through it ``enum``, ``functools``, ``collections``):
~8 ms before the first byte is parsed, on every ``dockyard-runc`` verb. The parsing and the
compact encoding are done by CPython's C accelerator ``_json`` either way; this module drives it
directly, exactly as ``json.JSONDecoder``/``JSONEncoder`` do with their default settings. Errors
are ``json.JSONDecodeError`` (``json`` is imported then, on the error path only). Pretty
printing (``indent``) is left to ``json`` itself. Imports nothing else from dockyard.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

try:
    import _json
except ImportError:  # not CPython: the pure-Python json is the only way
    _json = None  # type: ignore[assignment]

_WS = " \t\n\r"


class _Context:
    """What the C scanner reads from a ``JSONDecoder`` (its default settings)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


# typeshed types the scanner's argument as a JSONDecoder: _Context has the attributes it reads
_scan = _json.make_scanner(_Context()) if _json is not None else None  # type: ignore[arg-type]


def _error(msg: str, doc: str, pos: int) -> Exception:
    import json

    return json.JSONDecodeError(msg, doc, pos)


def loads(s: str) -> Any:
    """``json.loads(s)`` for a ``str``."""
    if _scan is None:
        import json

        return json.loads(s)
    idx = len(s) - len(s.lstrip(_WS))
    try:
        obj, end = _scan(s, idx)
    except StopIteration as exc:
        raise _error("Expecting value", s, exc.value) from None
    except SystemError:
        # The scanner builds its errors with json.decoder.JSONDecodeError, which it looks up
        # in sys.modules without importing it (SystemError: "returned NULL without setting an
        # exception"): on bad input, let json itself parse again and raise the real error.
        import json

        return json.loads(s)
    if s[end:].strip(_WS):
        raise _error("Extra data", s, end + len(s[end:]) - len(s[end:].lstrip(_WS)))
    return obj


def _default(o: object) -> object:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def dumps(obj: object) -> str:
    """``json.dumps(obj)`` with the default settings (separators ``, `` and ``: ``)."""
    if _json is None:
        import json

        return json.dumps(obj)
    if isinstance(obj, str):
        return str(_json.encode_basestring_ascii(obj))
    # a new encoder per document: its circular-reference markers must start empty
    encode = _json.make_encoder({}, _default, _json.encode_basestring_ascii, None, ": ", ", ",
                                False, False, True)
    return "".join(encode(obj, 0))


def dumps_indented(obj: object, indent: int | str = 2) -> str:
    """``json.dumps(obj, indent=indent)`` (the default separators ``,`` and ``: ``, ASCII)."""
    if _json is None:
        import json

        return json.dumps(obj, indent=indent)
    step = " " * indent if isinstance(indent, int) else indent
    out: list[str] = []
    _pretty(obj, out, "\n", step)
    return "".join(out)


def _pretty(obj: object, out: list[str], nl: str, step: str) -> None:
    if isinstance(obj, dict):
        if not obj:
            out.append("{}")
            return
        inner = nl + step
        out.append("{")
        first = True
        for key, value in obj.items():
            out.append(inner if first else "," + inner)
            first = False
            out.append(dumps(_key(key)))
            out.append(": ")
            _pretty(value, out, inner, step)
        out.append(nl + "}")
    elif isinstance(obj, (list, tuple)):
        if not obj:
            out.append("[]")
            return
        inner = nl + step
        out.append("[")
        for i, value in enumerate(obj):
            out.append(inner if i == 0 else "," + inner)
            _pretty(value, out, inner, step)
        out.append(nl + "]")
    else:
        out.append(dumps(obj))


def _key(key: object) -> str:
    """A dict key as json.dumps writes it: str as is; bool, None and numbers as JSON text."""
    if isinstance(key, str):
        return key
    if key is True or key is False or key is None:
        return {True: "true", False: "false", None: "null"}[key]
    if isinstance(key, (int, float)):
        return dumps(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")
