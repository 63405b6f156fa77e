"""The synchronous API: carries each plan's questions to a backend."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address
from typing import TypeVar

from . import _lookups
from ._backend import AsyncBackend, Backend, sync_backend
from ._errors import SwarmDNSError
from ._lookups import DEFAULT_TIMEOUT, Deadline, Plan, Result
from ._model import Question, Task

T = TypeVar("T")
#: At most this many questions of one lookup are asked at once.
MAX_CONCURRENT = 16


def _ask(backend: Backend, question: Question, deadline: Deadline) -> Result:
    remaining = deadline.remaining()
    if remaining <= 0:
        return deadline.expired(question)
    try:
        return _lookups.checked(question, backend, backend.resolve(question, remaining))
    except SwarmDNSError as error:
        return error
    except Exception as error:  # any backend failure is a failed question
        return _lookups.backend_failure(question, backend, error)


def _ask_all(backend: Backend, questions: Sequence[Question], deadline: Deadline) -> list[Result]:
    if len(questions) == 1:
        return [_ask(backend, questions[0], deadline)]
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - slow to import

    workers = min(MAX_CONCURRENT, len(questions))
    with ThreadPoolExecutor(workers, thread_name_prefix="swarmdns") as pool:
        return list(pool.map(lambda q: _ask(backend, q, deadline), questions))


def run(plan: Plan[T], backend: Backend | AsyncBackend | None, timeout: float) -> T:
    """Drive ``plan`` to its result, asking ``backend`` within ``timeout`` seconds."""
    deadline = Deadline(timeout)
    chosen = sync_backend(backend)
    try:
        questions = next(plan)
        while True:
            questions = plan.send(_ask_all(chosen, questions, deadline))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def service_vip(
    service: str,
    *,
    network: str | None = None,
    backend: Backend | AsyncBackend | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> IPv4Address:
    """The virtual IP of ``service``: the A record of ``<service>[.<network>]``.

    Args:
        service: The service's name (``web``, or ``shop_web`` in a stack).
        network: Ask about the service's address on this network only.
        backend: Who answers; by default the process-wide default backend.
        timeout: Seconds the whole lookup may take.

    Raises:
        ServiceNotFound: NXDOMAIN: no such service, or none of its tasks runs.
        NoVirtualIP: The service runs in dnsrr mode (several addresses).
        ResolutionTimeout: No answer within ``timeout``.
        ResolutionError: The nameserver failed or answered nonsense.
        InvalidName: ``service`` or ``network`` is not a name Docker allows.
    """
    return run(_lookups.service_vip(service, network), backend, timeout)


def task_ips(
    service: str,
    *,
    network: str | None = None,
    backend: Backend | AsyncBackend | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[IPv4Address, ...]:
    """The addresses of every running task of ``service``, sorted, from ``tasks.<service>``.

    A service that does not exist, or has no running task, gives ``()``: the
    engine answers both with NXDOMAIN. Failures raise instead, so that an
    empty tuple always means what it says.

    Raises:
        ResolutionTimeout: No answer within ``timeout``.
        ResolutionError: The nameserver failed or answered nonsense.
        InvalidName: ``service`` or ``network`` is not a name Docker allows.
    """
    return run(_lookups.task_ips(service, network), backend, timeout)


def tasks(
    service: str,
    *,
    network: str | None = None,
    backend: Backend | AsyncBackend | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[Task, ...]:
    """Every running task of ``service``, with its identity from the engine's PTR records.

    The PTR lookups run concurrently, within the same ``timeout``. A task whose
    PTR lookup fails keeps its ``ip``; its other fields are None.

    Raises:
        ResolutionTimeout: No answer to the ``tasks.<service>`` query within ``timeout``.
        ResolutionError: The nameserver failed or answered nonsense.
        InvalidName: ``service`` or ``network`` is not a name Docker allows.
    """
    return run(_lookups.tasks(service, network), backend, timeout)
