"""One cache for per-probe values (compiled functions, traced shapes), weakly keyed on the probe.

A probe's compiled functions live as long as the probe: when the user drops the probe, its
entries go with it (``weakref.WeakKeyDictionary``), so a notebook that makes many probes does
not keep their programs alive.

Example::

    _STEPS = PerProbe()

    def step(probe, layer):
        return _STEPS.get(probe, ("step", layer), lambda: jit(make_step(probe, layer)))
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["PerProbe"]

T = TypeVar("T")


class PerProbe(Generic[T]):
    """``{probe: {key: value}}``, each value built once by ``make()`` on first use."""

    def __init__(self) -> None:
        self._store: weakref.WeakKeyDictionary[Any, dict[Hashable, T]] = weakref.WeakKeyDictionary()

    def get(self, probe: Any, key: Hashable, make: Callable[[], T]) -> T:
        """The value for ``(probe, key)``, built with ``make()`` the first time."""
        cache = self._store.setdefault(probe, {})
        if key not in cache:
            cache[key] = make()
        return cache[key]

    def entries(self, probe: Any) -> dict[Hashable, T]:
        """The (live) ``{key: value}`` dict of ``probe`` (empty if none)."""
        return self._store.setdefault(probe, {})

    def clear(self) -> None:
        """Forget every probe's values (e.g. to release compiled programs in tests)."""
        self._store.clear()

    def __len__(self) -> int:
        return len(self._store)
