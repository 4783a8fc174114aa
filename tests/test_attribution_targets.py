"""Targets for every attribution method: a layer's channel, unit or direction, and a mask or box
on a spatial output (a small segmentation-style network), against jax.grad written here and a
numpy occlusion loop; one call shape for every registered method; traced target values; errors
before compiling."""

from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from test_attribution_helpers import SmallCNN, images, small_probe
from test_attribution_perturbation import np_occlusion

import jaxvis as jv
from jaxvis.attribution import Attribution, Channel, Direction, Region, Unit, trace_counts

A = jv.attribution


class Activation(nnx.Module):
    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.tanh(x)


class SegNet(nnx.Module):
    """conv-tanh-conv: per-pixel logits ``(N, H, W, 4)``, a segmentation head in miniature."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.conv1 = nnx.Conv(3, 6, (3, 3), rngs=rngs)
        self.act1 = Activation()
        self.conv2 = nnx.Conv(6, 4, (3, 3), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv2(self.act1(self.conv1(x)))


@functools.cache
def seg_probe() -> jv.Probe:
    return jv.Probe(SegNet(nnx.Rngs(0)), input_shape=(8, 8, 3))


def seg_images(n: int = 2) -> np.ndarray:
    return images(n, size=8, cin=3, seed=1)


def grad_of(probe: jv.Probe, x: np.ndarray, layer: str | None, fn) -> np.ndarray:  # noqa: ANN001
    """d sum(fn(value)) / dx with ``value`` the output or ``layer``'s activation (jax.grad)."""

    def total(xx: jax.Array) -> jax.Array:
        out, acts = probe.apply(probe.params, xx, [] if layer is None else [layer], False)
        return fn(out if layer is None else acts[layer]).sum()

    return np.asarray(jax.grad(total)(jnp.asarray(x)))


def value_of(probe: jv.Probe, x: np.ndarray, layer: str | None, fn) -> np.ndarray:  # noqa: ANN001
    out, acts = probe.apply(probe.params, jnp.asarray(x), [] if layer is None else [layer], False)
    return np.asarray(fn(out if layer is None else acts[layer]))


def close(a: object, b: object) -> None:
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- layer targets


def test_unit_channel_and_direction_targets_equal_jax_grad() -> None:
    probe, x = small_probe(), images(2)
    sal = functools.partial(A.saliency, probe, x, abs=False)

    unit = Unit("act2", [1, 3], [(2, 5), (0, 7)])  # one unit per example
    want = grad_of(probe, x, "act2", lambda a: jnp.stack([a[0, 2, 5, 1], a[1, 0, 7, 3]]))
    res = sal(unit)
    close(res.values, want)
    np.testing.assert_array_equal(res.target, [1, 3])

    want = grad_of(probe, x, "act1", lambda a: a[..., 2].mean(axis=(1, 2)))
    close(sal(Channel("act1", 2)).values, want)
    close(sal(2, layer="act1").values, want)

    v = np.random.default_rng(3).normal(size=(2, 5)).astype(np.float32)
    want = grad_of(probe, x, "act2", lambda a: jnp.einsum("nhwc,nc->nhw", a, v).mean((1, 2)))
    close(sal(Direction("act2", v)).values, want)

    want = grad_of(probe, x, "gap", lambda a: a[:, 3])  # a flat layer: position ()
    close(sal(Unit("gap", 3)).values, want)


