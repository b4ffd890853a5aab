"""Go text/template as docker runs it.

Expected strings were checked against docker CLI 28.2 (``docker context inspect default
--format ...``, which runs offline) wherever Go structs and our maps behave alike."""

from __future__ import annotations

import pytest

from dockyard.cli.template import Struct, TemplateError, go_json, go_sprintf, parse_template
from dockyard.errors import InvalidArgument

CTX = {
    "Name": "default",
    "Metadata": {},
    "Endpoints": {"docker": {"Host": "unix:///var/run/docker.sock", "SkipTLSVerify": False}},
    "Storage": {"MetadataPath": "<IN MEMORY>", "TLSPath": "<IN MEMORY>"},
    "Labels": {"com.x": "1", "b": "2"},
    "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]},
    "List": ["a", "b", "c"],
    "Nil": None,
    "Count": 3,
    "Ratio": 0.5,
}


def r(text: str, data: object = CTX) -> str:
    return parse_template(text).render(data)


def err(text: str, data: object = CTX) -> str:
    with pytest.raises(TemplateError) as e:
        r(text, data)
    assert isinstance(e.value, InvalidArgument)
    return str(e.value)


@pytest.mark.parametrize(("text", "want"), [
    ("{{.Name}}", "default"),
    ("{{.Endpoints.docker.Host}}", "unix:///var/run/docker.sock"),
    ("{{.Endpoints.x}}|{{.Endpoints.x.y}}|{{index .Endpoints \"x\"}}",
     "<no value>|<no value>|<no value>"),
    ('{{index .Labels "com.x"}}', "1"),
    ('{{(index (index .Ports "80/tcp") 0).HostPort}}', "8080"),
    ("{{index .List 1}}", "b"),
    ("{{index .Name 0}}", "100"),
    ("{{.Nil}}", "<nil>"),
    ("{{.Labels}}", "map[b:2 com.x:1]"),
    ("{{.List}}", "[a b c]"),
    ("{{.Metadata}}", "map[]"),
    ("{{.Endpoints.docker.SkipTLSVerify}}", "false"),
    ("{{.Ratio}} {{1e6}} {{100000.0}} {{1.0}}", "0.5 1e+06 100000 1"),
    ("{{.Name | upper}}{{len .Endpoints}}{{len .Name}}{{len \"héllo\"}}", "DEFAULT176"),
    ("{{.Name | len | printf \"%03d\"}}", "007"),
    ('{{"a" | printf "%s-%s" "b"}}', "b-a"),
    ('{{- " a " -}}   {{- "b"}}  {{ "c" -}}   \n  d', " a b  cd"),
    ("x {{/* comment */}} y {{- /* c2 */ -}} z", "x  yz"),
    ('{{if eq .Name "default"}}yes{{else}}no{{end}}', "yes"),
    ('{{if eq .Name "a" "b" "default"}}multi{{end}}', "multi"),
    ('{{if eq .Nope "a"}}x{{else}}y{{end}}', "y"),
    ("{{if lt 1 2}}lt{{end}}{{if le 2 2}}le{{end}}{{if gt 3 2}}gt{{end}}"
     "{{if ge 1 2}}ge{{else}}notge{{end}}", "ltlegtnotge"),
    ('{{and 1 0 2}} {{or 0 "" "x"}} {{and 1 2}} {{or 0 ""}} {{not 0}} {{not "a"}}',
     "0 x 2  true false"),
    ("{{if .Nope}}a{{else if .Name}}b{{else}}c{{end}}", "b"),
    ("{{with .Endpoints.docker}}{{.Host}}{{end}}{{with .Nope}}a{{else}}b{{end}}",
     "unix:///var/run/docker.sockb"),
    ("{{with .Nope}}a{{else with .Name}}{{.}}{{end}}", "default"),
    ('{{$x := .Name}}{{$x}} {{$x = "y"}}{{$x}} {{$.Name}}', "default y default"),
    ("{{ $a := 1 }}{{ if true }}{{ $a = 2 }}{{ end }}{{ $a }}", "2"),
    ("{{range $k, $v := .Labels}}{{$k}}={{$v}};{{end}}", "b=2;com.x=1;"),
    ('{{range $i, $e := .List}}{{$i}}:{{$e}} {{end}}', "0:a 1:b 2:c "),
    ("{{range .List}}[{{.}}]{{end}}|{{range .Metadata}}x{{else}}empty{{end}}", "[a][b][c]|empty"),
    ('{{range $e := .List}}{{if eq $e "b"}}{{continue}}{{end}}{{$e}}{{end}}', "ac"),
    ('{{range .List}}{{if eq . "b"}}{{break}}{{end}}{{.}}{{end}}', "a"),
    ("{{range 3}}{{.}}{{end}}", "012"),
    ("{{range .Nope}}x{{end}}", ""),
    ('{{join .List "-"}} {{join (split "a,b" ",") "+"}}', "a-b-c a+b"),
    ('{{title "hello wORLD foo-bar_baz"}} {{lower "ABC"}}', "Hello WORLD Foo-Bar_baz abc"),
    ('{{pad "x" 2 3}}|{{pad "" 2 3}}|{{truncate "abcdef" 3}} {{truncate "ab" 5}}',
     "  x   ||abc ab"),
    ('{{print nil 1 2 "a" "b" 3 true 1.5}}', "<nil> 1 2ab3 true 1.5"),
    ('{{println 1 2 "a"}}|', "1 2 a\n|"),
    ("{{print 'a' 0x10 0o17 017 1_000 -3 +4 .5 1e3}}", "97 16 15 15 1000 -3 4 0.5 1000"),
    ("{{html \"<a href='x'>&\\\"</a>\"}}", "&lt;a href=&#39;x&#39;&gt;&amp;&#34;&lt;/a&gt;"),
    ('{{slice "abcdef" 1 3}} {{slice .List 1}}', "bc [b c]"),
    ("{{print .Nope}}|{{.Nope | print}}", "<nil>|<nil>"),
    ("{{.}}", "map[a:1]"),
])
def test_render(text: str, want: str) -> None:
    data = {"a": 1} if text == "{{.}}" else CTX
    assert r(text, data) == want


