"""The package's shape: layers without cycles, and sync and async twins that agree."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import swarmdns
import swarmdns.aio

PACKAGE = Path(swarmdns.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every swarmdns module that ``path`` imports, at the top or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = f"{base}.{node.module}" if node.level and node.module else node.module
            target = target or base
            for alias in node.names:  # a submodule, or a name from ``target``
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in MODULES else target)
    return {m for m in found if m in MODULES} - {name}


MODULES = {module_name(p) for p in PACKAGE.rglob("*.py")}
GRAPH = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def reachable(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in GRAPH[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_no_module_imports_itself_through_others() -> None:
    assert sorted(name for name in GRAPH if name in reachable(name)) == []


@pytest.mark.parametrize(
    "module", ["swarmdns._sync", "swarmdns._lookups", "swarmdns._watch", "swarmdns._backends.base"]
)
def test_the_sync_side_never_reaches_the_async_side(module: str) -> None:
    assert not reachable(module) & {"swarmdns._async", "swarmdns.aio", "swarmdns._watcher"}


def test_the_async_side_does_not_import_the_sync_side() -> None:
    assert "swarmdns._sync" not in GRAPH["swarmdns._async"]


FRONT_ENDS = {"swarmdns", "swarmdns._sync", "swarmdns._async", "swarmdns.aio", "swarmdns._watcher"}


@pytest.mark.parametrize(
    "module", sorted(m for m in MODULES if m.startswith("swarmdns._backends"))
)
def test_no_backend_reaches_a_front_end(module: str) -> None:
    reached = reachable(module)
    assert not reached & FRONT_ENDS
    assert not any(m.startswith("swarmdns._cli") for m in reached)


def test_the_public_aio_module_only_re_exports() -> None:
    assert GRAPH["swarmdns.aio"] == {"swarmdns._async"}
    assert all(
        getattr(swarmdns.aio, name).__module__ == "swarmdns._async"
        for name in swarmdns.aio.__all__
    )


def test_decisions_do_no_io() -> None:
    for module in ("swarmdns._lookups", "swarmdns._names", "swarmdns._model", "swarmdns._memo"):
        assert not any(m.startswith("swarmdns._backends") for m in reachable(module)), module


TWINS = ["service_vip", "task_ips", "tasks", "watch_tasks", "watch_services", "wait_for_tasks"]
ITERATORS = {"watch_tasks", "watch_services"}


def parameters(function: Callable[..., Any]) -> list[tuple[str, object, object, object]]:
    return [
        (p.name, p.kind, p.default, p.annotation)
        for p in inspect.signature(function).parameters.values()
    ]


@pytest.mark.parametrize("name", TWINS)
def test_sync_and_async_twins_take_the_same_arguments(name: str) -> None:
    sync, asynchronous = getattr(swarmdns, name), getattr(swarmdns.aio, name)

    assert parameters(sync) == parameters(asynchronous)
    assert inspect.iscoroutinefunction(asynchronous) == (name not in ITERATORS)


def test_the_thread_watcher_takes_what_watch_tasks_takes_and_a_callback() -> None:
    watcher = parameters(swarmdns.TaskWatcher.__init__)[1:]  # without self

    assert watcher[:-1] == parameters(swarmdns.watch_tasks)
    assert watcher[-1][0] == "on_change"


def test_the_fleet_watcher_takes_what_watch_services_takes_and_a_callback() -> None:
    watcher = parameters(swarmdns.FleetWatcher.__init__)[1:]  # without self

    assert watcher[:-1] == parameters(swarmdns.watch_services)
    assert watcher[-1][0] == "on_change"


def test_every_watch_shows_the_same_state() -> None:
    for watch in (swarmdns.TaskWatch, swarmdns.aio.AsyncTaskWatch, swarmdns.TaskWatcher):
        assert isinstance(inspect.getattr_static(watch, "current"), property)
        assert isinstance(inspect.getattr_static(watch, "health"), property)


def test_every_fleet_watch_shows_and_does_the_same() -> None:
    shared = ("current", "health", "services", "add", "discard", "wait_for_tasks")
    for name in shared:
        watcher = inspect.getattr_static(swarmdns.FleetWatcher, name)
        sync = inspect.getattr_static(swarmdns.FleetWatch, name)
        assert type(watcher) is type(sync), name
        asynchronous = inspect.getattr_static(swarmdns.aio.AsyncFleetWatch, name)
        assert type(sync) is type(asynchronous), name
        if callable(sync):
            assert parameters(sync) == parameters(asynchronous), name


def test_each_front_end_drives_a_watch_s_steps_one_way() -> None:
    """Only ``_run_steps`` asks a ``Stepper`` what to do; nothing else sends into steps."""
    drivers = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                called = {
                    call.func.attr
                    for call in ast.walk(node)
                    if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                }
                if called & {"next_action", "send"} and "steps" in ast.unparse(node.args):
                    drivers.add((module_name(path), node.name))

    assert drivers == {("swarmdns._sync", "_run_steps"), ("swarmdns._async", "_run_steps")}