def test_every_method_explains_a_unit() -> None:
    probe, x = small_probe(), images(2)
    unit = Unit("act2", 4, (3, 3))
    plain = A.saliency(probe, x, unit, abs=False).values
    close(A.smoothgrad(probe, x, unit, noise=0.0, samples=2).values, plain)
    close(A.input_x_gradient(probe, x, unit).values, x * np.asarray(plain))
    ig = A.integrated_gradients(probe, x, unit, baseline=0.0, steps=32)
    unit_value = value_of(probe, x, "act2", lambda a: a[:, 3, 3, 4])
    base_value = value_of(probe, 0 * x, "act2", lambda a: a[:, 3, 3, 4])
    close(ig.score, unit_value)
    close(ig.baseline_score, base_value)
    assert np.all(ig.relative_delta < 0.01)
    assert A.guided_backprop(probe, x, unit).values.shape == x.shape
    cam = A.grad_cam(probe, x, unit, layer="act1", relu=False)
    model = SmallCNN(nnx.Rngs(0), jnp.tanh, 2)  # small_probe's network, called by hand
    a1 = model.act1(model.conv1(jnp.asarray(x)))
    g = jax.grad(lambda a: model.act2(model.conv2(a))[:, 3, 3, 4].sum())(a1)
    close(cam.extra["layer_map"], (g.mean((1, 2), keepdims=True) * a1).sum(-1))

    def unit_score(xx: np.ndarray) -> np.ndarray:
        return value_of(probe, xx, "act2", lambda a: a[:, 3, 3, 4])

    occ = A.occlusion(probe, x, unit, window=3, stride=2, baseline=0.5)
    close(occ.values, np_occlusion(unit_score, x, (3, 3), (2, 2), 0.5))


# --------------------------------------------------------------------------- spatial outputs


def test_region_targets_on_a_segmentation_output() -> None:
    probe, x = seg_probe(), seg_images()
    sal = functools.partial(A.saliency, probe, x, abs=False)
    box = sal(Region(2, box=(1, 2, 5, 7)))
    close(box.values, grad_of(probe, x, None, lambda o: o[:, 1:5, 2:7, 2].sum((1, 2))))
    np.testing.assert_array_equal(box.target, [2, 2])

    mask = np.random.default_rng(0).uniform(size=(2, 8, 8)).astype(np.float32)
    want = grad_of(probe, x, None, lambda o: (o[..., 1] * mask).sum((1, 2)))
    close(sal(Region(1, mask=mask)).values, want)
    bool_mask = mask[0] > 0.5
    want = grad_of(probe, x, None, lambda o: (o[..., 3] * bool_mask).sum((1, 2)))
    close(sal(Region([3, 3], mask=bool_mask)).values, want)

    whole = grad_of(probe, x, None, lambda o: o[..., 0].sum((1, 2)))
    close(sal(0).values, whole)  # an int class on a spatial output: summed over the map
    logits = value_of(probe, x, None, lambda o: o.sum((1, 2)))
    np.testing.assert_array_equal(sal(None).target, logits.argmax(-1))

    def region_score(xx: np.ndarray) -> np.ndarray:
        return value_of(probe, xx, None, lambda o: o[:, 1:5, 2:7, 2].sum((1, 2)))

    occ = A.occlusion(probe, x, Region(2, box=(1, 2, 5, 7)), window=(3, 2), stride=(2, 2))
    close(occ.values, np_occlusion(region_score, x, (3, 2), (2, 2), 0.0))
    ig = A.integrated_gradients(probe, x, Region(2, box=(1, 2, 5, 7)), steps=32)
    close(ig.score, region_score(x))
    cam = A.grad_cam(probe, x, Region(2, box=(1, 2, 5, 7)), layer="act1")
    assert cam.values.shape == (2, 8, 8, 1)


