"""Completeness of integrated gradients on the trained zoo models."""

from __future__ import annotations

import numpy as np
import pytest

import jaxvis as jv


@pytest.mark.parametrize("name", ["mnist_cnn", "shapes_cnn"])
def test_completeness_on_zoo_models(name: str) -> None:
    try:
        zoo = jv.zoo.load(name)
    except FileNotFoundError as err:
        pytest.skip(f"zoo weights not trained yet: {err}")
    x, y = zoo.x_test[:16], zoo.y_test[:16]
    rel = {}
    for steps in (10, 50, 200):
        res = jv.attribution.integrated_gradients(zoo.probe, x, y, steps=steps)
        rel[steps] = float(np.median(res.relative_delta))
    print(name, "median |delta| / |f(x) - f(b)| by steps:", rel)
    assert rel[50] < 0.02
    assert rel[10] > rel[50] > rel[200] or rel[200] < 1e-3
