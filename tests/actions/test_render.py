"""Rendering: the names a template sees, writing its file, and the template's errors."""

from __future__ import annotations

import importlib.util
import os
import re
import stat
import sys
import threading
from pathlib import Path

import pytest

from swarmdns import ConfigurationError, Task, _actions
from swarmdns._actions.render import RENDER_EXTRA, Renderer, render_context, write_if_changed

from .helpers import ip


def no_leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if "swarmdns-tmp" in p.name)


# -- the template's names -----------------------------------------------------------


def test_the_context_of_one_service() -> None:
    context = render_context({"web": (ip(10), ip(9))})

    assert context == {
        "service": "web",
        "ips": ["10.0.1.9", "10.0.1.10"],
        "services": {"web": {"ips": ["10.0.1.9", "10.0.1.10"]}},
    }


def test_the_context_of_several_services_has_only_the_mapping() -> None:
    context = render_context({"web": (ip(3),), "api": ()})

    assert context == {"services": {"api": {"ips": []}, "web": {"ips": ["10.0.1.3"]}}}


def test_the_context_with_tasks() -> None:
    named = Task(ip=ip(3), name="web.1.abc", service="web", slot=1, task_id="abc", network="n")
    gone = Task(ip=ip(99), name="web.9.old")  # the lookup saw a task since gone

    context = render_context({"web": (ip(4), ip(3))}, {"web": (gone, named)})

    assert context["tasks"] == [named, Task(ip=ip(4))]  # by address; ip only when not seen
    assert context["services"]["web"]["tasks"] == context["tasks"]


# -- rendering -------------------------------------------------------------------


def one_service(*octets: int) -> dict[str, object]:
    return render_context({"web": tuple(ip(n) for n in octets)})


def test_render_writes_the_file_when_it_changes(template: Path, tmp_path: Path) -> None:
    dest = tmp_path / "upstreams.conf"
    renderer = Renderer(template, dest)

    assert renderer.render(one_service(3, 4)) is True
    assert dest.read_text() == "server 10.0.1.3:80;\nserver 10.0.1.4:80;\n"
    first = dest.stat()

    assert renderer.render(one_service(4, 3)) is False  # the same content
    assert dest.stat().st_ino == first.st_ino
    assert dest.stat().st_mtime_ns == first.st_mtime_ns

    assert renderer.render(one_service(5)) is True
    assert dest.read_text() == "server 10.0.1.5:80;\n"
    assert dest.stat().st_ino != first.st_ino  # replaced, not written over
    assert no_leftovers(tmp_path) == []


