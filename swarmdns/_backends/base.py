"""What a resolver backend is: the contract every front end relies on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, TypeGuard, runtime_checkable

from .._model import Answer, Question

if TYPE_CHECKING:
    from .nameserver import Nameserver


@runtime_checkable
class Backend(Protocol):
    """Answers questions for the synchronous API.

    ``resolve`` must return within ``timeout`` seconds. It returns an
    ``Answer`` for NOERROR (with or without records) and NXDOMAIN, and raises
    ``ResolutionTimeout`` or ``ResolutionError`` when there is no usable
    answer. Any other exception is reported as a ``ResolutionError``.

    A backend class may set the class attribute ``keeps_deadline = True`` to
    declare that every call ends by its ``timeout`` on its own; ``swarmdns.aio``
    then spares it a timer of its own. Without it, an async call that runs
    past its deadline is cancelled and reported as a ``ResolutionTimeout``.
    The declaration is not inherited: a subclass may do more than its base,
    so it declares it again if it keeps the promise too.

    A backend class may set ``speaks_wire = True`` to declare that its
    answers are what its ``nameservers()`` say to the queries
    ``DirectBackend`` sends (a ``WireBackend``); ``watch_services`` then asks
    those nameservers itself, every query through one socket, instead of
    calling ``resolve()`` once per lookup. A subclass keeps the declaration
    as long as it keeps the ``resolve()`` and ``resolve_async()`` of the
    class that made it: one that overrides either answers in its own way,
    so it declares it again if its answers are still the nameservers' own.
    ``speaks_wire()`` is the check.
    """

    def resolve(self, question: Question, timeout: float) -> Answer:
        """Answer ``question`` within ``timeout`` seconds."""
        ...


@runtime_checkable
class AsyncBackend(Protocol):
    """Answers questions for ``swarmdns.aio``, with the same contract as ``Backend``."""

    async def resolve_async(self, question: Question, timeout: float) -> Answer:
        """Answer ``question`` within ``timeout`` seconds."""
        ...


def keeps_deadline(backend: object) -> bool:
    """Whether ``backend``'s own class declares that every call ends by its timeout."""
    return vars(type(backend)).get("keeps_deadline", False) is True


class WireBackend(Protocol):
    """A backend that declares ``speaks_wire``: its answers are its nameservers' own."""

    def nameservers(self) -> Sequence[Nameserver]:
        """The nameservers a question asked now goes to, in order.

        Raises:
            ConfigurationError: None is configured, or one is malformed.
        """
        ...


def speaks_wire(backend: object) -> TypeGuard[WireBackend]:
    """Whether a fleet may ask ``backend``'s nameservers itself, over one socket.

    The nearest class of ``backend`` (its own, then its bases in order) that
    declares ``speaks_wire`` or defines ``resolve()`` or ``resolve_async()``
    decides: its declaration counts if it makes one, else the answer is no.
    """
    for cls in type(backend).__mro__:
        own = vars(cls)
        if "speaks_wire" in own:
            return own["speaks_wire"] is True
        if "resolve" in own or "resolve_async" in own:
            return False
    return False
