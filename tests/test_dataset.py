"""jv.dataset: top-k against brute-force numpy over the 5,000 MNIST digits, on 1 and 4 devices;
receptive fields against hand computations and against the input gradient's support; patches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

import jaxvis as jv
from jaxvis.dataset import patch_boxes, patches, receptive_field, top_k

BATCH = 384  # does not divide 5,000: the last batch is padded and masked
LAYERS = ["act3", "conv6", "dense1", "dense3"]  # two conv maps, two dense layers


@pytest.fixture(scope="module")
def zoo():
    return jv.zoo.load("mnist_cnn")


@pytest.fixture(scope="module")
def digits(zoo):
    x = np.concatenate([zoo.x_train, zoo.x_test])
    assert x.shape == (5000, 28, 28, 1)
    return x


@pytest.fixture(scope="module")
def acts(zoo, digits):
    """Every layer's activations for all 5,000 digits (the brute-force reference's input)."""
    out = {name: [] for name in LAYERS}
    for i in range(0, len(digits), 500):
        for name, a in zoo.probe.activations(digits[i : i + 500], LAYERS).items():
            out[name].append(np.asarray(a))
    return {name: np.concatenate(parts) for name, parts in out.items()}


def brute_force(act: np.ndarray, k: int, reduce: str = "max"):
    """Sort every image's score per channel in numpy; ties: lower image index first."""
    n, c = act.shape[0], act.shape[-1]
    flat = act.reshape(n, -1, c).astype(np.float64)
    score = flat.max(1) if reduce == "max" else flat.mean(1)
    order = np.argsort(-score.T, axis=1, kind="stable")[:, :k]  # (C, k)
    values = np.take_along_axis(score.T, order, axis=1)
    where = flat.argmax(1).T  # (C, N) flat position of the first maximum
    return values, order, np.take_along_axis(where, order, axis=1)


@pytest.mark.parametrize("layer", LAYERS)
def test_top_k_equals_brute_force(zoo, digits, acts, layer):
    res = top_k(zoo.probe, digits, layer, k=9, batch_size=BATCH, progress=False)
    values, order, where = brute_force(acts[layer], 9)
    assert res.n_images == 5000 and res.k == 9 and res.layer == layer
    np.testing.assert_array_equal(res.indices, order)
    np.testing.assert_array_equal(res.values, values.astype(np.float32))
    assert np.all(np.diff(res.values, axis=1) <= 0)
    if acts[layer].ndim == 4:
        w = acts[layer].shape[2]
        np.testing.assert_array_equal(res.positions[..., 0] * w + res.positions[..., 1], where)
    else:
        assert res.positions is None


def test_top_k_streams_any_iterable_of_batches(zoo, digits, acts):
    sizes = [1, 7, 500, 1000, 2492, 1000]  # uneven, ending on a short one
    starts = np.cumsum([0, *sizes])
    gen = ((digits[a:b], np.zeros(b - a)) for a, b in zip(starts[:-1], starts[1:], strict=True))
    res = top_k(zoo.probe, gen, "act3", k=5, progress=False)
    values, order, _ = brute_force(acts["act3"], 5)
    np.testing.assert_array_equal(res.indices, order)
    np.testing.assert_array_equal(res.values, values.astype(np.float32))


def test_top_k_mean_reduction(zoo, digits, acts):
    res = top_k(zoo.probe, digits, "act3", k=9, reduce="mean", batch_size=1000, progress=False)
    values, _, _ = brute_force(acts["act3"], 9, reduce="mean")
    # float32 sums in XLA vs float64 in numpy: compare the scores, not near-tie orders
    np.testing.assert_allclose(res.values, values, rtol=0, atol=2e-6)
    score = acts["act3"].reshape(5000, -1, 8).astype(np.float64).mean(1).T
    np.testing.assert_allclose(np.take_along_axis(score, res.indices, 1), values, atol=2e-6)


def test_a_probe_without_input_shape_learns_it_from_the_first_batch(zoo, digits, acts):
    probe = jv.Probe(zoo.model)
    assert probe.input_shape is None
    res = top_k(probe, iter([digits[:2500], digits[2500:]]), "dense1", k=3, progress=False)
    np.testing.assert_array_equal(res.indices, brute_force(acts["dense1"], 3)[1])
    np.testing.assert_array_equal(res.images(digits, 7), digits[res.indices[7]])


