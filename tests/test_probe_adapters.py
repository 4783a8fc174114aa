"""Probe adapters: Equinox models, errors at the probe boundary, normalised inputs, and taps
whose value does not reach the output.

Models are written here in the styles of real code bases: an Equinox CNN as in Equinox's
examples (``eqx.nn.Conv2d`` / ``MaxPool2d`` / ``Linear``, ``jax.nn.relu`` between them, one
unbatched channels-first example per call), an ``eqx.nn.Sequential``, Linen nets with
``train=``. References are independent: a hand-written ``lax`` forward pass from the module's
weights, ``jax.vmap(model)``, ``jax.grad`` of the plain vmapped model.
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image
import pytest
from flax import linen as nn

import jaxvis as jv
from jaxvis import render

H = W = 10
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


class CNN(eqx.Module):
    """Equinox-examples style: fields for layers, one (C, H, W) example per call."""

    conv1: eqx.nn.Conv2d
    pool: eqx.nn.MaxPool2d
    conv2: eqx.nn.Conv2d
    dropout: eqx.nn.Dropout
    linear: eqx.nn.Linear

    def __init__(self, key: jax.Array) -> None:
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv1 = eqx.nn.Conv2d(3, 6, kernel_size=3, key=k1)  # 10 -> 8
        self.pool = eqx.nn.MaxPool2d(kernel_size=2, stride=2)  # 8 -> 4
        self.conv2 = eqx.nn.Conv2d(6, 5, kernel_size=3, padding=1, key=k2)  # 4 -> 4
        self.dropout = eqx.nn.Dropout(0.5)
        self.linear = eqx.nn.Linear(5 * 4 * 4, 4, key=k3)

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        x = self.pool(jax.nn.relu(self.conv1(x)))
        x = jv.tap("features", jax.nn.relu(self.conv2(x)))
        x = self.dropout(jnp.ravel(x), key=key)
        return self.linear(x)


def _conv(x: jax.Array, conv: eqx.nn.Conv2d, padding: int) -> jax.Array:
    """NCHW convolution from the module's weight (O, I, kh, kw) and bias (O, 1, 1) if any."""
    out = jax.lax.conv_general_dilated(
        x, conv.weight, (1, 1), [(padding, padding)] * 2, dimension_numbers=("NCHW", "OIHW", "NCHW")
    )
    return out if conv.bias is None else out + conv.bias[None]


def _reference(model: CNN, x_nhwc: jax.Array) -> dict[str, jax.Array]:
    """The CNN's forward pass by hand, activations channels-last."""
    x = jnp.moveaxis(x_nhwc, -1, 1)
    c1 = _conv(x, model.conv1, 0)
    pooled = jax.lax.reduce_window(
        jax.nn.relu(c1), -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID"
    )
    c2 = _conv(pooled, model.conv2, 1)
    features = jax.nn.relu(c2)
    logits = features.reshape(len(x), -1) @ model.linear.weight.T + model.linear.bias
    nhwc = lambda a: jnp.moveaxis(a, 1, -1)  # noqa: E731
    return {
        "conv1": nhwc(c1),
        "pool": nhwc(pooled),
        "conv2": nhwc(c2),
        "features": nhwc(features),
        "logits": logits,
    }


@pytest.fixture(scope="module")
def cnn() -> CNN:
    return CNN(jax.random.key(0))


@pytest.fixture(scope="module")
def cnn_probe(cnn: CNN) -> jv.Probe:
    return jv.Probe(cnn, input_shape=(H, W, 3))


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(0).uniform(size=(2, H, W, 3)).astype(np.float32)


# ---------------------------------------------------------------------- Equinox


def test_equinox_layers_are_submodules_by_path_and_taps(cnn_probe: jv.Probe) -> None:
    layers = {layer.name: layer for layer in cnn_probe.layers}
    assert list(layers) == ["conv1", "pool", "conv2", "features", "dropout", "linear"]
    assert cnn_probe.kind == "equinox"
    assert layers["conv1"].shape == (8, 8, 6) and layers["conv1"].kind == "Conv2d"
    assert layers["pool"].shape == (4, 4, 6)
    assert layers["features"].kind == "tap" and layers["features"].shape == (4, 4, 5)
    assert layers["dropout"].shape == (80,) and layers["linear"].shape == (4,)
    assert layers["conv1"].n_params == 6 * 3 * 3 * 3 + 6


