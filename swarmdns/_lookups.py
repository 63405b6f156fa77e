"""What each lookup asks and how it reads the answers, as plans without I/O.

A plan is a generator: it yields the questions it needs answered together,
receives for each an ``Answer`` or the error that stopped it, and returns the
lookup's result or raises. The synchronous and asynchronous front ends only
carry questions to a backend and answers back.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from ipaddress import AddressValueError, IPv4Address
from typing import TypeVar

from attrs import field, frozen

from . import _memo
from ._deadlines import Deadline
from ._errors import (
    NoVirtualIP,
    ResolutionError,
    ResolutionTimeout,
    ServiceNotFound,
    SwarmDNSError,
)
from ._model import Answer, Disowned, Question, SortedAddresses, Task
from ._names import reverse_name, service_name, tasks_name

#: Seconds a lookup may take, all its queries together, unless told otherwise.
DEFAULT_TIMEOUT = 2.0
#: At most this many questions of one lookup are asked at once.
MAX_CONCURRENT = 16

T = TypeVar("T")
Result = Answer | SwarmDNSError
Plan = Generator[Sequence[Question], Sequence[Result], T]


def expired(question: Question, deadline: Deadline) -> ResolutionTimeout:
    """The error for a question there was no time left to ask."""
    return ResolutionTimeout(
        f"no time left to ask for {question.name!r}: the lookup's {deadline.timeout:g} s"
        " deadline passed; pass a larger timeout if the nameserver is slow",
        name=question.name,
    )


def overrun(question: Question, backend: object, deadline: Deadline) -> ResolutionTimeout:
    """The error for a backend that ignored the deadline and was cut off."""
    return ResolutionTimeout(
        f"the backend {backend!r} gave no answer for {question.rdtype} {question.name!r}"
        f" within the lookup's {deadline.timeout:g} s deadline",
        name=question.name,
    )


def failed(question: Question, backend: object, error: Exception) -> SwarmDNSError:
    """What a backend's exception means for the lookup: any failure is a failed question."""
    if isinstance(error, SwarmDNSError):
        return error
    failure = ResolutionError(
        f"the backend {backend!r} failed to answer {question.rdtype} {question.name!r}:"
        f" {type(error).__name__}: {error}",
        name=question.name,
    )
    failure.__cause__ = error
    return failure


def checked(question: Question, backend: object, result: object) -> Result:
    """What a backend returned, if it is an Answer to ``question``; else the error."""
    if isinstance(result, Answer) and (result.question is question or result.question == question):
        return result
    what = "an Answer to another question" if isinstance(result, Answer) else repr(result)
    return ResolutionError(
        f"the backend {backend!r} returned {what} for {question.rdtype} {question.name!r};"
        " a backend must return an Answer to the question it was given",
        name=question.name,
    )


def _answer(result: Result) -> Answer:
    if isinstance(result, SwarmDNSError):
        raise result
    return result


def _distinct_sorted(answer: Answer) -> tuple[IPv4Address, ...]:
    """The answer's addresses, each once, in ascending order."""
    if isinstance(answer.records, SortedAddresses):
        return answer.records  # the fast path did it already
    return tuple(sorted(set(_addresses(answer)), key=int))


def _addresses(answer: Answer) -> tuple[IPv4Address, ...]:
    try:
        return tuple(
            record if isinstance(record, IPv4Address) else IPv4Address(record)
            for record in answer.records
        )
    except AddressValueError as error:
        raise ResolutionError(
            f"{answer.nameserver} answered {answer.question.name!r} with a malformed"
            f" A record: {error}",
            name=answer.question.name,
            nameserver=answer.nameserver,
        ) from error