def test_render_keeps_the_old_files_mode(template: Path, tmp_path: Path) -> None:
    dest = tmp_path / "upstreams.conf"
    dest.write_text("old\n")
    dest.chmod(0o640)

    assert Renderer(template, dest).render(one_service(3))
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o000, 0o644)])
def test_a_new_file_gets_0o644_less_the_umask(
    umask: int, mode: int, template: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "upstreams.conf"
    renderer = Renderer(template, dest)
    old = os.umask(umask)
    try:
        renderer.render(one_service(3))
    finally:
        os.umask(old)

    assert stat.S_IMODE(dest.stat().st_mode) == mode


def test_the_file_is_replaced_whole(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "upstreams.conf"
    dest.write_text("old\n")
    seen: list[tuple[str, list[str]]] = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:  # the new content is on disk before it replaces DEST
        seen.append((dest.read_text(), [p.read_text() for p in tmp_path.glob("*swarmdns-tmp")]))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    Renderer(template, dest).render(one_service(3, 4))

    assert seen[0] == ("old\n", ["server 10.0.1.3:80;\nserver 10.0.1.4:80;\n"])
    assert dest.read_text() == "server 10.0.1.3:80;\nserver 10.0.1.4:80;\n"


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_a_failed_write_leaves_the_file_and_no_temporary_file(
    failing: str, template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "upstreams.conf"
    dest.write_text("old\n")

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match="No space left on device") as caught:
        Renderer(template, dest).render(one_service(3))

    assert caught.value.errno == 28
    assert repr(str(dest)) in str(caught.value)
    assert repr(str(template)) in str(caught.value)
    assert dest.read_text() == "old\n"
    assert no_leftovers(tmp_path) == []


def test_an_unwritable_directory_raises_a_permission_error(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def refuse(path: object, flags: int, mode: int = 0o777) -> int:
        if "swarmdns-tmp" in str(path):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, mode)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(PermissionError, match="its directory must be writable"):
        Renderer(template, tmp_path / "out").render(one_service(3))


def test_write_if_changed_on_its_own(tmp_path: Path) -> None:
    path = tmp_path / "f"

    assert write_if_changed(path, b"a") is True
    assert write_if_changed(path, b"a") is False
    assert write_if_changed(path, b"") is True
    assert path.read_bytes() == b""


def test_the_trailing_newline_is_kept(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text("{{ service }}\n")
    dest = tmp_path / "out"

    Renderer(template, dest).render(one_service(3))

    assert dest.read_text() == "web\n"


def test_nothing_is_escaped(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text("{{ '<&>' }}")

    assert Renderer(template, tmp_path / "out").render_text({}) == "<&>"


def test_an_undefined_name_names_the_template_and_line_and_leaves_the_file(
    tmp_path: Path,
) -> None:
    template = tmp_path / "t.j2"
    template.write_text("first\n{% for ip in ips %}\n{{ ip }} {{ port }}\n{% endfor %}\n")
    dest = tmp_path / "out"
    dest.write_text("old\n")

    with pytest.raises(ConfigurationError) as caught:
        Renderer(template, dest).render(one_service(3))

    message = str(caught.value)
    assert message.startswith(f"template {str(template)!r}, line 3: 'port' is undefined")
    assert "the template gets ips, service, services" in message
    assert f"{str(dest)!r} was left as it was" in message
    assert caught.value.source == str(template)
    assert dest.read_text() == "old\n"
    assert no_leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("service", "service is set only when one service is watched"),
        ("ips", "with several, use services['NAME'].ips"),
        ("tasks", "tasks are set only when the tasks' identities are looked up"),
    ],
)
def test_a_name_that_is_not_set_says_why(name: str, words: str, tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text(f"{{{{ {name} }}}}")
    several = render_context({"web": (ip(3),), "api": ()})

    with pytest.raises(ConfigurationError, match=f"line 1: '{name}' is undefined") as caught:
        Renderer(template, tmp_path / "out").render(several)

    assert words in str(caught.value)


def test_a_missing_key_is_an_error_too(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text("{{ services.db.ips }}")

    with pytest.raises(ConfigurationError, match="line 1: 'dict object' has no attribute 'db'"):
        Renderer(template, tmp_path / "out").render(one_service(3))


def test_an_error_in_an_included_template_names_that_one(tmp_path: Path) -> None:
    (tmp_path / "part.j2").write_text("ok\n{{ nope }}\n")
    template = tmp_path / "main.j2"
    template.write_text("{% include 'part.j2' %}")

    with pytest.raises(ConfigurationError) as caught:
        Renderer(template, tmp_path / "out").render(one_service(3))

    assert str(caught.value).startswith(f"template {str(tmp_path / 'part.j2')!r}, line 2:")


def test_an_included_template_that_does_not_exist(tmp_path: Path) -> None:
    template = tmp_path / "main.j2"
    template.write_text("a\n{% include 'missing.j2' %}")

    with pytest.raises(ConfigurationError) as caught:
        Renderer(template, tmp_path / "out").render(one_service(3))

    assert str(caught.value).startswith(
        f"template {str(template)!r}, line 2: the template it includes, 'missing.j2',"
        f" does not exist (templates are found in {str(tmp_path)!r})"
    )


def test_a_python_error_in_a_template_is_named_too(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text("\n\n{{ ips | length // 0 }}")

    with pytest.raises(ConfigurationError, match="line 3: ZeroDivisionError: "):
        Renderer(template, tmp_path / "out").render(one_service(3))


def test_a_syntax_error_shows_at_once_with_its_line(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text("fine\n{% for ip in ips %}\n{{ ip }\n")

    with pytest.raises(ConfigurationError) as caught:
        Renderer(template, tmp_path / "out")

    assert str(caught.value).startswith(f"template {str(template)!r}, line 3: ")
    assert str(caught.value).endswith("; fix the template")
    assert not (tmp_path / "out").exists()


def test_a_template_that_is_not_text(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_bytes(b"\xff\xfe\x00")

    with pytest.raises(ConfigurationError, match="must be UTF-8 text"):
        Renderer(template, tmp_path / "out")


def test_a_template_that_went_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        Renderer(tmp_path / "gone.j2", tmp_path / "out")


def test_without_jinja2_the_error_says_what_to_install(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "jinja2", None)  # import jinja2 now raises ImportError

    with pytest.raises(ConfigurationError) as caught:
        Renderer(template, tmp_path / "out")

    assert "needs Jinja2, which is not installed" in str(caught.value)
    assert str(caught.value).endswith(RENDER_EXTRA)
    assert RENDER_EXTRA == "pip install 'swarmdns[render]'"
    assert isinstance(caught.value.__cause__, ImportError)


def test_jinja2_is_imported_only_to_render(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jinja2", None)  # import jinja2 now raises ImportError
    name = "swarmdns._actions_without_jinja2"
    spec = importlib.util.spec_from_file_location(
        name, _actions.__file__, submodule_search_locations=list(_actions.__path__)
    )
    assert spec is not None
    assert spec.loader is not None
    fresh = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, fresh)

    try:
        spec.loader.exec_module(fresh)  # an ImportError if a module of the package imported jinja2
    finally:  # its modules, loaded afresh under the new name
        for loaded in [module for module in sys.modules if module.startswith(f"{name}.")]:
            del sys.modules[loaded]

    assert fresh.SettleWindow(1.0).max_wait == 4.0


# -- safe destinations, checks, standard output, stopping -------------------------------


def test_write_refuses_a_dest_that_is_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it to compare would block: it is never opened
    link = tmp_path / "link"
    link.symlink_to("/dev/null")

    for path, kind in (fifo, "a named pipe (FIFO)"), (link, "a symbolic link"):
        with pytest.raises(OSError, match=re.escape(f"is {kind}, not a regular file")):
            write_if_changed(path, b"data")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.readlink(link) == "/dev/null"
    assert no_leftovers(tmp_path) == []


def test_write_replaces_a_symlink_when_asked_but_never_a_directory(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"old")
    link = tmp_path / "link"
    link.symlink_to(target)
    directory = tmp_path / "directory"
    directory.mkdir()

    assert write_if_changed(link, b"new", any_file=True)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        write_if_changed(directory, b"new", any_file=True)
    assert (link.is_symlink(), link.read_bytes(), target.read_bytes()) == (False, b"new", b"old")


def test_the_check_sees_the_staged_file_before_it_replaces_dest(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.write_bytes(b"old")
    seen: list[tuple[Path, bytes, bytes]] = []

    def check(staged: Path) -> bool:
        seen.append((staged, staged.read_bytes(), dest.read_bytes()))
        return staged.read_bytes() == b"good"

    with pytest.raises(_actions.render.CheckFailed):
        write_if_changed(dest, b"bad", check=check)
    assert dest.read_bytes() == b"old"
    assert write_if_changed(dest, b"good", check=check)

    assert [(content, then) for _, content, then in seen] == [(b"bad", b"old"), (b"good", b"old")]
    assert all(staged.parent == tmp_path for staged, _, _ in seen)
    assert dest.read_bytes() == b"good"
    assert no_leftovers(tmp_path) == []


def test_a_render_to_stdout_is_emitted_when_it_changes(template: Path) -> None:
    emitted: list[str] = []
    renderer = Renderer(template, "-", emit=emitted.append)

    changes = [renderer.render(one_service(*octets)) for octets in [(3,), (3,), (3, 4)]]

    assert changes == [True, False, True]
    assert emitted == ["server 10.0.1.3:80;\n", "server 10.0.1.3:80;\nserver 10.0.1.4:80;\n"]
    assert not Path("-").exists()


def test_a_stopped_render_writes_nothing(tmp_path: Path) -> None:
    template = tmp_path / "slow.j2"
    template.write_text("{% for i in range(10**9) %}{{ stop_now() }}{% endfor %}")
    dest = tmp_path / "dest"
    stop = threading.Event()
    calls: list[int] = []

    def stop_now() -> str:
        calls.append(1)
        stop.set()  # as if the watch were stopped now, mid-render
        return "."

    with pytest.raises(_actions.render.RenderStopped, match="left as it was"):
        Renderer(template, dest).render({"stop_now": stop_now}, stop=stop)
    assert len(calls) == 1
    assert not dest.exists()
