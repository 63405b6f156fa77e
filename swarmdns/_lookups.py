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
    SelfUnknown,
    ServiceNotFound,
    SwarmDNSError,
)
from ._log import logger
from ._model import Answer, Disowned, Question, SortedAddresses, Task
from ._names import check_network, reverse_name, service_name, tasks_name
from ._runtime import (
    SWARM,
    Settled,
    Where,
    compose_container,
    detected,
    identity,
    swarm_task,
    why_not_a_task,
)

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


def service_vip(service: str, network: str | None, where: Where = SWARM) -> Plan[IPv4Address]:
    """Plan: the single A record of ``<service>[.<network>]``, checked against its tasks.

    A dnsrr service with one task also has a single A record: its task's. So
    ``tasks.<service>`` is asked at the same time, and a "virtual IP" that is
    one of the tasks' addresses is reported as the ``NoVirtualIP`` it is.
    Under Compose there is no virtual IP at all.
    """
    name = service_name(service, network)
    if (yield from settle(where)) == "compose":
        raise NoVirtualIP(
            f"service {service!r} has no virtual IP: this runs under Compose (or as a plain"
            f" container), where {name!r} lists every container of the service and no"
            f" address stands for them all. task_ips({service!r}) lists them.",
            name=name,
        )
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
        question: The question to ask: A ``tasks.<service>[.<network>].`` in a
            Swarm, A ``<service>[.<network>].`` under Compose.
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


def instances_query(
    service: str, network: str | None, runtime: Settled = "swarm"
) -> InstancesQuery:
    """The question that lists ``service``'s instances, and the reader of its answer.

    Raises:
        InvalidName: ``service`` or ``network`` is not a name Docker allows.
    """
    if runtime == "compose":
        return _instances_query(service_name(service, network))
    return _instances_query(tasks_name(service, network))


@_memo.memoize(maxsize=1024)
def _instances_query(name: str) -> InstancesQuery:
    """The query for the name that lists the instances, made once per name (watches ask often)."""
    return InstancesQuery(question=Question(name=name, rdtype="A"))


def task_ips(
    service: str, network: str | None, where: Where = SWARM
) -> Plan[tuple[IPv4Address, ...]]:
    """Plan: the sorted, distinct A records of the name that lists ``service``'s instances.

    ``tasks.<service>[.<network>]`` in a Swarm, ``<service>[.<network>]`` under Compose.
    """
    instances = instances_query(service, network, (yield from settle(where)))
    (result,) = yield instances.questions
    return instances.addresses(result)


def tasks(service: str, network: str | None, where: Where = SWARM) -> Plan[tuple[Task, ...]]:
    """Plan: the task addresses, then each address's PTR record, all at once."""
    runtime = yield from settle(where)
    addresses = yield from task_ips(service, network, Where(runtime=runtime))
    if not addresses:
        return ()
    results = yield _reverse_questions(addresses)
    return tuple(
        _task(ip, result, service, runtime) for ip, result in zip(addresses, results, strict=True)
    )


def _reverse_questions(addresses: Sequence[IPv4Address]) -> tuple[Question, ...]:
    return tuple(Question(name=reverse_name(ip), rdtype="PTR") for ip in addresses)


def _task(ip: IPv4Address, result: Result, service: str, runtime: Settled) -> Task:
    if isinstance(result, SwarmDNSError) or not result.records:
        return Task(ip=ip)
    target = str(result.records[0])
    if runtime == "compose":
        container = compose_container(ip, target, service)
        if container is None:
            _warn_unfit(target, service, "not a container's name and network Docker allows")
        return container or Task(ip=ip)
    return parse_task(ip, target, service)


def parse_task(ip: IPv4Address, target: str, service: str | None = None) -> Task:
    """Read a task's identity from its PTR target, ``web.1.<task id>.<network>.``.

    Only a name that fits Docker's grammar for a task (of ``service``, when
    given) is an identity; for anything else, the task is its address alone,
    as when the PTR lookup fails, and a warning says why (once per name).
    """
    task = swarm_task(ip, target, service)
    if task is None:
        _warn_unfit(target, service, why_not_a_task(target, service) or "")
    return task or Task(ip=ip)


@_memo.memoize(maxsize=256)
def _warn_unfit(target: str, service: str | None, why: str) -> None:
    """Say once why a PTR name is no identity (remembered: a watch meets it at every change)."""
    logger().warning(
        "the PTR name %r is not %s task's name Docker would give (%s); the task is known by"
        " its address alone",
        target,
        "a" if service is None else f"a {service!r}",
        why,
    )


#: At most this many of this container's own addresses are asked about.
MAX_OWN_ADDRESSES = 16
#: Seconds the engine gets to name one of this container's own addresses, at
#: least, or half of what is left of the deadline if more. It answers its own
#: PTR records at once (but a busy machine may delay it); the rest (a gateway
#: bridge's address, a VIP on 20.10) it forwards to the host's resolvers,
#: which may never answer.
OWN_NAME_BUDGET = 0.5


