"""Host configuration: insecure registries, mirrors, endpoints and certs.d lookups."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from dockyard.errors import InvalidArgument
from dockyard.image.hosts import (
    DEFAULT_INSECURE,
    Endpoint,
    HostsConfig,
    split_host_port,
)


def test_defaults_make_loopback_insecure_only() -> None:
    hosts = HostsConfig(certs_dirs=[])
    for host in ("127.0.0.1:5000", "127.9.9.9", "localhost:5000", "localhost", "[::1]:5000"):
        assert hosts.is_insecure(host), host
    for host in ("10.0.0.1:5000", "registry.example.com", "[::2]:5000", "docker.io"):
        assert not hosts.is_insecure(host), host


def test_endpoints_secure_and_insecure() -> None:
    hosts = HostsConfig(certs_dirs=[])
    assert hosts.endpoints("quay.io") == [Endpoint("https://quay.io", "quay.io", False)]
    assert hosts.endpoints("127.0.0.1:5000") == [
        Endpoint("https://127.0.0.1:5000", "127.0.0.1:5000", True),
        Endpoint("http://127.0.0.1:5000", "127.0.0.1:5000", True),
    ]
    hub = hosts.endpoints("docker.io")
    assert hub == [Endpoint("https://registry-1.docker.io", "registry-1.docker.io", False)]
    assert hub[0].credentials_host == "docker.io"
    assert hub[0].scheme == "https"


def test_mirrors_only_for_hub_pulls() -> None:
    hosts = HostsConfig(registry_mirrors=["https://mirror.example/", "http://127.0.0.1:5000"],
                        certs_dirs=[])
    pull = hosts.endpoints("docker.io")
    assert [e.url for e in pull] == [
        "https://mirror.example", "http://127.0.0.1:5000", "https://registry-1.docker.io"]
    assert [e.mirror for e in pull] == [True, True, False]
    assert pull[0].credentials_host == "mirror.example"  # Hub credentials stay at the Hub
    assert [e.url for e in hosts.endpoints("docker.io", push=True)] == [
        "https://registry-1.docker.io"]
    assert [e.url for e in hosts.endpoints("quay.io")] == ["https://quay.io"]


def test_load_config_file(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({
        "insecure-registries": ["myreg:5000", "10.0.0.0/8"],
        "registry-mirrors": ["https://mirror.example"],
        "log-level": "debug",
    }))
    hosts = HostsConfig.load(path, certs_dirs=[])
    assert hosts.is_insecure("myreg:5000")
    assert not hosts.is_insecure("myreg:5001")  # docker matches host:port exactly
    assert hosts.is_insecure("10.1.2.3:443")
    assert hosts.is_insecure("127.0.0.1:1")  # the loopback default stays
    assert hosts.registry_mirrors == ("https://mirror.example",)
    # A missing file or None means the defaults.
    assert HostsConfig.load(tmp_path / "nope.json").is_insecure("127.0.0.1")
    assert not HostsConfig.load(None).is_insecure("10.0.0.1")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ('{"insecure-registries": ["http://x:5000"]}', "should not contain '://'"),
        ('{"insecure-registries": ["10.0.0.0/99"]}', "invalid CIDR"),
        ('{"insecure-registries": "x"}', "expected a list"),
        ('{"registry-mirrors": ["ftp://m"]}', "invalid registry mirror"),
        ('{"registry-mirrors": ["https://u:pw@m"]}', "invalid registry mirror 'm'"),
        ("[1]", "expected a JSON object"),
        ("{", "invalid JSON"),
    ],
)
def test_bad_config(tmp_path: Path, doc: str, message: str) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(doc)
    with pytest.raises(InvalidArgument, match=message) as excinfo:
        HostsConfig.load(path)
    assert "pw" not in str(excinfo.value)


def test_split_host_port() -> None:
    assert split_host_port("example.com") == ("example.com", None)
    assert split_host_port("example.com:5000") == ("example.com", 5000)
    assert split_host_port("[::1]:5000") == ("::1", 5000)
    assert split_host_port("[::1]") == ("::1", None)
    for bad in ("x:0", "x:99999", "x:abc", "[::1"):
        with pytest.raises(InvalidArgument):
            split_host_port(bad)


def test_default_insecure_constant() -> None:
    assert "127.0.0.0/8" in DEFAULT_INSECURE


def test_endpoint_for_url() -> None:
    hosts = HostsConfig(certs_dirs=[])
    ep = hosts.endpoint_for_url("https://auth.example/token?x=1")
    assert ep == Endpoint("https://auth.example", "auth.example", False)
    assert hosts.endpoint_for_url("http://127.0.0.1:9/t").insecure
    with pytest.raises(InvalidArgument):
        hosts.endpoint_for_url("file:///etc/passwd")


# --- certs.d ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    subprocess.run(["openssl", "req", "-x509", *ec, "-keyout", str(d / "ca.key"),
                    "-out", str(d / "ca.crt"), "-days", "2", "-subj", "/CN=test CA"],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "req", "-x509", *ec, "-keyout", str(d / "client.key"),
                    "-out", str(d / "client.cert"), "-days", "2", "-subj", "/CN=client"],
                   check=True, capture_output=True)
    return d


def test_tls_files_from_both_dirs(tmp_path: Path, pki: Path) -> None:
    ours, docker = tmp_path / "dockyard", tmp_path / "docker"
    (ours / "reg:5000").mkdir(parents=True)
    (docker / "reg:5000").mkdir(parents=True)
    shutil.copy(pki / "ca.crt", ours / "reg:5000" / "ca.crt")
    shutil.copy(pki / "ca.crt", docker / "reg:5000" / "extra.crt")
    shutil.copy(pki / "client.cert", docker / "reg:5000" / "client.cert")
    shutil.copy(pki / "client.key", docker / "reg:5000" / "client.key")
    hosts = HostsConfig(certs_dirs=[ours, docker])
    files = hosts.tls_files("reg:5000")
    assert files.ca_files == (ours / "reg:5000" / "ca.crt", docker / "reg:5000" / "extra.crt")
    assert files.client_pairs == ((docker / "reg:5000" / "client.cert",
                                   docker / "reg:5000" / "client.key"),)
    assert hosts.tls_files("other:5000").ca_files == ()

    ctx = hosts.ssl_context("reg:5000")
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert any(c.get("subject") == ((("commonName", "test CA"),),)
               for c in ctx.get_ca_certs())
    assert hosts.ssl_context("reg:5000") is ctx  # cached
    loose = hosts.ssl_context("reg:5000", verify=False)
    assert loose.verify_mode == ssl.CERT_NONE and not loose.check_hostname


def test_client_cert_without_key_is_an_error(tmp_path: Path, pki: Path) -> None:
    (tmp_path / "reg").mkdir()
    shutil.copy(pki / "client.cert", tmp_path / "reg" / "client.cert")
    with pytest.raises(InvalidArgument, match=r"missing key client\.key"):
        HostsConfig(certs_dirs=[tmp_path]).tls_files("reg")


def test_bad_ca_file(tmp_path: Path) -> None:
    (tmp_path / "reg").mkdir()
    (tmp_path / "reg" / "ca.crt").write_text("not a certificate")
    with pytest.raises(InvalidArgument, match="not a usable CA certificate"):
        HostsConfig(certs_dirs=[tmp_path]).ssl_context("reg")
