"""``render``'s default settings truly maximise: on every conv layer of both zoo models and of
a ReLU net written here, the default image beats every data set image on its channel.

Four channels per layer (evenly spaced, fixed), all layers of a model in one vectorised batch,
256 steps; the whole-layer table is ``benchmarks/optvis_defaults.py``.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from _fv_models import conv_layers, dataset_max, model

import jaxvis as jv
from jaxvis.optvis import objectives as O

SAMPLE = 4


def _sample(c: int) -> list[int]:
    return sorted({int(round(i)) for i in np.linspace(0, c - 1, SAMPLE)})


@pytest.mark.parametrize("name", ["mnist_cnn", "shapes_cnn", "relu_net"])
def test_default_images_beat_every_dataset_image(name):
    probe, data = model(name)
    convs = conv_layers(probe)
    assert len(convs) >= 3
    best = dataset_max(probe, data, [layer.name for layer in convs])
    units = [(layer.name, c) for layer in convs for c in _sample(layer.shape[-1])]
    res = jv.optvis.render(probe, [O.channel(lay, c) for lay, c in units], steps=256, dataset=data)
    assert res.settings.startswith("auto")
    ref = np.asarray([best[lay][c] for lay, c in units])
    # render's own data set comparison agrees with the numpy reference
    np.testing.assert_allclose(res.dataset_best, ref, rtol=1e-4, atol=1e-5)
    beats = res.values > ref
    for layer in convs:
        mine = [b for (lay, _), b in zip(units, beats, strict=True) if lay == layer.name]
        assert np.mean(mine) >= 0.9, (layer.name, res.values, ref)
    np.testing.assert_array_equal(res.beats_dataset, beats)


def test_default_settings_follow_the_input_size():
    small = jv.optvis.defaults.auto(model("mnist_cnn")[0])
    assert small.param.kind == "pixel" and (small.transforms.jitter1, small.transforms.jitter2) == (
        2,
        1,
    )
    module = jv.zoo.resnet18(num_classes=10)
    big = jv.Probe(module, jv.zoo.init_variables(module, seed=0), input_shape=(224, 224, 3))
    pre = jv.optvis.defaults.auto(big)
    assert pre.param.kind == "fourier" and pre.param.decorrelate
    assert (pre.transforms.jitter1, pre.transforms.jitter2) == (14, 7)  # 1/16 and 1/32 of 224
    assert jv.optvis.defaults.auto_steps(big) == 512


def test_redirected_relu_revives_a_dead_start():
    """A unit behind a ReLU that is off on the whole start image: plain ascent has a zero
    gradient and never moves; the redirected gradient of the first steps switches it on."""
    kernel = np.full((3, 3, 3, 1), 1 / 27, np.float32)  # the local mean brightness

    def fn(params, x):
        z = jax.lax.conv_general_dilated(
            x, params["k"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        a = jv.tap("act", jax.nn.relu(z - params["t"]))  # on only above brightness 0.7
        return a.mean(axis=(1, 2))

    probe = jv.Probe(fn, {"k": kernel, "t": np.float32(0.7)}, input_shape=(8, 8, 3))
    kw = dict(steps=24, param=jv.optvis.pixel(sd=0.0), transforms=None)  # a grey start
    plain = jv.optvis.render(probe, "act:0", redirect_relu=0, **kw)
    lifted = jv.optvis.render(probe, "act:0", redirect_relu=16, **kw)
    np.testing.assert_array_equal(plain.images, 0.5)  # zero gradient: nothing moved
    assert plain.values[0] == 0.0
    # a white image gives 1 - 0.7 inside (less at the zero-padded border)
    assert lifted.values[0] > 0.15, lifted.values
