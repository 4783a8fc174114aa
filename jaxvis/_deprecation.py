"""Old public names kept for one release: a module ``__getattr__`` that warns on use.

Example::

    __getattr__ = deprecated_names(__name__, {"Attribution": ("AttributionExplorer", lambda: X)})
    jv.widgets.Attribution      # DeprecationWarning: ... renamed AttributionExplorer
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["deprecated_names"]


def deprecated_names(
    module: str,
    renamed: Mapping[str, tuple[str, Callable[[], Any]]],
    fallback: Callable[[str], Any] | None = None,
) -> Callable[[str], Any]:
    """A module ``__getattr__``: ``renamed[old] = (new name, get the object)`` warns and
    returns the object; other names go to ``fallback`` (or raise ``AttributeError``)."""

    def __getattr__(name: str) -> Any:
        if name in renamed:
            new, get = renamed[name]
            warnings.warn(
                f"{module}.{name} is deprecated and will be removed in the next release: it was "
                f"renamed {module}.{new} (see CHANGELOG.md)",
                DeprecationWarning,
                stacklevel=2,
            )
            return get()
        if fallback is not None:
            return fallback(name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
