"""Reference ResNets and Vision Transformers in Flax Linen: architectures only, no weights.

Linen because a Linen model's variables are a plain nested dict, the very tree a checkpoint
converts into (its shapes come from ``jax.eval_shape`` without allocating anything), and
because the Flax code bases that publish ViT checkpoints (vision_transformer, big_vision) are
Linen: our ViT has their parameter tree, so their ``.npz`` files load one to one.

Example::

    module = jv.zoo.resnet18(num_classes=10)
    variables = jv.zoo.init_variables(module, seed=0, input_shape=(64, 64, 3))
    probe = jv.Probe(module, variables, input_shape=(64, 64, 3))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxvis.zoo.architectures.resnet import (
    ResNet,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
)
from jaxvis.zoo.architectures.vit import VisionTransformer, vit_b16, vit_s16, vit_ti16

__all__ = [
    "ARCHITECTURES",
    "ResNet",
    "VisionTransformer",
    "architecture",
    "init_variables",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "vit_b16",
    "vit_s16",
    "vit_ti16",
]

#: Constructors by name; each takes ``num_classes`` (and the ViTs ``image_size``).
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "vit_ti16": vit_ti16,
    "vit_s16": vit_s16,
    "vit_b16": vit_b16,
}


def architecture(name: str, **kwargs: Any) -> nn.Module:
    """The module called ``name`` in :data:`ARCHITECTURES`, e.g. ``architecture("vit_s16")``."""
    if name not in ARCHITECTURES:
        import difflib

        close = difflib.get_close_matches(str(name), ARCHITECTURES, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {name!r}{hint}")
    return ARCHITECTURES[name](**kwargs)


def init_variables(
    module: nn.Module,
    seed: int = 0,
    input_shape: Sequence[int] | None = None,
    batch_size: int = 8,
    images: Any = None,
) -> dict[str, Any]:
    """Random variables for ``module``; a ResNet's BatchNorm statistics are those of
    ``images`` (``batch_size`` random normal images by default), so that in eval mode the model
    normalises them exactly as in training mode.

    Args:
        module: a :class:`ResNet` or :class:`VisionTransformer` (any Linen module taking
            ``x``, and ``train=`` if it has BatchNorm).
        seed: the random seed.
        input_shape: one example ``(H, W, C)``; the shape of ``images`` if given, else a ViT's
            ``(image_size, image_size, 3)`` and a ResNet's ``(224, 224, 3)``.
        batch_size: how many random images estimate the statistics.
        images: ``(N, H, W, C)`` images to estimate them on instead, e.g. your own data.

    Example::

        variables = jv.zoo.init_variables(jv.zoo.resnet18(10), seed=0, input_shape=(64, 64, 3))
    """
    if images is not None:
        images = jnp.asarray(images, jnp.float32)
        if images.ndim != 4 or images.shape[0] == 0:
            raise ValueError(f"images must be a non-empty (N, H, W, C) batch, got {images.shape}")
        input_shape = images.shape[1:]
    if input_shape is None:
        side = getattr(module, "image_size", 224)
        input_shape = (side, side, 3)
    init_key, data_key = jax.random.split(jax.random.key(seed))
    x = jnp.zeros((1, *input_shape), jnp.float32)
    variables = jax.jit(module.init)(init_key, x)
    if "batch_stats" not in variables:
        return variables
    if images is None:
        images = jax.random.normal(data_key, (batch_size, *input_shape), jnp.float32)
    # Momentum 0: the running statistics become exactly those of this batch.
    estimate = partial(module.clone(bn_momentum=0.0).apply, train=True, mutable=["batch_stats"])
    _, updates = jax.jit(estimate)(variables, images)
    return {**variables, "batch_stats": updates["batch_stats"]}
