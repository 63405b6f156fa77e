"""Acting on changes (being split into one module per concern)."""

from .child import (
    ACTIONS_LOGGER,
    RENDER_EXTRA,
    ActionLoop,
    Actions,
    Batch,
    CommandResult,
    CommandRunner,
    PendingChanges,
    Renderer,
    SettleWindow,
    render_context,
    write_if_changed,
)

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
    "render_context",
    "write_if_changed",
]