def test_changing_target_values_compiles_nothing() -> None:
    probe, x = small_probe(), images(2)
    seg, xs = seg_probe(), seg_images()

    def run(unit: Unit, vec: np.ndarray, region: Region) -> None:
        A.saliency(probe, x, unit)
        A.saliency(probe, x, Direction("act2", vec))
        A.occlusion(probe, x, unit, window=4, stride=2)
        A.saliency(seg, xs, region)
        A.occlusion(seg, xs, region, window=4, stride=2)

    run(Unit("act2", 1, (1, 1)), np.ones(5, np.float32), Region(1, box=(0, 0, 4, 4)))
    before = trace_counts()
    run(Unit("act2", [3, 0], (5, 2)), np.arange(5.0), Region(3, box=(2, 1, 8, 3)))
    run(Unit("act2", 2, (0, 7)), -np.ones(5), Region([0, 2], mask=np.eye(8) > 0))
    assert trace_counts() == before


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (Unit("act2", 9, (0, 0)), "channel 9 is out of range"),
        (Unit("act2", 1, (8, 0)), "outside layer 'act2'"),
        (Unit("act2", 1, (1,)), "position must be 2 ints"),
        (Unit("act2", 1, (0.5, 1)), "must be 2 ints"),
        (Unit("nope", 1, (0, 0)), "nope"),
        (Direction("act2", np.ones(4)), "must have shape (5,)"),
        (Direction("act2", [np.nan] * 5), "finite"),
        (Channel("act1", -1), "out of range"),
        (Region(1, box=(0, 0, 2, 2)), "needs a spatial output"),
    ],
)
def test_bad_layer_targets_raise_before_compiling(target: object, message: str) -> None:
    probe, x = small_probe(), images(2)
    before = trace_counts()
    with pytest.raises(
        (ValueError, TypeError), match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        A.saliency(probe, x, target)
    with pytest.raises((ValueError, TypeError)):
        A.occlusion(probe, x, target)
    assert trace_counts() == before


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (Region(1, box=(0, 0, 9, 4)), r"0 <= y0 < y1 <= 8"),
        (Region(1, box=(4, 0, 4, 4)), r"y0 < y1"),
        (Region(1, box=(0, 0, 4)), "4 ints"),
        (Region(1, mask=np.ones((7, 8))), r"spatial shape \(8, 8\)"),
        (Region(1, mask=np.ones((8, 8)), box=(0, 0, 2, 2)), "not both"),
        (Region(4, box=(0, 0, 2, 2)), "class 4 is out of range"),
        (Region(1.5), "class index"),
    ],
)
def test_bad_region_targets_raise_before_compiling(target: object, message: str) -> None:
    probe, x = seg_probe(), seg_images()
    before = trace_counts()
    with pytest.raises((ValueError, TypeError), match=message):
        A.saliency(probe, x, target)
    with pytest.raises((ValueError, TypeError), match=message):
        A.feature_ablation(probe, x, target, segments="grid", n_segments=4)
    assert trace_counts() == before


def test_layer_argument_and_a_target_on_another_layer_disagree() -> None:
    with pytest.raises(ValueError, match="different layers"):
        A.saliency(small_probe(), images(2), Unit("act2", 1, (0, 0)), layer="act1")


# --------------------------------------------------------------------------- one call shape


#: options a method needs on the test models (the rest run with their defaults)
OPTIONS = {
    "attention_map": {"layer": -1},
    "integrated_gradients": {"steps": 4},
    "smoothgrad": {"samples": 2},
    "rise": {"masks": 8, "cells": 2},
    "kernel_shap": {"segments": "grid", "n_segments": 4, "samples": 8},
    "feature_ablation": {"segments": "grid", "n_segments": 4},
    "occlusion": {"window": 4},
}


def test_every_registered_method_has_the_one_call_shape() -> None:
    for name, method in A.methods().items():
        params = list(inspect.signature(method.fn).parameters.values())
        assert [p.name for p in params[:3]] == ["probe", "x", "target"], name
        assert params[2].default is None, name
        assert all(p.kind == p.POSITIONAL_OR_KEYWORD for p in params[:3]), name
        rest = {p.kind for p in params[3:]}
        assert rest <= {inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD}, name


def test_every_registered_method_returns_an_attribution() -> None:
    from test_attention import X as vit_x
    from test_attention import nnx_vit

    cnn, x = small_probe(), images(2)
    for name, method in A.methods().items():
        probe, xx = (nnx_vit()[0], vit_x) if method.family == "attention" else (cnn, x)
        res = A.attribute(probe, xx, 1, method=name, **OPTIONS.get(name, {}))
        assert isinstance(res, Attribution), name
        values = np.asarray(res.values)
        assert np.isfinite(values).all(), name
        want = (2, *xx.shape[1:3])
        assert values.shape[-4:-1] == want, (name, values.shape)