def service_vip(service: str, network: str | None) -> Plan[IPv4Address]:
    """Plan: the single A record of ``<service>[.<network>]``, checked against its tasks.

    A dnsrr service with one task also has a single A record: its task's. So
    ``tasks.<service>`` is asked at the same time, and a "virtual IP" that is
    one of the tasks' addresses is reported as the ``NoVirtualIP`` it is.
    """
    name = service_name(service, network)
    instances = instances_query(service, network)
    result, tasks_result = yield (Question(name=name, rdtype="A"), instances.question)
    answer = _answer(result)
    addresses = _distinct_sorted(answer)
    if not addresses:
        if answer.forwarded is not None:
            said = (
                "forwarded {} to the host's resolvers, so it does not own the name (their"
                f" answer is not the engine's own: {answer.forwarded})"
            )
        elif answer.nxdomain:
            said = "does not know {} (NXDOMAIN)"
        else:
            said = "answered no address for {}"
        raise ServiceNotFound(
            f"no service {service!r}: {answer.nameserver} {said.format(repr(name))}."
            " The engine removes every name of a service with zero running (healthy) tasks,"
            " so it may exist but be scaled to zero; or it shares no network with this"
            " container.",
            name=name,
            nameserver=answer.nameserver,
        )
    if len(addresses) == 1 and addresses[0] not in instances.addresses(tasks_result):
        return addresses[0]
    raise NoVirtualIP(
        f"service {service!r} has no virtual IP: {answer.nameserver} gave {name!r} the"
        f" address of its {len(addresses)} task(s), so it runs in endpoint mode dnsrr."
        f" task_ips({service!r}) lists its tasks.",
        name=name,
        nameserver=answer.nameserver,
        addresses=addresses,
    )


@frozen
class InstancesQuery:
    """Which question lists a service's instances, and how its answer is read.

    ``instances_query()`` is the one place that makes it: every lookup and
    watch of a service's tasks (``task_ips``, ``tasks``, ``service_vip``'s
    check, a single watch, a fleet) asks its ``question`` and reads the
    answer with ``addresses()``. The fleet's fast path reads a usual answer
    to it as the same addresses, as integers (``Exchange.usual_values``).

    Attributes:
        question: The question to ask: A ``tasks.<service>[.<network>].``.
        questions: The same question alone, as a plan yields it.
    """

    question: Question
    questions: tuple[Question] = field(init=False, repr=False, eq=False)

    @questions.default
    def _alone(self) -> tuple[Question]:
        return (self.question,)

    def addresses(self, result: Result) -> tuple[IPv4Address, ...]:
        """What the answer says: the instances' addresses, sorted (none for NXDOMAIN).

        An answer the engine forwarded gives ``Disowned``: none, with why.

        Raises:
            SwarmDNSError: The question failed, or an A record is malformed.
        """
        answer = _answer(result)
        if answer.forwarded is not None:
            return Disowned(answer.forwarded)
        return _distinct_sorted(answer)


def instances_query(service: str, network: str | None) -> InstancesQuery:
    """The question that lists ``service``'s instances, and the reader of its answer.

    Raises:
        InvalidName: ``service`` or ``network`` is not a name Docker allows.
    """
    return _instances_query(tasks_name(service, network))


@_memo.memoize(maxsize=1024)
def _instances_query(name: str) -> InstancesQuery:
    """The query for the name that lists the instances, made once per name (watches ask often)."""
    return InstancesQuery(question=Question(name=name, rdtype="A"))


def task_ips(service: str, network: str | None) -> Plan[tuple[IPv4Address, ...]]:
    """Plan: the sorted, distinct A records of ``tasks.<service>[.<network>]``."""
    instances = instances_query(service, network)
    (result,) = yield instances.questions
    return instances.addresses(result)


def tasks(service: str, network: str | None) -> Plan[tuple[Task, ...]]:
    """Plan: the task addresses, then each address's PTR record, all at once."""
    addresses = yield from task_ips(service, network)
    if not addresses:
        return ()
    results = yield tuple(Question(name=reverse_name(ip), rdtype="PTR") for ip in addresses)
    return tuple(_task(ip, result) for ip, result in zip(addresses, results, strict=True))


def _task(ip: IPv4Address, result: Result) -> Task:
    if isinstance(result, SwarmDNSError) or not result.records:
        return Task(ip=ip)
    return parse_task(ip, str(result.records[0]))


def parse_task(ip: IPv4Address, target: str) -> Task:
    """Read a task's identity from its PTR target, ``web.1.<task id>.<network>.``."""
    labels = target.rstrip(".").split(".")
    if len(labels) < 4 or not all(labels):
        return Task(ip=ip)
    service, slot_or_node, task_id, *network = labels
    slot = int(slot_or_node) if slot_or_node.isdigit() else None
    return Task(
        ip=ip,
        name=f"{service}.{slot_or_node}.{task_id}",
        service=service,
        slot=slot,
        node_id=None if slot is not None else slot_or_node,
        task_id=task_id,
        network=".".join(network),
    )
