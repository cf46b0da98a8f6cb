"""inet and cidr as ``ipaddress`` objects, as psycopg does.

inet loads as an address when it has no prefix (or a full-length one), else an interface;
cidr loads as a network.
"""

from __future__ import annotations

from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
    ip_interface,
    ip_network,
)
from typing import Any

__all__ = [
    "load_inet",
    "load_cidr",
    "load_inet_binary",
    "load_cidr_binary",
    "dump_inet",
    "dump_cidr",
]

INET_OID = 869
CIDR_OID = 650
_AF_INET = 2


def load_inet(data: bytes) -> IPv4Address | IPv6Address | IPv4Interface | IPv6Interface:
    """inet text: "192.168.0.1" or "192.168.0.1/24"."""
    s = data.decode()
    if "/" in s:
        return ip_interface(s)
    return ip_address(s)


def load_cidr(data: bytes) -> IPv4Network | IPv6Network:
    """cidr text: "192.168.0.0/24"."""
    return ip_network(data.decode())


def load_inet_binary(data: bytes) -> IPv4Address | IPv6Address | IPv4Interface | IPv6Interface:
    """inet binary: family, prefix length, is-cidr flag, address length, address bytes."""
    prefix = data[1]
    packed = data[4:]
    if data[0] == _AF_INET:
        if prefix == 32:
            return IPv4Address(packed)
        return IPv4Interface((packed, prefix))
    if prefix == 128:
        return IPv6Address(packed)
    return IPv6Interface((packed, prefix))


def load_cidr_binary(data: bytes) -> IPv4Network | IPv6Network:
    """cidr binary: as inet, always a network."""
    if data[0] == _AF_INET:
        return IPv4Network((data[4:], data[1]))
    return IPv6Network((data[4:], data[1]))


def dump_inet(value: Any) -> tuple[int, int, bytes]:
    """IPv4/IPv6 addresses and interfaces as inet."""
    return (INET_OID, 0, str(value).encode())


def dump_cidr(value: Any) -> tuple[int, int, bytes]:
    """IPv4/IPv6 networks as cidr."""
    return (CIDR_OID, 0, str(value).encode())
