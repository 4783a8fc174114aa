"""Plain-gradient methods: saliency, input x gradient, SmoothGrad and guided backprop.

Example::

    sal = saliency(probe, x, target=3)                    # |d score / d pixel|
    ixg = input_x_gradient(probe, x, target=3)
    sg = smoothgrad(probe, x, target=3, noise=0.15, samples=50, variant="smoothgrad")
    gb = guided_backprop(probe, x, target=3)              # shown to fail the sanity checks
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis import _plan
from jaxvis._checks import check_optional_positive_int
from jaxvis._protocols import ProbeLike
from jaxvis.attribution import _checks
from jaxvis.attribution._core import Points, compiled_sums
from jaxvis.attribution._edit import edited_apply
from jaxvis.attribution.registry import register
from jaxvis.attribution.result import Attribution

__all__ = ["guided_backprop", "input_x_gradient", "saliency", "smoothgrad"]

VARIANTS = {"smoothgrad": "smoothgrad", "smoothgrad_sq": "smoothgrad_sq", "vargrad": "vargrad"}
VARIANTS.update({"squared": "smoothgrad_sq", "variance": "vargrad"})
ACTIVATION_KINDS = ("activation", "relu", "elu", "gelu", "tanh", "sigmoid", "silu", "swish")


def _gradient(
    probe: ProbeLike,
    x: Any,
    target: Any,
    layer: str | None,
    batch_size: int | None,
    params: Any,
    name: str,
    contrib_kind: str,
    guided: tuple[str, ...] = (),
) -> tuple[jax.Array, _checks.Target, jax.Array]:
    x = _checks.check_images(probe, x)
    batch_size = check_optional_positive_int(batch_size, "batch_size")
    _plan.estimate(probe, x.shape[1:])  # the model's cost; records its output shape
    tgt = _checks.resolve_target(probe, x, target, layer)
    n = x.shape[0]
    plan = _plan.plan(probe, name, x.shape[1:], n, batch_size)
    key = (name, tgt.static_key, contrib_kind, guided)

    def build() -> tuple:
        score = _guided_score(probe, tgt, guided) if guided else _checks.score_fn(probe, tgt)
        contrib = (lambda p, g: p * g) if contrib_kind == "input_x" else None

        def make_points(x: jax.Array, index: jax.Array) -> Points:
            one = jnp.ones((1,), jnp.float32)
            group = jnp.zeros((1,), jnp.int32)
            return Points(index, lambda m, e: x[e], one, group, 1, x.shape[0], x.shape[1:], contrib)

        def finish(params: Any, sums: jax.Array, *_: Any) -> jax.Array:
            return jnp.abs(sums[0]) if contrib_kind == "abs_grad" else sums[0]

        return score, make_points, finish

    run = compiled_sums(probe, key, name, build, plan)
    params = probe.params if params is None else params
    return run(params, x, tgt.index, total=n), tgt, x


@register("gradient", "gradient (saliency)")
def saliency(
    probe: ProbeLike,
    x: Any,
    target: Any = None,
    *,
    abs: bool = True,  # noqa: A002 - Captum's name
    batch_size: int | None = None,
    layer: str | None = None,
    params: Any = None,
) -> Attribution:
    """The gradient of the target score with respect to the input (Simonyan et al. 2014).

    ``abs=True`` (Captum's default) returns its absolute value; ``abs=False`` the signed one.

    Example::

        res = saliency(probe, x, target=3, abs=False)
    """
    kind = "abs_grad" if abs else "grad"  # |.| inside the jitted kernel: one dispatch per call
    values, tgt, _ = _gradient(probe, x, target, layer, batch_size, params, "saliency", kind)
    return _result(values, "saliency", tgt, {"abs": bool(abs), "layer": layer}, probe, x)


@register("gradient", "input x gradient")
def input_x_gradient(
    probe: ProbeLike,
    x: Any,
    target: Any = None,
    *,
    batch_size: int | None = None,
    layer: str | None = None,
    params: Any = None,
) -> Attribution:
    """``x * d score / d x`` (Shrikumar et al. 2016); IG with one step from a zero baseline.

    Example::

        res = input_x_gradient(probe, x, target=3)
    """
    values, tgt, _ = _gradient(
        probe, x, target, layer, batch_size, params, "input_x_gradient", "input_x"
    )
    return _result(values, "input_x_gradient", tgt, {"layer": layer}, probe, x)


@register("gradient", "guided backprop")
def guided_backprop(
    probe: ProbeLike,
    x: Any,
    target: Any = None,
    *,
    layers: Sequence[str] | None = None,
    batch_size: int | None = None,
    params: Any = None,
) -> Attribution:
    """Guided backpropagation (Springenberg et al. 2015): negative gradients are zeroed on the
    way back through every activation layer.

    At a ReLU this is exactly the paper's rule (the gradient passes where both the input and
    the incoming gradient are positive); at other activations the incoming gradient is clipped
    at zero and then multiplied by the activation's derivative. ``layers`` names the
    activation layers; None takes every layer whose kind is an activation.
    Kept to show in the sanity checks why it is not to be trusted: its maps barely change when
    the model's weights are randomised (Adebayo et al. 2018).

    Example::

        res = guided_backprop(probe, x, target=3)
    """
    if layers is None:
        names = tuple(lay.name for lay in probe.layers if lay.kind.lower() in ACTIVATION_KINDS)
        if not names:
            raise ValueError(
                "guided_backprop found no activation layers (kind 'Activation', 'relu', ...): "
                "name them with layers=[...]"
            )
    else:
        names = tuple(_checks.check_layer(probe, name) for name in layers)
    values, tgt, _ = _gradient(
        probe, x, target, None, batch_size, params, "guided_backprop", "grad", names
    )
    return _result(values, "guided_backprop", tgt, {"layers": names}, probe, x)


@jax.custom_vjp
def _clip_negative_grad(a: jax.Array) -> jax.Array:
    return a


def _clip_fwd(a: jax.Array) -> tuple[jax.Array, None]:
    return a, None


def _clip_bwd(_: None, g: jax.Array) -> tuple[jax.Array]:
    return (jnp.maximum(g, 0.0),)


_clip_negative_grad.defvjp(_clip_fwd, _clip_bwd)


def _guided_score(probe: ProbeLike, tgt: _checks.Target, layers: tuple[str, ...]) -> Any:
    edits = _checks.with_target_layer({name: _clip_negative_grad for name in layers}, tgt)

    def score(params: Any, x: jax.Array, index: jax.Array) -> jax.Array:
        out, acts = edited_apply(probe, params, x, edits, require_output_path=False)
        return _checks.pick_edited(out, acts, tgt, index)

    return score


@register("gradient", "SmoothGrad")
def smoothgrad(
    probe: ProbeLike,
    x: Any,
    target: Any = None,
    *,
    noise: float = 0.15,
    samples: int = 50,
    variant: str = "smoothgrad",
    base: str = "gradient",
    seed: int = 0,
    batch_size: int | None = None,
    layer: str | None = None,
    params: Any = None,
) -> Attribution:
    """SmoothGrad (Smilkov et al. 2017): the gradient averaged over noisy copies of the input.

    ``noise`` is the noise level of the paper, sigma / (hi - lo) of the probe's input range
    (per channel for a normalised model).
    ``variant``: ``"smoothgrad"`` (mean), ``"smoothgrad_sq"``/``"squared"`` (mean of squares)
    or ``"vargrad"``/``"variance"`` (variance), as Captum's ``NoiseTunnel``. ``base`` is
    ``"gradient"`` or ``"input_x_gradient"``. Noise level and seed are traced: changing them
    does not compile again; ``samples`` is a shape and does.

    Example::

        res = smoothgrad(probe, x, target=3, noise=0.2, samples=32, variant="vargrad")
    """
    x = _checks.check_images(probe, x)
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    variant = VARIANTS[variant]
    if base not in ("gradient", "input_x_gradient"):
        raise ValueError(f"base must be 'gradient' or 'input_x_gradient', got {base!r}")
    if isinstance(noise, bool) or not isinstance(noise, int | float | np.number):
        raise TypeError(f"noise must be a number (fraction of the input range), got {noise!r}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise}")
    samples = _checks.check_positive_int(samples, "samples")
    batch_size = check_optional_positive_int(batch_size, "batch_size")
    _plan.estimate(probe, x.shape[1:])
    tgt = _checks.resolve_target(probe, x, target, layer)
    n = x.shape[0]
    plan = _plan.plan(probe, "smoothgrad", x.shape[1:], samples * n, batch_size)
    square = variant != "smoothgrad"
    key = ("smoothgrad", tgt.static_key, base, square)

    def build() -> tuple:
        score = _checks.score_fn(probe, tgt)
        contrib = (lambda p, g: p * g) if base == "input_x_gradient" else None

        def make_points(
            x: jax.Array, index: jax.Array, sigma: jax.Array, rng: jax.Array, weight: jax.Array
        ) -> Points:
            n = x.shape[0]

            def point(m: jax.Array, e: jax.Array) -> jax.Array:
                keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(m * n + e)
                eps = jax.vmap(lambda k: jax.random.normal(k, x.shape[1:]))(keys)
                return x[e] + sigma * eps

            group = jnp.zeros(weight.shape, jnp.int32)
            return Points(index, point, weight, group, 1, n, x.shape[1:], contrib, square)

        def finish(params: Any, sums: jax.Array, sums_sq: jax.Array, *_: Any) -> tuple:
            return sums[0], (sums_sq[0] if square else sums[0])

        return score, make_points, finish

    run = compiled_sums(probe, key, "smoothgrad", build, plan, draws=True)
    sigma = jnp.asarray(noise * (probe.input_high - probe.input_low), jnp.float32)  # per channel
    weight = jnp.full((samples,), 1.0 / samples, jnp.float32)
    params = probe.params if params is None else params
    mean, mean_sq = run(
        params, x, tgt.index, sigma, jax.random.key(seed), weight, total=samples * n
    )
    if variant == "smoothgrad":
        values = mean
    elif variant == "smoothgrad_sq":
        values = mean_sq
    else:
        values = mean_sq - mean**2
    settings = {
        "noise": float(noise),
        "samples": samples,
        "variant": variant,
        "base": base,
        "seed": seed,
        "batch_size": plan.chunk,
        "loop": plan.mode,
    }
    return _result(values, variant, tgt, settings, probe, x)


def _result(
    values: jax.Array, method: str, tgt: _checks.Target, settings: dict, probe: ProbeLike, x: Any
) -> Attribution:
    return Attribution(
        inputs=x,
        input_range=probe.input_range,
        values=values,
        delta=None,
        method=method,
        target=tgt.label,
        settings=settings,
    )
