"""docker's --format conventions and tabwriter alignment; expected tables were checked against
docker CLI 28.2 (`docker context ls --format ...`, `docker ps` with no containers)."""

from __future__ import annotations

import pytest

from dockyard.cli.formatter import render_rows, tabwrite, tabwrite_text, template_string
from dockyard.cli.template import TemplateError

PS_TABLE = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.CreatedAt}}\t{{.Status}}\t{{.Ports}}"
            "\t{{.Names}}")
PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
              "CreatedAt": "CREATED", "Status": "STATUS", "Ports": "PORTS", "Names": "NAMES"}

CTX_HEADERS = {"Name": "NAME", "Description": "DESCRIPTION", "DockerEndpoint": "DOCKER ENDPOINT",
               "Error": "ERROR"}
CTX_ROWS = [{"Name": "default", "Description": "Current DOCKER_HOST based configuration",
             "DockerEndpoint": "unix:///var/run/docker.sock", "Current": True, "Error": ""}]
CTX_TABLE = ("table {{.Name}}{{if .Current}} *{{end}}\t{{.Description}}\t{{.DockerEndpoint}}"
             "\t{{.Error}}")


def ctx(fmt: str | None) -> str:
    return render_rows(fmt, CTX_ROWS, default_table=CTX_TABLE, headers=CTX_HEADERS)


def test_empty_ps_is_docker_header() -> None:
    assert render_rows(None, [], default_table=PS_TABLE, headers=PS_HEADERS) == (
        "CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES\n")


def test_default_table() -> None:
    assert ctx(None) == ctx("table") == ctx("") == (
        "NAME        DESCRIPTION                               DOCKER ENDPOINT"
        "               ERROR\n"
        "default *   Current DOCKER_HOST based configuration   unix:///var/run/docker.sock   \n")


@pytest.mark.parametrize(("fmt", "want"), [
    ("table {{.Name}}\\t{{.Error}}\\t{{.Name}}",
     "NAME      ERROR     NAME\ndefault             default\n"),
    ("table {{.Name}}\\n{{.Description}}\\t{{.Name}}",
     "NAME\nDESCRIPTION   NAME\ndefault\nCurrent DOCKER_HOST based configuration   default\n"),
    ("{{.Name}}\\t{{.Current}}", "default\ttrue\n"),
    ("json", '{"Current":true,"Description":"Current DOCKER_HOST based configuration",'
             '"DockerEndpoint":"unix:///var/run/docker.sock","Error":"","Name":"default"}\n'),
    (" table {{.Name}}", "table default\n"),
    ("table {{.Name | upper}}\t{{pad .Name 1 2}}|", "NAME       NAME  |\nDEFAULT    default  |\n"),
])
def test_formats(fmt: str, want: str) -> None:
    assert ctx(fmt) == want


def test_quiet_wins() -> None:
    rows = [{"ID": "a1"}, {"ID": "b2"}]
    assert render_rows("table {{.ID}}", rows, default_table=PS_TABLE, headers=PS_HEADERS,
                       quiet_field="ID") == "a1\nb2\n"


def test_unknown_field_is_docker_error() -> None:
    with pytest.raises(TemplateError, match=r"can't evaluate field Foo in type \*formatter"
                       r"\.ContainerContext"):
        render_rows("{{.Foo}}", [{"ID": "x"}], default_table=PS_TABLE, headers=PS_HEADERS,
                    go_type="*formatter.ContainerContext")


def test_template_string() -> None:
    assert template_string("table {{.A}}\\t{{.B}}  ") == "{{.A}}\t{{.B}}"
    assert template_string("json") == "{{json .}}"
    assert template_string("{{json .}}") == "{{json .}}"


def test_tabwrite() -> None:
    assert tabwrite([["REPOSITORY", "TAG", "SIZE"], ["busybox", "latest", "4.26MB"]]) == (
        "REPOSITORY   TAG       SIZE\nbusybox      latest    4.26MB\n")
    # a line with fewer cells ends the column block below it
    assert tabwrite_text("a\tb\nlong-cell\nc\td\n") == "a         b\nlong-cell\nc         d\n"
    # wide runes count double, as go-runewidth does
    assert tabwrite([["名前", "x"], ["ab", "y"]]) == "名前      x\nab        y\n"