def test_equinox_activations_equal_a_hand_written_forward_pass(
    cnn: CNN, cnn_probe: jv.Probe, x: np.ndarray
) -> None:
    ref = _reference(cnn, jnp.asarray(x))
    logits, acts = cnn_probe.run(x)
    for name in ("conv1", "pool", "conv2", "features"):
        np.testing.assert_allclose(acts[name], ref[name], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits, ref["logits"], rtol=1e-5, atol=1e-5)
    vmapped = jax.vmap(eqx.nn.inference_mode(cnn))(jnp.moveaxis(x, -1, 1))
    np.testing.assert_allclose(logits, vmapped, rtol=1e-6, atol=1e-6)
    truncated = cnn_probe.activations(x, ["conv2"])
    np.testing.assert_allclose(truncated["conv2"], ref["conv2"], rtol=1e-5, atol=1e-5)


def test_equinox_apply_is_pure_under_jit_and_grad(
    cnn: CNN, cnn_probe: jv.Probe, x: np.ndarray
) -> None:
    params, static = eqx.partition(eqx.nn.inference_mode(cnn), eqx.is_inexact_array)
    out, acts = jax.jit(lambda p, xx: cnn_probe.apply(p, xx, ["pool"]))(cnn_probe.params, x)
    assert out is None and acts["pool"].shape == (2, 4, 4, 6)

    def plain(p: object) -> jax.Array:
        return (jax.vmap(eqx.combine(p, static))(jnp.moveaxis(x, -1, 1)) ** 2).sum()

    def probed(p: object) -> jax.Array:
        return (cnn_probe.apply(p, x)[0] ** 2).sum()

    want, got = jax.grad(plain)(params), jax.jit(jax.grad(probed))(cnn_probe.params)
    assert jax.tree.structure(want) == jax.tree.structure(got)
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_equinox_model_is_unchanged_and_weights_use_flax_layouts(
    cnn: CNN, cnn_probe: jv.Probe
) -> None:
    before = [np.asarray(leaf) for leaf in jax.tree.leaves(cnn)]
    _ = cnn_probe.layers, cnn_probe(np.zeros((1, H, W, 3), np.float32))
    after = jax.tree.leaves(cnn)
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert cnn.dropout.inference is False  # the user's model keeps its mode
    weights = cnn_probe.weights()
    assert set(weights) == {"conv1", "conv2", "linear"}
    np.testing.assert_array_equal(
        weights["conv1"]["kernel"], np.transpose(cnn.conv1.weight, (2, 3, 1, 0))
    )
    np.testing.assert_array_equal(weights["conv1"]["bias"], cnn.conv1.bias.reshape(-1))
    np.testing.assert_array_equal(weights["linear"]["kernel"], cnn.linear.weight.T)


def test_equinox_grad_cam_equals_a_hand_computed_one(
    cnn: CNN, cnn_probe: jv.Probe, x: np.ndarray
) -> None:
    res = jv.attribution.grad_cam(cnn_probe, x, target=2, layer="conv2", relu=False)
    ref = _reference(cnn, jnp.asarray(x))

    def logit(c2: jax.Array) -> jax.Array:  # the network after conv2, by hand (NHWC)
        f = jnp.moveaxis(jax.nn.relu(c2), -1, 1).reshape(len(x), -1)
        return (f @ cnn.linear.weight.T + cnn.linear.bias)[:, 2].sum()

    grads = jax.grad(logit)(ref["conv2"])
    cam = (grads.mean(axis=(1, 2), keepdims=True) * ref["conv2"]).sum(-1)
    np.testing.assert_allclose(res.extra["layer_map"], cam, rtol=1e-4, atol=1e-6)
    assert np.abs(cam).max() > 0