def test_json_function() -> None:
    # docker's json: compact, keys sorted (maps), HTML characters NOT escaped
    assert r("{{json .Storage}}") == '{"MetadataPath":"<IN MEMORY>","TLSPath":"<IN MEMORY>"}'
    assert r('{{json "<a&b>"}}') == '"<a&b>"'
    assert r("{{json .Nope}} {{json .Nil}} {{json .List}}") == 'null null ["a","b","c"]'
    assert r("{{json 1.5}} {{json 1e21}} {{json 1e-7}} {{json 100000000.0}} {{json 3}}") == \
        "1.5 1e+21 1e-7 100000000 3"
    assert go_json("\u2028\n\t\b\f\x01é") == '"\\u2028\\n\\t\\b\\f\\u0001é"'
    assert go_json({"b": 1, "a": [True, None]}) == '{"a":[true,null],"b":1}'


@pytest.mark.parametrize(("args", "want"), [
    (('%q %d %5s|%-5s|%v %t %x %05d %.2f %s', "hi", 42, "ab", "cd", 1.0, True, 255, 42,
      3.14159, 5), '"hi" 42    ab|cd   |1 true ff 00042 3.14 %!s(int=5)'),
    (("%s %d", 1), "%!s(int=1) %!d(MISSING)"),
    (("%z", 1), "%!z(int=1)"),
    (("%d", 1, 2, "x"), "1%!(EXTRA int=2, string=x)"),
    (("%",), "%!(NOVERB)"),
    (("%v|%+d|% d|%x|%X|%#x|%o|%c|%U|%q", 3, 5, 5, "hi", -255, 255, 8, 65, 65, 65),
     "3|+5| 5|6869|-FF|0xff|10|A|U+0041|'A'"),
    (("%8.3f|%-8.2e|%g|%G|%e", 3.14159, 1234.5, 1e-7, 1e20, 0.5),
     "   3.142|1.23e+03|1e-07|1E+20|5.000000e-01"),
    (("%05s|%.2s|%10.4v|%-10v|%t|%d", "ab", "hello", "abcdefg", True, 1, True),
     "000ab|he|      abcd|true      |%!t(int=1)|%!d(bool=true)"),
    (("%q", 'a"b\n\tcé\x01'), '"a\\"b\\n\\tcé\\x01"'),
    (("%s|%d", ["a", "b"], ["a"]), "[a b]|[%!d(string=a)]"),
    (("%v %s", None, None), "<nil> %!s(<nil>)"),
    (("%6.2f|%-6d|%+.1e|%5.1f%%", 3.14159, 42, 12345.678, 12.345), "  3.14|42    |+1.2e+04| 12.3%"),
    (("%T %T %T %T", 1, "a", 1.5, True), "int string float64 bool"),
])
def test_printf(args: tuple[object, ...], want: str) -> None:
    fmt, *rest = args
    assert isinstance(fmt, str)
    assert go_sprintf(fmt, *rest) == want


