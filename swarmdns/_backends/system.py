"""SystemBackend: the platform's resolver, through getaddrinfo()."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address

from .._deadlines import Overrun, within
from .._errors import ResolutionError, ResolutionTimeout
from .._model import Answer, Question
from .._own_addresses import container_networks
from .._provenance import Provenance
from .nameserver import provenance_from_environment, system_nameserver

#: getaddrinfo() errors that mean "no such name" rather than a failure.
_NOT_FOUND = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


class SystemBackend:
    """Asks the platform's resolver (the C library), as most programs do.

    Use it where only the system's resolver configuration may be used. It has
    limits the default backend does not:

    - The C library cannot always tell "no such name" from a failure: some
      report a failing nameserver as a missing name, which a watcher would
      read as "every task is gone".
    - Its own timeouts and retries (resolv.conf ``options timeout:`` and
      ``attempts:``) apply; swarmdns cannot cut a call short. The async API
      stops waiting at the deadline, but the lookup runs on in a worker thread,
      which ``asyncio.run()`` waits for when it closes the loop.
    - musl before 1.2.4 (Alpine before 3.18) ignores truncation, so it sees at
      most the addresses that fit in 512 bytes (19 with Docker 20.10).
    - Names go through ``/etc/hosts`` and nsswitch, not only DNS.
    - It hides TTLs and OPT records, so of the marks of an answer the engine
      forwarded (``swarmdns.Provenance``) only the addresses are checked:
      when resolv.conf's first nameserver is the engine, an address outside
      its networks makes the answer read as no such name.

    Args:
        provenance: As ``DirectBackend``'s: by default ``SWARMDNS_PROVENANCE``,
            else ``Provenance()``, read on every call.
    """

    nameserver = "the system resolver"

    def __init__(self, *, provenance: Provenance | None = None) -> None:
        if provenance is not None and not isinstance(provenance, Provenance):
            raise TypeError(f"provenance must be a swarmdns.Provenance, not {provenance!r}")
        self._provenance = provenance

    def __repr__(self) -> str:
        return "SystemBackend()"

    def resolve(self, question: Question, timeout: float) -> Answer:
        """Answer ``question`` with getaddrinfo() or gethostbyaddr()."""
        try:
            if question.rdtype == "PTR":
                address = _address_of_reverse_name(question.name)
                host, _, _ = socket.gethostbyaddr(address)
                return self._answer(question, (host.rstrip(".") + ".",))
            infos = socket.getaddrinfo(
                question.name, None, family=socket.AF_INET, type=socket.SOCK_STREAM
            )
        except socket.herror as error:
            if error.errno == 1:  # HOST_NOT_FOUND
                return self._answer(question, (), nxdomain=True)
            raise self._failure(question, error) from error
        except socket.gaierror as error:
            if error.errno in _NOT_FOUND:
                return self._answer(question, (), nxdomain=True)
            raise self._failure(question, error) from error
        return self._checked(question, tuple(dict.fromkeys(str(i[4][0]) for i in infos)))

    def _checked(self, question: Question, records: tuple[str, ...]) -> Answer:
        """The answer with ``records``, unless their addresses say the engine forwarded it."""
        provenance = self._provenance or provenance_from_environment()
        host = system_nameserver()
        rules = None if host is None else provenance.engine_rules(host, container_networks)
        reason = None
        if rules is not None:
            reason = rules.outside(tuple(IPv4Address(record) for record in records))
        if reason is None:
            return self._answer(question, records)
        assert rules is not None  # noqa: S101 - a reason comes only from the rules
        error = rules.forwarded_error(
            name=question.name, nameserver=self.nameserver, reason=reason
        )
        if error is not None:
            raise error
        return Answer(
            question=question, nxdomain=True, nameserver=self.nameserver, forwarded=reason
        )

    async def resolve_async(self, question: Question, timeout: float) -> Answer:
        """Answer in a worker thread, giving up waiting at ``timeout``."""
        import asyncio  # noqa: PLC0415 - asyncio only for asyncio users: it is slow to import

        try:
            return await within(asyncio.to_thread(self.resolve, question, timeout), timeout)
        except Overrun:
            raise ResolutionTimeout(
                f"the system resolver gave no answer for {question.rdtype} {question.name!r}"
                f" within {timeout:g} s",
                name=question.name,
                nameserver=self.nameserver,
            ) from None

    def _answer(
        self, question: Question, records: tuple[str, ...], nxdomain: bool = False
    ) -> Answer:
        return Answer(
            question=question, records=records, nxdomain=nxdomain, nameserver=self.nameserver
        )

    def _failure(self, question: Question, error: OSError) -> ResolutionError:
        return ResolutionError(
            f"the system resolver failed on {question.rdtype} {question.name!r}: {error.strerror}",
            name=question.name,
            nameserver=self.nameserver,
        )


def _address_of_reverse_name(name: str) -> str:
    return ".".join(reversed(name.rstrip(".").removesuffix(".in-addr.arpa").split(".")))
