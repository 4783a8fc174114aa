"""Attribution engine against independent references: closed forms, the IG paper's toy model,
scipy quadrature of the path integral, jax.grad, and hand-written guided backprop/Grad-CAM."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, ndimage
from test_attribution_helpers import images, small_probe

import jaxvis as jv
from jaxvis.attribution import (
    METHODS,
    grad_cam,
    guided_backprop,
    input_x_gradient,
    integrated_gradients,
    interior_gradients,
    nodes,
    saliency,
    smoothgrad,
    trace_counts,
)

RNG = np.random.default_rng(0)


# --------------------------------------------------------------------------- models


@functools.cache
def linear_probe() -> tuple[jv.Probe, np.ndarray]:
    w = RNG.normal(size=(4 * 4 * 2, 3)).astype(np.float32)

    def fn(params, x):  # noqa: ANN001, ANN202
        return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]

    params = {"w": jnp.asarray(w), "b": jnp.asarray([0.5, -1.0, 2.0])}
    return jv.Probe(fn, params, input_shape=(4, 4, 2), input_range=(-1.0, 1.0)), w


@functools.cache
def quadratic_probe() -> tuple[jv.Probe, np.ndarray]:
    c = RNG.normal(size=(4, 4, 2)).astype(np.float32)

    def fn(params, x):  # noqa: ANN001, ANN202
        return jnp.sum(params["c"] * x**2, axis=(1, 2, 3))[:, None]

    return jv.Probe(fn, {"c": jnp.asarray(c)}, input_shape=(4, 4, 2), input_range=(-1.0, 1.0)), c


# --------------------------------------------------------------------------- quadrature


def test_nodes_match_captum_and_trapezoid_is_correct() -> None:
    n = 50
    a, w = nodes("riemann_left", n)
    np.testing.assert_allclose(a, np.linspace(0, 1 - 1 / n, n))
    np.testing.assert_allclose(w, 1 / n)
    a, _ = nodes("riemann_right", n)
    np.testing.assert_allclose(a, np.linspace(1 / n, 1, n))
    a, _ = nodes("riemann_middle", n)
    np.testing.assert_allclose(a, np.linspace(1 / (2 * n), 1 - 1 / (2 * n), n))
    a, w = nodes("gausslegendre", n)
    x, wl = np.polynomial.legendre.leggauss(n)
    np.testing.assert_allclose(a, 0.5 * (1 + x))
    np.testing.assert_allclose(w, 0.5 * wl)
    a, w = nodes("riemann_trapezoid", n)
    np.testing.assert_allclose(a, np.linspace(0, 1, n))
    assert w.sum() == pytest.approx(1.0)  # Captum's weights sum to (n-1)/n = 0.98
    # the trapezoid rule integrates straight lines exactly
    assert np.sum(w * (3 * a + 1)) == pytest.approx(2.5)


# --------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("method", METHODS)
def test_linear_model_equals_weight_times_difference(method: str) -> None:
    probe, w = linear_probe()
    x = RNG.uniform(-1, 1, size=(3, 4, 4, 2)).astype(np.float32)
    base = RNG.uniform(-1, 1, size=(4, 4, 2)).astype(np.float32)
    res = integrated_gradients(probe, x, target=[0, 1, 2], baseline=base, steps=7, method=method)
    expected = w[:, [0, 1, 2]].T.reshape(3, 4, 4, 2) * (x - base)
    np.testing.assert_allclose(res.values, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.delta, 0, atol=1e-5)


@pytest.mark.parametrize("method", ["riemann_middle", "riemann_trapezoid", "gausslegendre"])
def test_quadratic_model_closed_form(method: str) -> None:
    probe, c = quadratic_probe()
    x = RNG.uniform(-1, 1, size=(2, 4, 4, 2)).astype(np.float32)
    res = integrated_gradients(probe, x, target=0, baseline=0.25, steps=5, method=method)
    np.testing.assert_allclose(res.values, c * (x**2 - 0.25**2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["riemann_left", "riemann_right"])
def test_quadratic_model_one_sided_riemann_error_is_first_order(method: str) -> None:
    probe, c = quadratic_probe()
    x = RNG.uniform(-1, 1, size=(2, 4, 4, 2)).astype(np.float32)
    exact = c * x**2
    errors = [
        np.abs(
            integrated_gradients(probe, x, 0, baseline="zero", steps=n, method=method).values
            - exact
        ).max()
        for n in (10, 100)
    ]
    assert errors[1] < errors[0] / 8  # O(1/n)


def _toy(params, x):  # noqa: ANN001, ANN202
    r = jax.nn.relu
    return r(r(x[:, 0, 0, 0]) - 1 - r(x[:, 0, 0, 1]))[:, None]


TOY = jv.Probe(_toy, {}, input_shape=(1, 1, 2), input_range=(-5.0, 5.0))


@pytest.mark.parametrize("method", METHODS)
def test_paper_toy_relu_model(method: str) -> None:
    probe = TOY
    x = np.array([[[[3.0, 1.0]]]], np.float32)
    res = integrated_gradients(probe, x, target=0, baseline="zero", steps=300, method=method)
    np.testing.assert_allclose(np.asarray(res.values).ravel(), [1.5, -0.5], atol=0.015)


def test_quadrature_agrees_with_scipy_path_integral() -> None:
    probe = small_probe(seed=1, size=5)
    x = images(1, size=5, seed=3)
    b = np.full_like(x, 0.2)
    score = lambda z: probe(z)[0, 1]  # noqa: E731
    grad = jax.jit(jax.grad(score))

    def integrand(a: float) -> np.ndarray:
        return np.asarray(grad(jnp.asarray(b + a * (x - b))), np.float64).ravel()

    exact, _ = integrate.quad_vec(integrand, 0.0, 1.0, epsabs=1e-7, epsrel=1e-6, norm="max")
    exact = exact.reshape(x.shape) * (x - b)
    scale = np.abs(exact).max()
    gl = integrated_gradients(probe, x, 1, baseline=0.2, steps=50).values
    np.testing.assert_allclose(gl, exact, atol=1e-5 * scale + 1e-6)
    for method, n, tol in [
        ("riemann_middle", 100, 1e-3),
        ("riemann_trapezoid", 100, 1e-3),
        ("riemann_left", 400, 1e-2),
        ("riemann_right", 400, 1e-2),
    ]:
        got = integrated_gradients(probe, x, 1, baseline=0.2, steps=n, method=method).values
        assert np.abs(got - exact).max() < tol * scale, method


def test_completeness_shrinks_with_steps() -> None:
    probe = small_probe(seed=2)
    x = images(4)
    rel = [
        float(
            np.median(
                integrated_gradients(
                    probe, x, 0, baseline="black", steps=n, method="riemann_right"
                ).relative_delta
            )
        )
        for n in (4, 16, 64)
    ]
    assert rel[0] > rel[1] > rel[2]
    gl = integrated_gradients(probe, x, 0, baseline="black", steps=50).relative_delta
    assert np.median(gl) < 1e-3


# --------------------------------------------------------------------------- options


def test_batch_size_does_not_change_results() -> None:
    probe = small_probe()
    x = images(3)
    ref = integrated_gradients(
        probe, x, [0, 1, 2], baseline=["black", "uniform"], steps=10, batch_size=60
    )
    for bs in (1, 7):
        got = integrated_gradients(
            probe, x, [0, 1, 2], baseline=["black", "uniform"], steps=10, batch_size=bs
        )
        np.testing.assert_allclose(got.values, ref.values, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(got.delta, ref.delta, atol=1e-6)
    sg = [smoothgrad(probe, x, 1, samples=6, batch_size=bs).values for bs in (5, 18)]
    np.testing.assert_allclose(sg[0], sg[1], rtol=1e-5, atol=1e-7)


def test_baselines() -> None:
    probe = small_probe()
    x = images(2)
    black = integrated_gradients(probe, x, 0, baseline="black", steps=8)
    zero = integrated_gradients(probe, x, 0, baseline=0.0, steps=8)
    np.testing.assert_allclose(black.values, zero.values)
    white = integrated_gradients(probe, x, 0, baseline="white", steps=8)
    one = integrated_gradients(probe, x, 0, baseline=np.ones((8, 8, 2), np.float32), steps=8)
    np.testing.assert_allclose(white.values, one.values)
    both = integrated_gradients(probe, x, 0, baseline=["black", "white"], steps=8)
    np.testing.assert_allclose(both.values, (black.values + white.values) / 2, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(both.delta, (black.delta + white.delta) / 2, atol=1e-6)
    blurred = jv.attribution.blur(x, 1.5)
    ref = ndimage.gaussian_filter(x, (0, 1.5, 1.5, 0), mode="nearest", truncate=7 / 1.5)
    np.testing.assert_allclose(blurred, ref, atol=1e-5)
    noise = jv.attribution.make_baselines(probe, x, ["uniform", "uniform"])
    assert (
        not np.allclose(noise[0], noise[1]) and float(noise.min()) >= 0 and float(noise.max()) <= 1
    )


def test_predicted_class_is_the_default_target() -> None:
    probe = small_probe()
    x = images(3)
    res = integrated_gradients(probe, x, steps=8)
    np.testing.assert_array_equal(res.target, np.argmax(probe(x), -1))


def test_layer_targets_and_callables() -> None:
    probe = small_probe()
    x = images(2)
    res = integrated_gradients(probe, x, target=3, layer="act2", steps=50)
    f = lambda a: a[..., 3].mean(axis=(1, 2))  # noqa: E731
    same = integrated_gradients(probe, x, target=f, layer="act2", steps=50)
    np.testing.assert_allclose(res.values, same.values, rtol=1e-5, atol=1e-7)
    acts = probe.activations(x, "act2")["act2"]
    base = probe.activations(np.zeros_like(x), "act2")["act2"]
    np.testing.assert_allclose(
        np.asarray(res.values).sum((1, 2, 3)), f(acts) - f(base), rtol=1e-3, atol=1e-5
    )
    on_output = integrated_gradients(probe, x, target=lambda out: out[:, 1] - out[:, 0], steps=8)
    one = integrated_gradients(probe, x, 1, steps=8).values
    zero = integrated_gradients(probe, x, 0, steps=8).values
    np.testing.assert_allclose(on_output.values, one - zero, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- gradient methods


def test_saliency_input_x_gradient_and_interior_match_jax_grad() -> None:
    probe = small_probe()
    x = images(2)
    grads = jax.grad(lambda z: probe(z)[:, 2].sum())(jnp.asarray(x))
    np.testing.assert_allclose(saliency(probe, x, 2).values, np.abs(grads), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(saliency(probe, x, 2, abs=False).values, grads, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        input_x_gradient(probe, x, 2).values, x * grads, rtol=1e-5, atol=1e-7
    )
    alphas = [0.1, 0.5, 1.0]
    inner = interior_gradients(probe, x, 2, alphas=alphas)
    for i, a in enumerate(alphas):
        g = jax.grad(lambda z: probe(z)[:, 2].sum())(jnp.asarray(a * x))
        np.testing.assert_allclose(inner.values[i], g, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(inner.extra["scores"][i], probe(a * x)[:, 2], rtol=1e-5)


def test_smoothgrad_variants() -> None:
    probe, c = quadratic_probe()
    x = np.random.default_rng(1).uniform(-1, 1, size=(1, 4, 4, 2)).astype(np.float32)
    plain = smoothgrad(probe, x, 0, noise=0.0, samples=3).values
    np.testing.assert_allclose(plain, 2 * c * x, rtol=1e-5)
    sigma = 0.1 * 2  # noise level times the input range (-1, 1)
    kw = dict(noise=0.1, samples=4000, seed=1)
    mean = smoothgrad(probe, x, 0, variant="smoothgrad", **kw).values
    np.testing.assert_allclose(mean, 2 * c * x, atol=0.05 * np.abs(c).max())
    var = smoothgrad(probe, x, 0, variant="vargrad", **kw).values
    np.testing.assert_allclose(var[0], 4 * c**2 * sigma**2, rtol=0.15, atol=1e-4)
    sq = smoothgrad(probe, x, 0, variant="squared", **kw).values
    np.testing.assert_allclose(sq[0], 4 * c**2 * (x[0] ** 2 + sigma**2), rtol=0.15, atol=1e-3)
    ixg = smoothgrad(probe, x, 0, noise=0.0, samples=2, base="input_x_gradient").values
    np.testing.assert_allclose(ixg, 2 * c * x**2, rtol=1e-5)


def test_guided_backprop_matches_hand_written_rule() -> None:
    probe = small_probe(fn=jax.nn.relu, seed=4)
    x = images(2)

    @jax.custom_vjp
    def guided_relu(z):  # noqa: ANN001, ANN202
        return jax.nn.relu(z)

    guided_relu.defvjp(lambda z: (jax.nn.relu(z), z), lambda z, g: (g * (z > 0) * (g > 0),))
    p = probe.params

    def conv(name, h):  # noqa: ANN001, ANN202
        k, b = p[name]["kernel"][...], p[name]["bias"][...]
        return (
            jax.lax.conv_general_dilated(
                h, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            + b
        )

    def model(z):  # noqa: ANN001, ANN202
        h = guided_relu(conv("conv2", guided_relu(conv("conv1", z)))).mean(axis=(1, 2))
        return h @ p["dense"]["kernel"][...] + p["dense"]["bias"][...]

    ref = jax.grad(lambda z: model(z)[:, 1].sum())(jnp.asarray(x))
    got = guided_backprop(probe, x, 1).values
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
    assert not np.allclose(got, saliency(probe, x, 1, abs=False).values)


def test_grad_cam_matches_closed_form() -> None:
    probe = small_probe(seed=5)
    x = images(2)
    cam = grad_cam(probe, x, target=2, layer="act2")
    acts = np.asarray(probe.activations(x, "act2")["act2"])
    w = np.asarray(probe.params["dense"]["kernel"][...])[:, 2] / (8 * 8)  # mean pool then dense
    ref = np.maximum((acts * w).sum(-1), 0)
    np.testing.assert_allclose(cam.extra["layer_map"], ref, rtol=1e-4, atol=1e-6)
    assert cam.values.shape == (2, 8, 8, 1)
    np.testing.assert_allclose(cam.values[..., 0], ref, rtol=1e-4, atol=1e-6)  # same size: no-op
    signed = grad_cam(probe, x, target=2, layer="act2", relu=False)
    np.testing.assert_allclose(signed.extra["layer_map"], (acts * w).sum(-1), rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- compiles


def _count_compiles() -> list[str]:
    events: list[str] = []

    def listener(name: str, _secs: float, **_: object) -> None:
        if name == "/jax/core/compile/backend_compile_duration":
            events.append(name)

    jax.monitoring.register_event_duration_secs_listener(listener)
    return events


def test_one_compile_for_many_targets_alphas_baselines_noise_and_seeds() -> None:
    probe = small_probe(seed=6)
    x = images(2)
    integrated_gradients(probe, x, [0, 1], baseline=0.0, steps=12)
    interior_gradients(probe, x, 0, alphas=[0.1, 0.2, 0.3])
    smoothgrad(probe, x, 0, noise=0.1, samples=5, seed=0)
    before = trace_counts()
    compiles = _count_compiles()
    for t in range(3):
        integrated_gradients(probe, x, [t, 2 - t], baseline=float(t) / 3, steps=12)
        integrated_gradients(probe, x, t, steps=12, method="riemann_middle")
        interior_gradients(probe, x, t, alphas=np.linspace(0.1 * (t + 1), 1, 3))
        smoothgrad(probe, x, t, noise=0.05 * t, samples=5, seed=t)
    assert trace_counts() == before
    assert compiles == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(target=3), ValueError, "target class 3 is out of range"),
        (dict(target=[0]), ValueError, "one class index or 2"),
        (dict(target=0, baseline=np.zeros((5, 5, 2), np.float32)), ValueError, "baseline array"),
        (dict(target=0, steps=0), ValueError, "steps must be a positive"),
        (dict(target=0, method="simpson"), ValueError, "method must be one of"),
        (dict(target=0, baseline="grey"), ValueError, "unknown baseline"),
        (dict(target=0, batch_size=0), ValueError, "batch_size"),
        (dict(target=1.5), TypeError, "target must be a class index"),
        (dict(target=0, layer="act9"), ValueError, "unknown layer 'act9'"),
        (dict(target=lambda out: out), ValueError, "one score per example"),
    ],
)
def test_bad_inputs_raise_before_compiling(kwargs: dict, error: type, match: str) -> None:
    probe = small_probe(seed=7)
    x = images(2)
    before = trace_counts()
    compiles = _count_compiles()
    with pytest.raises(error, match=match):
        integrated_gradients(probe, x, **kwargs)
    assert trace_counts() == before
    assert compiles == []


def test_bad_images_raise() -> None:
    probe = small_probe()
    x = images(2)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        integrated_gradients(probe, bad, 0)
    with pytest.raises(TypeError, match="float"):
        saliency(probe, (x * 255).astype(np.uint8), 0)
    with pytest.raises(ValueError, match="4 axes"):
        smoothgrad(probe, x[0], 0)
    with pytest.raises(ValueError, match="shape"):
        grad_cam(probe, images(1, size=6), 0)
    with pytest.raises(ValueError, match="variant"):
        smoothgrad(probe, x, 0, variant="smooth")
    with pytest.raises(ValueError, match="alphas"):
        interior_gradients(probe, x, 0, alphas=[])
