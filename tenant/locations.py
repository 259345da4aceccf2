"""Named locations' address ranges: parsing what an administrator types, and matching a client's address.

Plain Python (no Django), tested on its own. An IPv4-mapped IPv6 address (``::ffff:192.0.2.7``, what a dual-stack
socket reports for an IPv4 client) is its IPv4 address, and a range written in that form (``::ffff:10.0.0.0/104``)
is the IPv4 range it maps: a location written either way matches a client reported either way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
# A location's ranges: enough for a large organisation's sites, bounded so a typo cannot make a huge list.
MAX_RANGES = 256


class RangeError(ValueError):
    """A range that is not an IPv4 or IPv6 network; the message says which and why, for the form or command."""


def range_parse(text: str) -> IPNetwork:
    """``10.0.0.0/8``, ``2001:db8::/32``, a single address (a /32 or /128). Host bits set (``10.0.0.1/8``) are an
    error, not silently cleared: the administrator probably meant another prefix."""
    value = text.strip()
    if not value:
        raise RangeError("An empty range.")
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            raise RangeError(f"{value} has host bits set: did you mean "
                             f"{ipaddress.ip_network(value, strict=False)}?") from None
        raise RangeError(f"{value} is not an IPv4 or IPv6 network (such as 203.0.113.0/24 or 2001:db8::/48).") \
            from None
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None  # inside ::ffff:0:0/96
        network = ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}")
    return network


def ranges_parse(texts: Iterable[str]) -> list[IPNetwork]:
    """Every range, in order, without repeats; a ``RangeError`` naming each bad one (all of them at once)."""
    networks: list[IPNetwork] = []
    problems: list[str] = []
    for text in texts:
        if not text.strip():
            continue
        try:
            network = range_parse(text)
        except RangeError as exc:
            problems.append(str(exc))
            continue
        if network not in networks:
            networks.append(network)
    if problems:
        raise RangeError(" ".join(problems))
    if not networks:
        raise RangeError("A location needs at least one range.")
    if len(networks) > MAX_RANGES:
        raise RangeError(f"At most {MAX_RANGES} ranges per location.")
    return networks


def ranges_split(text: str) -> list[str]:
    """The stored form (one range a line) or what was typed (lines, commas or spaces) → the ranges as text."""
    return text.replace(",", " ").split()


def address_normalised(address: str) -> IPAddress | None:
    """An address as written (no port), or None; an IPv4-mapped IPv6 address is its IPv4 address."""
    try:
        parsed = ipaddress.ip_address(address.strip().split("%", 1)[0])  # no zone index: it names our interface
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed


def address_in_ranges(address: IPAddress | None, networks: Iterable[IPNetwork]) -> bool:
    return address is not None and any(address.version == net.version and address in net for net in networks)
