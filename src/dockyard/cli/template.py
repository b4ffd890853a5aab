"""Go text/template, the language of docker's ``--format`` and ``inspect -f``, over JSON-like data.

A safe interpreter (no eval) of the subset docker users write: actions with fields
(``{{.State.Status}}``), variables (``$``, ``$x := ...``, ``$x = ...``), pipelines and
parenthesized pipelines, trim markers (``{{- ... -}}``), comments, ``if``/``else if``/``else``,
``range`` (lists, maps in key order, ints; ``$i, $v :=``; ``break``/``continue``), ``with``/
``else with``; Go's builtins (``and or not len index slice print printf println html urlquery
eq ne lt le gt ge``) and docker's (``json split join title lower upper pad truncate``).
``define``/``template``/``block`` are refused.

Data are Python values standing for Go's: dict -> map[string]interface{}, list -> slice,
str, int, float (float64), bool, None (nil). A dict value that is callable acts as a method of
the Go struct it stands for (docker's ``{{.Label "com.x"}}`` on ``ps`` rows): it is called with
the action's arguments. Printing follows fmt's %v: a missing map key prints ``<no value>``, nil
``<nil>``, lists ``[a b]``, maps ``map[k:v]`` with sorted keys, floats as Go's shortest %v.

Errors are :class:`TemplateError` (an InvalidArgument) whose message is docker's whole line,
e.g. ``template parsing error: template: :1: function "foo" not defined`` or ``template parsing
error: template: :1:2: executing "" at <.Foo.Bar>: can't evaluate field Bar in type string``
(docker prefixes execution errors with "template parsing error" too); ``go_message`` is the
part that Go's text/template produced.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from dockyard.errors import InvalidArgument

__all__ = [
    "HEADER_FUNCS",
    "MISSING",
    "Struct",
    "Template",
    "TemplateError",
    "go_json",
    "go_sprint",
    "go_sprintf",
    "go_str",
    "parse_template",
]

_PREFIX = "template parsing error: "


class TemplateError(InvalidArgument):
    """A template that does not parse or fails while it runs (docker's one-line message)."""

    def __init__(self, go_message: str) -> None:
        super().__init__(_PREFIX + go_message)
        self.go_message = go_message


class Struct(dict[str, Any]):
    """A dict that stands for a Go struct: a field it lacks is an error, as in docker
    (``can't evaluate field Foo in type *formatter.ContainerContext``), not ``<no value>``.
    ``go_type`` names the struct in that message."""

    __slots__ = ("go_type",)

    def __init__(self, fields: dict[str, Any] | None = None, /, *,
                 go_type: str = "*formatter.Context") -> None:
        super().__init__(fields or {})
        self.go_type = go_type


class _Missing:
    """Go's invalid reflect.Value: what a missing map key evaluates to."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


# --------------------------------------------------------------------------------------------
# Go's fmt: %v printing, Sprint, Sprintf


def _go_type(v: Any) -> str:
    if v is None or v is MISSING:
        return "<nil>"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "[]interface {}"
    if isinstance(v, dict):
        return "map[string]interface {}"
    if callable(v):
        return "func"
    return type(v).__name__


def _shortest_digits(f: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits of abs(f) and the decimal point position."""
    import decimal  # only floats need it; keep it off the CLI's import path
    t = decimal.Decimal(repr(abs(f))).as_tuple()
    digits = "".join(map(str, t.digits)).lstrip("0")
    exp = int(t.exponent)
    if not digits:
        return "0", 1
    stripped = digits.rstrip("0")
    exp += len(digits) - len(stripped)
    return stripped, len(stripped) + exp


def _fmt_e(neg: bool, digits: str, dp: int, upper: bool = False) -> str:
    exp = dp - 1
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    sign = "-" if exp < 0 else "+"
    e = "E" if upper else "e"
    return ("-" if neg else "") + f"{mant}{e}{sign}{abs(exp):02d}"


def _fmt_f(neg: bool, digits: str, dp: int) -> str:
    if dp <= 0:
        s = "0." + "0" * (-dp) + digits
    elif dp >= len(digits):
        s = digits + "0" * (dp - len(digits))
    else:
        s = digits[:dp] + "." + digits[dp:]
    return ("-" if neg else "") + s


def _float_v(f: float, upper: bool = False) -> str:
    """fmt's %v / %g (shortest) for a float64: the %e form when the exponent is < -4 or >= 6,
    strconv's rule for the shortest precision (1e+06, 123456, 1e-05, 0.0001)."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    neg = math.copysign(1.0, f) < 0
    if f == 0:
        return "-0" if neg else "0"
    digits, dp = _shortest_digits(f)
    exp = dp - 1
    if exp < -4 or exp >= 6:
        return _fmt_e(neg, digits, dp, upper)
    return _fmt_f(neg, digits, dp)


def _sorted_items(d: dict[Any, Any]) -> list[tuple[Any, Any]]:
    # fmt and encoding/json sort map keys; keys here are strings (or ints, sorted numerically).
    return sorted(d.items(), key=lambda kv: (not isinstance(kv[0], (int, float)), kv[0]))


def go_str(v: Any) -> str:
    """fmt.Sprint of one value (%v)."""
    if v is MISSING:
        return "<no value>"
    return _fmt_value(v, "v", _Spec())


def go_sprint(*args: Any) -> str:
    """fmt.Sprint: a space between operands when neither side is a string."""
    out: list[str] = []
    prev_string = False
    for i, a in enumerate(args):
        is_string = isinstance(a, str)
        if i > 0 and not is_string and not prev_string:
            out.append(" ")
        out.append(_fmt_value(_nil(a), "v", _Spec()))
        prev_string = is_string
    return "".join(out)


def go_sprintln(*args: Any) -> str:
    return " ".join(_fmt_value(_nil(a), "v", _Spec()) for a in args) + "\n"


@dataclass(slots=True)
class _Spec:
    minus: bool = False
    plus: bool = False
    sharp: bool = False
    space: bool = False
    zero: bool = False
    width: int | None = None
    prec: int | None = None


def _pad(s: str, spec: _Spec, numeric: bool = False) -> str:
    if spec.width is None:
        return s
    n = spec.width - len(s)
    if n <= 0:
        return s
    if spec.minus:
        return s + " " * n
    if spec.zero:
        if numeric and s[:1] in "+- " and s:
            return s[0] + "0" * n + s[1:]
        return "0" * n + s
    return " " * n + s


def _go_quote(s: str, ascii_only: bool = False) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in _QUOTE_ESC:
            out.append(_QUOTE_ESC[ch])
        elif ch.isprintable() and (o < 0x80 or not ascii_only):
            out.append(ch)
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif 0xD800 <= o <= 0xDFFF:
            out.append("\\ufffd")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


_QUOTE_ESC = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
              "\v": "\\v"}


def _bad_verb(v: Any, verb: str) -> str:
    if v is None or v is MISSING:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({_go_type(v)}={go_str(v)})"


def _fmt_int(v: int, verb: str, spec: _Spec) -> str:
    neg = v < 0
    a = -v if neg else v
    if verb in "dv":
        body = str(a)
    elif verb == "x":
        body = f"{a:x}"
        if spec.sharp:
            body = "0x" + body
    elif verb == "X":
        body = f"{a:X}"
        if spec.sharp:
            body = "0X" + body
    elif verb == "o":
        body = f"{a:o}"
        if spec.sharp:
            body = "0" + body
    elif verb == "O":
        body = "0o" + f"{a:o}"
    elif verb == "b":
        body = f"{a:b}"
    elif verb == "c":
        return _pad(chr(v) if 0 <= v <= 0x10FFFF else "\ufffd", spec)
    elif verb == "q":
        return _pad("'" + (chr(v) if 0 <= v <= 0x10FFFF else "\ufffd") + "'", spec)
    elif verb == "U":
        body = f"U+{a:04X}"
    else:
        return _bad_verb(v, verb)
    if spec.prec is not None:
        body = body.rjust(spec.prec, "0") if not (spec.prec == 0 and a == 0) else ""
    sign = "-" if neg else ("+" if spec.plus else (" " if spec.space else ""))
    s = sign + body
    if spec.prec is not None:  # a precision turns zero padding off (fmt.fmtInteger)
        spec = _Spec(spec.minus, spec.plus, spec.sharp, spec.space, False, spec.width, spec.prec)
    return _pad(s, spec, numeric=True)


def _fmt_float(v: float, verb: str, spec: _Spec) -> str:
    if verb == "v":
        verb = "g"
    if math.isnan(v) or math.isinf(v):
        s = "NaN" if math.isnan(v) else ("+Inf" if v > 0 else "-Inf")
        if s[0] == "+" and not spec.plus:
            s = s[1:]
        return _pad(s, _Spec(spec.minus, width=spec.width))
    if verb in "gG" and spec.prec is None:
        s = _float_v(v, verb == "G")
    elif verb in "eEfFgG":
        prec = 6 if spec.prec is None else spec.prec
        py = verb if verb != "F" else "f"
        s = f"{v:.{prec}{py}}"
        if spec.sharp and verb in "gG" and "." not in s:
            s += "."
    else:
        return _bad_verb(v, verb)
    if not s.startswith("-"):
        if spec.plus:
            s = "+" + s
        elif spec.space:
            s = " " + s
    return _pad(s, spec, numeric=True)


def _fmt_str(s: str, verb: str, spec: _Spec) -> str:
    if verb in "sv":
        if spec.prec is not None:
            s = s[: spec.prec]
        return _pad(s, spec)
    if verb == "q":
        if spec.prec is not None:
            s = s[: spec.prec]
        if spec.sharp and "`" not in s and all(c == "\t" or c.isprintable() for c in s):
            return _pad("`" + s + "`", spec)
        return _pad(_go_quote(s, spec.plus), spec)
    if verb in "xX":
        b = s.encode()
        if spec.prec is not None:
            b = b[: spec.prec]
        h = b.hex()
        if verb == "X":
            h = h.upper()
        if spec.space:
            pre = ("0x" if verb == "x" else "0X") if spec.sharp else ""
            h = " ".join(pre + h[i : i + 2] for i in range(0, len(h), 2))
        elif spec.sharp:
            h = ("0x" if verb == "x" else "0X") + h
        return _pad(h, spec)
    return _bad_verb(s, verb)


def _fmt_value(v: Any, verb: str, spec: _Spec) -> str:
    if v is MISSING or v is None:
        if verb in "vs" and v is MISSING:
            return _pad("<no value>", spec) if verb == "v" else _bad_verb(v, verb)
        return _pad("<nil>", spec) if verb == "v" else _bad_verb(v, verb)
    if isinstance(v, bool):
        if verb in "tv":
            return _pad("true" if v else "false", spec)
        return _bad_verb(v, verb)
    if isinstance(v, int):
        return _fmt_int(v, verb, spec)
    if isinstance(v, float):
        return _fmt_float(v, verb, spec)
    if isinstance(v, str):
        return _fmt_str(v, verb, spec)
    if isinstance(v, (list, tuple)):
        inner = " ".join(_fmt_value(_nil(e), verb, spec) for e in v)
        return "[" + inner + "]"
    if isinstance(v, dict):
        inner = " ".join(
            _fmt_value(_nil(k), verb, spec) + ":" + _fmt_value(_nil(e), verb, spec)
            for k, e in _sorted_items(v)
        )
        return "map[" + inner + "]"
    if callable(v):
        return f"%!{verb}(func)"
    return _pad(str(v), spec)


def _nil(v: Any) -> Any:
    return None if v is MISSING else v


def go_sprintf(fmt: str, *args: Any) -> str:
    """fmt.Sprintf for the verbs templates use (%v %s %d %q %t %x %X %o %b %c %U %e %f %g)."""
    out: list[str] = []
    argn = 0
    i = 0
    n = len(fmt)
    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:j])
        i = j + 1
        spec = _Spec()
        while i < n and fmt[i] in "+-# 0":
            c = fmt[i]
            if c == "+":
                spec.plus = True
            elif c == "-":
                spec.minus = True
                spec.zero = False
            elif c == "#":
                spec.sharp = True
            elif c == " ":
                spec.space = True
            elif not spec.minus:
                spec.zero = True
            i += 1
        if i < n and fmt[i] == "*":
            i += 1
            if argn < len(args) and isinstance(args[argn], int) and not isinstance(
                    args[argn], bool):
                spec.width = args[argn]
                if spec.width < 0:
                    spec.minus, spec.width = True, -spec.width
            else:
                out.append("%!(BADWIDTH)")
            argn += 1
        else:
            start = i
            while i < n and fmt[i].isdigit():
                i += 1
            if i > start:
                spec.width = int(fmt[start:i])
        if i < n and fmt[i] == ".":
            i += 1
            if i < n and fmt[i] == "*":
                i += 1
                if argn < len(args) and isinstance(args[argn], int) and not isinstance(
                        args[argn], bool):
                    spec.prec = max(args[argn], 0)
                else:
                    out.append("%!(BADPREC)")
                argn += 1
            else:
                start = i
                while i < n and fmt[i].isdigit():
                    i += 1
                spec.prec = int(fmt[start:i]) if i > start else 0
        if i >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if argn >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argn]
        argn += 1
        if verb == "T":
            out.append(_pad(_go_type(arg), spec))
            continue
        if verb == "v" and spec.sharp:
            out.append(_go_syntax(arg))
            continue
        out.append(_fmt_value(_nil(arg), verb, spec))
    if argn < len(args):
        extra = ", ".join(
            "<nil>" if a is None or a is MISSING else f"{_go_type(a)}={go_str(a)}"
            for a in args[argn:]
        )
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _go_syntax(v: Any) -> str:
    """A rough %#v: Go syntax for the JSON-like values."""
    if v is None or v is MISSING:
        return "interface {}(nil)"
    if isinstance(v, str):
        return _go_quote(v)
    if isinstance(v, (list, tuple)):
        return "[]interface {}{" + ", ".join(_go_syntax(e) for e in v) + "}"
    if isinstance(v, dict):
        return "map[string]interface {}{" + ", ".join(
            f"{_go_quote(str(k))}:{_go_syntax(e)}" for k, e in _sorted_items(v)) + "}"
    return go_str(v)


# --------------------------------------------------------------------------------------------
# encoding/json as docker's ``json`` function uses it (Encoder with SetEscapeHTML(false))


def _json_string(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif o < 0x20:
            out.append(_JSON_ESC.get(ch) or f"\\u{o:04x}")
        elif o in (0x2028, 0x2029):
            out.append(f"\\u{o:04x}")
        elif 0xD800 <= o <= 0xDFFF:
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_JSON_ESC = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _json_float(f: float) -> str:
    if math.isnan(f) or math.isinf(f):
        raise ValueError(f"json: unsupported value: {_float_v(f)}")
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    neg = f < 0
    digits, dp = _shortest_digits(f)
    a = abs(f)
    if a < 1e-6 or a >= 1e21:
        s = _fmt_e(neg, digits, dp)
        # encoding/json writes e-7, not e-07
        if s[-4] == "e" and s[-3] == "-" and s[-2] == "0":
            s = s[:-2] + s[-1]
        return s
    return _fmt_f(neg, digits, dp)


def go_json(v: Any) -> str:
    """encoding/json.Marshal, compact, map keys sorted, ``<>&`` left as they are (docker's
    ``json`` template function turns HTML escaping off). A value with a ``go_json_fields()``
    method stands for a Go struct with json tags: the (key, value) pairs it returns, in order."""
    if v is None or v is MISSING:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _json_float(v)
    if isinstance(v, str):
        return _json_string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(go_json(e) for e in v) + "]"
    tagged = getattr(v, "go_json_fields", None)
    if tagged is not None:  # a Go struct with json tags: its own keys, in field order
        return "{" + ",".join(_json_string(k) + ":" + go_json(e) for k, e in tagged()) + "}"
    if isinstance(v, dict):
        items = sorted(((str(k), e) for k, e in v.items()), key=lambda kv: kv[0])
        return "{" + ",".join(_json_string(k) + ":" + go_json(e) for k, e in items) + "}"
    raise ValueError(f"json: unsupported type: {_go_type(v)}")


# --------------------------------------------------------------------------------------------
# Lexer (text/template/parse/lex.go)

_SPACE = " \t\r\n"
_KEYWORDS = {"block", "break", "continue", "define", "else", "end", "if", "range", "nil",
             "template", "with"}


@dataclass(slots=True)
class _Item:
    typ: str  # text, ldelim, rdelim, space, field, dot, var, ident, keyword, bool, number,
    #           string, rawstring, char, pipe, lparen, rparen, declare, assign, comma, eof,
    #           charconst
    val: str
    pos: int
    line: int


class _LexError(Exception):
    def __init__(self, msg: str, line: int) -> None:
        super().__init__(msg)
        self.msg = msg
        self.line = line


def _is_alnum(c: str) -> bool:
    return c == "_" or c.isalnum()


def _lex(src: str) -> list[_Item]:
    items: list[_Item] = []
    pos = 0
    n = len(src)

    def line_at(p: int) -> int:
        return 1 + src.count("\n", 0, p)

    def emit(typ: str, start: int, end: int) -> None:
        items.append(_Item(typ, src[start:end], start, line_at(start)))

    def fail(msg: str, p: int) -> NoReturn:
        raise _LexError(msg, line_at(p))

    def at_right_delim(p: int) -> tuple[bool, bool]:
        if p + 1 < n and src[p] in _SPACE and src[p + 1] == "-" and src.startswith("}}", p + 2):
            return True, True
        return src.startswith("}}", p), False

    def ltrim_len(p: int) -> int:
        q = p
        while q < n and src[q] in _SPACE:
            q += 1
        return q - p

    while True:
        j = src.find("{{", pos)
        if j < 0:
            if pos < n:
                emit("text", pos, n)
            break
        trim = j + 3 < n and src[j + 2] == "-" and src[j + 3] in _SPACE
        text_end = j
        if trim:
            while text_end > pos and src[text_end - 1] in _SPACE:
                text_end -= 1
        if text_end > pos:
            emit("text", pos, text_end)
        p = j + 2 + (2 if trim else 0)
        if src.startswith("/*", p):
            x = src.find("*/", p + 2)
            if x < 0:
                fail("unclosed comment", j)
            p = x + 2
            delim, rtrim = at_right_delim(p)
            if not delim:
                fail("comment ends before closing delimiter", j)
            p += (2 if rtrim else 0) + 2
            if rtrim:
                p += ltrim_len(p)
            pos = p
            continue
        items.append(_Item("ldelim", "{{", j, line_at(j)))
        depth = 0
        while True:
            delim, rtrim = at_right_delim(p)
            if delim:
                if depth:
                    fail("unclosed left paren", p)
                start = p
                p += (2 if rtrim else 0) + 2
                items.append(_Item("rdelim", "}}", start, line_at(start)))
                if rtrim:
                    p += ltrim_len(p)
                break
            if p >= n:
                fail("unclosed action", p)
            c = src[p]
            start = p
            if c in _SPACE:
                while p < n and src[p] in _SPACE:
                    p += 1
                # " -}}": the last space belongs to the trim marker
                if src.startswith("-}}", p):
                    p -= 1
                    if p == start:
                        continue
                emit("space", start, p)
                continue
            p += 1
            if c == "=":
                emit("assign", start, p)
            elif c == ":":
                if p >= n or src[p] != "=":
                    fail("expected :=", start)
                p += 1
                emit("declare", start, p)
            elif c == "|":
                emit("pipe", start, p)
            elif c == '"':
                while True:
                    if p >= n or src[p] == "\n":
                        fail("unterminated quoted string", start)
                    if src[p] == "\\":
                        p += 2
                        continue
                    p += 1
                    if src[p - 1] == '"':
                        break
                emit("string", start, p)
            elif c == "`":
                x = src.find("`", p)
                if x < 0:
                    fail("unterminated raw quoted string", start)
                p = x + 1
                emit("rawstring", start, p)
            elif c == "'":
                while True:
                    if p >= n or src[p] == "\n":
                        fail("unterminated character constant", start)
                    if src[p] == "\\":
                        p += 2
                        continue
                    p += 1
                    if src[p - 1] == "'":
                        break
                emit("charconst", start, p)
            elif c in "$." and not (c == "." and p < n and src[p].isdigit()):
                while p < n and _is_alnum(src[p]):
                    p += 1
                if p < n and not _terminator(src, p):
                    fail(f"bad character {_rune_repr(src[p])}", p)
                if c == "." and p == start + 1:
                    emit("dot", start, p)
                else:
                    emit("var" if c == "$" else "field", start, p)
            elif c in "+-." or c.isdigit():
                p, ok = _scan_number(src, start)
                if not ok:
                    fail(f"bad number syntax: {_go_quote(src[start:p])}", start)
                emit("number", start, p)
            elif _is_alnum(c):
                while p < n and _is_alnum(src[p]):
                    p += 1
                if p < n and not _terminator(src, p):
                    fail(f"bad character {_rune_repr(src[p])}", p)
                word = src[start:p]
                if word in _KEYWORDS:
                    emit("keyword", start, p)
                elif word in ("true", "false"):
                    emit("bool", start, p)
                else:
                    emit("ident", start, p)
            elif c == "(":
                depth += 1
                emit("lparen", start, p)
            elif c == ")":
                depth -= 1
                if depth < 0:
                    fail("unexpected right paren", start)
                emit("rparen", start, p)
            elif c == ",":
                emit("comma", start, p)
            elif ord(c) < 0x80 and c.isprintable():
                emit("char", start, p)
            else:
                fail(f"unrecognized character in action: {_rune_repr(c)}", start)
        pos = p
    items.append(_Item("eof", "", n, line_at(n)))
    return items


def _rune_repr(c: str) -> str:
    return f"U+{ord(c):04X} '{c}'" if c.isprintable() else f"U+{ord(c):04X}"


def _terminator(src: str, p: int) -> bool:
    c = src[p]
    if c in _SPACE or c in ".,|:()":
        return True
    return src.startswith("}}", p)


def _scan_number(src: str, p: int) -> tuple[int, bool]:
    n = len(src)
    if p < n and src[p] in "+-":
        p += 1
    digits = "0123456789_"
    if src.startswith(("0x", "0X"), p):
        p += 2
        digits = "0123456789abcdefABCDEF_"
    elif src.startswith(("0o", "0O"), p):
        p += 2
        digits = "01234567_"
    elif src.startswith(("0b", "0B"), p):
        p += 2
        digits = "01_"
    while p < n and src[p] in digits:
        p += 1
    if p < n and src[p] == ".":
        p += 1
        while p < n and src[p] in digits:
            p += 1
    if len(digits) == 11 and p < n and src[p] in "eE":
        p += 1
        if p < n and src[p] in "+-":
            p += 1
        while p < n and src[p] in "0123456789_":
            p += 1
    if p < n and _is_alnum(src[p]):
        return p + 1, False
    return p, True


# --------------------------------------------------------------------------------------------
# Parse tree (text/template/parse/node.go); str() is Go's String(), used in error contexts


@dataclass(slots=True)
class _Node:
    pos: int


@dataclass(slots=True)
class _Text(_Node):
    text: str


@dataclass(slots=True)
class _FieldN(_Node):
    idents: list[str]

    def __str__(self) -> str:
        return "".join("." + i for i in self.idents)


@dataclass(slots=True)
class _VarN(_Node):
    idents: list[str]  # idents[0] is "$name"

    def __str__(self) -> str:
        return ".".join(self.idents)


@dataclass(slots=True)
class _DotN(_Node):
    def __str__(self) -> str:
        return "."


@dataclass(slots=True)
class _NilN(_Node):
    def __str__(self) -> str:
        return "nil"


@dataclass(slots=True)
class _BoolN(_Node):
    value: bool

    def __str__(self) -> str:
        return "true" if self.value else "false"


@dataclass(slots=True)
class _NumN(_Node):
    text: str
    value: int | float

    def __str__(self) -> str:
        return self.text


@dataclass(slots=True)
class _StrN(_Node):
    quoted: str
    value: str

    def __str__(self) -> str:
        return self.quoted


@dataclass(slots=True)
class _IdentN(_Node):
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(slots=True)
class _Cmd(_Node):
    args: list[_Node] = field(default_factory=list)

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, _Pipe) else str(a) for a in self.args)


