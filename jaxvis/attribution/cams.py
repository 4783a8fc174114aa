"""Grad-CAM++, Score-CAM and LayerCAM: more class activation maps of one layer.

All three read a layer with a spatial view (a CNN feature map, or a ViT's tokens reshaped to
the patch grid by :func:`jaxvis.layout.spatial_view`, class token left out), combine its
channels ``A_c`` into one map at the layer's resolution and upsample it bilinearly to the
input (``jax.image.resize``, half-pixel centres):

* Grad-CAM++ (Chattopadhay et al. 2018): ``w_c = sum_ij relu(g_cij) a_cij`` with
  ``a_cij = g^2 / (2 g^2 + sum_ab A_cab g^3)`` (0 where ``g = 0``), the closed form of the
  paper's exponential-score weights, as in pytorch-grad-cam; map ``relu(sum_c w_c A_c)``.
* Score-CAM (Wang et al. 2020): each channel, upsampled and min-max normalised to ``[0, 1]``,
  masks the input; ``w = softmax_c(f(b + H_c (x - b)))`` (softmax of the score increase over
  the baseline is the same thing); map ``relu(sum_c w_c A_c)``. No gradients.
* LayerCAM (Jiang et al. 2021): ``relu(sum_c relu(g_c) * A_c)``, pixel by pixel.

Example::

    cam = grad_cam_plus_plus(probe, x, target=3)
    cam.values                  # (N, H, W, 1)
    cam.extra["layer_map"]      # (N, h, w) at the layer's resolution
    score_cam(probe, x, 3, batch_size=8).extra["channel_weights"]   # (N, C)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxvis._checks import check_optional_positive_int
from jaxvis._protocols import ProbeLike
from jaxvis.attribution import _checks
from jaxvis.attribution._core import cached_jit, count_trace
from jaxvis.attribution._edit import edited_apply
from jaxvis.attribution.baselines import describe, make_baselines
from jaxvis.attribution.registry import register
from jaxvis.attribution.result import Attribution
from jaxvis.layout import LayerLayout, default_spatial_layer, spatial_view

__all__ = ["grad_cam_plus_plus", "layer_cam", "score_cam"]


def cam_layer(probe: ProbeLike, layer: str | None, method: str) -> tuple[str, LayerLayout]:
    """``layer`` (default: :func:`default_spatial_layer` with gradients) and its layout, checked
    to have a spatial view; ValueErrors name the method and the layer."""
    if layer is None:
        layer = default_spatial_layer(probe, gradients=True)
        if layer is None:
            raise ValueError(
                f"{method} needs a layer with an (H, W, C) or (T, D) token output; the model "
                "has none"
            )
    layer = _checks.check_layer(probe, layer)
    layout = probe.layout(layer)
    if layout.spatial_shape is None:
        raise ValueError(
            f"layer {layer!r} has shape {layout.shape} ({layout.kind}): {method} needs an "
            "(H, W, C) feature map or (T, D) / (T, heads, d) tokens over a patch grid"
        )
    return layer, layout


def _grads_and_acts(
    probe: ProbeLike,
    params: Any,
    x: jax.Array,
    tgt: _checks.Target,
    index: jax.Array,
    layer: str,
    layout: LayerLayout,
) -> tuple[jax.Array, jax.Array]:
    """Inside a trace: the target's gradient at ``layer`` and the activation, both ``(N, h, w,
    C)`` on the layer's spatial view."""

    def total(delta: jax.Array) -> tuple[jax.Array, jax.Array]:
        edits = _checks.with_target_layer({layer: lambda a: a + delta}, tgt)
        out, acts = edited_apply(probe, params, x, edits)
        return _checks.pick_edited(out, acts, tgt, index).sum(), acts[layer]

    shape = (x.shape[0], *probe.layer(layer).shape)
    grads, acts = jax.grad(total, has_aux=True)(jnp.zeros(shape, jnp.float32))
    return spatial_view(grads, layout), spatial_view(acts, layout)


def _upsample(cam: jax.Array, x: jax.Array, use_relu: jax.Array) -> tuple[jax.Array, jax.Array]:
    cam = jnp.where(use_relu, jnp.maximum(cam, 0.0), cam)
    up = jax.image.resize(cam, (x.shape[0], *x.shape[1:3]), "bilinear")
    return up[..., None], cam


