"""berth's own nftables table: outbound NAT, isolation, --internal and published ports.

The whole table is regenerated from the service's state and swapped atomically in one
``nft -f -`` transaction; no other table on the host is ever read or written. Rule text is built
by pure functions (unit tested); only ``apply``/``delete`` run the ``nft`` binary.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import anyio

import errdefs

__all__ = ["NftBridge", "NftPort", "apply", "delete", "exists", "ruleset", "table_name_for"]

log = logging.getLogger(__name__)

NFT = "nft"


@dataclass(frozen=True, slots=True)
class NftBridge:
    """One bridge network as the firewall sees it."""

    ifname: str
    subnet: str  # "10.0.0.0/24"
    internal: bool = False


@dataclass(frozen=True, slots=True)
class NftPort:
    """One published port: host_ip:host_port/proto -> ctr_ip:ctr_port on ``bridge``."""

    proto: str
    host_ip: str  # "0.0.0.0" = every local address
    host_port: int
    ctr_ip: str
    ctr_port: int
    bridge: str


def table_name_for(default_bridge: str) -> str:
    """Table of the daemon whose default bridge is ``default_bridge`` (one per instance)."""
    return "berth" if default_bridge == "berth0" else "berth_" + re.sub(r"[^A-Za-z0-9_]", "_", default_bridge)


def _q(name: str) -> str:
    return '"' + name.replace('"', "") + '"'


def ruleset(table: str, bridges: Sequence[NftBridge], ports: Sequence[NftPort]) -> str:
    """The nft script that replaces ``table`` with rules for ``bridges`` and ``ports``."""
    names = [b.ifname for b in bridges]
    lines = [f"table ip {table}", f"delete table ip {table}", f"table ip {table} {{"]
    # Published ports: DNAT local destinations, from outside (prerouting) and the host (output).
    lines += ["  chain ports {"]
    for p in ports:
        dst = "" if p.host_ip in ("", "0.0.0.0") else f"ip daddr {p.host_ip} "
        lines.append(f"    {dst}{p.proto} dport {p.host_port} dnat to {p.ctr_ip}:{p.ctr_port}")
    lines += ["  }"]
    lines += [
        "  chain nat_pre {",
        "    type nat hook prerouting priority dstnat; policy accept;",
        "    fib daddr type local jump ports",
        "  }",
        "  chain nat_out {",
        "    type nat hook output priority -100; policy accept;",
        "    fib daddr type local jump ports",
        "  }",
        "  chain nat_post {",
        "    type nat hook postrouting priority srcnat; policy accept;",
    ]
    for b in bridges:
        br = _q(b.ifname)
        if not b.internal:
            # Outbound: anything leaving the subnet by another interface.
            lines.append(f"    ip saddr {b.subnet} oifname != {br} masquerade")
        # Host-originated (127.0.0.1 with route_localnet) and hairpin traffic to a published port.
        lines.append(f"    oifname {br} fib saddr type local masquerade")
        lines.append(f"    oifname {br} iifname {br} ct status dnat masquerade")
    lines += ["  }"]
    lines += [
        "  chain filter_fwd {",
        "    type filter hook forward priority filter; policy accept;",
    ]
    for b in bridges:
        br = _q(b.ifname)
        others = [_q(n) for n in names if n != b.ifname]
        if b.internal:
            # No way in or out except within the network itself.
            lines.append(f"    iifname {br} oifname != {br} drop")
            lines.append(f"    oifname {br} iifname != {br} drop")
        elif others:
            # Different networks never talk to each other (Docker's isolation).
            lines.append(f"    iifname {br} oifname {{ {', '.join(others)} }} drop")
    lines += ["  }", "}"]
    # IPv6 stays on its bridge: berth neither NATs nor routes it, whatever the host's forwarding.
    lines += [
        f"table ip6 {table}",
        f"delete table ip6 {table}",
        f"table ip6 {table} {{",
        "  chain filter_fwd {",
        "    type filter hook forward priority filter; policy accept;",
    ]
    for b in bridges:
        br = _q(b.ifname)
        lines.append(f"    iifname {br} oifname != {br} drop")
        lines.append(f"    oifname {br} iifname != {br} drop")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


async def apply(script: str) -> None:
    """Run ``script`` through ``nft -f -`` as one transaction.

    Raises:
        errdefs.Internal: nft refused the script (its stderr in the message).
    """
    res = await anyio.run_process([NFT, "-f", "-"], input=script.encode(), check=False)
    if res.returncode != 0:
        raise errdefs.Internal(f"nft: {res.stderr.decode(errors='replace').strip()}")


async def delete(table: str) -> None:
    """Remove ``table`` if it exists."""
    script = "".join(f"table {fam} {table}\ndelete table {fam} {table}\n" for fam in ("ip", "ip6"))
    await anyio.run_process([NFT, "-f", "-"], input=script.encode(), check=False)


async def exists(table: str) -> bool:
    res = await anyio.run_process([NFT, "list", "table", "ip", table], check=False)
    return res.returncode == 0
