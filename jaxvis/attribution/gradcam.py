"""Grad-CAM (Selvaraju et al. 2017): a layer's channels weighted by their mean gradient.

On a ViT's token layer the same formula runs on its spatial view (Chefer et al. 2021's
token-gradient form): the gradient of the target with respect to the tokens, channel weights
= the mean gradient over the patch tokens, map = ReLU(sum_c w_c * token_c) over the patch grid;
the class token is left out of the map.

Example::

    cam = grad_cam(probe, x, target=3, layer="act6")
    cam.values                 # (N, H, W, 1), upsampled bilinearly to the input size
    cam.extra["layer_map"]     # (N, h, w) at the layer's own resolution (the patch grid)
    grad_cam(vit_probe, x).settings["layer"]   # 'Transformer.encoderblock_10'
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxvis._protocols import ProbeLike
from jaxvis.attribution import _checks
from jaxvis.attribution._core import cached_jit, count_trace
from jaxvis.attribution._edit import edited_apply
from jaxvis.attribution.registry import register
from jaxvis.attribution.result import Attribution
from jaxvis.layout import default_spatial_layer, spatial_view

__all__ = ["grad_cam"]


@register("cam", "Grad-CAM", layer_map=True)
def grad_cam(
    probe: ProbeLike,
    x: Any,
    target: Any = None,
    *,
    layer: str | None = None,
    relu: bool = True,
    params: Any = None,
) -> Attribution:
    """Grad-CAM map of ``target`` at ``layer``, a feature map or a token layer.

    ``layer`` defaults to :func:`jaxvis.layout.default_spatial_layer` with ``gradients=True``:
    a CNN's last feature map; a ViT's last block input (with a class token) or output.
    ``relu=True`` keeps positive evidence only, as in the paper (Captum's ``LayerGradCam``
    defaults to ``relu_attributions=False``).

    Example::

        cam = grad_cam(probe, x, target=None, layer="conv6")   # explain the predicted class
    """
    x = _checks.check_images(probe, x)
    if layer is None:
        layer = default_spatial_layer(probe, gradients=True)
        if layer is None:
            raise ValueError(
                "grad_cam needs a layer with an (H, W, C) or (T, D) token output; the model "
                "has none"
            )
    layer = _checks.check_layer(probe, layer)
    layout = probe.layout(layer)
    if layout.spatial_shape is None:
        raise ValueError(
            f"layer {layer!r} has shape {layout.shape} ({layout.kind}): grad_cam needs an "
            "(H, W, C) feature map or (T, D) / (T, heads, d) tokens over a patch grid"
        )
    tgt = _checks.resolve_target(probe, x, target)

    def build() -> Any:
        def kernel(params: Any, x: jax.Array, index: jax.Array, use_relu: jax.Array) -> tuple:
            count_trace("grad_cam")

            def total(delta: jax.Array) -> tuple[jax.Array, jax.Array]:
                edits = _checks.with_target_layer({layer: lambda a: a + delta}, tgt)
                out, acts = edited_apply(probe, params, x, edits)
                return _checks.pick_edited(out, acts, tgt, index).sum(), acts[layer]

            shape = (x.shape[0], *probe.layer(layer).shape)
            grads, acts = jax.grad(total, has_aux=True)(jnp.zeros(shape, jnp.float32))
            grads, acts = spatial_view(grads, layout), spatial_view(acts, layout)
            weights = grads.mean(axis=(1, 2), keepdims=True)
            cam = (weights * acts).sum(-1)
            cam = jnp.where(use_relu, jnp.maximum(cam, 0.0), cam)
            up = jax.image.resize(cam, (x.shape[0], *x.shape[1:3]), "bilinear")
            return up[..., None], cam

        return kernel

    run = cached_jit(probe, ("grad_cam", tgt.static_key, layer), build)
    params = probe.params if params is None else params
    values, layer_map = run(params, x, tgt.index, jnp.bool_(relu))
    return Attribution(
        values=values,
        delta=None,
        method="grad_cam",
        inputs=x,
        input_range=probe.input_range,
        target=tgt.label,
        settings={"layer": layer, "relu": bool(relu)},
        extra={"layer_map": layer_map},
    )
