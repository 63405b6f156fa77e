"""Acting on changes, as consul-template does: render files and run a command once a burst settles.

``swarmdns watch --render TEMPLATE:DEST --exec CMD --wait MIN:MAX`` is made of
these pieces, one module per concern (as consul-template's ``config/wait.go``,
``renderer/``, ``child/`` and ``manager/runner.go``):

- ``settle``: ``SettleWindow`` decides when a burst of changes has settled
  (quiet for ``min_quiet``, or ``max_wait`` after its first change);
  ``PendingChanges`` merges the changes since the last action into a
  ``Batch``: each service's net change and every service's set. No I/O.
- ``render``: ``Renderer`` renders a Jinja2 template into a file, atomically
  and only when the content changes (``write_if_changed()``), with the names
  of ``render_context()``; a template's errors name its file and line.
  ``RENDER_EXTRA`` says how to install Jinja2.
- ``child``: ``CommandRunner`` runs a shell command with the batch as JSON on
  stdin, and stops it (its process group too) after a timeout, or when
  ``cancel()`` is called because the watch is stopping; ``CommandResult``.
- ``loop``: ``Template`` is a ``Renderer`` with its check (run on the staged
  file before it replaces DEST) and its command (run when its DEST
  changed); ``Actions`` does all of it for one batch, keeping the last
  identity of each task's address (``KnownIdentities``) so that a failed PTR
  lookup leaves a stale name, not an address; ``ActionLoop`` takes changes
  from any thread (a watcher's ``on_change``) and acts on one batch at a
  time; its ``stop()`` cuts the action under way short (``Actions.stop()``).
- ``supervise``: ``Supervisor`` starts a program once the first action is
  done, sends it a reload signal after each action that changed a file
  (after a random splay), forwards the signal that stops the watch, and
  tells when it exits; the decisions (``next_step()``, ``splay_delay()``,
  ``shell_script()``) are plain functions.
- ``report``: ``ActionEvent`` says what a render, a check, a command or the
  supervised program did (``watch --json`` prints it); ``ActionTally``
  counts them for ``watch --metrics``. No I/O.
- ``log``: ``ACTIONS_LOGGER``, the logger (``swarmdns.actions``) that says
  what the actions did and how they failed.

The package re-exports the names that code outside it imports.
"""

from .child import CommandResult, CommandRunner
from .log import ACTIONS_LOGGER
from .loop import ActionLoop, Actions, Template
from .render import RENDER_EXTRA, Renderer, render_context, write_if_changed
from .settle import Batch, PendingChanges, SettleWindow

__all__ = [
    "ACTIONS_LOGGER",
    "RENDER_EXTRA",
    "ActionLoop",
    "Actions",
    "Batch",
    "CommandResult",
    "CommandRunner",
    "PendingChanges",
    "Renderer",
    "SettleWindow",
    "Template",
    "render_context",
    "write_if_changed",
]