@dataclass(slots=True)
class _Pipe(_Node):
    line: int
    decl: list[_VarN] = field(default_factory=list)
    is_assign: bool = False
    cmds: list[_Cmd] = field(default_factory=list)

    def __str__(self) -> str:
        s = ""
        if self.decl:
            s = ", ".join(str(v) for v in self.decl) + (" = " if self.is_assign else " := ")
        return s + " | ".join(str(c) for c in self.cmds)


@dataclass(slots=True)
class _ChainN(_Node):
    node: _Node
    fields: list[str]

    def __str__(self) -> str:
        base = f"({self.node})" if isinstance(self.node, _Pipe) else str(self.node)
        return base + "".join("." + f for f in self.fields)


@dataclass(slots=True)
class _Action(_Node):
    pipe: _Pipe

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


@dataclass(slots=True)
class _Branch(_Node):
    kind: str  # if, range, with
    pipe: _Pipe
    body: list[_Node]
    else_body: list[_Node] | None

    def __str__(self) -> str:
        return "{{" + self.kind + " " + str(self.pipe) + "}}"


@dataclass(slots=True)
class _Flow(_Node):
    kind: str  # break, continue, end, else

    def __str__(self) -> str:
        return "{{" + self.kind + "}}"


# --------------------------------------------------------------------------------------------
# Parser (text/template/parse/parse.go)


