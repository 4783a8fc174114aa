"""Concept views against independent references: K-at-once feature visualisation equals
one-by-one, top-k equals brute force over numpy codes, heatmaps equal encode(activations),
gradient x code equals finite differences, Sobol indices equal the closed form of a linear
model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvis as jv
from jaxvis.attribution._edit import edited_apply
from jaxvis.concepts import activations, fit, views


@pytest.fixture(scope="module")
def zoo():
    return jv.zoo.load("shapes_cnn")


@pytest.fixture(scope="module")
def concepts(zoo):
    ds = activations(zoo.probe, zoo.x_train[:200], "act5", max_samples=6000, progress=False)
    return fit(ds, 5, method="seminmf")


def test_feature_vis_of_k_concepts_at_once_equals_one_by_one(zoo, concepts):
    kw = dict(steps=12, chunk=12, transforms=None)
    both = views.feature_vis(zoo.probe, concepts, which=[1, 3], **kw)
    assert both.images.shape == (2, 32, 32, 3)
    one = views.feature_vis(zoo.probe, concepts, which=1, **kw)
    np.testing.assert_allclose(both.images[0], one.images[0], atol=2e-4)
    # image i starts from the same noise in any batch: concept 3 in second place, either way
    other = views.feature_vis(zoo.probe, concepts, which=[0, 3], **kw)
    np.testing.assert_allclose(both.images[1], other.images[1], atol=2e-4)
    assert not np.allclose(both.images[0], other.images[0], atol=1e-2)
    assert np.all(both.history[-1] > both.history[0])  # each image's direction grew


def test_top_k_equals_brute_force_over_codes(zoo, concepts):
    x = zoo.x_train[:150]
    res = views.top_k(zoo.probe, x, concepts, k=5, batch_size=64, progress=False)
    acts = np.asarray(zoo.probe.activations(x, ["act5"])["act5"])
    codes = np.asarray(concepts.encode(acts))  # (150, 8, 8, 5)
    score = codes.reshape(150, 64, 5).max(1)
    order = np.argsort(-score.T, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(res.indices, order)
    np.testing.assert_allclose(res.values, np.take_along_axis(score.T, order, 1), rtol=1e-4)
    assert res.layer == "act5"
    crops = views.patches(zoo.probe, x, res, 2, fill=0.0)
    assert crops.shape[0] == 5 and crops.shape[-1] == 3


def test_heatmap_is_the_codes_at_every_position(zoo, concepts):
    x = zoo.x_test[:3]
    heat = views.heatmap(zoo.probe, concepts, x)
    acts = zoo.probe.activations(x, ["act5"])["act5"]
    np.testing.assert_allclose(heat, concepts.encode(acts), rtol=1e-4, atol=1e-5)
    big = views.heatmap(zoo.probe, concepts, x, upsample=True)
    assert big.shape == (3, 32, 32, 5)


def test_gradient_times_code_equals_finite_differences(zoo, concepts):
    x = jnp.asarray(zoo.x_test[:4])
    target = 2
    imp = views.importance(zoo.probe, concepts, x, target, per_image=True)
    assert imp.shape == (4, 5)
    codes0 = concepts.encode(zoo.probe.activations(x, ["act5"])["act5"])

    def logit(scale):  # concept k's codes scaled by (1 + scale[k]); the residual kept
        def edit(a):
            return a + concepts.decode(codes0 * (1 + scale)) - concepts.decode(codes0)

        out, _ = edited_apply(zoo.probe, zoo.probe.params, x, {"act5": edit})
        return np.asarray(out[:, target], np.float64)

    eps = 1e-2
    for k in range(5):
        e = np.zeros(5, np.float32)
        e[k] = eps
        fd = (logit(jnp.asarray(e)) - logit(jnp.asarray(-e))) / (2 * eps)
        np.testing.assert_allclose(imp[:, k], fd, rtol=2e-2, atol=2e-3)


def test_sobol_indices_of_a_linear_head_match_the_closed_form():
    rng = np.random.default_rng(0)
    params = {
        "a": jnp.asarray(rng.normal(size=(12, 3)), jnp.float32),
        "w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32),
    }

    def fn(p, x):
        h = jv.tap("feat", x.reshape(x.shape[0], -1) @ p["a"])
        return h @ p["w"]

    probe = jv.Probe(fn, params, input_shape=(2, 2, 3))
    x = rng.uniform(size=(40, 2, 2, 3)).astype(np.float32)
    feats = np.asarray(probe.activations(x, ["feat"])["feat"])
    pca = fit(feats, 3, method="pca")  # K = C: the codes span the layer
    imp = views.importance(
        probe, pca, x[:2], 1, layer="feat", method="sobol", n_design=4000, per_image=True
    )
    codes = np.asarray(pca.encode(feats[:2]))
    a = codes * (pca.directions @ np.asarray(params["w"])[:, 1])  # logit = sum_k m_k a_k + c
    expect = a**2 / np.sum(a**2, axis=1, keepdims=True)  # independent uniform masks
    np.testing.assert_allclose(imp, expect, atol=0.05)


def test_view_errors_name_the_argument(zoo, concepts):
    with pytest.raises(ValueError, match="which must lie"):
        views.feature_vis(zoo.probe, concepts, which=7, steps=1)
    with pytest.raises(ValueError, match="5 channels|64 channels but layer 'act3' has 32"):
        views.heatmap(zoo.probe, concepts, zoo.x_test[:1], layer="act3")
    with pytest.raises(ValueError, match="target must lie"):
        views.importance(zoo.probe, concepts, zoo.x_test[:2], 9)
    with pytest.raises(ValueError, match="method must be"):
        views.importance(zoo.probe, concepts, zoo.x_test[:2], 1, method="shap")
    with pytest.raises(TypeError, match="concepts must be"):
        views.heatmap(zoo.probe, np.eye(3), zoo.x_test[:1])
    _ = jax  # noqa
