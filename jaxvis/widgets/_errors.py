"""Showing errors inside a widget, so a failing callback never kills the widget.

Every jaxvis widget owns an :class:`ErrorBox`. Callbacks are wrapped with
:meth:`ErrorBox.guard`: an exception is caught, its message (and traceback, folded) is shown in
place inside a ``<div class="jv-error">``, and the next successful call clears it.

Example::

    box = ErrorBox()

    @box.guard
    def on_change(change):
        ...  # may raise; the widget shows the message and stays usable
"""

from __future__ import annotations

import functools
import html
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import ipywidgets as W

__all__ = ["ErrorBox"]

F = TypeVar("F", bound=Callable[..., Any])


class ErrorBox(W.HTML):
    """An HTML area that is empty until a guarded callback raises.

    While an error is shown the area holds ``<div class="jv-error">``; ``error`` holds the last
    message (``""`` when the last guarded call succeeded).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(value="", **kwargs)
        self.add_class("jv-error-box")
        self.error: str = ""
        self.exception: BaseException | None = None

    def show(self, exc: BaseException, context: str = "") -> None:
        """Display ``exc`` (with a folded traceback) in the box."""
        message = f"{type(exc).__name__}: {exc}"
        where = f"{context}: " if context else ""
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.error = message
        self.exception = exc
        self.value = (
            '<div class="jv-error" style="color:#a00;background:#fee;border:1px solid #d88;'
            'padding:4px 8px;border-radius:3px;font-family:monospace;white-space:pre-wrap">'
            f"<b>{html.escape(where)}{html.escape(message)}</b>"
            f"<details><summary>traceback</summary>{html.escape(tb)}</details></div>"
        )

    def clear(self) -> None:
        """Remove any shown error."""
        if self.error or self.value:
            self.error = ""
            self.exception = None
            self.value = ""

    def guard(self, fn: F) -> F:
        """Wrap a callback: exceptions are shown in the box instead of propagating.

        The box is cleared *before* the callback runs (the user acted again), so an error that
        a background thread started by the callback shows stays shown."""

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.clear()
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - shown to the user, widget stays alive
                self.show(exc, getattr(fn, "__name__", "").lstrip("_").replace("_", " "))
                return None

        return wrapper  # type: ignore[return-value]
