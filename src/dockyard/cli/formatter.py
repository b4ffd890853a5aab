"""docker's ``--format`` conventions for list commands (docker/cli cli/command/formatter).

- ``None``, ``""`` or ``"table"``: the command's default table format.
- ``"json"``: ``{{json .}}``, one object per line.
- ``"table <template>"``: a header row, then one row per object, aligned by :func:`tabwrite`.
  The header is the same template executed against the command's header map with docker's
  HeaderFunctions (``upper``, ``json``, ``join``... return the column name unchanged); an error
  there is ignored and what was written stays, as in docker.
- anything else: a Go template executed per object, each followed by a newline, no header.

As in docker, ``\\t`` and ``\\n`` typed literally in a format become a tab and a newline, and
spaces around the template are trimmed.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

from dockyard.cli.template import HEADER_FUNCS, Struct, TemplateError, parse_template

__all__ = [
    "JSON_FORMAT",
    "QUIET_WARNING",
    "TABLE_FORMAT_KEY",
    "render_rows",
    "tabwrite",
    "tabwrite_text",
    "template_string",
]

TABLE_FORMAT_KEY = "table"
JSON_FORMAT_KEY = "json"
JSON_FORMAT = "{{json .}}"
# What docker prints on stderr when -q and --format are both given (-q wins).
QUIET_WARNING = "WARNING: Ignoring custom format, because both --format and --quiet are set."

# docker's tabwriter.NewWriter(out, 10, 1, 3, ' ', 0): minwidth 10, tabwidth 1 (unused with a
# space padchar), padding 3.
MIN_WIDTH = 10
PADDING = 3


def _cell_width(s: str) -> int:
    """Display width as go-runewidth counts it: wide East Asian runes 2, combining marks 0."""
    w = 0
    for c in s:
        if unicodedata.combining(c) or unicodedata.category(c) in ("Mn", "Me", "Cf", "Cc"):
            continue
        w += 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
    return w


def tabwrite_text(text: str, *, minwidth: int = MIN_WIDTH, padding: int = PADDING) -> str:
    """Go's text/tabwriter (elastic tabstops) with docker's settings over ``text``.

    Cells are terminated by ``\\t`` (or ``\\v``); the text after a line's last tab is not part of a
    column and is not padded. A column is a run of consecutive lines that have a cell in it, so
    a line with fewer cells ends the columns to its right.
    """
    lines = [line.replace("\v", "\t").split("\t") for line in text.split("\n")]
    out: list[str] = []
    widths: list[int] = []

    def write_lines(line0: int, line1: int) -> None:
        for i in range(line0, line1):
            cells = lines[i]
            for j, c in enumerate(cells):
                out.append(c)
                if j < len(widths) and j < len(cells) - 1:
                    out.append(" " * (widths[j] - _cell_width(c)))
            if i + 1 < len(lines):
                out.append("\n")

    def fmt(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, _cell_width(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        write_lines(line0, line1)

    fmt(0, len(lines))
    return "".join(out)


def tabwrite(lines: list[list[str]], *, minwidth: int = MIN_WIDTH,
             padding: int = PADDING) -> str:
    """Align rows of cells as docker's tables do; every line, the last included, ends in \\n."""
    text = "".join("\t".join(cells) + "\n" for cells in lines)
    return tabwrite_text(text, minwidth=minwidth, padding=padding)


def template_string(fmt: str) -> str:
    """docker's Format.templateString: the Go template behind a ``--format`` value."""
    if fmt == TABLE_FORMAT_KEY:
        return ""
    if fmt == JSON_FORMAT_KEY:
        return JSON_FORMAT
    if fmt.startswith(TABLE_FORMAT_KEY):
        fmt = fmt[len(TABLE_FORMAT_KEY):]
    return fmt.strip(" ").replace("\\t", "\t").replace("\\n", "\n")


def render_rows(
    fmt: str | None,
    rows: list[dict[str, Any]],
    *,
    default_table: str,
    headers: dict[str, str],
    quiet_field: str | None = None,
    go_type: str = "*formatter.Context",
) -> str:
    """Render ``rows`` the way docker's list commands do; the result ends in a newline per row.

    ``default_table`` is the command's ``table ...`` format (used for None, "" and "table");
    ``headers`` maps field names to column titles (``{"ID": "IMAGE ID", ...}``);
    ``quiet_field`` set (``-q``) prints that field alone per row, whatever ``fmt`` says
    (the caller prints :data:`QUIET_WARNING` when a format was given too).
    Each row acts as docker's Go struct: a field it lacks is an error naming ``go_type``
    (docker: ``*formatter.ContainerContext``, ``*image.imageContext``...), while the header
    is a plain map where a missing title prints ``<no value>``, as in docker.
    Raises :class:`~dockyard.cli.template.TemplateError` (an InvalidArgument) on a bad template.
    """
    if quiet_field is not None:
        fmt = "{{." + quiet_field + "}}"
    elif not fmt or fmt == TABLE_FORMAT_KEY:
        fmt = default_table
    tmpl = parse_template(template_string(fmt))
    body = "".join(tmpl.render(Struct(row, go_type=go_type)) + "\n" for row in rows)
    if not fmt.startswith(TABLE_FORMAT_KEY):
        return body
    header: list[str] = []
    try:
        tmpl.execute(dict(headers), funcs=HEADER_FUNCS, partial=header)
    except TemplateError:
        pass  # docker ignores the header's error and keeps what was written
    return tabwrite_text("".join(header) + "\n" + body)


def inspect_each(refs: list[str], fetch: Callable[[str], Any], fmt: str | None) -> int:
    """``inspect`` of each name through ``fetch`` (the engine's errors become docker's
    "Error response from daemon" lines), written by :func:`write_inspect`."""
    from dockyard.errors import DockyardError

    docs, errors = [], []
    for ref in refs:
        try:
            docs.append(fetch(ref))
        except DockyardError as e:
            errors.append(f"Error response from daemon: {e.message}")
    return write_inspect(docs, errors, fmt)


def write_inspect(docs: list[Any], errors: list[str], fmt: str | None) -> int:
    """What every ``inspect`` prints: the documents as indented JSON, or each through ``-f``;
    then one line per name not found; exit status 1 if any was not found."""
    import json
    import sys

    if fmt:
        tmpl = parse_template(fmt)
        for d in docs:
            sys.stdout.write(tmpl.render(d) + "\n")
    else:
        sys.stdout.write(json.dumps(docs, indent=4) + "\n")
    for msg in errors:
        sys.stderr.write(f"Error: {msg}\n")
    return 1 if errors else 0


class _FieldProbe(Struct):
    """A row that remembers which of its fields a template read."""

    def __init__(self, fields: dict[str, Any], *, go_type: str) -> None:
        super().__init__(fields, go_type=go_type)
        self.used: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.used.add(key)
        return super().__getitem__(key)

    def items(self) -> Any:     # what ``{{json .}}`` reads: every field
        self.used.update(self.keys())
        return super().items()


def fields_used(fmt: str, row: dict[str, Any], *, go_type: str = "*formatter.Context"
                ) -> set[str]:
    """The fields of ``row`` that the Go template ``fmt``, taken as it was typed, reads when run
    once (docker's FieldsUsed: ``ps`` computes sizes only when ``.Size`` is read; ``{{json .}}``
    reads every field while the word ``json`` reads none). What does not parse reads nothing;
    what fails reads what it read before failing."""
    probe = _FieldProbe(row, go_type=go_type)
    try:
        parse_template(fmt).execute(probe)
    except TemplateError:
        pass
    return probe.used