class _ParseError(Exception):
    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg


def _unquote(q: str) -> str:
    """strconv.Unquote for "..." and '...' literals."""
    body = q[1:-1]
    out: list[str] = []
    i = 0
    simple = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
              "\\": "\\", "'": "'", '"': '"'}
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        i += 1
        if i >= len(body):
            raise ValueError("invalid syntax")
        e = body[i]
        i += 1
        if e in simple:
            out.append(simple[e])
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            h = body[i : i + width]
            if len(h) != width or any(ch not in "0123456789abcdefABCDEF" for ch in h):
                raise ValueError("invalid syntax")
            out.append(chr(int(h, 16)))
            i += width
        elif e in "01234567":
            o = body[i - 1 : i + 2]
            if len(o) != 3 or any(ch not in "01234567" for ch in o):
                raise ValueError("invalid syntax")
            out.append(chr(int(o, 8)))
            i += 2
        else:
            raise ValueError("invalid syntax")
    return "".join(out)


def _parse_number(text: str) -> int | float:
    t = text.replace("_", "")
    if t.startswith("'"):
        s = _unquote(text)
        if len(s) != 1:
            raise ValueError(text)
        return ord(s)
    is_hex = t.lstrip("+-")[:2].lower() == "0x"
    if not is_hex and any(c in t for c in ".eEpP"):
        return float(t)
    sign = -1 if t.startswith("-") else 1
    body = t.lstrip("+-")
    if len(body) > 1 and body[0] == "0" and body[1].isdigit():
        return sign * int(body, 8)
    return sign * int(body, 0)


