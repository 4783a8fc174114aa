"""Small models for the attribution tests (no zoo weights needed)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import jaxvis as jv


class Activation(nnx.Module):
    """An activation layer of its own, as in the zoo models (kind "Activation")."""

    def __init__(self, fn):  # noqa: ANN001
        self.fn = fn

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fn(x)


class Mean(nnx.Module):
    def __call__(self, x: jax.Array) -> jax.Array:
        return x.mean(axis=(1, 2))


class SmallCNN(nnx.Module):
    """conv-act-conv-act-mean-dense: nonlinear, fast, with activation layers."""

    def __init__(self, rngs: nnx.Rngs, fn=jnp.tanh, cin: int = 2, n_classes: int = 3) -> None:  # noqa: ANN001
        self.conv1 = nnx.Conv(cin, 4, (3, 3), rngs=rngs)
        self.act1 = Activation(fn)
        self.conv2 = nnx.Conv(4, 5, (3, 3), rngs=rngs)
        self.act2 = Activation(fn)
        self.gap = Mean()
        self.dense = nnx.Linear(5, n_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.act2(self.conv2(self.act1(self.conv1(x))))
        return self.dense(self.gap(h))


@functools.cache
def small_probe(fn=jnp.tanh, seed: int = 0, size: int = 8, cin: int = 2) -> jv.Probe:  # noqa: ANN001
    model = SmallCNN(nnx.Rngs(seed), fn, cin)
    return jv.Probe(model, input_shape=(size, size, cin), class_names=("a", "b", "c"))


def images(n: int = 3, size: int = 8, cin: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(n, size, size, cin)).astype(np.float32)
