"""Shared pieces of the feature-visualisation-default tests and benchmark: a model not in the
zoo, the data set each model is compared with, and the independent data set maximum."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np

import jaxvis as jv


class ReluNet(nn.Module):
    """A small ReLU CNN (not in the zoo): 8, 16, 24 channels, mean pooling between."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(nn.Conv(8, (3, 3), name="conv1")(x))
        x = nn.relu(nn.Conv(16, (3, 3), name="conv2")(x))
        x = nn.avg_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Conv(24, (3, 3), name="conv3")(x))
        return nn.Dense(8, name="head")(x.mean(axis=(1, 2)))


def relu_net() -> tuple[jv.Probe, np.ndarray]:
    """The ReLU net with random weights on the shapes images, and those images."""
    data = jv.zoo.load_data("shapes_cnn")
    module = ReluNet()
    variables = module.init(jax.random.key(3), data.x_test[:1])
    return jv.Probe(module, variables, input_shape=(32, 32, 3)), data.x_test


def model(name: str) -> tuple[jv.Probe, np.ndarray]:
    """``(probe, data set)`` for a zoo model (train and test images) or ``"relu_net"``."""
    if name == "relu_net":
        return relu_net()
    zoo = jv.zoo.load(name)
    return zoo.probe, np.concatenate([zoo.x_train, zoo.x_test])


def conv_layers(probe: jv.Probe) -> list:
    return [layer for layer in probe.layers if layer.kind == "Conv"]


def dataset_max(probe: jv.Probe, data: np.ndarray, layers: list[str]) -> dict[str, np.ndarray]:
    """Per layer, each channel's largest spatially averaged activation over ``data`` (numpy
    over ``probe.activations``: an independent reference for ``render``'s ``dataset_best``)."""
    best: dict[str, np.ndarray] = {}
    for i in range(0, len(data), 500):
        acts = probe.activations(data[i : i + 500], layers)
        for name, a in acts.items():
            m = np.asarray(a).mean(axis=(1, 2)).max(axis=0)
            best[name] = np.maximum(best.get(name, -np.inf), m)
    return best
