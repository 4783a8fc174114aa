"""jv.concepts: activation datasets (against probe.activations, on 1 and 4 devices, ViT tokens,
reservoir sampling) and the factorisations against independent references: NMF against
scikit-learn's NMF, Semi-NMF against a numpy implementation of Ding et al., PCA against numpy's
SVD and scikit-learn's PCA; save/load without pickle; clear errors."""

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

import jaxvis as jv
from jaxvis.concepts import Concepts, activations, fit
from jaxvis.concepts.acts import _Reservoir


@pytest.fixture(scope="module")
def zoo():
    return jv.zoo.load("shapes_cnn")


@pytest.fixture(scope="module")
def images(zoo):
    return zoo.x_test[:40]


def tiny_vit(seed: int = 0) -> jv.Probe:
    """A 16x16 RGB ViT: 4x4 patches of 4 px, a class token, one attention block, D = 12."""
    rng = np.random.default_rng(seed)
    d = 12
    params = {
        "embed": jnp.asarray(rng.normal(0, 0.2, (48, d)), jnp.float32),
        "cls": jnp.asarray(rng.normal(0, 0.2, (1, d)), jnp.float32),
        "qkv": jnp.asarray(rng.normal(0, 0.3, (d, 3 * d)), jnp.float32),
        "mlp": jnp.asarray(rng.normal(0, 0.3, (d, d)), jnp.float32),
        "head": jnp.asarray(rng.normal(0, 0.3, (d, 3)), jnp.float32),
    }

    def fn(p, x):
        b = x.shape[0]
        patches = x.reshape(b, 4, 4, 4, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(b, 16, 48)
        t = jnp.concatenate([jnp.broadcast_to(p["cls"], (b, 1, d)), patches @ p["embed"]], 1)
        q, k, v = jnp.split(t @ p["qkv"], 3, axis=-1)
        att = jax.nn.softmax(q @ k.transpose(0, 2, 1) / np.sqrt(d), axis=-1)
        t = t + att @ v
        t = jv.tap("block1", t + jax.nn.gelu(t @ p["mlp"]))
        return t[:, 0] @ p["head"]

    return jv.Probe(fn, params, input_shape=(16, 16, 3), token_grid=(4, 4))


# ---------------------------------------------------------------- activation datasets


def test_activations_are_the_layer_at_every_position(zoo, images):
    ds = activations(zoo.probe, images, "act5", batch_size=17, progress=False)
    ref = np.asarray(zoo.probe.activations(images, ["act5"])["act5"])  # (40, 8, 8, 64)
    assert ds.grid == (8, 8) and len(ds) == 40 * 64 and ds.n_images == 40 and ds.n_channels == 64
    got = ref[ds.image_index, ds.positions[:, 0], ds.positions[:, 1]]
    np.testing.assert_allclose(ds.samples, got, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ds.samples, ref.reshape(-1, 64), rtol=1e-5, atol=1e-5)


def test_reservoir_keeps_real_rows_and_bounds_memory(zoo, images):
    ds = activations(
        zoo.probe, images, "act5", max_samples=500, positions_per_image=20, progress=False
    )
    ref = np.asarray(zoo.probe.activations(images, ["act5"])["act5"])
    assert len(ds) == 500 and ds.n_seen == 40 * 20
    got = ref[ds.image_index, ds.positions[:, 0], ds.positions[:, 1]]
    np.testing.assert_allclose(ds.samples, got, rtol=1e-5, atol=1e-5)
    assert len(set(zip(ds.image_index, map(tuple, ds.positions), strict=True))) == 500
    assert np.all(np.bincount(ds.image_index, minlength=40) <= 20)


def test_reservoir_is_uniform():
    # every one of 2,000 streamed rows is kept with chance 200 / 2000, whatever its block
    counts = np.zeros(2000)
    for seed in range(300):
        r = _Reservoir(200, np.random.default_rng(seed))
        for s in range(0, 2000, 137):
            ids = np.arange(s, min(s + 137, 2000))
            r.add(ids[:, None].astype(np.float32), ids, np.zeros((len(ids), 2)))
        rows, img, _ = r.result()
        assert len(np.unique(img)) == 200
        np.testing.assert_array_equal(rows[:, 0], img)
        counts[img] += 1
    p = counts / 300
    assert abs(p.mean() - 0.1) < 1e-9
    # first, middle and last blocks are kept at the same rate (binomial sd ~ 0.0017 per 100)
    blocks = p.reshape(20, 100).mean(1)
    assert np.all(np.abs(blocks - 0.1) < 0.012), blocks


def test_vit_patch_tokens_are_samples_without_the_class_token():
    probe = tiny_vit()
    x = np.random.default_rng(1).uniform(size=(6, 16, 16, 3)).astype(np.float32)
    ds = activations(probe, x, "block1", progress=False)
    tokens = np.asarray(probe.activations(x, ["block1"])["block1"])  # (6, 17, 12)
    assert ds.grid == (4, 4) and len(ds) == 6 * 16
    np.testing.assert_allclose(ds.samples, tokens[:, 1:].reshape(-1, 12), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ds.positions[:5], [[0, 0], [0, 1], [0, 2], [0, 3], [1, 0]])


_FOUR = """
import json, sys
import numpy as np, jax
import jaxvis as jv
sys.path.insert(0, sys.argv[2])
from test_concepts import tiny_vit
zoo = jv.zoo.load("shapes_cnn")
ds = jv.concepts.activations(zoo.probe, zoo.x_test[:30], "act5", batch_size=13,
                             max_samples=700, progress=False)
vit = tiny_vit()
x = np.random.default_rng(1).uniform(size=(10, 16, 16, 3)).astype(np.float32)
sae = jv.concepts.fit(jv.concepts.activations(vit, x, "block1", progress=False), 24,
                      method="topk", k=4, steps=60, batch_size=64, chunk=20, progress=False)
json.dump({"devices": len(jax.devices()), "n_dev": ds.n_devices,
           "samples": ds.samples.tolist(), "img": ds.image_index.tolist(),
           "sae_dirs": sae.directions.tolist(), "sae_devices": sae.info["n_devices"]},
          open(sys.argv[1], "w"))
"""


def test_four_forced_host_devices_give_the_single_device_result(zoo, tmp_path):
    script = tmp_path / "four.py"
    script.write_text(textwrap.dedent(_FOUR))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    env.pop("JAX_PLATFORMS", None)
    here = os.path.dirname(__file__)
    subprocess.run(
        [sys.executable, str(script), str(tmp_path / "o.json"), here], env=env, check=True
    )
    four = json.loads((tmp_path / "o.json").read_text())
    assert four["devices"] == 4 and four["n_dev"] == 4 and four["sae_devices"] == 4
    one = activations(
        zoo.probe, zoo.x_test[:30], "act5", batch_size=13, max_samples=700, progress=False
    )
    assert one.n_devices == 1
    np.testing.assert_array_equal(four["img"], one.image_index)
    np.testing.assert_allclose(four["samples"], one.samples, rtol=1e-5, atol=1e-5)
    # an SAE on ViT patch tokens, data-parallel on 4 devices, trains to the 1-device result
    vit = tiny_vit()
    x = np.random.default_rng(1).uniform(size=(10, 16, 16, 3)).astype(np.float32)
    sae = fit(
        activations(vit, x, "block1", progress=False),
        24,
        method="topk",
        k=4,
        steps=60,
        batch_size=64,
        chunk=20,
        progress=False,
    )
    np.testing.assert_allclose(four["sae_dirs"], sae.directions, atol=2e-3)


# ---------------------------------------------------------------- factorisations


def nonneg_data(n=1500, c=24, k=5, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.gamma(0.5, 1.0, (n, k))
    h = rng.gamma(0.5, 1.0, (k, c))
    return (w @ h + 0.05 * rng.uniform(size=(n, c))).astype(np.float32)


def test_nmf_reaches_sklearns_objective():
    from sklearn.decomposition import NMF

    x = nonneg_data()
    ours = fit(x, 5, method="nmf", max_iter=500, tol=1e-6)
    sk = NMF(5, init="nndsvda", max_iter=1000, tol=1e-6).fit(x)
    ref = 0.5 * sk.reconstruction_err_**2
    assert ours.info["objective"] <= 1.02 * ref, (ours.info["objective"], ref)
    assert np.all(ours.directions >= 0) and np.all(ours.train_codes >= 0)
    np.testing.assert_allclose(np.linalg.norm(ours.directions, axis=1), 1.0, rtol=1e-5)
    # encoding the data again with the directions fixed gets the fit's own error back
    err_fit = np.sum((x - ours.train_codes @ ours.directions) ** 2) / np.sum(x**2)
    assert ours.reconstruction_error(x) <= err_fit * 1.01 + 1e-7
    assert np.all(np.asarray(ours.encode(x)) >= 0)


def seminmf_numpy(x, k, iters=500, seed=0):
    """Ding, Li & Jordan (2010) in numpy, X^T ~ F G^T with G >= 0, k-means start."""
    from sklearn.cluster import KMeans

    labels = KMeans(k, n_init=3, random_state=seed).fit_predict(x)
    g = np.eye(k)[labels] + 0.2
    xt = x.T.astype(np.float64)
    for _ in range(iters):
        f = xt @ g @ np.linalg.inv(g.T @ g)
        a, b = xt.T @ f, f.T @ f
        ap, an = (np.abs(a) + a) / 2, (np.abs(a) - a) / 2
        bp, bn = (np.abs(b) + b) / 2, (np.abs(b) - b) / 2
        g = g * np.sqrt((ap + g @ bn) / np.maximum(an + g @ bp, 1e-12))
    return 0.5 * np.sum((xt - f @ g.T) ** 2)


def test_seminmf_matches_a_numpy_reference_and_beats_no_svd_bound():
    rng = np.random.default_rng(3)
    codes = rng.gamma(0.7, 1.0, (1200, 4))
    dirs = rng.normal(size=(4, 16))
    x = (codes @ dirs + 0.1 * rng.normal(size=(1200, 16))).astype(np.float32)
    ours = fit(x, 4, method="seminmf", max_iter=500, tol=1e-7)
    ref = seminmf_numpy(x, 4)
    s = np.linalg.svd(x.astype(np.float64), compute_uv=False)
    bound = 0.5 * np.sum(s[4:] ** 2)  # Eckart-Young: no rank-4 model does better
    assert bound * 0.999 <= ours.info["objective"] <= 1.02 * ref, (bound, ours.info, ref)
    assert np.all(ours.train_codes >= 0) and np.any(ours.directions < 0)
    assert np.all(np.asarray(ours.encode(x)) >= 0)
    assert ours.reconstruction_error(x) < 0.02


def test_pca_matches_numpy_svd_and_sklearn():
    from sklearn.decomposition import PCA

    x = np.random.default_rng(2).normal(size=(800, 10)) @ np.diag(np.arange(10, 0, -1))
    x = x.astype(np.float32) + 3.0
    ours = fit(x, 4, method="pca")
    _, s, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
    cos = np.abs(np.sum(ours.directions * vt[:4], axis=1))
    np.testing.assert_allclose(cos, 1.0, atol=1e-4)
    sk = PCA(4).fit(x)
    np.testing.assert_allclose(ours.info["explained_variance"], sk.explained_variance_, rtol=1e-3)
    codes = np.asarray(ours.encode(x))
    np.testing.assert_allclose(np.abs(codes), np.abs(sk.transform(x)), rtol=1e-3, atol=1e-3)
    rec = np.asarray(ours.decode(codes))
    np.testing.assert_allclose(rec, sk.inverse_transform(sk.transform(x)), atol=1e-3)
    assert abs(ours.r2(x) - sk.explained_variance_ratio_.sum()) < 1e-4


def test_encode_accepts_maps_and_is_traceable():
    x = nonneg_data(n=300, c=8, k=3)
    c = fit(x, 3, method="nmf")
    maps = x[:32].reshape(2, 4, 4, 8)
    codes = c.encode(maps)
    assert codes.shape == (2, 4, 4, 3)
    np.testing.assert_allclose(codes.reshape(-1, 3), c.encode(x[:32]), rtol=1e-4, atol=1e-5)
    g = jax.grad(lambda a: jnp.sum(c.decode(c.encode(a))))(jnp.asarray(maps))
    assert g.shape == maps.shape and np.isfinite(np.asarray(g)).all()


@pytest.mark.parametrize("method", ["nmf", "seminmf", "pca", "ica"])
def test_save_and_load_without_pickle(method, tmp_path):
    x = nonneg_data(n=200, c=6, k=2)
    c = fit(x, 2, method=method, layer="act5")
    path = c.save(tmp_path / "c.npz")
    with np.load(path, allow_pickle=False) as f:
        assert all(f[k].dtype != object for k in f.files)
    back = Concepts.load(path)
    assert back.method == method and back.layer == "act5" and back.n_concepts == 2
    np.testing.assert_array_equal(back.directions, c.directions)
    np.testing.assert_allclose(back.encode(x), c.encode(x), rtol=1e-6)


def test_errors_name_the_argument():
    x = nonneg_data(n=100, c=6, k=2)
    with pytest.raises(ValueError, match="non-negative.*seminmf"):
        fit(x - 1.0, 2, method="nmf")
    with pytest.raises(ValueError, match="n_concepts must be a positive"):
        fit(x, 0)
    with pytest.raises(TypeError, match="n_concepts"):
        fit(x, 2.5)
    with pytest.raises(ValueError, match="n_concepts must be at most the number of channels"):
        fit(x, 7, method="pca")
    with pytest.raises(ValueError, match="method must be one of"):
        fit(x, 2, method="ica2")
    with pytest.raises(ValueError, match=r"acts must be an \(N, C\)"):
        fit(x[0], 2)
    with pytest.raises(ValueError, match="NaN"):
        fit(np.full((10, 6), np.nan, np.float32), 2)
    with pytest.raises(TypeError, match="float"):
        fit(np.ones((10, 6), bool), 2)
    with pytest.raises(TypeError, match="acts must be"):
        fit("x", 2)
    c = fit(x, 2, method="pca")
    with pytest.raises(ValueError, match="6 channels"):
        c.encode(np.ones((3, 5)))
    with pytest.raises(ValueError, match="codes must have 2"):
        c.decode(np.ones((3, 3)))
    with pytest.raises(ValueError, match="max_samples"):
        activations(
            jv.zoo.load("shapes_cnn").probe, np.zeros((2, 32, 32, 3)), "act5", max_samples=0
        )
    with pytest.raises(ValueError, match="act55"):
        activations(jv.zoo.load("shapes_cnn").probe, np.zeros((2, 32, 32, 3)), "act55")


def test_ica_recovers_independent_sources_as_sklearn_does():
    from sklearn.decomposition import FastICA

    rng = np.random.default_rng(0)
    sources = np.stack(
        [rng.laplace(size=3000), np.sign(rng.normal(size=3000)), rng.uniform(-1, 1, 3000)], 1
    )
    mixing = rng.normal(size=(3, 8))
    x = (sources @ mixing + 0.01 * rng.normal(size=(3000, 8))).astype(np.float32)
    ours = fit(x, 3, method="ica")
    sk = FastICA(3, whiten="unit-variance", random_state=0, max_iter=500).fit(x)

    def match(est):  # |correlation| of each true source with its best estimate
        c = np.abs(np.corrcoef(sources.T, est.T)[:3, 3:])
        return c.max(1)

    codes = np.asarray(ours.encode(x))
    assert np.all(match(codes) > 0.99), match(codes)
    assert np.all(match(sk.transform(x)) > 0.99)
    # the directions are the mixing rows (up to order and sign)
    cos = np.abs(ours.directions @ (mixing / np.linalg.norm(mixing, axis=1, keepdims=True)).T)
    assert np.all(cos.max(1) > 0.99)
    assert ours.r2(x) > 0.99


def test_crops_are_samples_as_in_craft(zoo, images):
    import jax.image

    ds = activations(zoo.probe, images[:6], "act5", crops=3, crop_size=0.5, progress=False)
    assert len(ds) == 18 and ds.grid is None and ds.n_channels == 64
    for r in (0, 7, 17):
        i, (t, left) = ds.image_index[r], ds.positions[r]
        crop = images[i, t : t + 16, left : left + 16][None]
        big = jax.image.resize(crop, (1, 32, 32, 3), "bilinear")
        ref = np.asarray(zoo.probe.activations(big, ["act5"])["act5"]).mean((1, 2))[0]
        np.testing.assert_allclose(ds.samples[r], ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="crop_size"):
        activations(zoo.probe, images[:2], "act5", crops=2, crop_size=1.5)
