"""Predictions and accuracy of an NNX classifier in jitted batches (for ``load`` and ``train``).

Its own module so that :mod:`jaxvis.zoo.load` (``ZooModel.accuracy``) and
:mod:`jaxvis.zoo.train` (which builds and loads models) do not import each other.

Example::

    zoo = jv.zoo.load("mnist_cnn")
    accuracy(zoo.model, zoo.x_test, zoo.y_test)     # ~0.97
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["accuracy", "predict"]


def predict(model: nnx.Module, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Predicted classes of ``x``, computed in jitted batches of ``batch_size``."""
    graphdef, params = nnx.split(model)
    forward = _forward(graphdef)
    out = []
    for i in range(0, len(x), batch_size):
        out.append(np.asarray(jnp.argmax(forward(params, jnp.asarray(x[i : i + batch_size])), -1)))
    return np.concatenate(out) if out else np.zeros((0,), np.int32)


#: One jitted forward pass per model structure (graphdef), shared by every call.
_FORWARDS: dict[Any, Callable] = {}


def _forward(graphdef: Any) -> Callable:
    if graphdef not in _FORWARDS:
        _FORWARDS[graphdef] = jax.jit(lambda params, x: nnx.merge(graphdef, params)(x))
    return _FORWARDS[graphdef]


def accuracy(model: nnx.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y``."""
    return float(np.mean(predict(model, x) == np.asarray(y)))