def test_equinox_settings_give_receptive_fields_that_equal_the_gradient_support(
    cnn_probe: jv.Probe,
) -> None:
    rows = {row["name"]: row for row in cnn_probe.summary()}
    assert rows["conv2"]["strides"] == (1, 1) and rows["conv2"]["padding"] == ((1, 1), (1, 1))
    assert rows["pool"]["kernel_size"] == (2, 2) and rows["pool"]["strides"] == (2, 2)
    rf = jv.dataset.receptive_field(cnn_probe, "conv2")
    xs = np.random.default_rng(6).normal(size=(16, H, W, 3)).astype(np.float32)
    unit = lambda xx: cnn_probe.activations(xx, "conv2")["conv2"][:, 1, 1, 0].sum()  # noqa: E731
    support = np.abs(np.asarray(jax.grad(unit)(jnp.asarray(xs)))).sum(axis=(0, 3)) > 0
    rows_hit, cols_hit = np.flatnonzero(support.any(1)), np.flatnonzero(support.any(0))
    box = (rows_hit[0], cols_hit[0], rows_hit[-1] + 1, cols_hit[-1] + 1)
    assert rf.size == (8, 8) and rf.stride == (2, 2) and rf.box(1, 1) == box


class Block(eqx.Module):
    """ResNet style: conv-BatchNorm-relu with a residual, a Sequential head with BatchNorm."""

    conv: eqx.nn.Conv2d
    bn: eqx.nn.BatchNorm
    head: eqx.nn.Sequential

    def __init__(self, key: jax.Array) -> None:
        k1, k2 = jax.random.split(key)
        self.conv = eqx.nn.Conv2d(3, 3, 3, padding=1, use_bias=False, key=k1)
        self.bn = eqx.nn.BatchNorm(3, "batch", mode="ema")
        self.head = eqx.nn.Sequential(
            [
                eqx.nn.Conv2d(3, 2, 1, key=k2),
                eqx.nn.BatchNorm(2, "batch", mode="ema"),
                eqx.nn.Lambda(jax.nn.relu),
            ]
        )

    def __call__(self, x: jax.Array, state: eqx.nn.State) -> tuple[jax.Array, eqx.nn.State]:
        h, state = self.bn(self.conv(x), state)
        h, state = self.head(jax.nn.relu(h + x), state)
        return h.mean(axis=(1, 2)), state


def test_equinox_stateful_batchnorm_uses_the_running_statistics(x: np.ndarray) -> None:
    model, state = eqx.nn.make_with_state(Block)(jax.random.key(8))
    rng = np.random.default_rng(8)
    mean, var = rng.normal(size=3).astype(np.float32), rng.uniform(0.5, 2, 3).astype(np.float32)
    state = state.set(model.bn.ema_state_index, (jnp.asarray(mean), jnp.asarray(var)))
    with pytest.raises(TypeError, match=r"'state'.*jv.Probe\(model, state\)"):
        _ = jv.Probe(model, input_shape=(H, W, 3)).layers
    probe = jv.Probe(model, state, input_shape=(H, W, 3))
    assert probe.layer_names == (
        "conv", "bn", "head.layers.0", "head.layers.1", "head.layers.2", "head",
    )  # fmt: skip
    logits, acts = probe.run(x)
    conv = jnp.moveaxis(_conv(jnp.moveaxis(x, -1, 1), model.conv, 1), 1, -1)
    want_bn = (conv - mean) / np.sqrt(var + model.bn.eps) * model.bn.weight + model.bn.bias
    np.testing.assert_allclose(acts["bn"], want_bn, rtol=1e-5, atol=1e-5)
    inference = eqx.nn.inference_mode(model)
    want = jax.vmap(lambda e: inference(e, state)[0])(jnp.moveaxis(x, -1, 1))
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-6)
    grads = jax.grad(lambda p: probe.apply(p, x)[0].sum())(probe.params)
    assert jax.tree.structure(grads) == jax.tree.structure(probe.params)