def test_ties_go_to_the_lower_image_index_and_k_is_capped(zoo):
    x = np.zeros((6, 28, 28, 1), np.float32)  # identical images: every score ties
    res = top_k(zoo.probe, [x[:4], x[4:]], "dense1", k=9, progress=False)
    assert res.k == 6 and res.n_images == 6
    np.testing.assert_array_equal(res.indices, np.tile(np.arange(6), (64, 1)))
    res = top_k(zoo.probe, x, "conv3", k=3, batch_size=4, progress=False)
    np.testing.assert_array_equal(res.indices, np.tile(np.arange(3), (8, 1)))


_FOUR_DEVICES = """
import json, sys
import numpy as np, jax, jaxvis as jv
zoo = jv.zoo.load("mnist_cnn")
x = np.concatenate([zoo.x_train, zoo.x_test])
out = {"devices": len(jax.devices())}
for layer in ["act3", "dense1"]:
    res = jv.dataset.top_k(zoo.probe, x, layer, k=9, batch_size=383, progress=False)
    out[layer] = {"values": res.values.tolist(), "indices": res.indices.tolist(),
                  "positions": None if res.positions is None else res.positions.tolist(),
                  "n_devices": res.n_devices, "n_images": res.n_images}
json.dump(out, open(sys.argv[1], "w"))
"""


def test_four_forced_host_devices_give_the_single_device_result(zoo, digits, acts, tmp_path):
    # the device count is fixed when JAX starts: run the 4-device case in a fresh process
    script = tmp_path / "four.py"
    script.write_text(textwrap.dedent(_FOUR_DEVICES))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    env.pop("JAX_PLATFORMS", None)
    subprocess.run([sys.executable, str(script), str(tmp_path / "out.json")], env=env, check=True)
    four = json.loads((tmp_path / "out.json").read_text())
    assert four["devices"] == 4
    assert len(jax.devices()) == 1
    for layer in ["act3", "dense1"]:
        got = four[layer]
        assert got["n_devices"] == 4 and got["n_images"] == 5000
        one = top_k(zoo.probe, digits, layer, k=9, batch_size=383, progress=False)
        assert one.n_devices == 1
        np.testing.assert_array_equal(np.array(got["indices"]), one.indices)
        np.testing.assert_array_equal(np.array(got["values"], np.float32), one.values)
        if one.positions is not None:
            np.testing.assert_array_equal(np.array(got["positions"]), one.positions)
        values, order, _ = brute_force(acts[layer], 9)
        np.testing.assert_array_equal(np.array(got["indices"]), order)


# ---------------------------------------------------------------- receptive fields

# By hand: 3x3 SAME stride-1 convs (pad 1) and 2x2 stride-2 VALID pools, composed with
# size += (k - 1) * jump, start -= pad * jump, jump *= stride.
MNIST_RF = {  # layer: (size, stride, start)
    "conv1": (3, 1, -1),
    "act1": (3, 1, -1),
    "conv2": (5, 1, -2),
    "pool1": (6, 2, -2),
    "conv3": (10, 2, -4),
    "conv4": (14, 2, -6),
    "pool2": (16, 4, -6),
    "conv5": (24, 4, -10),
    "act6": (32, 4, -14),
}
SHAPES_RF = {"conv2": (5, 1, -2), "pool1": (6, 2, -2), "conv4": (14, 2, -6), "conv6": (32, 4, -14)}


@pytest.mark.parametrize(("name", "table"), [("mnist_cnn", MNIST_RF), ("shapes_cnn", SHAPES_RF)])
def test_receptive_fields_of_the_zoo_models_by_hand(name, table):
    probe = jv.zoo.load(name).probe
    for layer, (size, stride, start) in table.items():
        rf = receptive_field(probe, layer)
        assert (rf.size, rf.stride, rf.start) == ((size,) * 2, (stride,) * 2, (start,) * 2), layer
    with pytest.raises(ValueError, match="without spatial axes"):
        receptive_field(probe, "dense1" if name == "mnist_cnn" else "gap")