class _Parser:
    def __init__(self, src: str, funcs: set[str]) -> None:
        self.src = src
        self.funcs = funcs
        try:
            self.items = _lex(src)
        except _LexError as e:
            raise TemplateError(f"template: :{e.line}: {e.msg}") from None
        self.i = 0
        self.vars: list[str] = ["$"]
        self.range_depth = 0

    # token stream
    def peek(self) -> _Item:
        return self.items[self.i]

    def next(self) -> _Item:
        it = self.items[self.i]
        if it.typ != "eof":
            self.i += 1
        return it

    def backup(self, k: int = 1) -> None:
        self.i -= k

    def next_non_space(self) -> _Item:
        while self.peek().typ == "space":
            self.i += 1
        return self.next()

    def peek_non_space(self) -> _Item:
        while self.peek().typ == "space":
            self.i += 1
        return self.peek()

    def errorf(self, msg: str) -> NoReturn:
        line = self.items[max(self.i - 1, 0)].line
        raise TemplateError(f"template: :{line}: {msg}")

    def unexpected(self, it: _Item, context: str) -> NoReturn:
        if it.typ == "eof":
            self.errorf(f"unexpected EOF in {context}")
        desc = f"<{it.val}>" if it.typ in ("keyword", "field", "dot", "var") else _go_quote(it.val)
        self.errorf(f"unexpected {desc} in {context}")

    # grammar
    def parse(self) -> list[_Node]:
        root: list[_Node] = []
        while self.peek().typ != "eof":
            node = self.text_or_action()
            if isinstance(node, _Flow) and node.kind in ("end", "else"):
                self.errorf(f"unexpected {node}")
            root.append(node)
        return root

    def item_list(self) -> tuple[list[_Node], _Flow]:
        lst: list[_Node] = []
        while self.peek_non_space().typ != "eof":
            node = self.text_or_action()
            if isinstance(node, _Flow) and node.kind in ("end", "else"):
                return lst, node
            lst.append(node)
        self.errorf("unexpected EOF")

    def text_or_action(self) -> _Node:
        it = self.next_non_space()
        if it.typ == "text":
            return _Text(it.pos, it.val)
        if it.typ == "ldelim":
            return self.action()
        self.unexpected(it, "input")

    def action(self) -> _Node:
        it = self.next_non_space()
        if it.typ == "keyword":
            kw = it.val
            if kw in ("if", "range", "with"):
                return self.control(kw, it)
            if kw == "end":
                self.expect("rdelim", "end")
                return _Flow(it.pos, "end")
            if kw == "else":
                nxt = self.peek_non_space()
                if nxt.typ == "keyword" and nxt.val in ("if", "with"):
                    return _Flow(nxt.pos, "else")
                self.expect("rdelim", "else")
                return _Flow(it.pos, "else")
            if kw in ("break", "continue"):
                if self.range_depth == 0:
                    self.errorf(f"{{{{{kw}}}}} outside {{{{range}}}}")
                self.expect("rdelim", kw)
                return _Flow(it.pos, kw)
            if kw in ("define", "template", "block"):
                self.errorf(f"{{{{{kw}}}}} is not supported by dockyard's template engine")
        self.backup()
        pipe = self.pipeline("command", "rdelim")
        return _Action(it.pos, pipe)

    def expect(self, typ: str, context: str) -> _Item:
        it = self.next_non_space()
        if it.typ != typ:
            self.unexpected(it, context)
        return it

    def control(self, kind: str, kw: _Item) -> _Node:
        mark = len(self.vars)
        pipe = self.pipeline(kind, "rdelim")
        if kind == "range":
            self.range_depth += 1
        body, nxt = self.item_list()
        if kind == "range":
            self.range_depth -= 1
        else_body: list[_Node] | None = None
        if nxt.kind == "else":
            follow = self.peek_non_space()
            if kind in ("if", "with") and follow.typ == "keyword" and follow.val == kind:
                # "{{else if}}" / "{{else with}}" nest a control that shares our {{end}}
                it = self.next_non_space()
                else_body = [self.control(kind, it)]
            else:
                else_body, nxt = self.item_list()
                if nxt.kind != "end":
                    self.errorf(f"expected end; found {nxt}")
        del self.vars[mark:]
        return _Branch(pipe.pos, kind, pipe, body, else_body)

    def pipeline(self, context: str, end: str) -> _Pipe:
        start = self.peek_non_space()
        pipe = _Pipe(start.pos, start.line)
        while True:
            v = self.peek_non_space()
            if v.typ != "var":
                break
            self.next()
            nxt = self.peek_non_space()
            if nxt.typ in ("assign", "declare"):
                pipe.is_assign = nxt.typ == "assign"
                self.next_non_space()
                pipe.decl.append(_VarN(v.pos, [v.val]))
                self.vars.append(v.val)
                break
            if nxt.typ == "comma":
                self.next_non_space()
                pipe.decl.append(_VarN(v.pos, [v.val]))
                self.vars.append(v.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().typ in ("var", "rdelim", "rparen"):
                        continue
                    self.errorf("range can only initialize variables")
                self.errorf(f"too many declarations in {context}")
            # not a declaration: put the variable back
            self.i = self.items.index(v)
            break
        while True:
            it = self.next_non_space()
            if it.typ == end:
                if not pipe.cmds:
                    self.errorf(f"missing value for {context}")
                for k, c in enumerate(pipe.cmds[1:], start=1):
                    if isinstance(c.args[0], (_BoolN, _DotN, _NilN, _NumN, _StrN)):
                        self.errorf(f"non executable command in pipeline stage {k + 1}")
                return pipe
            if it.typ in ("bool", "charconst", "dot", "field", "ident", "number", "keyword",
                          "rawstring", "string", "var", "lparen"):
                self.backup()
                pipe.cmds.append(self.command())
            else:
                self.unexpected(it, context)

    def command(self) -> _Cmd:
        cmd = _Cmd(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            it = self.next()
            if it.typ == "space":
                continue
            if it.typ in ("rdelim", "rparen"):
                self.backup()
            elif it.typ == "pipe":
                pass
            else:
                self.unexpected(it, "operand")
            break
        if not cmd.args:
            self.errorf("empty command")
        return cmd

    def operand(self) -> _Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().typ == "field":
            fields: list[str] = []
            chain_pos = self.peek().pos
            while self.peek().typ == "field":
                fields.append(self.next().val[1:])
            if isinstance(node, _FieldN):
                return _FieldN(chain_pos, node.idents + fields)
            if isinstance(node, _VarN):
                return _VarN(chain_pos, node.idents + fields)
            if isinstance(node, (_BoolN, _StrN, _NumN, _NilN, _DotN)):
                self.errorf(f"unexpected . after term {_go_quote(str(node))}")
            return _ChainN(chain_pos, node, fields)
        return node

    def term(self) -> _Node | None:
        it = self.next_non_space()
        t = it.typ
        if t == "ident":
            if it.val not in self.funcs:
                self.errorf(f"function {_go_quote(it.val)} not defined")
            return _IdentN(it.pos, it.val)
        if t == "dot":
            return _DotN(it.pos)
        if t == "keyword" and it.val == "nil":
            return _NilN(it.pos)
        if t == "var":
            if it.val not in self.vars:
                self.errorf(f"undefined variable {_go_quote(it.val)}")
            return _VarN(it.pos, [it.val])
        if t == "field":
            return _FieldN(it.pos, [it.val[1:]])
        if t == "bool":
            return _BoolN(it.pos, it.val == "true")
        if t in ("number", "charconst"):
            try:
                return _NumN(it.pos, it.val, _parse_number(it.val))
            except ValueError:
                self.errorf(f"illegal number syntax: {_go_quote(it.val)}")
        if t == "lparen":
            return self.pipeline("parenthesized pipeline", "rparen")
        if t in ("string", "rawstring"):
            try:
                value = it.val[1:-1] if t == "rawstring" else _unquote(it.val)
            except ValueError:
                self.errorf(f"invalid syntax: {it.val}")
            return _StrN(it.pos, it.val, value.replace("\r", "") if t == "rawstring" else value)
        self.backup()
        return None


# --------------------------------------------------------------------------------------------
# Functions


class _FuncError(Exception):
    """A function's own error: becomes "error calling NAME: MESSAGE"."""


@dataclass(frozen=True, slots=True)
class _Func:
    fn: Callable[..., Any]
    params: tuple[str, ...]  # per fixed parameter: "any", "str", "int", "raw"
    variadic: str | None = None
    lazy: bool = False  # and/or: arguments are evaluated on demand


def _truth(v: Any) -> bool:
    if v is None or v is MISSING:
        return False
    if isinstance(v, (bool, int, float, str, list, tuple, dict)):
        return bool(v)
    return True


def _kind(v: Any) -> str:
    if v is None or v is MISSING:
        return "invalid"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    return "other"


def _eq(a: Any, *bs: Any) -> bool:
    if not bs:
        raise _FuncError("missing argument for comparison")
    ka = _kind(a)
    for b in bs:
        kb = _kind(b)
        if ka != kb:
            if ka != "invalid" and kb != "invalid":
                raise _FuncError("incompatible types for comparison")
            continue
        if ka == "invalid":
            return True
        if ka == "other" and (isinstance(a, (list, dict)) or isinstance(b, (list, dict))):
            raise _FuncError(f"non-comparable type {go_str(b)}: {_go_type(b)}")
        if a == b:
            return True
    return False


def _ne(a: Any, b: Any) -> bool:
    return not _eq(a, b)


def _lt(a: Any, b: Any) -> bool:
    ka, kb = _kind(a), _kind(b)
    if ka not in ("int", "float", "string") or kb not in ("int", "float", "string"):
        raise _FuncError("invalid type for comparison")
    if ka != kb:
        raise _FuncError("incompatible types for comparison")
    return bool(a < b)


def _le(a: Any, b: Any) -> bool:
    return _lt(a, b) or _eq(a, b)


def _gt(a: Any, b: Any) -> bool:
    return not _le(a, b)


def _ge(a: Any, b: Any) -> bool:
    return not _lt(a, b)


def _not(a: Any) -> bool:
    return not _truth(a)


def _len(v: Any) -> int:
    if v is None or v is MISSING:
        raise _FuncError("len of nil pointer")
    if isinstance(v, str):
        return len(v.encode())
    if isinstance(v, (list, tuple, dict)):
        return len(v)
    raise _FuncError(f"len of type {_go_type(v)}")


def _index_arg(idx: Any, cap: int) -> int:
    if idx is None or idx is MISSING:
        raise _FuncError("cannot index slice/array with nil")
    if isinstance(idx, bool) or not isinstance(idx, int):
        raise _FuncError(f"cannot index slice/array with type {_go_type(idx)}")
    if idx < 0 or idx > cap:
        raise _FuncError(f"index out of range: {idx}")
    return idx


def _index(item: Any, *indexes: Any) -> Any:
    if item is None or item is MISSING:
        raise _FuncError("index of untyped nil")
    for idx in indexes:
        if item is None or item is MISSING:
            raise _FuncError("index of nil pointer")
        if isinstance(item, (list, tuple, str)):
            seq: Sequence[Any] | bytes = item.encode() if isinstance(item, str) else item
            x = _index_arg(idx, len(seq))
            if x >= len(seq):
                raise _FuncError(f"index out of range: {x}")
            item = seq[x]
        elif isinstance(item, dict):
            if not isinstance(idx, str):
                raise _FuncError(f"value has type {_go_type(idx)}; should be string")
            item = item.get(idx, MISSING)
        else:
            raise _FuncError(f"can't index item of type {_go_type(item)}")
    return item


def _slice(item: Any, *indexes: Any) -> Any:
    if item is None or item is MISSING:
        raise _FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise _FuncError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, str):
        if len(indexes) == 3:
            raise _FuncError("cannot 3-index slice a string")
        seq: Any = item.encode()
    elif isinstance(item, (list, tuple)):
        seq = item
    else:
        raise _FuncError(f"can't slice item of type {_go_type(item)}")
    idx = [0, len(seq)]
    for k, x in enumerate(indexes[:2]):
        idx[k] = _index_arg(x, len(seq))
    if idx[0] > idx[1]:
        raise _FuncError(f"invalid slice index: {idx[0]} > {idx[1]}")
    out = seq[idx[0] : idx[1]]
    return out.decode(errors="replace") if isinstance(out, bytes) else list(out)


def _html(*args: Any) -> str:
    s = go_sprint(*args)
    rep = {"\0": "\ufffd", '"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;"}
    return "".join(rep.get(c, c) for c in s)


def _urlquery(*args: Any) -> str:
    from urllib.parse import quote_plus
    return quote_plus(go_sprint(*args), safe="")


def _json(v: Any) -> str:
    try:
        return go_json(v)
    except ValueError as e:
        raise _FuncError(str(e)) from None


def _split(s: str, sep: str) -> list[str]:
    if sep == "":
        return list(s)
    return s.split(sep)


def _join(elems: Any, sep: str) -> str:
    # docker's joinElements: slices are joined with fmt.Sprint of each element; maps join
    # their values, sorted.
    if elems is None or elems is MISSING:
        return ""
    if isinstance(elems, (list, tuple)):
        return sep.join(go_sprint(e) for e in elems)
    if isinstance(elems, dict):
        return sep.join(sorted(go_sprint(e) for e in elems.values()))
    raise _FuncError(f"expected slice, got {_go_type(elems)}")


def _is_separator(c: str) -> bool:
    if ord(c) <= 0x7F:
        return not (c.isascii() and (c.isalnum() or c == "_"))
    if c.isalpha() or unicodedata.category(c) == "Nd":
        return False
    return c.isspace()


def _title(s: str) -> str:
    """strings.Title: upper-case the first letter of each word, leave the rest alone."""
    out: list[str] = []
    prev = " "
    for c in s:
        out.append(c.upper() if _is_separator(prev) and len(c.upper()) == 1 else c)
        prev = c
    return "".join(out)


def _pad_fn(source: str, prefix: int, suffix: int) -> str:
    if source == "":
        return source
    return " " * prefix + source + " " * suffix


def _truncate(source: str, length: int) -> str:
    if len(source) < length:
        return source
    return source[: max(length, 0)]


def _identity_header(v: Any, *_: Any) -> Any:
    return v


_BUILTINS: dict[str, _Func] = {
    "and": _Func(lambda *a: a, ("raw",), "raw", lazy=True),
    "or": _Func(lambda *a: a, ("raw",), "raw", lazy=True),
    "not": _Func(_not, ("raw",)),
    "len": _Func(_len, ("raw",)),
    "index": _Func(_index, ("raw",), "raw"),
    "slice": _Func(_slice, ("raw",), "raw"),
    "print": _Func(go_sprint, (), "any"),
    "printf": _Func(go_sprintf, ("str",), "any"),
    "println": _Func(go_sprintln, (), "any"),
    "html": _Func(_html, (), "any"),
    "urlquery": _Func(_urlquery, (), "any"),
    "eq": _Func(_eq, ("raw",), "raw"),
    "ne": _Func(_ne, ("raw", "raw")),
    "lt": _Func(_lt, ("raw", "raw")),
    "le": _Func(_le, ("raw", "raw")),
    "gt": _Func(_gt, ("raw", "raw")),
    "ge": _Func(_ge, ("raw", "raw")),
    # docker's (cli/templates/templates.go)
    "json": _Func(_json, ("any",)),
    "split": _Func(_split, ("str", "str")),
    "join": _Func(_join, ("any", "str")),
    "title": _Func(_title, ("str",)),
    "lower": _Func(str.lower, ("str",)),
    "upper": _Func(str.upper, ("str",)),
    "pad": _Func(_pad_fn, ("str", "int", "int")),
    "truncate": _Func(_truncate, ("str", "int")),
}

# docker's HeaderFunctions: a table's header row keeps the column names as they are.
HEADER_FUNCS: dict[str, _Func] = {
    "json": _Func(_identity_header, ("str",)),
    "split": _Func(_identity_header, ("str", "str")),
    "join": _Func(_identity_header, ("str", "str")),
    "title": _Func(_identity_header, ("str",)),
    "lower": _Func(_identity_header, ("str",)),
    "upper": _Func(_identity_header, ("str",)),
    "truncate": _Func(_identity_header, ("str", "int")),
}

_GO_PARAM = {"str": "string", "int": "int"}


# --------------------------------------------------------------------------------------------
# Execution (text/template/exec.go)


class _ExecError(Exception):
    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _State:
    def __init__(self, src: str, root: Any, funcs: dict[str, _Func], out: list[str]) -> None:
        self.src = src
        self.funcs = funcs
        self.out = out
        self.vars: list[tuple[str, Any]] = [("$", root)]
        self.node: _Node | None = None

    def at(self, node: _Node) -> None:
        self.node = node

    def errorf(self, msg: str) -> NoReturn:
        if self.node is None:
            raise _ExecError(f"template: : {msg}")
        pos = len(self.src[: self.node.pos].encode())
        text = self.src[: self.node.pos]
        nl = text.rfind("\n")
        col = pos if nl < 0 else len(text[nl + 1 :].encode())
        line = 1 + text.count("\n")
        ctx = str(self.node)
        raise _ExecError(f'template: :{line}:{col}: executing "" at <{ctx}>: {msg}')

    # variables
    def var_value(self, name: str) -> Any:
        for n, v in reversed(self.vars):
            if n == name:
                return v
        self.errorf(f"undefined variable: {name}")

    def set_var(self, name: str, value: Any) -> None:
        for k in range(len(self.vars) - 1, -1, -1):
            if self.vars[k][0] == name:
                self.vars[k] = (name, value)
                return
        self.errorf(f"undefined variable: {name}")

    # walking
    def walk(self, dot: Any, nodes: list[_Node]) -> None:
        for node in nodes:
            self.walk_node(dot, node)

    def walk_node(self, dot: Any, node: _Node) -> None:
        if isinstance(node, _Text):
            self.out.append(node.text)
        elif isinstance(node, _Action):
            self.at(node)
            val = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.print_value(node, val)
        elif isinstance(node, _Branch):
            if node.kind == "range":
                self.walk_range(dot, node)
            else:
                self.walk_if_or_with(dot, node)
        elif isinstance(node, _Flow):
            if node.kind == "break":
                raise _Break
            if node.kind == "continue":
                raise _Continue

    def print_value(self, node: _Node, val: Any) -> None:
        self.at(node)
        if callable(val):
            self.errorf(f"can't print {node} of type func")
        self.out.append(go_str(val))

    def walk_if_or_with(self, dot: Any, node: _Branch) -> None:
        mark = len(self.vars)
        try:
            val = self.eval_pipeline(dot, node.pipe)
            if _truth(val):
                self.walk(val if node.kind == "with" else dot, node.body)
            elif node.else_body is not None:
                self.walk(dot, node.else_body)
        finally:
            del self.vars[mark:]

    def walk_range(self, dot: Any, node: _Branch) -> None:
        self.at(node)
        mark = len(self.vars)
        try:
            val = self.eval_pipeline(dot, node.pipe)
            inner = len(self.vars)
            pairs: Iterator[tuple[Any, Any]]
            if val is None or val is MISSING:
                pairs = iter(())
            elif isinstance(val, (list, tuple)):
                pairs = iter(enumerate(val))
            elif isinstance(val, dict):
                pairs = iter(_sorted_items(val))
            elif isinstance(val, int) and not isinstance(val, bool):
                if len(node.pipe.decl) > 1:
                    self.errorf(f"can't use {val} to iterate over more than one variable")
                pairs = iter((i, i) for i in range(val))
            else:
                self.errorf(f"range can't iterate over {go_str(val)}")
            ran = False
            decl = node.pipe.decl
            for key, elem in pairs:
                ran = True
                del self.vars[inner:]
                if decl:
                    if node.pipe.is_assign:
                        self.set_var(decl[0].idents[0], key if len(decl) > 1 else elem)
                        if len(decl) > 1:
                            self.set_var(decl[1].idents[0], elem)
                    elif len(decl) > 1:
                        self.vars[inner - 2] = (decl[0].idents[0], key)
                        self.vars[inner - 1] = (decl[1].idents[0], elem)
                    else:
                        self.vars[inner - 1] = (decl[0].idents[0], elem)
                try:
                    self.walk(elem, node.body)
                except _Continue:
                    pass
                except _Break:
                    break
            if not ran and node.else_body is not None:
                del self.vars[inner:]
                self.walk(dot, node.else_body)
        finally:
            del self.vars[mark:]

    # evaluation
    def eval_pipeline(self, dot: Any, pipe: _Pipe) -> Any:
        self.at(pipe)
        value: Any = _NO_FINAL
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
        for var in pipe.decl:
            if pipe.is_assign:
                self.set_var(var.idents[0], value)
            else:
                self.vars.append((var.idents[0], value))
        return value

    def not_a_function(self, args: list[_Node], final: Any) -> None:
        if len(args) > 1 or final is not _NO_FINAL:
            self.errorf(f"can't give argument to non-function {args[0]}")

    def eval_command(self, dot: Any, cmd: _Cmd, final: Any) -> Any:
        first = cmd.args[0]
        if isinstance(first, _FieldN):
            self.at(first)
            return self.eval_field_chain(dot, dot, first, first.idents, cmd.args, final)
        if isinstance(first, _ChainN):
            return self.eval_chain(dot, first, cmd.args, final)
        if isinstance(first, _IdentN):
            return self.eval_function(dot, first, cmd, cmd.args, final)
        if isinstance(first, _Pipe):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, _VarN):
            return self.eval_variable(dot, first, cmd.args, final)
        self.at(first)
        self.not_a_function(cmd.args, final)
        if isinstance(first, _BoolN):
            return first.value
        if isinstance(first, _DotN):
            return dot
        if isinstance(first, _NilN):
            self.errorf("nil is not a command")
        if isinstance(first, _NumN):
            return first.value
        if isinstance(first, _StrN):
            return first.value
        self.errorf(f"can't evaluate command {_go_quote(str(first))}")

    def eval_variable(self, dot: Any, var: _VarN, args: list[_Node], final: Any) -> Any:
        self.at(var)
        value = self.var_value(var.idents[0])
        if len(var.idents) == 1:
            self.not_a_function(args, final)
            return value
        return self.eval_field_chain(dot, value, var, var.idents[1:], args, final)

    def eval_chain(self, dot: Any, chain: _ChainN, args: list[_Node], final: Any) -> Any:
        if isinstance(chain.node, _NilN):
            self.errorf(f"indirection through explicit nil in {chain}")
        pipe = self.eval_arg(dot, "raw", chain.node)
        return self.eval_field_chain(dot, pipe, chain, chain.fields, args, final)

    def eval_field_chain(  # noqa: PLR0917 - exec.go's shape
            self, dot: Any, receiver: Any, node: _Node, idents: list[str],
                         args: list[_Node], final: Any) -> Any:
        for name in idents[:-1]:
            receiver = self.eval_field(dot, name, node, [], _NO_FINAL, receiver)
        return self.eval_field(dot, idents[-1], node, args, final, receiver)

    def eval_field(  # noqa: PLR0917
            self, dot: Any, name: str, node: _Node, args: list[_Node], final: Any,
                   receiver: Any) -> Any:
        if receiver is MISSING:
            return MISSING
        if receiver is None:
            self.errorf(f"nil pointer evaluating interface {{}}.{name}")
        has_args = len(args) > 1 or final is not _NO_FINAL
        if isinstance(receiver, dict):
            try:
                value = receiver[name]
            except KeyError:
                if isinstance(receiver, Struct):
                    self.errorf(f"can't evaluate field {name} in type {receiver.go_type}")
                value = MISSING
            if callable(value):
                return self.call(dot, value, name, node, args, final)
            if has_args:
                self.errorf(f"{name} is not a method but has arguments")
            return value
        self.errorf(f"can't evaluate field {name} in type {_go_type(receiver)}")

    def call(  # noqa: PLR0917
            self, dot: Any, fn: Callable[..., Any], name: str, node: _Node,
             args: list[_Node], final: Any) -> Any:
        argv = [self.eval_arg(dot, "any", a) for a in args[1:]]
        if final is not _NO_FINAL:
            argv.append(_nil(final))
        self.at(node)
        try:
            return fn(*argv)
        except (_FuncError, ValueError, TypeError, InvalidArgument) as e:
            self.errorf(f"error calling {name}: {e}")

    def eval_function(self, dot: Any, ident: _IdentN, cmd: _Node, args: list[_Node],
                      final: Any) -> Any:
        self.at(ident)
        name = ident.name
        f = self.funcs.get(name)
        if f is None:
            self.errorf(f'"{name}" is not a defined function')
        nargs = len(args) - 1 + (0 if final is _NO_FINAL else 1)
        nfixed = len(f.params)
        if (f.variadic is None and nargs != nfixed) or (f.variadic and nargs < nfixed):
            want = f"at least {nfixed}" if f.variadic else str(nfixed)
            self.errorf(f"wrong number of args for {name}: want {want} got {nargs}")
        if f.lazy:
            return self.eval_and_or(dot, name, args[1:], final)
        argv: list[Any] = []
        for k, a in enumerate(args[1:]):
            typ = f.params[k] if k < nfixed else (f.variadic or "any")
            argv.append(self.eval_arg(dot, typ, a))
        if final is not _NO_FINAL:
            typ = f.params[nargs - 1] if nargs - 1 < nfixed else (f.variadic or "any")
            self.at(cmd)
            argv.append(self.validate(final, typ))
        self.at(cmd)
        try:
            return f.fn(*argv)
        except (_FuncError, ValueError, InvalidArgument) as e:
            self.errorf(f"error calling {name}: {e}")

    def eval_and_or(self, dot: Any, name: str, args: list[_Node], final: Any) -> Any:
        val: Any = MISSING
        for a in args:
            val = self.eval_arg(dot, "raw", a)
            if _truth(val) == (name == "or"):
                return val
        if final is not _NO_FINAL:
            val = final
        return val

    def validate(self, value: Any, typ: str) -> Any:
        if typ == "raw":
            return value
        if value is MISSING or value is None:
            if typ == "any":
                return None
            self.errorf(f"invalid value; expected {_GO_PARAM[typ]}")
        if typ == "str" and not isinstance(value, str):
            self.errorf(f"wrong type for value; expected string; got {_go_type(value)}")
        if typ == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            self.errorf(f"wrong type for value; expected int; got {_go_type(value)}")
        return value

    def eval_arg(self, dot: Any, typ: str, n: _Node) -> Any:
        self.at(n)
        if isinstance(n, _DotN):
            return self.validate(dot, typ)
        if isinstance(n, _NilN):
            if typ in ("any", "raw"):
                return None
            self.errorf(f"cannot assign nil to {_GO_PARAM[typ]}")
        if isinstance(n, _FieldN):
            got = self.eval_field_chain(dot, dot, n, n.idents, [n], _NO_FINAL)
            return self.validate(got, typ)
        if isinstance(n, _VarN):
            return self.validate(self.eval_variable(dot, n, [n], _NO_FINAL), typ)
        if isinstance(n, _Pipe):
            return self.validate(self.eval_pipeline(dot, n), typ)
        if isinstance(n, _IdentN):
            return self.validate(self.eval_function(dot, n, n, [n], _NO_FINAL), typ)
        if isinstance(n, _ChainN):
            return self.validate(self.eval_chain(dot, n, [n], _NO_FINAL), typ)
        if isinstance(n, _BoolN):
            v: Any = n.value
        elif isinstance(n, _NumN):
            v = n.value
            if typ == "int" and not isinstance(v, int):
                self.errorf(f"expected integer; found {n}")
            if typ == "str":
                self.errorf(f"expected string; found {n}")
        elif isinstance(n, _StrN):
            v = n.value
            if typ == "int":
                self.errorf(f"expected integer; found {n}")
        else:
            self.errorf(f"can't handle {n} for arg of type {typ}")
        if typ == "str" and not isinstance(v, str):
            self.errorf(f"expected string; found {n}")
        if typ == "int" and (isinstance(v, bool) or not isinstance(v, int)):
            self.errorf(f"expected integer; found {n}")
        return v


class _NoFinal:
    """Go's missingVal: no value piped in from a previous command."""


_NO_FINAL: Any = _NoFinal()


# --------------------------------------------------------------------------------------------
# Public API


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template; :meth:`render` executes it against one data value."""

    source: str
    _tree: list[_Node]

    def render(self, obj: Any) -> str:
        """Execute against ``obj``; raises :class:`TemplateError` as docker would print it."""
        return self.execute(obj)

    def execute(self, obj: Any, *, funcs: dict[str, _Func] | None = None,
                partial: list[str] | None = None) -> str:
        """Execute with some functions replaced (``HEADER_FUNCS`` for a table's header row).

        ``partial`` receives the output written before an error, as Go's writer would have.
        """
        table = _BUILTINS if funcs is None else {**_BUILTINS, **funcs}
        out: list[str] = [] if partial is None else partial
        state = _State(self.source, obj, table, out)
        try:
            state.walk(obj, self._tree)
        except _ExecError as e:
            raise TemplateError(e.msg) from None
        return "".join(out)


def parse_template(text: str) -> Template:
    """Parse Go template ``text`` with docker's function set; raises :class:`TemplateError`."""
    parser = _Parser(text, set(_BUILTINS))
    return Template(text, parser.parse())
