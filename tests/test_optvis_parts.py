"""Unit tests of the optvis pieces: objectives, parameterisations, transforms, regularizers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvis as jv
from jaxvis.optvis import objectives as O
from jaxvis.optvis import regularizers as R
from jaxvis.optvis import transforms as T
from jaxvis.optvis.param import fourier, pixel


def _tiny_probe() -> jv.Probe:
    """conv (4 ch) -> tanh -> dense (3 classes), as a tapped plain function."""
    key = jax.random.key(0)
    params = {
        "k": jax.random.normal(key, (3, 3, 1, 4)) * 0.5,
        "w": jax.random.normal(jax.random.fold_in(key, 1), (8 * 8 * 4, 3)) * 0.1,
    }

    def fn(p, x):
        h = jax.lax.conv_general_dilated(
            x, p["k"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        h = jv.tap("conv", h)
        h = jv.tap("act", jnp.tanh(h))
        return h.reshape(h.shape[0], -1) @ p["w"]

    return jv.Probe(fn, params, input_shape=(8, 8, 1))


# ------------------------------------------------------------------ objectives


def test_objective_algebra_and_description():
    a, b = O.channel("conv5", 3), O.channel("conv5", 7)
    assert (a - 0.5 * b).description == "channel(conv5, 3) - 0.5 * channel(conv5, 7)"
    assert (a + 2 * O.logit(1)).description == "channel(conv5, 3) + 2 * logit(1)"
    assert (-a).description == "-channel(conv5, 3)"
    assert O.as_objective("conv3:5").description == "channel(conv3, 5)"
    assert O.as_objective("conv3:*").description == "channel(conv3, *)"
    assert O.as_objective("logit:4").description == "logit(4)"
    assert O.neuron("c", 1).description == "neuron(c, 1, centre)"
    assert (a + b).layers == {"conv5"}


def test_objective_values():
    act = jnp.arange(2 * 2 * 2 * 3, dtype=jnp.float32).reshape(2, 2, 2, 3)
    acts, out = {"c": act}, jnp.asarray([[1.0, 5.0], [2.0, 3.0]])
    np.testing.assert_allclose(O.channel("c", 1)(acts), act[..., 1].mean(axis=(1, 2)))
    np.testing.assert_allclose(
        O.channel("c", [0, 2])(acts), [act[0, ..., 0].mean(), act[1, ..., 2].mean()]
    )
    np.testing.assert_allclose(O.neuron("c", 2, y=0, x=1)(acts), act[:, 0, 1, 2])
    np.testing.assert_allclose(O.logit(1)(acts, out), [5.0, 3.0])
    combo = O.channel("c", 1) - 0.5 * O.logit(0)
    np.testing.assert_allclose(combo(acts, out), act[..., 1].mean(axis=(1, 2)) - 0.5 * out[:, 0])
    d = O.direction("c", [0.0, 3.0, 4.0])(acts)
    np.testing.assert_allclose(
        d, (0.6 * act[..., 1] + 0.8 * act[..., 2]).mean(axis=(1, 2)), rtol=1e-6
    )
    assert O.deepdream("c")(acts).shape == (2,)
    assert O.diversity("c")(acts).shape == (2,)


def test_objective_bind_checks_before_compiling():
    probe = _tiny_probe()
    with pytest.raises(ValueError, match="unknown layer 'cnv'.*'conv'"):
        O.channel("cnv", 0).bind(probe)
    with pytest.raises(ValueError, match="channel 4 is out of range.*0..3"):
        O.channel("conv", 4).bind(probe)
    with pytest.raises(ValueError, match="class 3 is out of range"):
        O.logit(3).bind(probe)
    with pytest.raises(TypeError, match="channel must be an integer"):
        O.channel("conv", 1.5)
    with pytest.raises(ValueError, match="layer:channel"):
        O.as_objective("conv")
    bound = O.channel("conv", "*").bind(probe)
    assert bound.batch == 4 and bound.description == "channel(conv, [0, 1, 2, 3])"


def test_stack_same_and_mixed():
    acts = {"a": jnp.ones((3, 2, 2, 4)) * jnp.arange(4.0), "b": jnp.ones((3, 5)) * 10}
    same = O.stack([O.channel("a", 1), O.channel("a", 3), O.channel("a", 2)])
    assert same.batch == 3
    np.testing.assert_allclose(same(acts), [1, 3, 2])
    mixed = O.stack(["a:1", "b:2", "a:3"])
    np.testing.assert_allclose(mixed(acts), [1, 10, 3])
    assert mixed.layers == {"a", "b"}


# ------------------------------------------------------------------ parameterisations


@pytest.mark.parametrize(
    ("p", "shape"),
    [(pixel(), (28, 28, 1)), (fourier(), (32, 32, 3)), (fourier(squash="clip"), (15, 9, 2))],
)
def test_params_make_images_in_unit_range(p, shape):
    params, to_image = p.make(0, 2, shape)
    img = jax.jit(to_image)(params)
    assert img.shape == (2, *shape)
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0


def test_fourier_spectrum_is_one_over_f():
    p = fourier(decorrelate=False)
    params = p.init(0, 64, (32, 32, 1))
    img = jax.jit(lambda q: jax.scipy.special.logit(p.to_image(q, (32, 32, 1))))(params)[..., 0]
    power = np.abs(np.fft.rfft2(np.asarray(img))).mean(axis=0)
    assert power[1, 1] > 3 * power[12, 12]  # low frequencies dominate


@pytest.mark.parametrize("p", [pixel(), fourier()])
def test_initial_params_of_an_image_do_not_depend_on_the_batch(p):
    one = p.init(3, 1, (16, 12, 3))
    four = p.init(3, 4, (16, 12, 3))
    batch_axis = 0 if p.kind == "pixel" else 1
    np.testing.assert_array_equal(np.take(four, [0], axis=batch_axis), one)
    assert not np.array_equal(np.take(four, [1], axis=batch_axis), one)  # other images differ
    assert not np.array_equal(p.init(4, 1, (16, 12, 3)), one)  # other seeds differ
    assert abs(float(np.std(four)) - p.sd) < 0.1 * p.sd
    with pytest.raises(TypeError, match="seed"):
        p.init(jax.random.key(0), 1, (16, 12, 3))


# ------------------------------------------------------------------ transforms


@pytest.mark.parametrize(
    "t", [T.jitter(3), T.scale((0.8, 1.2)), T.rotate(15), T.scale_rotate(), T.standard(28)]
)
def test_transforms_keep_shape_and_are_reproducible_by_key(t):
    x = jax.random.uniform(jax.random.key(1), (3, 28, 28, 2))
    f = jax.jit(t)
    a, b = f(jax.random.key(5), x), f(jax.random.key(5), x)
    c = f(jax.random.key(6), x)
    expected = x.shape if not isinstance(t, T.Compose) else (3, 34, 34, 2)
    assert a.shape == expected
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    g = jax.jit(jax.grad(lambda z: t(jax.random.key(5), z).sum()))(x)
    assert g.shape == x.shape and bool(jnp.all(jnp.isfinite(g)))


def test_jitter_is_a_shift_and_identity_transforms():
    x = jax.random.uniform(jax.random.key(1), (4, 10, 10, 1))
    y = np.asarray(jax.jit(T.jitter(2))(jax.random.key(0), x))
    for i in range(4):  # each image is its reflected-padded self, shifted by at most 2 pixels
        padded = np.pad(np.asarray(x[i]), ((2, 2), (2, 2), (0, 0)), mode="reflect")
        found = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if np.allclose(padded[dy : dy + 10, dx : dx + 10], y[i])
        ]
        assert found
    same = jax.jit(T.scale_rotate((1.0, 1.0), 0.0))(jax.random.key(0), x)
    np.testing.assert_allclose(same, x, atol=1e-6)


@pytest.mark.parametrize(
    ("size", "pad", "j1", "j2"), [(28, 3, 2, 1), (32, 3, 2, 1), (128, 12, 8, 4)]
)
def test_lucid_is_the_standard_chain_in_one_resampling(size, pad, j1, j2):
    # Reference: the chain of separate transforms (pad, jitter, scale+rotate, jitter, crop).
    chain = T.compose(T.pad(pad, "constant"), T.jitter(j1), T.scale_rotate(), T.jitter(j2))
    fused = T.lucid(j1, (0.9, 1.1), 10.0, j2)
    x = jax.random.uniform(jax.random.key(1), (6, size, size, 3))
    key = jax.random.key(size)
    g = jax.random.normal(jax.random.key(9), x.shape)

    def reference(z):
        return T.center_crop(chain(key, z), (size, size))

    np.testing.assert_allclose(fused(key, x), reference(x), atol=5e-5)
    ref_grad = jax.grad(lambda z: (reference(z) * g).sum())(x)
    got_grad = jax.grad(lambda z: (fused(key, z) * g).sum())(x)
    np.testing.assert_allclose(got_grad, ref_grad, atol=5e-4)
    assert T.standard(28) == T.lucid(2, (0.9, 1.1), 10.0, 1)


@pytest.mark.parametrize(
    ("factor", "degrees"), [(1.1, 10), (0.9, -10), (1.0, 0), (2.0, 45), (0.5, 30)]
)
def test_warp_gradient_is_the_scatter_add_transpose(factor, degrees):
    from jaxvis.optvis._warp import reach_bound, sample_plain, warp

    a = np.deg2rad(degrees)
    m = jnp.asarray([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], jnp.float32) / factor
    c = jnp.asarray([10.0, 7.0])
    b = c - m @ c + jnp.asarray([1.0, -2.0])
    x = jax.random.uniform(jax.random.key(0), (21, 15, 2))
    g = jax.random.normal(jax.random.key(1), (21, 15, 2))
    ref = jax.grad(lambda z: (sample_plain(z, m, b) * g).sum())(x)  # XLA's scatter-add
    got = jax.grad(lambda z: (warp(z, m, b, reach_bound(factor, degrees)) * g).sum())(x)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    np.testing.assert_array_equal(warp(x, m, b, 1.0), sample_plain(x, m, b))


def test_warp_identity_and_shift_with_grey_outside():
    from jaxvis.optvis._warp import warp

    x = jax.random.uniform(jax.random.key(0), (6, 5, 1))
    np.testing.assert_allclose(warp(x, jnp.eye(2), jnp.zeros(2), 1.0), x, atol=1e-7)
    shifted = np.asarray(warp(x, jnp.eye(2), jnp.asarray([2.0, -1.0]), 1.0))
    expected = np.full_like(np.asarray(x), 0.5)
    expected[:4, 1:] = np.asarray(x)[2:, :4]  # out[i, j] = x[i + 2, j - 1], grey outside
    np.testing.assert_allclose(shifted, expected, atol=1e-7)


# ------------------------------------------------------------------ regularizers


def _high_freq_energy(x):
    spec = np.abs(np.fft.fft2(np.asarray(x)[..., 0])) ** 2
    f = np.sqrt(np.fft.fftfreq(x.shape[1])[:, None] ** 2 + np.fft.fftfreq(x.shape[2])[None] ** 2)
    return spec[:, f > 0.25].sum()


def test_blur_lowers_high_frequency_energy():
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 1))
    e0 = _high_freq_energy(x)
    e1 = _high_freq_energy(R.gaussian_blur(x, jnp.float32(0.5)))
    e2 = _high_freq_energy(R.gaussian_blur(x, jnp.float32(1.0)))
    assert e2 < e1 < 0.5 * e0
    np.testing.assert_array_equal(R.gaussian_blur(x, jnp.float32(0.0)), x)


def test_decay_lowers_the_norm():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    y = R.decay(x, jnp.float32(0.3))
    np.testing.assert_allclose(jnp.linalg.norm(y), 0.7 * jnp.linalg.norm(x), rtol=1e-5)


@pytest.mark.parametrize("pct", [20.0, 50.0, 90.0])
def test_percentile_clips_zero_the_expected_fraction(pct):
    x = jax.random.normal(jax.random.key(0), (3, 32, 32, 3))
    g = jax.random.normal(jax.random.key(1), (3, 32, 32, 3))
    for y in (
        R.clip_small_norm(x, jnp.float32(pct)),
        R.clip_small_contribution(x, g, jnp.float32(pct)),
    ):
        zeroed = np.asarray(jnp.all(y == 0, axis=-1)).mean(axis=(1, 2))
        np.testing.assert_allclose(zeroed, pct / 100, atol=2 / 1024)
    kept = R.clip_small_norm(x, jnp.float32(pct))
    norms = np.linalg.norm(np.asarray(x), axis=-1)
    survivors = np.asarray(jnp.any(kept != 0, axis=-1))
    for i in range(3):  # in each image, the pixels with the smallest norms went
        assert norms[i][survivors[i]].min() >= norms[i][~survivors[i]].max()
    np.testing.assert_array_equal(R.clip_small_norm(x, jnp.float32(0.0)), x)


def test_penalties():
    grey = jnp.full((1, 4, 4, 1), 0.5)
    noisy = grey + 0.1 * jax.random.normal(jax.random.key(0), grey.shape)
    for fn in (R.l1, R.l2, R.tv):
        assert float(fn(grey)[0]) == 0.0 and float(fn(noisy)[0]) > 0


def test_presets_match_the_paper():
    table = {
        k: (v.decay, v.blur_sigma, v.blur_every, v.norm_pct, v.contrib_pct)
        for k, v in jv.optvis.YOSINSKI.items()
    }
    assert table == {
        "yosinski1": (0, 0.5, 4, 50, 0),
        "yosinski2": (0.3, 0, 0, 20, 0),
        "yosinski3": (1e-4, 1.0, 4, 0, 0),
        "yosinski4": (0, 0.5, 4, 0, 90),
    }
    assert jv.optvis.PRESETS["lucid"].param == fourier()
    with pytest.raises(ValueError, match="decay"):
        R.Regularizers(decay=-1)
    with pytest.raises(ValueError, match="percentile"):
        R.Regularizers(norm_pct=120)