@pytest.mark.parametrize(("layer", "unit"), [("conv2", (10, 17)), ("conv4", (5, 3))])
def test_receptive_field_is_the_input_gradients_support(zoo, digits, layer, unit):
    """Pixels outside the window cannot affect the unit; for convs before a max pool (every
    path is linear-ish, tanh never has a zero derivative) the support fills the window."""
    rf = receptive_field(zoo.probe, layer)
    r, c = unit

    def unit_value(x):
        return zoo.probe.apply(zoo.probe.params, x, [layer])[1][layer][0, r, c].sum()

    g = np.abs(np.asarray(jax.grad(unit_value)(jnp.asarray(digits[:1] + 0.3))))[0, ..., 0]
    top, left, bottom, right = rf.box(r, c)
    inside = np.zeros_like(g, bool)
    inside[top:bottom, left:right] = True
    assert g[~inside].max() == 0
    if layer == "conv2":  # no pooling before it: every pixel of the window counts
        rows, cols = np.nonzero(g)
        assert (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1) == (
            top,
            left,
            bottom,
            right,
        )
    else:
        assert g[inside].max() > 0


def test_patches_are_the_windows_under_the_top_units(zoo, digits):
    res = top_k(zoo.probe, digits, "conv3", k=9, progress=False)
    size, stride, start = MNIST_RF["conv3"]
    crops = patches(zoo.probe, digits, res, channel=2)
    assert len(crops) == 9
    for j, crop in enumerate(crops):
        r, c = res.positions[2, j]
        top, left = start + r * stride, start + c * stride
        want = digits[res.indices[2, j]][max(top, 0) : top + size, max(left, 0) : left + size]
        np.testing.assert_array_equal(crop, want)
    tiles = patches(zoo.probe, digits, res, channel=2, fill=-1.0)
    assert tiles.shape == (9, size, size, 1)
    for j, crop in enumerate(crops):  # the crop sits at its offset; outside it is the fill
        r, c = res.positions[2, j]
        dy, dx = max(0, -(start + r * stride)), max(0, -(start + c * stride))
        h, w = crop.shape[:2]
        np.testing.assert_array_equal(tiles[j, dy : dy + h, dx : dx + w], crop)
        assert (tiles[j] == -1.0).sum() == size * size - h * w
    boxes = patch_boxes(zoo.probe, res, 2)
    assert boxes.shape == (9, 4) and boxes[:, :2].min() >= 0 and boxes[:, 2:].max() <= 28
    dense = top_k(zoo.probe, digits[:50], "dense2", k=4, progress=False)
    whole = patches(zoo.probe, digits[:50], dense, channel=0)
    np.testing.assert_array_equal(np.stack(whole), digits[dense.indices[0]])


def test_tile_with_fill_places_a_border_crop_at_its_offset(zoo):
    x = np.zeros((1, 28, 28, 1), np.float32)
    x[0, 0, 0, 0] = 1.0
    res = top_k(zoo.probe, x, "conv3", k=1, progress=False)
    rf = receptive_field(zoo.probe, "conv3")
    fake = jv.dataset.TopK(
        "conv3", "max", res.values, res.indices, np.zeros((8, 1, 2), np.int64), 1, (14, 14, 8), 1
    )
    tile = patches(zoo.probe, x, fake, channel=0, fill=-1.0)[0, ..., 0]
    # unit (0, 0) of conv3 sees rows/cols -4..5: 4 rows/cols of fill, then image pixel (0, 0)
    assert rf.window(0, 0) == (-4, -4, 6, 6)
    assert (tile[:4] == -1).all() and (tile[:, :4] == -1).all() and tile[4, 4] == 1.0


class FunctionalPool(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (3, 3))(x)
        x = nn.max_pool(x, (2, 2), strides=(2, 2))  # not a module: seen in the traced graph
        return nn.Conv(4, (3, 3))(x)


def test_receptive_field_sees_a_functional_pool():
    model = FunctionalPool()
    variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
    probe = jv.Probe(model, variables, input_shape=(8, 8, 1))
    assert receptive_field(probe, "Conv_0").size == (3, 3)
    for method in ("settings", "gradient"):  # 3x3 conv, 2x2/2 pool, 3x3 conv
        rf = receptive_field(probe, "Conv_1", method=method)
        assert (rf.size, rf.stride, rf.start) == ((8, 8), (2, 2), (-3, -3)), method