def test_equinox_sequential_and_channels_last() -> None:
    k1, k2 = jax.random.split(jax.random.key(1))
    seq = eqx.nn.Sequential(
        [
            eqx.nn.Conv2d(1, 4, 3, key=k1),
            eqx.nn.Lambda(jax.nn.relu),
            eqx.nn.MaxPool2d(2, 2),
            eqx.nn.Lambda(jnp.ravel),
            eqx.nn.Linear(4 * 3 * 3, 3, key=k2),
        ]
    )
    x = np.random.default_rng(1).normal(size=(3, 8, 8, 1)).astype(np.float32)
    probe = jv.Probe(seq, input_shape=(8, 8, 1))
    assert probe.layer_names == ("layers.0", "layers.1", "layers.2", "layers.3", "layers.4")
    assert [layer.kind for layer in probe.layers][:3] == ["Conv2d", "relu", "MaxPool2d"]
    guided = jv.attribution.guided_backprop(probe, x, target=0)  # finds the relu Lambda
    assert guided.settings["layers"] == ("layers.1",) and guided.values.shape == x.shape
    assert probe.layer("layers.2").shape == (3, 3, 4)
    want = jax.vmap(seq)(jnp.moveaxis(x, -1, 1))
    np.testing.assert_allclose(probe(x), want, rtol=1e-6, atol=1e-6)
    inner = jax.vmap(seq.layers[0])(jnp.moveaxis(x, -1, 1))
    np.testing.assert_allclose(
        probe.activations(x, "layers.0")["layers.0"], jnp.moveaxis(inner, 1, -1), rtol=1e-6
    )

    class HWC(eqx.Module):  # channels-last, and a key it must be given
        linear: eqx.nn.Linear

        def __call__(self, x: jax.Array, *, key: jax.Array, inference: bool = False) -> jax.Array:
            assert inference  # the probe runs the model in inference mode
            return self.linear(jv.tap("pixels", x).mean(axis=(0, 1)))

    hwc = HWC(eqx.nn.Linear(1, 2, key=k1))
    probe = jv.Probe(hwc, input_shape=(8, 8, 1), channels_last=True)
    np.testing.assert_allclose(probe.activations(x, "pixels")["pixels"], x)
    want = jax.vmap(lambda e: hwc(e, key=k2, inference=True))(x)
    np.testing.assert_allclose(probe(x), want, rtol=1e-6)


