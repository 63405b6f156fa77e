"""Running a backend that only has a synchronous ``resolve()`` from asyncio code."""

from __future__ import annotations

from .._model import Answer, Question
from .base import Backend


class ThreadedBackend:
    """An ``AsyncBackend`` that runs ``backend.resolve()`` in a worker thread.

    Cancelling a call stops the waiting, not the worker: it runs on until the
    backend returns (within its ``timeout``, as the contract says).
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def __repr__(self) -> str:
        return repr(self.backend)

    async def resolve_async(self, question: Question, timeout: float) -> Answer:
        """Answer ``question`` in a worker thread."""
        import asyncio  # noqa: PLC0415 - asyncio only for asyncio users: it is slow to import

        return await asyncio.to_thread(self.backend.resolve, question, timeout)
