"""Sparse autoencoders: the activations against numpy, JumpReLU's straight-through gradients by
hand, metrics against numpy on the codes, dead-latent resampling, loss recovered, and the goal
on shapes_cnn's last hidden convolution: R^2 >= 0.9 at L0 <= 16 with < 5% dead latents."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvis as jv
from jaxvis.concepts import Concepts, activations, fit
from jaxvis.concepts.sae import _jump, _resample, _step_fn, loss_recovered, sae_metrics


@pytest.fixture(scope="module")
def zoo():
    return jv.zoo.load("shapes_cnn")


@pytest.fixture(scope="module")
def ds(zoo):
    return activations(zoo.probe, zoo.x_train[:600], "act5", max_samples=20_000, progress=False)


def sparse_data(n=3000, c=16, m=40, k=3, seed=0):
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(m, c))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    z = np.zeros((n, m))
    for i in range(n):
        z[i, rng.choice(m, k, replace=False)] = rng.uniform(1, 3, k)
    return (z @ d + 0.01 * rng.normal(size=(n, c))).astype(np.float32)


def numpy_encode(c: Concepts, x: np.ndarray) -> np.ndarray:
    p = c.params
    pre = (x - p["mean"]) @ p["w_enc"] + p["b_enc"]
    if c.method == "topk":
        k = len(p["k"])
        kth = np.sort(pre, axis=1)[:, -k][:, None]
        z = np.where(pre >= kth, np.maximum(pre, 0), 0)
    elif c.method == "batchtopk":
        z = np.where(pre > p["threshold"], np.maximum(pre, 0), 0)
    else:
        z = np.where(pre > p["theta"], pre, 0)
    return z * p["scale"]


@pytest.mark.parametrize("kind", ["topk", "batchtopk", "jumprelu"])
def test_sae_encodes_as_numpy_and_learns_sparse_data(kind):
    x = sparse_data()
    sae = fit(x, 64, method=kind, k=3, steps=300, batch_size=256, l0_coeff=5e-2, progress=False)
    assert sae.directions.shape == (64, 16) and sae.info["steps"] == 300
    np.testing.assert_allclose(np.linalg.norm(sae.directions, axis=1), 1.0, rtol=1e-4)
    codes = np.asarray(sae.encode(x))
    np.testing.assert_allclose(codes, numpy_encode(sae, x), rtol=1e-4, atol=1e-4)
    m = sae_metrics(sae, x)
    rec = codes @ sae.directions + sae.params["mean"]
    r2 = 1 - np.sum((x - rec) ** 2) / np.sum((x - x.mean(0)) ** 2)
    assert m["r2"] == pytest.approx(r2, abs=1e-4)
    assert m["l0"] == pytest.approx(np.mean(np.sum(codes != 0, 1)))
    assert m["dead"] == pytest.approx(np.mean(np.all(codes == 0, 0)))
    assert m["dense"] == pytest.approx(np.mean(np.mean(codes != 0, 0) > 0.1))
    assert m["r2"] > 0.7, m
    if kind == "topk":
        assert m["l0"] <= 3.0
    else:
        assert m["l0"] < 8.0, m


def test_jumprelu_straight_through_gradients_by_hand():
    rng = np.random.default_rng(0)
    pre = jnp.asarray(rng.normal(size=(50, 6)), jnp.float32)
    theta = jnp.asarray(rng.uniform(0.2, 0.8, 6), jnp.float32)
    bw = jnp.float32(0.3)
    g_pre, g_theta = jax.grad(lambda p, t: jnp.sum(_jump(p, t, bw)), argnums=(0, 1))(pre, theta)
    p, t = np.asarray(pre), np.asarray(theta)
    near = np.abs((p - t) / 0.3) < 0.5
    np.testing.assert_allclose(g_pre, (p > t).astype(np.float32))
    np.testing.assert_allclose(g_theta, -(t / 0.3) * near.sum(0), rtol=1e-5)
    g_l0 = jax.grad(lambda t: jnp.sum(_step_fn(pre, t, bw)))(theta)
    np.testing.assert_allclose(g_l0, -near.sum(0) / 0.3, rtol=1e-5)
    np.testing.assert_array_equal(_jump(pre, theta, bw), np.where(p > t, p, 0))


def test_resampling_reinitialises_exactly_the_dead_latents():
    rng = np.random.default_rng(0)
    c, m = 8, 12
    w = rng.normal(size=(m, c)).astype(np.float32)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    params = {
        "w_enc": jnp.asarray(w.T),
        "b_enc": jnp.ones((m,), jnp.float32),
        "w_dec": jnp.asarray(w),
        "b_dec": jnp.zeros((c,), jnp.float32),
    }
    since = jnp.asarray([0, 10**6, 5, 10**6] + [0] * 8, jnp.int32)
    x = jnp.asarray(rng.normal(size=(64, c)), jnp.float32)
    hp = {"dead_after": 1000, "do_resample": True, "bandwidth": 0.1}
    new, _, since2, _, _ = _resample(
        (params, None, since, 0.0, jax.random.key(0)), x, hp, "topk", 3
    )
    dead = np.array([1, 3])
    alive = np.setdiff1d(np.arange(m), dead)
    np.testing.assert_array_equal(new["w_dec"][alive], w[alive])
    assert not np.allclose(new["w_dec"][dead], w[dead])
    np.testing.assert_allclose(np.linalg.norm(new["w_dec"], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(new["b_enc"][dead], 0.0)
    np.testing.assert_array_equal(since2[dead], 0)
    off, _, _, _, _ = _resample(
        (params, None, since, 0.0, jax.random.key(0)), x, {**hp, "do_resample": False}, "topk", 3
    )
    np.testing.assert_array_equal(off["w_dec"], w)


def test_sae_goal_on_shapes_cnn_last_conv(zoo, ds):
    sae = fit(ds, 256, method="jumprelu", l0_coeff=6e-3, steps=800, batch_size=512, progress=False)
    held = activations(zoo.probe, zoo.x_test[:100], "act5", progress=False)
    m = sae_metrics(sae, held)
    print("SAE on act5 (held out):", m)
    assert m["r2"] >= 0.9 and m["l0"] <= 16 and m["dead"] < 0.05, m
    lr = loss_recovered(zoo.probe, sae, zoo.x_test[:200], zoo.y_test[:200])
    print("loss recovered:", lr)
    assert lr["original"] <= lr["spliced"] < lr["ablated"]
    assert lr["recovered"] > 0.9


def test_loss_recovered_is_one_for_an_exact_reconstruction(zoo, ds):
    exact = fit(ds.samples, 64, method="pca", layer="act5")  # K = C: lossless
    lr = loss_recovered(zoo.probe, exact, zoo.x_test[:64], zoo.y_test[:64])
    assert lr["spliced"] == pytest.approx(lr["original"], abs=1e-4)
    assert lr["recovered"] == pytest.approx(1.0, abs=1e-3)
    kl = loss_recovered(zoo.probe, exact, zoo.x_test[:64])  # KL to the model's own predictions
    assert kl["original"] == pytest.approx(0.0, abs=1e-6)


def test_callback_stops_training_and_save_load_round_trip(tmp_path):
    x = sparse_data(n=500)
    seen = []
    sae = fit(
        x,
        32,
        method="batchtopk",
        k=3,
        steps=200,
        chunk=20,
        batch_size=100,
        progress=False,
        callback=lambda p: seen.append(p["step"]) or p["step"] < 60,
    )
    assert seen == [20, 40, 60] and sae.info["steps"] == 60
    back = Concepts.load(sae.save(tmp_path / "sae.npz"))
    assert back.method == "batchtopk" and back.params["threshold"] == sae.params["threshold"]
    np.testing.assert_array_equal(back.encode(x), sae.encode(x))


def test_sae_errors_name_the_argument():
    x = sparse_data(n=100)
    with pytest.raises(ValueError, match="k must be at most n_latents"):
        fit(x, 4, method="topk", k=8)
    with pytest.raises(ValueError, match="steps must be a positive"):
        fit(x, 8, method="topk", steps=0)
    with pytest.raises(TypeError, match="batch_size"):
        fit(x, 8, method="topk", batch_size=1.5)
    with pytest.raises(TypeError, match="takes no options"):
        fit(x, 4, method="nmf", k=3)