class Budgeted(tuple[Question, ...]):
    """Questions asked together within ``budget`` seconds at most, inside the lookup's deadline."""

    budget: float

    def __new__(cls, questions: Sequence[Question], budget: float) -> Budgeted:
        batch = super().__new__(cls, questions)
        batch.budget = budget
        return batch


def batch_deadline(deadline: Deadline, questions: Sequence[Question]) -> Deadline:
    """The deadline for one batch of a plan: the lookup's, or the batch's budget if sooner.

    A budgeted batch gets its budget, or half the time left if that is more.
    """
    if isinstance(questions, Budgeted):
        return deadline.sooner(max(questions.budget, deadline.remaining() / 2))
    return deadline


def own_identities(where: Where, *, first: bool) -> Plan[tuple[tuple[Settled, Task], ...]]:
    """Plan: what the engine's PTR records say of this container's own addresses.

    Loopback addresses are left out. Only answers that name a Swarm task or a
    Compose container count; forwarded ones were made NXDOMAIN by the backend.
    Each batch has ``OWN_NAME_BUDGET`` seconds, or half the time left. With
    ``first``, the addresses are asked one at a time, likeliest first, until
    one is named (telling the runtime needs one); else all at once.

    Raises:
        SwarmDNSError: No address had an identity and a PTR question failed
            (a timeout, SERVFAIL): that is not the same as "no identity".
    """
    own = [ip for ip in where.own if not ip.is_loopback][:MAX_OWN_ADDRESSES]
    batches = [[ip] for ip in own] if first else [own] if own else []
    found: list[tuple[Settled, Task]] = []
    errors: list[SwarmDNSError] = []
    for batch in batches:
        results = yield Budgeted(_reverse_questions(batch), OWN_NAME_BUDGET)
        for ip, result in zip(batch, results, strict=True):
            if isinstance(result, SwarmDNSError):
                errors.append(result)
            elif result.records and (told := identity(ip, str(result.records[0]))):
                found.append(told)
        if first and found:
            break
    if errors and not found:
        raise errors[0]
    return tuple(found)


def settle(where: Where) -> Plan[Settled]:
    """Plan: the runtime ``where`` means; ``auto`` asks the engine once per process.

    A Swarm task's own address names a task, a Compose container's a
    container; with neither (no engine, no container), it is a Swarm, as it
    always was. What the engine said is remembered for the process
    (``_runtime.detected``).

    Raises:
        SwarmDNSError: The engine could not be asked; nothing is remembered.
    """
    settled = where.settled
    if settled is not None:
        return settled
    return _told(where, (yield from own_identities(where, first=True)))


def _told(where: Where, found: Sequence[tuple[Settled, Task]]) -> Settled:
    """The runtime the identities ``found`` tell, remembered for ``where``'s engine."""
    if where.runtime != "auto":
        return where.runtime
    known = None if where.engine is None else detected.get(where.engine)
    if known is not None:
        return known
    runtime: Settled = "compose" if {told for told, _ in found} == {"compose"} else "swarm"
    detected.remember(where.engine, runtime, where.backend)
    return runtime


def whoami(network: str | None, where: Where) -> Plan[Task]:
    """Plan: this container's own address on ``network`` (or its only one), with its identity.

    Raises:
        SelfUnknown: No own address has an identity, none is on ``network``,
            or several networks have one and ``network`` is None.
        InvalidName: ``network`` is not a name Docker allows.
    """
    if network is not None:
        check_network(network)
    found = yield from own_identities(where, first=False)
    runtime = _told(where, found)
    mine = [task for told, task in found if told == runtime]
    if network is not None:
        chosen = [task for task in mine if task.network == network]
    else:
        chosen = [task for task in mine if task.network != "ingress"]
    if len(chosen) == 1:
        return chosen[0]
    raise SelfUnknown(_self_unknown(network, mine, where), name=network)


def _self_unknown(network: str | None, mine: Sequence[Task], where: Where) -> str:
    networks = sorted({task.network or "?" for task in mine})
    if not mine:
        asked = ", ".join(str(ip) for ip in where.own) or "none"
        return (
            "cannot tell who this container is: the engine names none of its own addresses"
            f" ({asked}) as a Swarm task or a Compose container. Run it inside a Swarm"
            " task or a container on a user-defined network, where 127.0.0.11 answers."
        )
    if network is not None:
        return (
            f"this container has no address on network {network!r}; it has one on"
            f" {', '.join(map(repr, networks))}: pass one of those"
        )
    return (
        f"this container is on several networks ({', '.join(map(repr, networks))}):"
        " pass network=... (--network) to say which address is meant"
    )
