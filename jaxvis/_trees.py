"""Pytree helpers: parameter paths as ``"layer.param"`` strings and the weight arrays of a model.

Every part of jaxvis that names a parameter array (the probe's weight tables, the training
recorder's histograms, the widgets) names it the same way, with these helpers.

Example::

    params = {"conv1": {"kernel": k, "bias": b}}
    flat_items(params)           # [(("conv1", "bias"), b), (("conv1", "kernel"), k)]
    path_string(("conv1", "value", "kernel"))   # "conv1.kernel"
    weight_arrays(params)        # {"conv1.bias": b, "conv1.kernel": k}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["flat_items", "key_name", "path_string", "weight_arrays"]

#: Path parts that wrap a value without naming it (NNX variables keep theirs in ``.value``).
_WRAPPERS = ("value", "raw_value")


def key_name(key: Any) -> str:
    """The plain name of one pytree path entry (a dict key, attribute name or list index)."""
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def flat_items(tree: Any) -> list[tuple[tuple[str, ...], Any]]:
    """``[(path as names, leaf)]`` for every leaf of ``tree``, in pytree order."""
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return [(tuple(key_name(k) for k in path), value) for path, value in leaves]


def path_string(path: Iterable[Any]) -> str:
    """``"layer.param"``: the path's names joined by dots, without value wrappers."""
    names = (p if isinstance(p, str) else key_name(p) for p in path)
    return ".".join(n for n in names if n not in _WRAPPERS)


def weight_arrays(tree: Any, default: str = "weights") -> dict[str, Any]:
    """``{"layer.param": array}`` of the float leaves of ``tree`` (traceable).

    A bare array (a path with no names) is called ``default``.
    """
    return {
        path_string(path) or default: leaf
        for path, leaf in flat_items(tree)
        if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)
    }
