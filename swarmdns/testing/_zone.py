"""The lookup tables the fake server answers from, built once per change."""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address

from attrs import field, frozen

from ._wire import encode_text_name

#: The engine recognises reverse names by these suffixes, spelled exactly so.
IPV4_REVERSE_SUFFIX = ".in-addr.arpa"
IPV6_REVERSE_SUFFIX = ".ip6.arpa"


@frozen(kw_only=True)
class NetworkZone:
    """What one network's DNS knows, keyed by lower-case name.

    Attributes:
        name: The network's name, spelled as created.
        names: Each name's addresses, packed, without duplicates.
        reverse: Each task address (packed) and its PTR target in wire form.
    """

    name: str
    names: Mapping[str, tuple[bytes, ...]] = field(repr=False)
    reverse: Mapping[bytes, bytes] = field(repr=False)

    @classmethod
    def build(
        cls,
        *,
        name: str,
        names: Mapping[str, list[IPv4Address]],
        reverse: Mapping[IPv4Address, str],
    ) -> NetworkZone:
        """Index a network's names and reverse names."""
        return cls(
            name=name,
            names={
                key.lower(): tuple(dict.fromkeys(ip.packed for ip in ips))
                for key, ips in names.items()
            },
            reverse={ip.packed: encode_text_name(target) for ip, target in reverse.items()},
        )


@frozen(kw_only=True)
class Zone:
    """What the asking container's DNS knows, network by network.

    Attributes:
        networks: The container's networks in the order the engine tries them.
    """

    networks: tuple[NetworkZone, ...] = ()

    def addresses(self, name: str) -> tuple[bytes, ...] | None:
        """The packed addresses of a name as sent, or None when it is unknown.

        Like the engine, ``a.b.c`` is tried as a name on every network, then as
        ``a.b`` on network ``c``, then as ``a`` on network ``b.c``. Names match
        in any case; the network suffix must be spelled as the network is.
        """
        if not name:
            return None
        candidates: list[tuple[str, str | None]] = [(name.lower(), None)]
        dot = name.rfind(".")
        while dot > 0:
            candidates.append((name[:dot].lower(), name[dot + 1 :]))
            dot = name.rfind(".", 0, dot)
        for key, network in candidates:
            for zone in self.networks:
                if network is not None and zone.name != network:
                    continue
                found = zone.names.get(key)
                if found:
                    return found
        return None

    def ptr_target(self, name: str) -> bytes | None:
        """The PTR target (wire form) for a name under in-addr.arpa, or None."""
        octets = name.removesuffix(IPV4_REVERSE_SUFFIX).split(".")
        if len(octets) != 4 or not all(o.isdigit() and len(o) <= 3 for o in octets):
            return None
        if any(len(o) > 1 and o.startswith("0") for o in octets):
            return None  # the engine's address parser refuses leading zeros
        if any(int(o) > 255 for o in octets):
            return None
        packed = bytes(int(o) for o in reversed(octets))
        for zone in self.networks:
            target = zone.reverse.get(packed)
            if target is not None:
                return target
        return None
