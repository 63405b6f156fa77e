"""The lookup plans: what they ask and how they read answers, without I/O."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from swarmdns import (
    Answer,
    InvalidName,
    NoVirtualIP,
    Question,
    ResolutionError,
    ResolutionTimeout,
    Task,
    _lookups,
    _memo,
)
from swarmdns._lookups import (
    InstancesQuery,
    checked,
    instances_query,
    parse_task,
    service_vip,
    task_ips,
    tasks,
)
from swarmdns._runtime import COMPOSE, why_not_a_task
from swarmdns._values import WatchSettings
from swarmdns._watch import prepare_watch

from .test_fleet import fleet as core_of_fleet

TASK_ID = "k3j5l7m9n1p3q5r7s9t1v3x5z"  # 25 lowercase letters and digits, as swarmkit's
NODE_ID = "n0d3n0d3n0d3n0d3n0d3n0d3x"


def a(question: Question, *records: str, nxdomain: bool = False) -> Answer:
    return Answer(question=question, records=records, nxdomain=nxdomain, nameserver="test")


def test_task_ips_asks_once_and_sorts_distinct_addresses() -> None:
    plan = task_ips("web", "proxy")
    question = next(plan)[0]

    with pytest.raises(StopIteration) as done:
        plan.send([a(question, "10.0.1.9", "10.0.1.10", "10.0.1.9")])

    assert question == Question(name="tasks.web.proxy.", rdtype="A")
    assert done.value.value == (IPv4Address("10.0.1.9"), IPv4Address("10.0.1.10"))


def test_a_malformed_address_is_a_resolution_error() -> None:
    plan = task_ips("web", None)
    question = next(plan)[0]

    with pytest.raises(ResolutionError, match="malformed A record"):
        plan.send([a(question, "10.0.1.300")])


def test_an_empty_noerror_vip_is_not_found() -> None:
    plan = service_vip("web", None)
    question, tasks_question = next(plan)

    with pytest.raises(LookupError, match=r"answered no address for 'web\.'"):
        plan.send([a(question), a(tasks_question, nxdomain=True)])


def test_service_vip_asks_both_names_at_once() -> None:
    plan = service_vip("web", "proxy")

    assert next(plan) == (
        Question(name="web.proxy.", rdtype="A"),
        Question(name="tasks.web.proxy.", rdtype="A"),
    )


def test_a_single_address_that_is_a_tasks_is_no_virtual_ip() -> None:
    plan = service_vip("db", None)
    question, tasks_question = next(plan)

    with pytest.raises(NoVirtualIP) as caught:
        plan.send([a(question, "10.0.1.7"), a(tasks_question, "10.0.1.7")])
    assert caught.value.addresses == (IPv4Address("10.0.1.7"),)


def test_a_failed_tasks_lookup_fails_the_vip_lookup() -> None:
    # Without the tasks, a single address cannot be told apart from a VIP.
    plan = service_vip("web", None)
    question, _ = next(plan)

    with pytest.raises(ResolutionTimeout):
        plan.send([a(question, "10.0.1.2"), ResolutionTimeout("late", name="tasks.web.")])


def test_a_malformed_backend_result_is_a_resolution_error() -> None:
    question = Question(name="web.", rdtype="A")

    assert isinstance(checked(question, "backend", None), ResolutionError)
    other = Answer(question=Question(name="db.", rdtype="A"), nameserver="x")
    assert "another question" in str(checked(question, "backend", other))


def test_tasks_asks_every_ptr_at_once_and_keeps_failed_ones_bare() -> None:
    plan = tasks("web", None)
    (first,) = next(plan)
    ptrs = plan.send([a(first, "10.0.1.4", "10.0.1.3")])
    failure = ResolutionTimeout("late", name=ptrs[1].name)

    with pytest.raises(StopIteration) as done:
        plan.send([a(ptrs[0], f"web.2.{TASK_ID}.proxy."), failure])

    assert [q.name for q in ptrs] == ["3.1.0.10.in-addr.arpa.", "4.1.0.10.in-addr.arpa."]
    assert {q.rdtype for q in ptrs} == {"PTR"}
    assert done.value.value == (
        Task(
            ip=IPv4Address("10.0.1.3"),
            name=f"web.2.{TASK_ID}",
            service="web",
            slot=2,
            task_id=TASK_ID,
            network="proxy",
        ),
        Task(ip=IPv4Address("10.0.1.4")),
    )


def test_tasks_of_an_empty_service_asks_no_ptr() -> None:
    plan = tasks("web", None)
    question = next(plan)[0]

    with pytest.raises(StopIteration) as done:
        plan.send([a(question, nxdomain=True)])

    assert done.value.value == ()


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (f"web.1.{TASK_ID}.proxy.", (f"web.1.{TASK_ID}", "web", 1, None, TASK_ID, "proxy")),
        (
            f"agent.{NODE_ID}.{TASK_ID}.my.net.",
            (f"agent.{NODE_ID}.{TASK_ID}", "agent", None, NODE_ID, TASK_ID, "my.net"),
        ),
        ("web.abc.", None),
        (f"web..{TASK_ID}.proxy.", None),
        ("", None),
    ],
)
def test_parse_task(target: str, expected: tuple[object, ...] | None) -> None:
    ip = IPv4Address("10.0.1.3")

    task = parse_task(ip, target)

    if expected is None:
        assert task == Task(ip=ip)
    else:
        assert (task.name, task.service, task.slot, task.node_id, task.task_id, task.network) == (
            expected
        )


@pytest.mark.parametrize(
    ("target", "why"),
    [
        (f"web.1.{TASK_ID[:-1]}.proxy.", "is not a task ID"),  # 24 characters
        (f"web.1.{TASK_ID.upper()}.proxy.", "is not a task ID"),
        ("web.1.abc.proxy.", "is not a task ID"),
        (f"web.0.{TASK_ID}.proxy.", "neither a slot"),
        (f"web.01.{TASK_ID}.proxy.", "neither a slot"),
        (f"web.node9.{TASK_ID}.proxy.", "neither a slot"),
        (f"web#.1.{TASK_ID}.proxy.", "not a service name"),
        (f"{{web}}.1.{TASK_ID}.proxy.", "not a service name"),
        (f"web\\032x.1.{TASK_ID}.proxy.", "not a service name"),  # dnspython's escape
        (f"web.1.{TASK_ID}.pro#xy.", "not a network name"),
        (f"web.1.{TASK_ID}.proxy\\;.", "not a network name"),
        (f"evil.1.{TASK_ID}.proxy.", "names a task of 'evil', not of 'web'"),
        (f"myweb.1.{TASK_ID}.proxy.", "names a task of 'myweb', not of 'web'"),
        (f"_web.1.{TASK_ID}.proxy.", "not a service name"),
        (f"web.1.{TASK_ID}.", "fewer than 4 labels"),
    ],
)
def test_a_ptr_name_outside_dockers_grammar_for_the_service_is_no_identity(
    target: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    ip = IPv4Address("10.0.1.3")
    _memo.clear_caches()  # the warning is said once per name and process

    assert parse_task(ip, target, "web") == Task(ip=ip)
    assert parse_task(ip, target, "web") == Task(ip=ip)
    assert why in (why_not_a_task(target, "web") or "")
    said = [r.getMessage() for r in caplog.records if repr(target) in r.getMessage()]
    assert len(said) == 1
    assert why in said[0]


@pytest.mark.parametrize(
    ("target", "service"),
    [
        (f"web.1.{TASK_ID}.proxy.", "web"),
        (f"Web.1.{TASK_ID}.proxy.", "web"),  # the engine's names are not case-sensitive
        (f"shop_web.3.{TASK_ID}.shop_default.", "web"),  # asked by its short name in a stack
        (f"shop_web.3.{TASK_ID}.shop_default.", "shop_web"),
        (f"agent.{NODE_ID}.{TASK_ID}.net.", "agent"),
    ],
)
def test_a_ptr_name_in_dockers_grammar_for_the_service_is_its_identity(
    target: str, service: str
) -> None:
    task = parse_task(IPv4Address("10.0.1.3"), target, service)

    assert why_not_a_task(target, service) is None
    assert task.name == ".".join(target.split(".")[:3])
    assert task.task_id == TASK_ID


def test_compose_tasks_report_a_container_named_out_of_grammar_by_its_address_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _memo.clear_caches()
    plan = tasks("web", None, COMPOSE)
    (first,) = next(plan)
    ptrs = plan.send([a(first, "172.20.0.3", "172.20.0.4")])

    with pytest.raises(StopIteration) as done:
        plan.send([a(ptrs[0], "proj-web-1.proj_default."), a(ptrs[1], "proj-web#-2.x.")])

    first_task, second_task = done.value.value
    assert (first_task.name, first_task.service, first_task.slot) == ("proj-web-1", "web", 1)
    assert second_task == Task(ip=IPv4Address("172.20.0.4"))
    assert "not a container's name and network Docker allows" in caplog.text


def test_tasks_report_a_task_named_out_of_grammar_by_its_address_alone() -> None:
    plan = tasks("web", None)
    (first,) = next(plan)
    ptrs = plan.send([a(first, "10.0.1.3", "10.0.1.4")])

    with pytest.raises(StopIteration) as done:
        plan.send([a(ptrs[0], f"evil.1.{TASK_ID}.proxy."), a(ptrs[1], f"web.2.{TASK_ID}.p.")])

    assert done.value.value == (
        Task(ip=IPv4Address("10.0.1.3")),
        parse_task(IPv4Address("10.0.1.4"), f"web.2.{TASK_ID}.p."),
    )
    assert done.value.value[1].name == f"web.2.{TASK_ID}"


# -- the question that lists a service's instances ----------------------------------


@pytest.mark.parametrize(
    ("network", "name"), [(None, "tasks.web."), ("proxy", "tasks.web.proxy.")]
)
def test_a_services_instances_are_the_a_records_of_its_tasks_name(
    network: str | None, name: str
) -> None:
    query = instances_query("web", network)

    assert query.question == Question(name=name, rdtype="A")
    assert query.questions == (query.question,)


def test_the_instances_answer_is_read_sorted_and_distinct() -> None:
    query = instances_query("web", None)

    found = query.addresses(a(query.question, "10.0.1.9", "10.0.1.10", "10.0.1.9"))
    assert found == (IPv4Address("10.0.1.9"), IPv4Address("10.0.1.10"))
    assert query.addresses(a(query.question, nxdomain=True)) == ()
    with pytest.raises(ResolutionTimeout):
        query.addresses(ResolutionTimeout("late", name=query.question.name))


def test_a_bad_name_has_no_instances_query() -> None:
    with pytest.raises(InvalidName):
        instances_query("web!", None)


def test_every_lookup_and_watch_asks_the_one_instances_question(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Changing the query in ``instances_query`` changes it for every user."""
    elsewhere = Question(name="web.elsewhere.", rdtype="A")
    monkeypatch.setattr(
        _lookups, "_instances_query", lambda name: InstancesQuery(question=elsewhere)
    )

    assert next(task_ips("web", None)) == (elsewhere,)
    assert next(tasks("web", None)) == (elsewhere,)
    assert next(service_vip("web", None))[1] == elsewhere
    watch = prepare_watch("web", WatchSettings(), excluded=frozenset())
    assert watch.query_name == elsewhere.name
    fleet = core_of_fleet(["web"])
    (slot,) = fleet.slots().values()
    assert (slot.question, slot.query.question) == (elsewhere, elsewhere)
