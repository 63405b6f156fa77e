"""Which answers are the engine's own: the rule, and how it is configured. No I/O.

Docker's engine answers the names it owns (services, tasks, containers)
from its own records, and forwards every other name to the host's
resolvers, whose answer it passes back as it is: ``tasks.<service>`` of a
service with no running task is such a name, and a resolver that rewrites
NXDOMAIN answers it with public addresses. An answer from the engine's own
records has three marks, on every engine measured (20.10, 26.1, 28.5):

- no OPT record, even though swarmdns's queries carry EDNS (an upstream's
  answer carries its OPT);
- a TTL of 600 s on every record (an upstream's answer carries its own);
- addresses inside the subnets of the asking container's networks.

An answer of the engine's nameserver that misses any mark was forwarded.
Its name is one the engine does not own, which is what NXDOMAIN says, so
it reads as no tasks, never as tasks; its reason stays on the ``Answer``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from attrs import field, frozen

from ._errors import ConfigurationError, ForwardedAnswer

#: The TTL of every record the engine answers from its own records; it cannot be configured.
ENGINE_TTL = 600
#: Where a task reaches the engine's embedded DNS server.
ENGINE_ADDRESS = "127.0.0.11"
#: The variable that configures provenance: ``auto``, ``off``, ``strict``, or networks.
PROVENANCE_VARIABLE = "SWARMDNS_PROVENANCE"
_OPT_REASON = "it carries an OPT record, which the engine's own answers never do"

Mode = Literal["auto", "off", "engine"]


def _networks(value: Iterable[IPv4Network | str]) -> tuple[IPv4Network, ...]:
    if isinstance(value, str | IPv4Network):
        raise TypeError(f"networks must be a list of networks, not one: {value!r}")
    try:
        networks = tuple(IPv4Network(network) for network in value)
    except ValueError as error:
        raise ConfigurationError(
            f"networks holds a value that is not an IPv4 network: {error}; give networks"
            " such as '10.0.1.0/24'",
            source="networks",
        ) from None
    return networks


@frozen(kw_only=True, cache_hash=True)  # a key of the backends' memo, on every lookup
class Provenance:
    """Which nameserver is Docker's engine, and whether its answers are checked.

    The engine answers its own names from its own records and forwards all
    others to the host's resolvers. An answer the engine forwarded is never
    taken for tasks or a virtual IP: it reads as "no such service", with the
    reason on the ``Answer`` (``forwarded``). ``docs/trust.md`` gives the
    rule and its limits.

    Attributes:
        mode: ``"auto"`` (the default): the nameserver 127.0.0.11 is the
            engine, and its answers' addresses must lie in this container's
            networks as the kernel lists them. ``"off"``: answers are taken
            as they come (127.0.0.11 is still the engine for reading its
            SERVFAIL without RA as "no such name"). ``"engine"``: every
            nameserver is the engine (such as the fake of
            ``swarmdns.testing`` on a loopback port), with its addresses in
            ``networks``.
        networks: The networks of the engine's answers, for ``"engine"``.
        strict: Raise ``ForwardedAnswer`` for a forwarded answer with
            records, instead of reading it as no tasks.
    """

    mode: Mode = "auto"
    networks: tuple[IPv4Network, ...] = field(default=(), converter=_networks)
    strict: bool = False

    def __attrs_post_init__(self) -> None:
        if self.mode not in ("auto", "off", "engine"):
            raise ConfigurationError(
                f"provenance mode {self.mode!r} is not one of 'auto', 'off', 'engine'",
                source="mode",
            )
        if (self.mode == "engine") != bool(self.networks):
            raise ConfigurationError(
                "give networks with mode 'engine', and only then: they are where the"
                " engine's addresses lie",
                source="networks",
            )
        if not isinstance(self.strict, bool):
            raise TypeError(f"strict must be True or False, not {self.strict!r}")

    @classmethod
    def engine(cls, networks: Iterable[IPv4Network | str], *, strict: bool = False) -> Provenance:
        """Every nameserver is the engine, and its addresses lie in ``networks``."""
        return cls(mode="engine", networks=_networks(networks), strict=strict)

    @classmethod
    def parse(cls, text: str, *, source: str = PROVENANCE_VARIABLE) -> Provenance:
        """Read ``auto``, ``off``, ``strict`` or comma-separated networks (``strict,`` first).

        Raises:
            ConfigurationError: The text is none of those.
        """
        words = [word.strip() for word in text.split(",") if word.strip()]
        strict = bool(words) and words[0] == "strict"
        rest = words[1:] if strict else words
        if rest in ([], ["auto"]):
            return cls(strict=strict)
        if rest == ["off"] and not strict:
            return cls(mode="off")
        try:
            return cls(
                mode="engine", networks=tuple(IPv4Network(word) for word in rest), strict=strict
            )
        except ValueError:
            raise ConfigurationError(
                f"{source} is {text!r}; expected 'auto', 'off', 'strict', or the engine's"
                " networks such as '10.0.0.0/8' (comma-separated, 'strict,' first to raise"
                " ForwardedAnswer)",
                source=source,
            ) from None

    def engine_rules(
        self, host: str, read_networks: Callable[[], Sequence[IPv4Network]]
    ) -> EngineRules | None:
        """The rules for answers of the nameserver at ``host``; None if it is not the engine."""
        if self.mode == "engine":
            networks = self.networks
            return EngineRules(networks=lambda: networks, strict=self.strict)
        if host != ENGINE_ADDRESS:
            return None
        if self.mode == "off":
            return EngineRules(checked=False)
        return EngineRules(networks=read_networks, strict=self.strict)


@frozen
class EngineRules:
    """How to read the answers of a nameserver that is the engine.

    Attributes:
        checked: Whether answers are checked for provenance at all.
        strict: Raise ``ForwardedAnswer`` rather than read a forwarded answer as no tasks.
        networks: The networks the engine's addresses lie in, read when needed
            (the kernel's may change: a container can join a network).
    """

    checked: bool = True
    strict: bool = False
    networks: Callable[[], Sequence[IPv4Network]] = field(default=tuple, eq=False)
    _known: list[tuple[Sequence[IPv4Network], tuple[tuple[int, int], ...]] | None] = field(
        factory=lambda: [None], init=False, eq=False, repr=False
    )

    def forwarded(
        self, *, opt: bool, ttls: Iterable[int], addresses: Sequence[IPv4Address] = ()
    ) -> str | None:
        """Why an answer with records was forwarded rather than the engine's own; None if not.

        Args:
            opt: Whether the answer carries an OPT record (the query had one).
            ttls: The TTLs of its answer records.
            addresses: Its A records' addresses.
        """
        if not self.checked:
            return None
        if opt:
            return _OPT_REASON
        other = next((ttl for ttl in ttls if ttl != ENGINE_TTL), None)
        if other is not None:
            return f"its TTL is {other} s; the engine's own answers always say {ENGINE_TTL} s"
        return self.outside(addresses)

    def forwarded_error(
        self, *, name: str, nameserver: str, reason: str
    ) -> ForwardedAnswer | None:
        """What a forwarded answer for ``name`` raises when strict; None: it reads as no such name.

        Every backend that checks answers words it here, once.
        """
        if not self.strict:
            return None
        return ForwardedAnswer(
            f"{nameserver} forwarded {name!r} to the host's resolvers, and their answer is"
            f" not the engine's own: {reason}. Its records are not tasks: the engine forwards"
            " only the names it does not own (a service with no running task, or one this"
            " container shares no network with)",
            name=name,
            nameserver=nameserver,
        )

    def outside(self, addresses: Sequence[IPv4Address]) -> str | None:
        """Why ``addresses`` cannot be the engine's: one lies outside its networks; else None."""
        if not self.checked or not addresses:
            return None
        networks, ranges = self._ranges()
        if not ranges:
            return None  # nothing to check against (no kernel table): the other marks decide
        strays = [ip for ip in addresses if not _within(int(ip), ranges)]
        stray = min(strays, key=int) if strays else None  # the same one, however shuffled
        if stray is None:
            return None
        listed = ", ".join(str(net) for net in networks)
        return f"{stray} lies outside the engine's networks ({listed})"

    def values_inside(self, values: Sequence[int]) -> bool:
        """Whether sorted address values all lie in the networks: the fast path's check.

        Sorted values inside one network need only their ends checked.
        """
        if not self.checked or not values:
            return True
        ranges = self._ranges()[1]
        if not ranges:
            return True
        return self.span_inside(values[0], values[-1]) or all(
            _within(value, ranges) for value in values
        )

    def span_inside(self, low: int, high: int) -> bool:
        """Whether every address from ``low`` to ``high`` lies in one network (or unchecked)."""
        if not self.checked:
            return True
        ranges = self._ranges()[1]
        return not ranges or any(first <= low and high <= last for first, last in ranges)

    def _ranges(self) -> tuple[Sequence[IPv4Network], tuple[tuple[int, int], ...]]:
        """The networks now, and each one's first and last address as integers.

        Worked out once per list of networks (the kernel's is replaced whole
        when read again): the last pair is kept, and replaced whole.
        """
        networks = self.networks()
        known = self._known[0]
        if known is not None and known[0] is networks:
            return known
        ranges = tuple((int(net.network_address), int(net.broadcast_address)) for net in networks)
        self._known[0] = (networks, ranges)
        return networks, ranges


def _within(value: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(first <= value <= last for first, last in ranges)