def _gradient_cam(
    name: str,
    combine: Any,
    probe: ProbeLike,
    x: Any,
    target: Any,
    layer: str | None,
    relu: bool,
    params: Any,
    **traced: Any,
) -> Attribution:
    """Run a gradient CAM whose map is ``combine(grads, acts, **traced)`` (N, h, w)."""
    x = _checks.check_images(probe, x)
    layer, layout = cam_layer(probe, layer, name)
    tgt = _checks.resolve_target(probe, x, target)

    def build() -> Any:
        def kernel(params: Any, x: jax.Array, index: jax.Array, use_relu: jax.Array, **kw: Any):
            count_trace(name)
            grads, acts = _grads_and_acts(probe, params, x, tgt, index, layer, layout)
            return _upsample(combine(grads, acts, **kw), x, use_relu)

        return kernel

    run = cached_jit(probe, (name, tgt.static_key, layer), build, convolutions=False)
    params = probe.params if params is None else params
    kw = {k: jnp.float32(v) for k, v in traced.items()}
    values, layer_map = run(params, x, tgt.index, jnp.bool_(relu), **kw)
    return Attribution(
        values=values,
        delta=None,
        method=name,
        target=None if tgt.kind == "callable" else tgt.index,
        settings={"layer": layer, "relu": bool(relu), **{k: float(v) for k, v in traced.items()}},
        extra={"layer_map": layer_map},
    )


def _plus_plus(grads: jax.Array, acts: jax.Array, eps: jax.Array) -> jax.Array:
    g2 = grads * grads
    total = acts.sum(axis=(1, 2), keepdims=True)
    alpha = jnp.where(grads != 0, g2 / (2.0 * g2 + total * g2 * grads + eps), 0.0)
    weights = (jnp.maximum(grads, 0.0) * alpha).sum(axis=(1, 2), keepdims=True)
    return (weights * acts).sum(-1)


def _layer_cam(grads: jax.Array, acts: jax.Array) -> jax.Array:
    return (jnp.maximum(grads, 0.0) * acts).sum(-1)


@register("cam", "Grad-CAM++", layer_map=True)
def grad_cam_plus_plus(
    probe: ProbeLike,
    x: Any,
    target: Any = None,
    *,
    layer: str | None = None,
    relu: bool = True,
    eps: float = 1e-6,
    params: Any = None,
) -> Attribution:
    """Grad-CAM++ map of ``target`` at ``layer`` (default as :func:`grad_cam`).

    Channel weights from the second- and third-order terms of the exponential score, in
    closed form: ``w_c = sum_ij relu(g) g^2 / (2 g^2 + sum_ab A_cab g^3 + eps)``, where ``g``
    is the gradient of the target score (a logit by default) at the layer. The paper's
    weights carry a factor ``exp(score)`` per example, which pytorch-grad-cam and jaxvis drop
    (it scales the map only). ``eps`` (traced) keeps the division finite.

    Example::

        cam = grad_cam_plus_plus(probe, x, target=None, layer="act6")
    """
    if not isinstance(eps, int | float) or isinstance(eps, bool) or not eps >= 0:
        raise ValueError(f"eps must be a number >= 0, got {eps!r}")
    return _gradient_cam(
        "grad_cam_plus_plus", _plus_plus, probe, x, target, layer, relu, params, eps=eps
    )


@register("cam", "LayerCAM", layer_map=True)
def layer_cam(
    probe: ProbeLike,
    x: Any,
    target: Any = None,
    *,
    layer: str | None = None,
    relu: bool = True,
    params: Any = None,
) -> Attribution:
    """LayerCAM map of ``target`` at ``layer``: ``relu(sum_c relu(dS/dA_c) * A_c)``.

    Each location weighs its own channels by their positive gradient, so shallow layers give
    fine-grained maps (Jiang et al. 2021 fuse several layers; call it once per layer).

    Example::

        fine = layer_cam(probe, x, target=3, layer="act2")
    """
    return _gradient_cam("layer_cam", _layer_cam, probe, x, target, layer, relu, params)


