"""How a tenant proves it owns a domain: a DNS TXT record it publishes, and the lookup that reads it.

Plain Python and dnspython, no Django: the services pass in the nameservers and the expected value. A lookup
never raises; its result says what the DNS answered.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import secrets
import socket
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.nameserver
import dns.resolver

log = logging.getLogger(__name__)

RECORD_PREFIX = "_pta-verification"
VALUE_PREFIX = "pta-domain-verification="
DNS_LOOKUP_SECONDS = 4.0
DEFAULT_DNS_PORT = 53


def verification_token_new() -> str:
    # 192 random bits: nobody can guess another tenant's value before it is shown to them.
    return secrets.token_urlsafe(24)


def record_name(domain: str) -> str:
    return f"{RECORD_PREFIX}.{domain}"


def record_value(token: str) -> str:
    return f"{VALUE_PREFIX}{token}"


class LookupStatus(enum.StrEnum):
    FOUND = "found"  # the name has TXT records (values may still be wrong)
    NO_RECORD = "no_record"  # the DNS answered: no such name, or no TXT record at it
    NO_ANSWER = "no_answer"  # the DNS did not answer (timeout, refused, server failure, bad setting)


@dataclass(frozen=True)
class TxtLookup:
    name: str
    status: LookupStatus
    values: tuple[str, ...] = ()
    detail: str = ""


def nameserver_parse(entry: str) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]:port` or a bare IPv6 address; ValueError when it is none of these."""
    entry = entry.strip()
    if not entry:
        raise ValueError("an empty nameserver")
    if entry.startswith("["):
        host, bracket, rest = entry[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"cannot read nameserver {entry!r}")
        port = rest[1:] if rest else str(DEFAULT_DNS_PORT)
    elif entry.count(":") > 1:
        host, port = entry, str(DEFAULT_DNS_PORT)  # a bare IPv6 address
    else:
        host, colon, port = entry.partition(":")
        port = port if colon else str(DEFAULT_DNS_PORT)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"cannot read nameserver {entry!r}")
    return host, int(port)


def _nameservers(entries: list[str]) -> list[dns.nameserver.Nameserver]:
    servers: list[dns.nameserver.Nameserver] = []
    for entry in entries:
        host, port = nameserver_parse(entry)
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            # A host name: the system resolver finds the nameserver itself, once per lookup.
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        servers += [dns.nameserver.Do53Nameserver(address, port) for address in addresses]
    return servers


def txt_lookup(*, name: str, nameservers: list[str], timeout: float = DNS_LOOKUP_SECONDS) -> TxtLookup:
    """The TXT values at `name`, asked of `nameservers` (empty: the system's resolver), within `timeout`."""
    try:
        if nameservers:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = _nameservers(nameservers)
        else:
            resolver = dns.resolver.Resolver()
        resolver.timeout = resolver.lifetime = timeout
        answer = resolver.resolve(dns.name.from_text(name), "TXT", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return TxtLookup(name=name, status=LookupStatus.NO_RECORD, detail=f"no TXT record at {name}")
    except dns.exception.Timeout:
        return TxtLookup(name=name, status=LookupStatus.NO_ANSWER,
                         detail=f"the DNS did not answer within {timeout:g} s")
    except dns.resolver.NoNameservers:
        return TxtLookup(name=name, status=LookupStatus.NO_ANSWER,
                         detail="the DNS servers refused or failed the query")
    except (dns.exception.DNSException, OSError, ValueError) as exc:
        # A bad PTA_DNS_NAMESERVERS entry, no resolv.conf, an unreachable network: the DNS did not answer.
        log.warning("TXT lookup of %s failed: %s", name, exc)
        return TxtLookup(name=name, status=LookupStatus.NO_ANSWER, detail=f"the DNS lookup failed: {exc}")
    values = tuple(b"".join(record.strings).decode("utf-8", "replace") for record in answer)
    return TxtLookup(name=name, status=LookupStatus.FOUND, values=values)
