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


def type_checking_nodes(tree: ast.AST) -> set[ast.AST]:
    """The nodes under ``if TYPE_CHECKING:``: imported for the type checker, never run."""
    return {
        inner
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for statement in node.body
        for inner in ast.walk(statement)
    }


def imports_of(path: Path, *, at_run_time: bool = False) -> set[str]:
    """Every swarmdns module that ``path`` imports, at the top or inside a function.

    With ``at_run_time``, leave out what only the type checker imports.
    """
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    tree = ast.parse(path.read_text())
    skipped = type_checking_nodes(tree) if at_run_time else set()
    for node in ast.walk(tree):
        if node in skipped:
            continue
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
RUN_TIME_GRAPH = {module_name(p): imports_of(p, at_run_time=True) for p in PACKAGE.rglob("*.py")}


def reachable(start: str, graph: dict[str, set[str]] = GRAPH) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in graph[todo.pop()] - seen:
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


# -- size and I/O rules ------------------------------------------------------------

#: Modules that may pass the size limit: the fake, which models a whole engine.
LONG_MODULES_ALLOWED = "swarmdns.testing"
MAX_MODULE_LINES = 700
MAX_FUNCTION_CODE_LINES = 60


def code_lines(source: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of code in a function's body, without its signature, docstring, blanks, comments."""
    docstring: set[int] = set()
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        docstring = set(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return sum(
        1
        for number in range(first.lineno, (node.end_lineno or node.lineno) + 1)
        if number not in docstring
        and (text := source[number - 1].strip())
        and not text.startswith("#")
    )


def test_no_module_passes_the_size_limit() -> None:
    too_long = {
        module_name(path): lines
        for path in PACKAGE.rglob("*.py")
        if not module_name(path).startswith(LONG_MODULES_ALLOWED)
        and (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}


def unexplained_long_functions(source: str) -> list[str]:
    """Functions of more than 60 lines of code whose docstring does not say why."""
    lines = source.splitlines()
    return [
        node.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and code_lines(lines, node) > MAX_FUNCTION_CODE_LINES
        and "long because" not in (ast.get_docstring(node) or "").lower()
    ]


def test_a_long_function_says_why_in_its_docstring() -> None:
    unexplained = [
        f"{module_name(path)}.{name}"
        for path in PACKAGE.rglob("*.py")
        for name in unexplained_long_functions(path.read_text())
    ]
    assert unexplained == []


def test_the_function_rule_counts_code_and_accepts_a_reason() -> None:
    body = "    x = 1\n" * 59 + "    # a comment\n\n"
    assert unexplained_long_functions(f"def short():\n{body}    return x\n") == []
    assert unexplained_long_functions(f"def long():\n{body}    x += 1\n    return x\n") == ["long"]
    explained = (
        f'def long():\n    """Long because it must be."""\n{body}    x += 1\n    return x\n'
    )
    assert unexplained_long_functions(explained) == []


#: Standard modules that reach the network, the disk or other processes.
IO_MODULES = {"asyncio", "io", "os", "pathlib", "select", "selectors", "socket", "subprocess"}


@pytest.mark.parametrize("module", ["swarmdns._watch", "swarmdns._fleet", "swarmdns._lookups"])
def test_the_watch_decisions_do_no_io(module: str) -> None:
    """Decisions import no I/O, neither directly nor through the package's modules."""
    reached = reachable(module, RUN_TIME_GRAPH) | {module}
    assert not reached & {"swarmdns._own_addresses", "swarmdns._sync", "swarmdns._async"}
    assert not any(m.startswith("swarmdns._backends") for m in reached)
    path = PACKAGE / (module.removeprefix("swarmdns.").replace(".", "/") + ".py")
    imported = {
        alias.name.partition(".")[0]
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").partition(".")[0]
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level == 0
    }
    assert not imported & IO_MODULES


def test_the_async_side_does_not_import_the_sync_front_end() -> None:
    assert "swarmdns._sync" not in reachable("swarmdns._async")
    for module in GRAPH:
        if module.startswith("swarmdns._backends"):
            assert not reachable(module) & {"swarmdns._sync", "swarmdns._async"}, module


# -- the architecture page -------------------------------------------------------------


def page_name(module: str) -> str:
    """How docs/architecture.md names a module: its path in the package, ``_cli/watch``."""
    parts = module.split(".")[1:]
    if not parts:
        return "__init__"
    is_package = (PACKAGE.joinpath(*parts) / "__init__.py").exists()
    return "/".join(parts) + ("/" if is_package else "")


def test_the_architecture_page_names_every_module() -> None:
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    missing = sorted(
        page_name(module) for module in MODULES if f"`{page_name(module)}`" not in page
    )
    assert missing == []