@pytest.mark.parametrize(("text", "msg"), [
    ("{{foo 1}}", 'template: :1: function "foo" not defined'),
    ("{{if}}", "template: :1: missing value for if"),
    ("{{end}}", "template: :1: unexpected {{end}}"),
    ("{{else}}", "template: :1: unexpected {{else}}"),
    ("{{if 1}}", "template: :1: unexpected EOF"),
    ("{{$y}}", 'template: :1: undefined variable "$y"'),
    ("{{ if true }}{{ $b := 2 }}{{ end }}{{ $b }}", 'template: :1: undefined variable "$b"'),
    ("{{break}}", "template: :1: {{break}} outside {{range}}"),
    ("{{.Name", "template: :1: unclosed action"),
    ('{{"abc}}', "template: :1: unterminated quoted string"),
    ("{{-.Name}}", 'template: :1: bad number syntax: "-.N"'),
    ('{{.Name | "x"}}', "template: :1: non executable command in pipeline stage 2"),
])
def test_parse_errors(text: str, msg: str) -> None:
    assert err(text) == "template parsing error: " + msg


@pytest.mark.parametrize(("text", "msg"), [
    ("{{.Name.Foo}}", 'template: :1:7: executing "" at <.Name.Foo>: '
     "can't evaluate field Foo in type string"),
    ("{{.Endpoints.docker.Host.X}}", 'template: :1:12: executing "" at '
     "<.Endpoints.docker.Host.X>: can't evaluate field X in type string"),
    ("a\nb {{.Name.X}}", 'template: :2:9: executing "" at <.Name.X>: '
     "can't evaluate field X in type string"),
    ("{{.Nil.X}}", 'template: :1:6: executing "" at <.Nil.X>: '
     "nil pointer evaluating interface {}.X"),
    ("{{index .Endpoints 5}}", 'template: :1:2: executing "" at <index .Endpoints 5>: '
     "error calling index: value has type int; should be string"),
    ('{{index (split "a,b" ",") 5}}', 'template: :1:2: executing "" at '
     '<index (split "a,b" ",") 5>: error calling index: index out of range: 5'),
    ('{{pad "ab" 1}}', 'template: :1:2: executing "" at <pad>: '
     "wrong number of args for pad: want 3 got 2"),
    ("{{upper 5}}", 'template: :1:8: executing "" at <5>: expected string; found 5'),
    ("{{upper .Nope}}", 'template: :1:8: executing "" at <.Nope>: '
     "invalid value; expected string"),
    ("{{if eq 1 \"a\"}}x{{end}}", 'template: :1:5: executing "" at <eq 1 "a">: '
     "error calling eq: incompatible types for comparison"),
    ("{{if lt 1 2.5}}x{{end}}", 'template: :1:5: executing "" at <lt 1 2.5>: '
     "error calling lt: incompatible types for comparison"),
    ("{{len 3}}", 'template: :1:2: executing "" at <len 3>: error calling len: len of type int'),
    ("{{nil}}", 'template: :1:2: executing "" at <nil>: nil is not a command'),
    ("{{.Name 1}}", 'template: :1:2: executing "" at <.Name>: '
     "Name is not a method but has arguments"),
    ("{{range .Name}}{{.}}{{end}}", 'template: :1:8: executing "" at <.Name>: '
     "range can't iterate over default"),
])
def test_exec_errors(text: str, msg: str) -> None:
    assert err(text) == "template parsing error: " + msg


def test_struct_rows_reject_unknown_fields() -> None:
    row = Struct({"ID": "abc"}, go_type="*formatter.ContainerContext")
    assert r("{{.ID}}", row) == "abc"
    assert err("{{.Foo}}", row) == ('template parsing error: template: :1:2: executing "" at '
                                   "<.Foo>: can't evaluate field Foo in type "
                                   "*formatter.ContainerContext")


def test_callable_fields_act_as_methods() -> None:
    labels = {"com.x": "1"}
    row = {"Label": lambda name: labels.get(name, ""), "Names": lambda: "web"}
    assert r('{{.Label "com.x"}}|{{.Label "nope"}}|{{.Names}}', row) == "1||web"


def test_define_is_refused() -> None:
    assert "not supported" in err('{{define "x"}}{{end}}')
