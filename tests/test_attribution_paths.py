"""Blur IG, Guided IG and XRAI against PAIR's ``saliency`` (its BlurIG, GuidedIG and XRAI
classes), driven by the same zoo model: a numpy ``call_model_function`` whose gradients come
from plain ``jax.grad`` of the probe's logits, written here."""

from __future__ import annotations

import functools
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import saliency.core as saliency
import saliency.core.guided_ig as pair_guided_ig
import saliency.core.xrai as pair_xrai
from scipy import ndimage

import jaxvis as jv
from jaxvis.attribution import blur_ig, guided_ig, integrated_gradients, trace_counts, xrai
from jaxvis.attribution.xrai import felzenszwalb_masks

GRADS = saliency.INPUT_OUTPUT_GRADIENTS


@functools.cache
def load(name: str):  # noqa: ANN201
    """One zoo model per test module: jaxvis compiles per probe, so the tests share programs."""
    return jv.zoo.load(name)


@pytest.fixture(scope="module", autouse=True)
def pair_on_numpy_2():
    """PAIR's GuidedIG calls ``np.quantile(..., interpolation='lower')``, a keyword numpy 2
    removed (``method=`` now): give its module a numpy whose quantile takes the old name."""
    shim = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    shim.quantile = lambda a, q, interpolation="linear", **kw: np.quantile(
        a, q, method=interpolation, **kw
    )
    saved, pair_guided_ig.np = pair_guided_ig.np, shim
    yield
    pair_guided_ig.np = saved


@pytest.fixture(scope="module", params=["mnist_cnn", "shapes_cnn"])
def zoo(request: pytest.FixtureRequest):  # noqa: ANN201
    return request.param, load(request.param)


def call_model(probe: jv.Probe):  # noqa: ANN201
    """PAIR's ``call_model_function``: gradients of the target logit (``call_model_args``)."""

    @jax.jit
    def grads(xb: jax.Array, t: jax.Array) -> jax.Array:
        def total(v: jax.Array) -> jax.Array:
            logits = probe.apply(probe.params, v, (), False)[0]
            return jnp.take_along_axis(logits, t[:, None], 1).sum()

        return jax.grad(total)(xb)

    def fn(xb: np.ndarray, call_model_args: dict, expected_keys: list) -> dict:
        assert expected_keys == [GRADS]
        t = np.full((len(xb),), call_model_args["target"], np.int32)
        return {GRADS: np.asarray(grads(jnp.asarray(xb, jnp.float32), jnp.asarray(t)))}

    return fn


def close(got: jax.Array, want: np.ndarray, tol: float) -> None:
    want = np.asarray(want)
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=tol * np.abs(want).max())


# mnist_cnn max-pools: on the heavily blurred, almost flat images of the blur path a pool
# window's maximum can tie to float32 rounding, and scipy's blur and jaxvis's differ by ~1e-7,
# so a gradient goes to another pixel; shapes_cnn (average pooling) agrees to ~1e-4
BLUR_TOL = {"mnist_cnn": 5e-3, "shapes_cnn": 1e-3}


def test_blur_ig_equals_pair(zoo) -> None:
    name, z = zoo
    x, y = z.x_test[:2], z.y_test[:2].astype(np.int32)
    fn = call_model(z.probe)
    res = blur_ig(z.probe, x, y, steps=20)  # PAIR's max_sigma=50, grad_step=0.01
    root = blur_ig(z.probe, x, y, steps=20, max_sigma=6.0, sqrt=True)  # traced: same program
    for i in range(len(x)):
        args = {"target": int(y[i])}
        want = saliency.BlurIG().GetMask(x[i], fn, args, steps=20, batch_size=20)
        close(res.values[i], want, BLUR_TOL[name])
        # PAIR scales a batch by the last step's sigma difference: batch 1 with sqrt spacing
        want = saliency.BlurIG().GetMask(x[i], fn, args, max_sigma=6, steps=20, sqrt=True)
        close(root.values[i], want, BLUR_TOL[name])
    blurred = np.stack([ndimage.gaussian_filter(im, (50, 50, 0), mode="constant") for im in x])
    f_b = np.asarray(z.probe(blurred))[np.arange(2), y]
    np.testing.assert_allclose(res.baseline_score, f_b, rtol=1e-4, atol=1e-4)
    gap = np.asarray(res.values).reshape(2, -1).sum(-1) - (np.asarray(res.score) - f_b)
    np.testing.assert_allclose(res.delta, gap, rtol=1e-4, atol=1e-3)


def test_guided_ig_equals_pair(zoo) -> None:
    name, z = zoo
    x, y = z.x_test[:2], z.y_test[:2].astype(np.int32)
    fn = call_model(z.probe)
    res = guided_ig(z.probe, x, y, steps=30)  # fraction 0.25, max_dist 0.02
    free = guided_ig(z.probe, x, y, steps=16, fraction=0.1, max_dist=1.0, baseline="white")
    for i in range(len(x)):
        args = {"target": int(y[i])}
        zeros, ones = np.zeros_like(x[i]), np.ones_like(x[i])
        want = saliency.GuidedIG().GetMask(x[i], fn, args, x_baseline=zeros, x_steps=30)
        close(res.values[i], want, 1e-4)
        want = saliency.GuidedIG().GetMask(
            x[i], fn, args, x_baseline=ones, x_steps=16, fraction=0.1, max_dist=1.0
        )
        close(free.values[i], want, 1e-4)
    # no deviation allowed: the straight line, gradients at the left end of each step
    line = guided_ig(z.probe, x, y, steps=10, max_dist=0.0)
    ig = integrated_gradients(z.probe, x, y, steps=10, method="riemann_left")
    close(line.values, np.asarray(ig.values), 1e-4)