def test_two_equinox_probes_traced_at_once_see_only_their_own_layers(cnn: CNN) -> None:
    barrier = threading.Barrier(2, timeout=60)

    class Waits(eqx.Module):  # holds its trace open until the other probe is tracing too
        inner: eqx.Module

        def __call__(self, x: jax.Array) -> jax.Array:
            barrier.wait()
            return self.inner(x)

    seq = eqx.nn.Sequential([eqx.nn.Conv2d(3, 2, 3, key=jax.random.key(7))])
    probes = [
        jv.Probe(Waits(cnn), input_shape=(H, W, 3)),
        jv.Probe(Waits(seq), input_shape=(H, W, 3)),
    ]
    names: dict[int, tuple[str, ...]] = {}
    threads = [
        threading.Thread(target=lambda i=i: names.update({i: probes[i].layer_names}))
        for i in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert names[0][0] == "inner.conv1" and names[0][-1] == "inner"  # children first
    assert "inner.layers.0" not in names[0] and names[1] == ("inner.layers.0", "inner")


def test_jaxvis_imports_and_probes_without_equinox() -> None:
    code = (
        "import sys; sys.modules['equinox'] = None\n"
        "import numpy as np, jaxvis as jv\n"
        "probe = jv.Probe(lambda p, x: jv.tap('h', x * p), 2.0, input_shape=(2, 2, 1))\n"
        "assert probe.layer_names == ('h',) and 'equinox' not in dir(jv)\n"
        "assert float(probe(np.ones((1, 2, 2, 1), np.float32)).sum()) == 8.0\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---------------------------------------------------------------------- errors


class LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(nn.Conv(4, (3, 3))(x))
        return nn.Dense(2)(x.reshape(len(x), -1))


class LinenTrain(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = nn.Conv(4, (3, 3))(x)
        return nn.BatchNorm(use_running_average=not train)(x).mean(axis=(1, 2))


def test_classes_and_wrong_variables_are_refused_with_the_fix() -> None:
    module = LinenNet()
    variables = module.init(jax.random.key(0), jnp.zeros((1, 6, 6, 1)))
    with pytest.raises(TypeError, match=r"got the class LinenNet.*jv.Probe\(LinenNet\(...\), v"):
        jv.Probe(LinenNet, variables)
    with pytest.raises(TypeError, match="got the class CNN"):
        jv.Probe(CNN, input_shape=(H, W, 3))
    with pytest.raises(ValueError, match=r"variables\['params'\].*'Conv_0'.*full dict"):
        jv.Probe(module, variables["params"])
    with pytest.raises(ValueError, match=r"variables is empty \(\{\}\)"):
        jv.Probe(module, {})
    with pytest.raises(TypeError, match="channels_last is for Equinox models only"):
        jv.Probe(module, variables, channels_last=True)
    with pytest.raises(TypeError, match="variables must be None or the model's eqx.nn.State"):
        jv.Probe(CNN(jax.random.key(0)), variables)


def test_a_missing_train_argument_gets_a_call_kwargs_hint() -> None:
    module = LinenTrain()
    variables = module.init(jax.random.key(0), jnp.zeros((1, 6, 6, 1)), train=False)
    with pytest.raises(TypeError, match=r"call_kwargs=\{'train': False\}"):
        _ = jv.Probe(module, variables, input_shape=(6, 6, 1)).layers
    probe = jv.Probe(module, variables, input_shape=(6, 6, 1), call_kwargs={"train": False})
    assert probe(np.zeros((1, 6, 6, 1), np.float32)).shape == (1, 4)


def test_a_model_failing_on_the_input_shape_is_explained_and_chained() -> None:
    module = LinenNet()
    variables = module.init(jax.random.key(0), jnp.zeros((1, 6, 6, 1)))
    probe = jv.Probe(module, variables, input_shape=(6, 6, 3))
    with pytest.raises(ValueError, match=r"LinenNet failed on an input of shape \(6, 6, 3\)") as e:
        _ = probe.layers
    assert "check input_shape" in str(e.value) and e.value.__cause__ is not None
    probe = jv.Probe(module, variables)  # first run, shape from the batch
    with pytest.raises(ValueError, match=r"input shape \(6, 6, 3\)"):
        probe(np.zeros((1, 6, 6, 3), np.float32))
    cnn = CNN(jax.random.key(0))  # 3 channels in, given 1
    with pytest.raises(ValueError, match=r"CNN failed on an input of shape \(10, 10, 1\)"):
        _ = jv.Probe(cnn, input_shape=(H, W, 1)).layers


# ---------------------------------------------------------------------- input ranges


def _same_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _rgb_fn(params: dict, x: jax.Array) -> jax.Array:
    h = jv.tap("conv", _same_conv(x, params["k"]))
    return jnp.tanh(h).mean(axis=(1, 2)) @ params["w"]


@pytest.fixture(scope="module")
def rgb_params() -> dict:
    k1, k2 = jax.random.split(jax.random.key(3))
    return {"k": jax.random.normal(k1, (3, 3, 3, 4)), "w": jax.random.normal(k2, (4, 2))}


def test_mean_std_gives_per_channel_ranges_baselines_and_pixels(rgb_params: dict) -> None:
    probe = jv.Probe(_rgb_fn, rgb_params, input_shape=(6, 6, 3), mean=MEAN, std=STD)
    np.testing.assert_allclose(probe.input_low, -MEAN / STD, rtol=1e-6)
    np.testing.assert_allclose(probe.input_high, (1 - MEAN) / STD, rtol=1e-6)
    assert probe.input_low.dtype == np.float32 and probe.input_low.shape == (3,)
    x = np.zeros((2, 6, 6, 3), np.float32)
    black, white = jv.attribution.make_baselines(probe, x, ["black", "white"])
    np.testing.assert_allclose(black, np.broadcast_to(-MEAN / STD, x.shape), rtol=1e-6)
    np.testing.assert_allclose(white, np.broadcast_to((1 - MEAN) / STD, x.shape), rtol=1e-6)
    (uniform,) = jv.attribution.make_baselines(probe, x, "uniform")
    assert np.all(uniform >= probe.input_low) and np.all(uniform <= probe.input_high)

    pixels = np.random.default_rng(2).uniform(size=(6, 6, 3)).astype(np.float32)
    normalised = (pixels - MEAN) / STD
    want = np.rint(pixels * 255).astype(np.uint8)  # by hand: back to the pixels it came from
    got = render.to_uint8(render.from_range(normalised, probe.input_range))
    assert np.abs(got.astype(int) - want).max() <= 1
    assert render.from_range(probe.input_low, probe.input_range).tolist() == [0.0, 0.0, 0.0]
    over = render.overlay(normalised, np.zeros((6, 6)), alpha=0.0, image_range=probe.input_range)
    assert np.abs(over.astype(int) - want).max() <= 1
    from jaxvis.widgets._common import image_png  # what the widgets show as the input

    shown = np.asarray(PIL.Image.open(io.BytesIO(image_png(normalised, probe.input_range, 6))))
    assert np.abs(shown.astype(int) - want).max() <= 1


def test_feature_visualisation_stays_in_the_per_channel_range(rgb_params: dict) -> None:
    probe = jv.Probe(_rgb_fn, rgb_params, input_shape=(6, 6, 3), mean=MEAN, std=STD)
    res = jv.optvis.render(probe, jv.optvis.objectives.channel("conv", 1), steps=4, chunk=4)
    lows, highs = res.inputs.min(axis=(0, 1, 2)), res.inputs.max(axis=(0, 1, 2))
    assert np.all(lows >= probe.input_low - 1e-5) and np.all(highs <= probe.input_high + 1e-5)
    np.testing.assert_allclose(res.inputs, (res.images - MEAN) / STD, rtol=1e-5, atol=1e-5)


def test_scalar_ranges_keep_their_form_and_bad_ranges_are_refused(rgb_params: dict) -> None:
    probe = jv.Probe(_rgb_fn, rgb_params, input_range=(-0.1, 0.9))
    assert probe.input_range == (-0.1, 0.9) and probe.input_low.shape == (1,)
    assert probe.input_low.dtype == np.float32 and probe.input_high[0] == np.float32(0.9)
    per_channel = jv.Probe(_rgb_fn, rgb_params, input_range=((0, -1, 0), (1, 1, 2)))
    assert per_channel.input_range == ((0.0, -1.0, 0.0), (1.0, 1.0, 2.0))
    bad = [
        (dict(input_range=(0, 1), mean=MEAN, std=STD), TypeError, "not both"),
        (dict(mean=MEAN), TypeError, "mean and std go together"),
        (dict(mean=MEAN, std=(0.2, 0.0, 0.2)), ValueError, "std must be > 0"),
        (dict(input_range=((0, 0), (1, 1, 1))), ValueError, "one entry per channel"),
        (dict(input_range=((0, 2, 0), (1, 1, 1))), ValueError, "lo < hi in every channel"),
        (dict(input_range=(0, 1, 2)), TypeError, "input_range must be a pair"),
        (dict(input_range=((0, 0), (1, 1)), input_shape=(6, 6, 3)), ValueError, "range has 2"),
    ]
    for kwargs, error, match in bad:
        with pytest.raises(error, match=match):
            jv.Probe(_rgb_fn, rgb_params, **kwargs)
    two = jv.Probe(_rgb_fn, rgb_params, input_range=((0, 0), (1, 1)))  # shape from a batch
    with pytest.raises(ValueError, match=r"x has 3 channels .* the input range has 2"):
        two(np.zeros((1, 6, 6, 3), np.float32))


# ---------------------------------------------------------------------- taps


def test_a_tap_on_an_unused_copy_is_refused_and_a_real_tap_works() -> None:
    kernel = jax.random.normal(jax.random.key(4), (3, 3, 1, 4))

    def model(params: dict, x: jax.Array) -> jax.Array:
        h = jax.nn.relu(_same_conv(x, params["k"]))
        jv.tap("copy", h * 1.0)  # a copy: the model goes on with h
        h = jv.tap("conv", h)
        return h.mean(axis=(1, 2))

    probe = jv.Probe(model, {"k": kernel}, input_shape=(6, 6, 1))
    x = np.random.default_rng(5).normal(size=(1, 6, 6, 1)).astype(np.float32)
    with pytest.raises(ValueError, match=r"'copy': the tapped value does not reach the model"):
        jv.attribution.grad_cam(probe, x, target=0, layer="copy")
    cam = jv.attribution.grad_cam(probe, x, target=0, layer="conv", relu=False)
    acts = probe.activations(x, "conv")["conv"]
    np.testing.assert_allclose(cam.extra["layer_map"], acts[..., 0] / 36, rtol=1e-5, atol=1e-7)
    guided = jv.attribution.guided_backprop(probe, x, target=0, layers=["copy", "conv"])
    plain = jv.attribution.guided_backprop(probe, x, target=0, layers=["conv"])
    np.testing.assert_array_equal(guided.values, plain.values)  # the copy changes nothing