# ---------------------------------------------------------------- errors


def test_errors_name_the_argument(zoo, digits):
    probe, x = zoo.probe, digits[:10]
    with pytest.raises(TypeError, match="probe must be a jaxvis.Probe"):
        top_k(zoo, x, "conv3")
    with pytest.raises(ValueError, match="unknown layer 'conv33'.*conv3"):
        top_k(probe, x, "conv33")
    with pytest.raises(ValueError, match="k must be a positive integer"):
        top_k(probe, x, "conv3", k=0)
    with pytest.raises(TypeError, match="k must be a positive integer"):
        top_k(probe, x, "conv3", k=2.5)
    with pytest.raises(ValueError, match="reduce must be one of"):
        top_k(probe, x, "conv3", reduce="median")
    with pytest.raises(ValueError, match="batches is empty"):
        top_k(probe, [], "conv3", progress=False)
    with pytest.raises(ValueError, match="batch 1 of batches has the wrong image shape"):
        top_k(probe, [x, np.zeros((2, 32, 32, 1), np.float32)], "conv3", progress=False)
    with pytest.raises(TypeError, match="batch 0 of batches must be a float array"):
        top_k(probe, [(x * 255).astype(np.uint8)], "conv3", progress=False)
    bad = x.copy()
    bad[3, 2, 2, 0] = np.nan
    with pytest.raises(ValueError, match="batch 0 of batches contains NaN"):
        top_k(probe, bad, "conv3", progress=False)
    with pytest.raises(ValueError, match="batches must be an iterable.*shape \\(28, 28\\)"):
        top_k(probe, x[0, ..., 0], "conv3", progress=False)
    with pytest.raises(TypeError, match="batches must be an iterable"):
        top_k(probe, 3, "conv3", progress=False)
    res = top_k(probe, x, "conv3", k=3, progress=False)
    with pytest.raises(ValueError, match="channel must be an integer in \\[0, 7\\]"):
        patches(probe, x, res, channel=8)
    with pytest.raises(ValueError, match="images has 5 images"):
        patches(probe, x[:5], res, channel=0)
    with pytest.raises(TypeError, match="result must be a jv.dataset.TopK"):
        patches(probe, x, {"indices": 0}, channel=0)


class OddGeometry(nn.Module):
    """Linear convs with dilation, integer, asymmetric and VALID padding, strides 1 and 2."""

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(2, (3, 3), kernel_dilation=2, name="dilated")(x)  # SAME
        x = nn.Conv(2, (4, 4), strides=2, padding=1, name="pad1")(x)
        x = nn.Conv(2, (3, 3), strides=2, padding=((2, 0), (1, 1)), name="asym")(x)
        return nn.Conv(2, (2, 2), padding="VALID", name="valid")(x)


@pytest.mark.parametrize("layer", ["dilated", "pad1", "asym", "valid"])
def test_receptive_field_with_dilation_and_explicit_padding_matches_the_gradient(layer):
    model = OddGeometry()
    variables = model.init(jax.random.key(0), jnp.zeros((1, 21, 21, 1)))
    probe = jv.Probe(model, variables, input_shape=(21, 21, 1))
    rf = receptive_field(probe, layer)
    x = jnp.asarray(np.random.default_rng(0).random((1, 21, 21, 1)), jnp.float32)

    def out(x):
        return probe.apply(probe.params, x, [layer])[1][layer][0].sum(-1)  # (h, w)

    jac = np.abs(np.asarray(jax.jacobian(out)(x)))[..., 0, :, :, 0]  # (h, w, 21, 21)
    assert jac.shape[:2] == probe.layer(layer).shape[:2]
    for r in range(jac.shape[0]):
        for c in range(jac.shape[1]):
            top, left, bottom, right = rf.box(r, c)
            support = jac[r, c] > 0
            inside = np.zeros_like(support)
            inside[top:bottom, left:right] = True
            assert not (support & ~inside).any(), (layer, r, c)
            if rf.window(r, c) == (top, left, bottom, right):  # fully inside the image
                rows, cols = np.nonzero(support)
                got = (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
                assert got == (top, left, bottom, right), (layer, r, c)