def test_xrai_equals_pair(zoo) -> None:
    name, z = zoo
    x, y = z.x_test[:2], z.y_test[:2].astype(np.int32)
    fn = call_model(z.probe)
    # PAIR's own segmentation (its private helper), once per image: jaxvis's masks equal it
    pair_segs = [pair_xrai._get_segments_felzenszwalb(im) for im in x]
    ours = [felzenszwalb_masks(im) for im in x]
    for want, got in zip(pair_segs, ours, strict=True):
        np.testing.assert_array_equal(got, np.stack(want))
    res = xrai(z.probe, x, y, steps=10)  # segments found by jaxvis
    padded = np.zeros((2, max(len(m) for m in ours), *x.shape[1:3]), bool)
    for i, m in enumerate(ours):
        padded[i, : len(m)] = m
    part = xrai(z.probe, x, y, steps=10, segments=padded, area_threshold=0.3, min_pixel_diff=20)
    for i in range(len(x)):
        args = {"target": int(y[i])}
        baselines = [np.zeros_like(x[i]), np.ones_like(x[i])]  # black and white here
        for got, area, pixels in ((res, 1.0, 50), (part, 0.3, 20)):
            params = saliency.XRAIParameters(steps=10, area_threshold=area)
            params.experimental_params["min_pixel_diff"] = pixels
            params.return_xrai_segments = params.return_ig_attributions = True
            out = saliency.XRAI().GetMaskWithDetails(
                x[i], fn, args, baselines=baselines, segments=pair_segs[i], batch_size=10,
                extra_parameters=params,
            )  # fmt: skip
            close(got.extra["ig"][i], np.mean(out.ig_attribution, 0), 1e-5)
            close(got.values[i, ..., 0], out.attribution_mask, 1e-5)
            np.testing.assert_array_equal(got.extra["ranks"][i], out.segments)
    assert res.values.shape == (2, *x.shape[1:3], 1)


def test_xrai_takes_given_segments() -> None:
    z = load("mnist_cnn")
    x, y = z.x_test[:2], z.y_test[:2].astype(np.int32)
    left = np.zeros((28, 28), bool)
    left[:, :14] = True
    masks = np.stack([left, ~left])
    res = xrai(z.probe, x, y, steps=10, segments=masks)
    for i in range(2):
        attr = np.asarray(res.extra["ig"][i]).max(-1)
        gains = [attr[left].mean(), attr[~left].mean()]
        want = np.where(left, gains[0], gains[1])
        np.testing.assert_allclose(res.values[i, ..., 0], want, rtol=1e-5, atol=1e-7)
        first = 0 if gains[0] >= gains[1] else 1
        np.testing.assert_array_equal(res.extra["ranks"][i], np.where(masks[first], 1, 2))


def test_changing_traced_options_compiles_nothing_new() -> None:
    z = load("mnist_cnn")
    x = z.x_test[:2]
    # the shapes of the tests above: run with them, nothing here compiles at all
    blur_ig(z.probe, x, 1, steps=20)
    guided_ig(z.probe, x, 1, steps=8)
    left = np.zeros((28, 28), bool)
    left[:, :10] = True
    xrai(z.probe, x, 1, steps=10, segments=np.stack([left, ~left]))
    before = trace_counts()
    blur_ig(z.probe, x, [3, 4], steps=20, max_sigma=3.0, grad_step=0.1, sqrt=True)
    guided_ig(z.probe, x, [3, 4], steps=11, fraction=0.5, max_dist=0.3, baseline="white")
    xrai(z.probe, x, 2, steps=10, segments=np.stack([~left, left]), area_threshold=0.5)
    assert trace_counts() == before
    assert jv.attribution.get_method("blur_ig").family == "path"
    assert set(jv.attribution.methods("path")) >= {"blur_ig", "guided_ig", "xrai"}


def test_bad_options_are_refused_before_compiling() -> None:
    z = load("mnist_cnn")
    x = z.x_test[:1]
    before = trace_counts()
    for fn in (blur_ig, guided_ig, xrai):
        with pytest.raises(ValueError, match="steps must be a positive integer; got 0"):
            fn(z.probe, x, 1, steps=0)
        with pytest.raises(TypeError, match="steps must be a positive integer"):
            fn(z.probe, x, 1, steps=2.5)
    with pytest.raises(ValueError, match=r"max_sigma must be a number in > 0.0, got 0"):
        blur_ig(z.probe, x, 1, max_sigma=0)
    with pytest.raises(ValueError, match="grad_step must be"):
        blur_ig(z.probe, x, 1, grad_step=-0.1)
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(
            ValueError, match=rf"fraction must be a number in \(0.0, 1.0\], got {bad}"
        ):
            guided_ig(z.probe, x, 1, fraction=bad)
    with pytest.raises(ValueError, match="max_dist must be a number in"):
        guided_ig(z.probe, x, 1, max_dist=2.0)
    with pytest.raises(ValueError, match="area_threshold must be in"):
        xrai(z.probe, x, 1, area_threshold=0.0)
    with pytest.raises(ValueError, match="segments must have shape"):
        xrai(z.probe, x, 1, segments=np.ones((2, 5, 5), bool))
    with pytest.raises(ValueError, match="scales must be a non-empty sequence"):
        xrai(z.probe, x, 1, scales=())
    with pytest.raises(ValueError, match="dilation must be an int >= 0"):
        xrai(z.probe, x, 1, dilation=-1)
    with pytest.raises(TypeError, match="segments must be a bool array"):
        xrai(z.probe, x, 1, segments=np.ones((2, 28, 28)))
    with pytest.raises(ValueError, match="target class 10"):
        blur_ig(z.probe, x, 10)
    assert trace_counts() == before
