"""The nft script: berth's own table only, NAT, isolation, --internal and published ports."""

from __future__ import annotations

from networks_svc.nft import NftBridge, NftPort, ruleset, table_name_for


def test_table_name_is_per_instance() -> None:
    assert table_name_for("berth0") == "berth"
    assert table_name_for("btk001002") == "berth_btk001002"
    assert table_name_for("a-b.c") == "berth_a_b_c"


def test_script_replaces_only_its_own_table_atomically() -> None:
    text = ruleset("berth_x", [], [])
    lines = text.splitlines()
    # Create-if-missing, delete, re-create: one transaction, no other table named anywhere.
    assert lines[:3] == ["table ip berth_x", "delete table ip berth_x", "table ip berth_x {"]
    assert [w for w in text.split() if w.startswith("berth")] == ["berth_x"] * 6  # ip and ip6
    assert "table ip6 berth_x {" in lines
    assert "flush ruleset" not in text


def test_masquerade_isolation_and_internal() -> None:
    text = ruleset("t", [NftBridge("br0", "10.1.0.0/24"), NftBridge("br1", "10.2.0.0/24"),
                         NftBridge("bri", "10.3.0.0/24", internal=True)], [])  # fmt: skip
    assert 'ip saddr 10.1.0.0/24 oifname != "br0" masquerade' in text
    assert "ip saddr 10.3.0.0/24" not in text  # internal: never NATed out
    assert 'iifname "br0" oifname { "br1", "bri" } drop' in text
    assert 'iifname "bri" oifname != "bri" drop' in text
    assert 'oifname "bri" iifname != "bri" drop' in text


def test_published_ports() -> None:
    text = ruleset(
        "t",
        [NftBridge("br0", "10.1.0.0/24")],
        [
            NftPort("tcp", "127.0.0.1", 8080, "10.1.0.2", 80, "br0"),
            NftPort("udp", "0.0.0.0", 5353, "10.1.0.3", 53, "br0"),
        ],
    )
    assert "ip daddr 127.0.0.1 tcp dport 8080 dnat to 10.1.0.2:80" in text
    assert "    udp dport 5353 dnat to 10.1.0.3:53" in text
    assert "type nat hook prerouting priority dstnat" in text and "type nat hook output" in text
    assert 'oifname "br0" fib saddr type local masquerade' in text  # 127.0.0.1 and hairpin


def test_ipv6_never_leaves_its_bridge() -> None:
    text = ruleset("t", [NftBridge("br0", "10.1.0.0/24"), NftBridge("br1", "10.2.0.0/24")], [])
    v6 = text[text.index("table ip6 t {") :]
    for br in ("br0", "br1"):
        assert f'iifname "{br}" oifname != "{br}" drop' in v6
        assert f'oifname "{br}" iifname != "{br}" drop' in v6
    assert "masquerade" not in v6 and "dnat" not in v6
