"""The pieces of ``version``/``info``/``system df``/``ps -s`` that need no engine."""

from __future__ import annotations

from pathlib import Path

from dockyard.cli.formatter import fields_used
from dockyard.cli.system import size_text
from dockyard.engine.sysinfo import read_os_release, rfc3339

ROW = {"ID": "abc", "Names": "x", "Size": "0B"}


def test_fields_used_is_what_the_template_reads() -> None:
    assert fields_used("{{.Names}}\t{{.Size}}", ROW) == {"Names", "Size"}
    assert fields_used("table {{.ID}}", ROW) == {"ID"}
    assert fields_used("{{json .}}", ROW) == set(ROW)
    assert fields_used("json", ROW) == set()            # the word, not the template
    assert fields_used("{{if .Names}}{{.Size}}{{end}}", {**ROW, "Names": ""}) == {"Names"}
    assert fields_used("{{.ID}} {{.Nope}} {{.Size}}", ROW) == {"ID", "Nope"}
    assert fields_used("{{.Size", ROW) == set()


def test_size_text_is_dockers() -> None:
    assert size_text(12, 4_260_000) == "12B (virtual 4.26MB)"
    assert size_text(1000, 0) == "1kB"
    assert size_text(0, 0) == "0B"


def test_os_release(tmp_path: Path) -> None:
    f = tmp_path / "os-release"
    f.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n# note\nID=debian\n'
                 "VERSION_ID='12'\n\n")
    assert read_os_release(str(f)) == {"PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)",
                                       "ID": "debian", "VERSION_ID": "12"}


def test_rfc3339() -> None:
    assert rfc3339(0) == ""
    assert rfc3339(1.5) == "1970-01-01T00:00:01.500000000+00:00"
