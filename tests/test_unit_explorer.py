"""UnitExplorer, headless: what it shows per unit, what it caches, how it fails."""

from __future__ import annotations

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx
from PIL import Image

import jaxvis as jv
from jaxvis.widgets import UnitExplorer
from jaxvis.widgets import unit_explorer as ue_mod


class Tiny(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.conv1 = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(4, 6, (3, 3), strides=2, rngs=rngs)
        self.dense = nnx.Linear(6 * 4 * 4, 3, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.relu(self.conv1(x))
        x = nnx.relu(self.conv2(x))
        return self.dense(x.reshape(x.shape[0], -1))


@pytest.fixture(scope="module")
def probe() -> jv.Probe:
    return jv.Probe(Tiny(nnx.Rngs(0)), input_shape=(8, 8, 1))


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).random((40, 8, 8, 1)).astype(np.float32)


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def brute_top(probe, images, layer, channel, k=9):
    act = np.asarray(probe.activations(images, layer)[layer])
    score = act.reshape(len(images), -1, act.shape[-1]).max(1)[:, channel]
    return np.argsort(-score, kind="stable")[:k]


def test_shows_the_units_top_images_patches_fv_and_activation(probe, images):
    ue = UnitExplorer(probe, images, layer="conv2", channel=2, fv_steps=4)
    assert "jv-unit-explorer" in ue._dom_classes
    assert ue.error.error == ""
    for img in (ue.fv_image, ue.top_image, ue.patch_image, ue.input_image, ue.act_image):
        assert decode(img.value).shape[0] > 0
    want = brute_top(probe, images, "conv2", 2)
    np.testing.assert_array_equal(ue.top_k("conv2").indices[2], want)
    assert "#" + ", #".join(map(str, want)) in ue.top_caption.value
    # conv2: 3x3 (stride 2) over a 3x3: 3 + (3 - 1) * 1 = 5 pixels wide, stride 2
    assert "receptive field 5×5, stride 2" in ue.patch_caption.value
    act = np.asarray(probe.activations(images[:1], "conv2")["conv2"])[0, ..., 2]
    assert f"max {jv.widgets._common.fmt(act.max())}" in ue.act_caption.value


def test_channels_reuse_the_layers_top_k_and_each_units_fv(probe, images, monkeypatch):
    calls = {"top_k": 0, "render": 0}
    real_top_k, real_render = ue_mod.ds.top_k, ue_mod.optvis.render

    def top_k(*a, **kw):
        calls["top_k"] += 1
        return real_top_k(*a, **kw)

    def render(*a, **kw):
        calls["render"] += 1
        return real_render(*a, **kw)

    monkeypatch.setattr(ue_mod.ds, "top_k", top_k)
    monkeypatch.setattr(ue_mod.optvis, "render", render)
    ue = UnitExplorer(probe, images, layer="conv1", fv_steps=4)
    pictures = {ue.top_image.value}
    for c in (1, 2, 3):
        ue.channel_slider.value = c
        pictures.add(ue.top_image.value)
        want = brute_top(probe, images, "conv1", c)
        assert "#" + ", #".join(map(str, want)) in ue.top_caption.value
    assert calls == {"top_k": 1, "render": 4}
    assert len(pictures) == 4  # every channel shows its own images
    ue.channel_slider.value = 1  # seen before: nothing recomputed
    assert calls == {"top_k": 1, "render": 4}
    ue.layer_select.value = "dense"
    assert ue.channel_slider.max == 2 and ue.channel_slider.value == 1
    assert calls["top_k"] == 2
    assert "whole images" in ue.patch_caption.value
    ue.layer_select.value = "conv1"
    assert calls["top_k"] == 2  # cached per layer
    assert ue.error.error == ""


def test_image_slider_moves_only_the_activation_panel(probe, images):
    ue = UnitExplorer(probe, images, layer="conv2", fv_steps=0)
    top, act = ue.top_image.value, ue.act_image.value
    assert "off" in ue.fv_caption.value
    ue.image_slider.value = 5
    assert ue.top_image.value == top and ue.act_image.value != act
    assert "input #5" in ue.input_caption.value


class FlakyProbe(jv.Probe):
    fail = False

    def activations(self, x, layers=None):
        if self.fail:
            raise RuntimeError("activations exploded on purpose")
        return super().activations(x, layers)


def test_errors_show_in_place_and_the_widget_recovers(images):
    probe = FlakyProbe(Tiny(nnx.Rngs(1)), input_shape=(8, 8, 1))
    ue = UnitExplorer(probe, images, layer="conv2", fv_steps=0)
    top = ue.top_image.value
    probe.fail = True
    ue.image_slider.value = 3
    assert "activations exploded on purpose" in ue.error.error
    assert "jv-error" in ue.error.value
    ue.channel_slider.value = 4  # the top-k panels still draw while activation fails
    assert ue.top_image.value != top
    assert "activations exploded" in ue.error.error
    probe.fail = False
    ue.image_slider.value = 4
    ue.channel_slider.value = 5
    assert ue.error.error == ""


class WhileLoopNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3))(x))
        # a data-dependent loop: its input window cannot be traced, so no receptive field
        _, x = jax.lax.while_loop(lambda c: c[0] < 2, lambda c: (c[0] + 1, 0.5 * c[1]), (0, x))
        return nn.Conv(3, (3, 3))(x)


def test_patches_unavailable_is_explained_and_top_images_still_show(images):
    model = WhileLoopNet()
    variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
    probe = jv.Probe(model, variables, input_shape=(8, 8, 1))
    ue = UnitExplorer(probe, images, layer="Conv_1", fv_steps=0)
    assert ue.error.error == ""
    assert "patches unavailable" in ue.patch_caption.value
    assert "while" in ue.patch_caption.value
    np.testing.assert_array_equal(
        ue.top_k("Conv_1").indices[0], brute_top(probe, images, "Conv_1", 0)
    )


def test_validates_arguments(probe, images):
    with pytest.raises(TypeError, match="probe must be a jaxvis.Probe"):
        UnitExplorer(object(), images)
    with pytest.raises(ValueError, match="dataset must have 4 axes"):
        UnitExplorer(probe, images[0])
    with pytest.raises(TypeError, match="dataset must be a float array"):
        UnitExplorer(probe, (images * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="dataset has the wrong image shape"):
        UnitExplorer(probe, np.zeros((3, 9, 9, 1), np.float32))
    bad = images.copy()
    bad[30, 1, 1, 0] = np.inf
    with pytest.raises(ValueError, match="dataset contains NaN or inf"):
        UnitExplorer(probe, bad)
    with pytest.raises(ValueError, match="unknown layer 'conv3'"):
        UnitExplorer(probe, images, layer="conv3")
    with pytest.raises(ValueError, match="channel must be an integer in \\[0, 5\\]"):
        UnitExplorer(probe, images, layer="conv2", channel=6)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        UnitExplorer(probe, images, k=0)
    with pytest.raises(ValueError, match="fv_steps must be an integer >= 0"):
        UnitExplorer(probe, images, fv_steps=-1)
