"""Rendering a Jinja2 template into a file, atomically and only when its content changes.

``render_context()`` gives the names a template sees; ``Renderer`` compiles a
template once and renders it into its file with ``write_if_changed()``. A
template's errors name its file and line, with a hint when a name is one a
template gets only sometimes. A check may see the staged file before it
replaces DEST; DEST ``-`` is standard output. Jinja2, the extra
``swarmdns[render]``, is imported only to render.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import stat
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError
from .._model import Task

if TYPE_CHECKING:
    import jinja2

#: How to install what ``Renderer`` needs.
RENDER_EXTRA = "pip install 'swarmdns[render]'"

#: The DEST that means standard output: the render is printed, not written.
STDOUT = "-"


class CheckFailed(Exception):
    """The check refused the staged file; DEST was left as it was."""


class RenderStopped(Exception):
    """The render was stopped before DEST was written, because the watch is stopping."""


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def not_a_regular_file(path: Path) -> str | None:
    """What ``path`` is, if it exists and is not a regular file (a link is not followed)."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISREG(mode):
        return None
    return next((kind for is_kind, kind in _KINDS if is_kind(mode)), "not a regular file")


def render_context(
    current: Mapping[str, Sequence[IPv4Address]],
    tasks: Mapping[str, Sequence[Task]] | None = None,
    stale: Mapping[str, Collection[IPv4Address]] | None = None,
) -> dict[str, Any]:
    """The names a template sees.

    - ``services``: every service, ``{name: {"ips": [...], "tasks": [...],
      "stale": [...]}}``.
    - ``service``, ``ips``, ``tasks``, ``stale``: the service's name and its
      entry's values, when exactly one service is watched.

    ``ips`` are addresses as text, sorted. ``tasks`` (here and in each entry)
    are there only when ``tasks`` is given: a ``Task`` for each address,
    sorted by address, with the identity the lookup gave (only ``ip`` for an
    address the lookup did not show). ``stale`` comes with them: the
    addresses (as text, sorted) whose task has the identity a lookup gave
    before, because the last one failed.

    Args:
        current: Every service's addresses (``Batch.current``).
        tasks: Every service's tasks, with their identities (``swarmdns.tasks()``).
        stale: Each service's addresses whose identity is stale
            (``KnownIdentities``); none by default.
    """
    services: dict[str, dict[str, list[Any]]] = {}
    for name in sorted(current):
        addresses = sorted(IPv4Address(ip) for ip in current[name])
        entry: dict[str, list[Any]] = {"ips": [str(ip) for ip in addresses]}
        if tasks is not None:
            found = {task.ip: task for task in tasks.get(name, ())}
            entry["tasks"] = [found.get(ip) or Task(ip=ip) for ip in addresses]
            old = (stale or {}).get(name, ())
            entry["stale"] = [str(ip) for ip in addresses if ip in old]
        services[name] = entry
    context: dict[str, Any] = {"services": services}
    if len(services) == 1:
        ((name, entry),) = services.items()
        context["service"] = name
        context.update(entry)
    return context


