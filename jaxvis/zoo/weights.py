"""Save and load an NNX model's parameters as a flat, pickle-free ``.npz`` file.

Keys are the ``/``-joined paths of the model's ``nnx.State`` (``"conv1/kernel"``); one extra
key, ``__meta__``, holds a JSON string (training settings, test accuracy). Files load with
``np.load(path, allow_pickle=False)``.

Example::

    save_weights(model, "/tmp/mnist.npz", meta={"test_accuracy": 0.97})
    load_weights(MnistCNN(nnx.Rngs(0)), "/tmp/mnist.npz")
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from jaxvis._files import atomic_savez

__all__ = ["META_KEY", "WEIGHTS_DIR", "flat_state", "load_weights", "read_meta", "save_weights"]

META_KEY = "__meta__"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def _path_key(path: tuple[Any, ...]) -> str:
    return "/".join(str(p) for p in path)


def flat_state(model: nnx.Module) -> dict[str, np.ndarray]:
    """``{"conv1/kernel": array, ...}``: every variable of ``model`` as a numpy array."""
    flat = nnx.to_flat_state(nnx.state(model))
    return {_path_key(path): np.asarray(variable.get_value()) for path, variable in flat}


def save_weights(
    model: nnx.Module, path: str | os.PathLike[str], meta: dict[str, Any] | None = None
) -> Path:
    """Write ``model``'s state to ``path`` atomically; ``meta`` is stored as JSON."""
    arrays: dict[str, np.ndarray] = dict(flat_state(model))
    arrays[META_KEY] = np.array(json.dumps(meta or {}, sort_keys=True))
    return atomic_savez(path, arrays, compress=True)


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON metadata stored with a weights file (``{}`` when absent)."""
    with np.load(path, allow_pickle=False) as f:
        return json.loads(str(f[META_KEY])) if META_KEY in f.files else {}


def load_weights(model: nnx.Module, path: str | os.PathLike[str]) -> nnx.Module:
    """Copy the arrays of ``path`` into ``model`` (in place) and return it.

    ``model`` may be abstract (built under ``nnx.eval_shape``): loading then fills it without
    ever running the random initialisers. Every variable must be present with its shape.
    """
    with np.load(path, allow_pickle=False) as f:
        stored = {key: f[key] for key in f.files if key != META_KEY}
    state = nnx.state(model)
    flat = nnx.to_flat_state(state)
    expected = {_path_key(path): variable for path, variable in flat}
    missing = sorted(expected.keys() - stored.keys())
    unexpected = sorted(stored.keys() - expected.keys())
    if missing or unexpected:
        raise ValueError(
            f"weights file {os.fspath(path)!r} does not match the model: "
            f"missing {missing or 'nothing'}, unexpected {unexpected or 'nothing'}"
        )
    for key, variable in expected.items():
        want = tuple(variable.get_value().shape)
        if stored[key].shape != want:
            raise ValueError(
                f"weights file {os.fspath(path)!r}: {key} has shape {stored[key].shape}, "
                f"the model expects {want}"
            )
        dtype = variable.get_value().dtype
        variable.set_value(jax.numpy.asarray(stored[key], dtype=dtype))
    nnx.update(model, nnx.from_flat_state(flat))
    return model
