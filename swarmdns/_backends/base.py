"""What a resolver backend is: the contract every front end relies on."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .._model import Answer, Question


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
