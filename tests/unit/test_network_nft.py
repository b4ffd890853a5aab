"""The nftables table is kept and changed chain by chain: what a change costs in rules."""

from __future__ import annotations

from dockyard.network import nft


def _rules(*ports: nft.PortRule) -> dict[str, list[str]]:
    return nft.chain_rules([nft.BridgeRules("dy0", "10.213.0.0/24")], list(ports))


def test_first_update_makes_table_and_base_chains() -> None:
    script = nft.update_script("t", _rules(), None)
    lines = script.splitlines()
    assert lines[0] == "add table inet t"
    assert "add chain inet t prerouting { type nat hook prerouting priority dstnat; " \
           "policy accept; }" in lines
    assert [ln for ln in lines if ln.startswith("flush chain")] == [
        f"flush chain inet t {c}" for c, _ in nft.CHAINS]
    assert 'add rule inet t postrouting ip saddr 10.213.0.0/24 oifname != "dy0" masquerade' \
        in lines


def test_no_change_no_transaction() -> None:
    rules = _rules()
    assert nft.update_script("t", rules, rules) == ""


def test_a_published_port_touches_only_the_dnat_chains() -> None:
    before = _rules()
    port = nft.PortRule("127.0.0.1", 8080, "tcp", "10.213.0.2", 80)
    script = nft.update_script("t", _rules(port), before)
    assert "add table" not in script and "add chain" not in script
    assert script.splitlines() == [
        "flush chain inet t prerouting",
        "add rule inet t prerouting ip daddr 127.0.0.1 tcp dport 8080 dnat ip to 10.213.0.2:80",
        "flush chain inet t output",
        "add rule inet t output ip daddr 127.0.0.1 tcp dport 8080 dnat ip to 10.213.0.2:80"]
    # and back: the chains are flushed, nothing else
    assert nft.update_script("t", before, _rules(port)).splitlines() == [
        "flush chain inet t prerouting", "flush chain inet t output"]


def test_delete_script_is_idempotent() -> None:
    assert nft.delete_script("t") == "table inet t {}\ndelete table inet t\n"