@register("cam", "Score-CAM", layer_map=True)
def score_cam(
    probe: ProbeLike,
    x: Any,
    target: Any = None,
    *,
    layer: str | None = None,
    relu: bool = True,
    softmax: bool = True,
    baseline: Any = "zero",
    batch_size: int | None = None,
    params: Any = None,
) -> Attribution:
    """Score-CAM map of ``target`` at ``layer``: channels weighted by the score they let through.

    Each channel ``A_c`` is upsampled bilinearly to the input, min-max normalised to a mask
    ``H_c`` in ``[0, 1]`` (a constant channel gives a zero mask) and the model is run on
    ``b + H_c * (x - b)`` (``baseline`` b, default zeros: ``x * H_c`` as in the paper). With
    ``softmax`` the weights are the softmax over channels of those scores (equal to the
    softmax of the increase over ``f(b)``); without, the raw increase ``f(masked) - f(b)``.
    ``batch_size``: channels per model call (each call runs ``batch_size * N`` images; the
    shape of the program), None chooses from the model's activation sizes.

    Returns ``extra["channel_weights"]`` and ``extra["channel_scores"]``, both ``(N, C)``.

    Example::

        cam = score_cam(probe, x, target=3, batch_size=16)
    """
    x = _checks.check_images(probe, x)
    layer, layout = cam_layer(probe, layer, "score_cam")
    batch_size = check_optional_positive_int(batch_size, "batch_size")
    if isinstance(baseline, list):
        raise ValueError("score_cam takes one baseline, not a list")
    tgt = _checks.resolve_target(probe, x, target)
    base = make_baselines(probe, x, baseline)[0]
    n, channels = x.shape[0], int(layout.spatial_shape[-1])
    if batch_size is None:
        batch_size = max(1, _checks.auto_batch_size(probe, n * channels) // n)
    chunk = min(batch_size, channels)
    score = _checks.score_fn(probe, tgt)

    def build() -> Any:
        def kernel(
            params: Any,
            x: jax.Array,
            base: jax.Array,
            index: jax.Array,
            use_relu: jax.Array,
            use_softmax: jax.Array,
        ) -> tuple:
            count_trace("score_cam")
            acts = spatial_view(probe.apply(params, x, [layer])[1][layer], layout)
            size = (n, *x.shape[1:3], chunk)
            ids = jnp.arange(-(-channels // chunk) * chunk).reshape(-1, chunk)

            def masked_scores(cs: jax.Array) -> jax.Array:
                up = jax.image.resize(acts[..., jnp.minimum(cs, channels - 1)], size, "bilinear")
                lo = up.min(axis=(1, 2), keepdims=True)
                span = up.max(axis=(1, 2), keepdims=True) - lo
                masks = jnp.where(span > 0, (up - lo) / jnp.where(span > 0, span, 1.0), 0.0)
                masks = jnp.moveaxis(masks, -1, 0)[..., None]  # (chunk, N, H, W, 1)
                points = (base + masks * (x - base)).reshape(-1, *x.shape[1:])
                return score(params, points, jnp.tile(index, chunk)).reshape(chunk, n)

            scores = jax.lax.map(masked_scores, ids).reshape(-1, n)[:channels].T  # (N, C)
            gain = scores - score(params, base, index)[:, None]
            weights = jnp.where(use_softmax, jax.nn.softmax(scores, axis=-1), gain)
            cam = (weights[:, None, None, :] * acts).sum(-1)
            return (*_upsample(cam, x, use_relu), weights, scores)

        return kernel

    run = cached_jit(probe, ("score_cam", tgt.static_key, layer, chunk), build, convolutions=False)
    params = probe.params if params is None else params
    values, layer_map, weights, scores = run(
        params, x, base, tgt.index, jnp.bool_(relu), jnp.bool_(softmax)
    )
    return Attribution(
        values=values,
        delta=None,
        method="score_cam",
        target=None if tgt.kind == "callable" else tgt.index,
        settings={
            "layer": layer,
            "relu": bool(relu),
            "softmax": bool(softmax),
            "baseline": describe(baseline),
            "batch_size": chunk,
        },
        extra={"layer_map": layer_map, "channel_weights": weights, "channel_scores": scores},
    )