def _load_template(path: Path) -> jinja2.Template:
    try:
        import jinja2  # noqa: PLC0415 - an optional extra, needed only to render
    except ImportError as error:
        raise ConfigurationError(
            f"rendering the template {str(path)!r} needs Jinja2, which is not installed;"
            f" install it with: {RENDER_EXTRA}",
            source=str(path),
        ) from error
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(path.parent),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - configuration files, not HTML
    )
    try:
        return environment.get_template(path.name)
    except jinja2.TemplateSyntaxError as error:
        where = _where(error.filename or str(path), error.lineno)
        raise ConfigurationError(
            f"{where}: {error.message}; fix the template", source=str(path)
        ) from None
    except jinja2.TemplateNotFound:
        raise ConfigurationError(
            f"the template {str(path)!r} does not exist; check the path", source=str(path)
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigurationError(
            f"cannot read the template {str(path)!r} ({error}); it must be UTF-8 text",
            source=str(path),
        ) from None


def _where(filename: str, line: int | None) -> str:
    return f"template {filename!r}" + (f", line {line}" if line is not None else "")


def _template_line(error: BaseException) -> tuple[str, int] | None:
    """The innermost template line in ``error``'s traceback (Jinja2 puts templates there)."""
    import traceback  # noqa: PLC0415 - only on trouble

    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        name = frame.filename
        if not name.endswith(".py") and not name.startswith("<") and frame.lineno is not None:
            return name, frame.lineno
    return None


_UNDEFINED = re.compile(r"'(\w+)' is undefined")


def _hint(message: str, context: Mapping[str, object]) -> str:
    """What to do about an undefined name, if it is one of the names a template may get."""
    match = _UNDEFINED.fullmatch(message)
    if match is None or match[1] in context:
        return ""
    if match[1] in ("service", "ips"):
        return (
            f" ({match[1]} is set only when one service is watched; with several, use"
            " services['NAME'].ips)"
        )
    if match[1] in ("tasks", "stale"):
        are = "are" if match[1] == "tasks" else "is"
        return f" ({match[1]} {are} set only when the tasks' identities are looked up)"
    return f" (the template gets {', '.join(sorted(context))})"


def write_if_changed(
    path: Path,
    data: bytes,
    *,
    check: Callable[[Path], bool] | None = None,
    any_file: bool = False,
) -> bool:
    """Replace ``path`` with ``data`` atomically, unless it holds that already; True if it changed.

    The data goes to a temporary file in the same directory, is flushed to
    disk, and replaces ``path`` in one rename: a reader sees the old file or
    the new one, never part of one. The new file keeps the old one's mode
    (and owner, where allowed); a new file gets 0o644 less the umask. On any
    error, the temporary file is removed and ``path`` is left as it was.

    Args:
        path: The file to write.
        data: Its new content.
        check: Called with the staged file's path before it replaces
            ``path``; False leaves ``path`` as it was (``CheckFailed``).
        any_file: Replace ``path`` even if it is not a regular file (a
            symbolic link, a FIFO, a device); otherwise that is refused.

    Raises:
        OSError: ``path`` or its directory could not be read or written, or
            ``path`` is not a regular file (and ``any_file`` is False).
        CheckFailed: ``check`` refused the staged file.
    """
    kind = not_a_regular_file(path)
    if kind is not None and (not any_file or kind == "a directory"):
        raise OSError(
            errno.EISDIR if kind == "a directory" else errno.EEXIST,
            f"{str(path)!r} is {kind}, not a regular file, and is not replaced unless asked"
            " (give a file's path instead)",
        )
    info: os.stat_result | None = None
    if kind is None:
        try:
            with path.open("rb") as old:
                info = os.fstat(old.fileno())
                if old.read() == data:
                    return False
        except FileNotFoundError:
            pass
    # An old file's mode is set before anything is written; until then, only we may read.
    descriptor, temporary = _create_temporary(path, 0o600 if info is not None else 0o644)
    try:
        with os.fdopen(descriptor, "wb") as new:
            if info is not None:
                if (info.st_uid, info.st_gid) != (os.geteuid(), os.getegid()):
                    with contextlib.suppress(PermissionError):
                        os.fchown(new.fileno(), info.st_uid, info.st_gid)
                os.fchmod(new.fileno(), stat.S_IMODE(info.st_mode))
            new.write(data)
            new.flush()
            os.fsync(new.fileno())
        if check is not None and not check(temporary):
            raise CheckFailed(
                f"the check refused the staged file; {str(path)!r} was left as it was"
            )
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _sync_directory(path.parent)
    return True


def _create_temporary(path: Path, mode: int) -> tuple[int, Path]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    while True:
        temporary = path.with_name(f".{path.name}.{os.urandom(4).hex()}.swarmdns-tmp")
        try:
            return os.open(temporary, flags, mode), temporary
        except FileExistsError:  # pragma: no cover - 1 in 4 billion
            continue


def _sync_directory(directory: Path) -> None:
    """Flush the rename to disk too, where the system allows it."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _describe(error: Exception, template: Path) -> str:
    """What went wrong in a template, in a few words."""
    import jinja2  # noqa: PLC0415 - loaded already: a template ran

    if isinstance(error, jinja2.TemplateNotFound):
        return (
            f"the template it includes, {error.name!r}, does not exist"
            f" (templates are found in {str(template.parent)!r})"
        )
    message = str(error) if error.args else type(error).__name__
    if isinstance(error, jinja2.TemplateError):
        return message
    return f"{type(error).__name__}: {message}"


class Renderer:
    """Renders a Jinja2 template into a file, atomically, when the content changes.

    The template is read and compiled here, once, so that a mistake in it
    shows at start. An undefined name is an error (``StrictUndefined``),
    nothing is escaped, a trailing newline is kept, and ``{% include %}``
    finds templates next to this one. Jinja2 is the extra ``swarmdns[render]``.

    Args:
        template_path: The Jinja2 template.
        dest_path: The file to write; ``-`` (``STDOUT``): the render goes to
            ``emit`` instead, each time it changes.
        any_file: Replace DEST even when it is not a regular file (see
            ``write_if_changed()``).
        emit: Where a render for ``-`` goes (by default, printed on stdout).

    Raises:
        ConfigurationError: Jinja2 is not installed, or the template cannot
            be read or compiled (the message names its file and line).
    """

    def __init__(
        self,
        template_path: str | os.PathLike[str],
        dest_path: str | os.PathLike[str],
        *,
        any_file: bool = False,
        emit: Callable[[str], object] | None = None,
    ) -> None:
        self.template_path = Path(template_path)
        self.dest_path = Path(dest_path)
        self.to_stdout = os.fspath(dest_path) == STDOUT
        self._any_file = any_file
        self._emit = emit if emit is not None else functools.partial(print, end="", flush=True)
        self._printed: str | None = None
        self._template = _load_template(self.template_path)

    def __repr__(self) -> str:
        return f"<Renderer {str(self.template_path)!r} -> {str(self.dest_path)!r}>"

    def render_text(
        self, context: Mapping[str, Any], *, stop: threading.Event | None = None
    ) -> str:
        """The template's output for ``context`` (see ``render_context()``), without writing.

        Args:
            context: The names the template sees.
            stop: Once set, rendering stops at the template's next piece of
                output (``RenderStopped``): the watch is stopping.

        Raises:
            ConfigurationError: The template failed, such as on an undefined name
                (the message names its file and line).
            RenderStopped: ``stop`` was set.
        """
        pieces: list[str] = []
        try:
            for piece in self._template.generate(context):
                if stop is not None and stop.is_set():
                    break
                pieces.append(piece)
        except Exception as error:
            found = _template_line(error)
            where = _where(*found) if found else _where(str(self.template_path), None)
            message = _describe(error, self.template_path)
            raise ConfigurationError(
                f"{where}: {message}{_hint(message, context)};"
                f" {str(self.dest_path)!r} was left as it was",
                source=str(self.template_path),
            ) from error
        if stop is not None and stop.is_set():
            raise RenderStopped(
                f"rendering {str(self.template_path)!r} was stopped: the watch is stopping;"
                f" {str(self.dest_path)!r} was left as it was"
            )
        return "".join(pieces)

    def render(
        self,
        context: Mapping[str, Any],
        *,
        check: Callable[[Path], bool] | None = None,
        stop: threading.Event | None = None,
    ) -> bool:
        """Render ``context`` into DEST, if that changes it; return whether it changed.

        Args:
            context: The names the template sees.
            check: Given the staged file before it replaces DEST (see
                ``write_if_changed()``); not for ``-``.
            stop: See ``render_text()``.

        Raises:
            ConfigurationError: The template failed; DEST was left as it was.
            OSError: DEST could not be written, or is not a regular file; it
                was left as it was, and no temporary file stays behind.
            CheckFailed: ``check`` refused the render; DEST was left as it was.
            RenderStopped: ``stop`` was set; DEST was left as it was.
        """
        text = self.render_text(context, stop=stop)
        if self.to_stdout:
            if text == self._printed:
                return False
            self._emit(text)
            self._printed = text
            return True
        try:
            return write_if_changed(
                self.dest_path, text.encode(), check=check, any_file=self._any_file
            )
        except OSError as error:
            if error.errno == errno.EEXIST:
                how = " (--render-any-dest replaces it anyway)"
            else:
                how = "; its directory must be writable, as the file is replaced whole"
            raise OSError(
                error.errno,
                f"cannot write {str(self.dest_path)!r} (rendered from"
                f" {str(self.template_path)!r}): {error.strerror or error}{how}",
            ) from error
