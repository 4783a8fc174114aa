"""Regularizers: penalties added to the objective, and Yosinski's post-update operations.

Penalties (subtracted from the objective, computed on the ``[0, 1]`` image, per image):
``l1``, ``l2`` (distance from grey) and ``tv`` (total variation).

Yosinski et al. 2015 (Deep Visualization Toolbox) instead change the image after every
update; these act on pixel parameters (centred at grey):

* ``decay(p, rate)``: L2 decay ``p *= 1 - rate``;
* ``gaussian_blur(p, sigma)``: applied every ``blur_every`` steps;
* ``clip_small_norm(p, pct)``: zero the pixels whose norm (over channels) is below the
  ``pct`` percentile of the image;
* ``clip_small_contribution(p, grad, pct)``: zero the pixels whose contribution
  ``|sum_c p * grad|`` (activation times gradient) is below the ``pct`` percentile.

Every strength, width, period and percentile is a traced value, so moving a slider does not
compile again. :class:`Regularizers` holds them all; ``YOSINSKI`` has the paper's four
published settings.

Example::

    reg = Regularizers(decay=1e-4, blur_sigma=1.0, blur_every=4)   # Yosinski's third setting
    p = post_update(p, grad, step, reg.values())
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import jax
import jax.numpy as jnp

__all__ = [
    "BLUR_RADIUS",
    "YOSINSKI",
    "Regularizers",
    "clip_small_contribution",
    "clip_small_norm",
    "decay",
    "gaussian_blur",
    "l1",
    "l2",
    "penalty",
    "post_update",
    "tv",
]

#: Half-width of the blur kernel in pixels (static); covers widths ``sigma`` up to ~1.5.
BLUR_RADIUS = 4


@dataclass(frozen=True)
class Regularizers:
    """All regularizer strengths; zeros switch a regularizer off without recompiling.

    Example::

        Regularizers(tv=0.05, decay=0.01).values()   # {name: float32 array}
    """

    l1: float = 0.0
    l2: float = 0.0
    tv: float = 0.0
    decay: float = 0.0
    blur_sigma: float = 0.0
    blur_every: int = 0
    norm_pct: float = 0.0
    contrib_pct: float = 0.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            v = float(value)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"regularizer {name} must be a finite number >= 0, got {value!r}")
        for name in ("norm_pct", "contrib_pct"):
            if getattr(self, name) > 100:
                raise ValueError(
                    f"{name} is a percentile: expected 0..100, got {getattr(self, name)}"
                )
        if self.decay >= 1:
            raise ValueError(f"decay must be < 1 (p *= 1 - decay), got {self.decay}")

    def values(self) -> dict[str, jax.Array]:
        """The strengths as traced-ready arrays (``blur_every`` as int32)."""
        out = {k: jnp.asarray(v, jnp.float32) for k, v in asdict(self).items()}
        out["blur_every"] = jnp.asarray(self.blur_every, jnp.int32)
        return out

    def replace(self, **changes: Any) -> Regularizers:
        return replace(self, **changes)

    @property
    def uses_pixels(self) -> bool:
        """True when a post-update (pixel-space) operation is switched on."""
        return bool(
            self.decay or (self.blur_sigma and self.blur_every) or self.norm_pct or self.contrib_pct
        )


#: Yosinski et al. 2015, the four published combinations (decay, blur width, blur every,
#: norm percentile, contribution percentile).
YOSINSKI: dict[str, Regularizers] = {
    "yosinski1": Regularizers(decay=0.0, blur_sigma=0.5, blur_every=4, norm_pct=50, contrib_pct=0),
    "yosinski2": Regularizers(decay=0.3, blur_sigma=0.0, blur_every=0, norm_pct=20, contrib_pct=0),
    "yosinski3": Regularizers(decay=1e-4, blur_sigma=1.0, blur_every=4, norm_pct=0, contrib_pct=0),
    "yosinski4": Regularizers(decay=0.0, blur_sigma=0.5, blur_every=4, norm_pct=0, contrib_pct=90),
}


# ---------------------------------------------------------------- penalties


def l1(images: jax.Array) -> jax.Array:
    """Mean absolute distance from grey, per image: ``(N, H, W, C) -> (N,)``."""
    return jnp.mean(jnp.abs(images - 0.5), axis=(1, 2, 3))


def l2(images: jax.Array) -> jax.Array:
    """Mean squared distance from grey, per image."""
    return jnp.mean((images - 0.5) ** 2, axis=(1, 2, 3))


def tv(images: jax.Array) -> jax.Array:
    """Mean absolute difference between neighbouring pixels (total variation), per image."""
    dy = jnp.abs(images[:, 1:] - images[:, :-1]).mean(axis=(1, 2, 3))
    dx = jnp.abs(images[:, :, 1:] - images[:, :, :-1]).mean(axis=(1, 2, 3))
    return dy + dx


def penalty(images: jax.Array, v: dict[str, jax.Array]) -> jax.Array:
    """``l1 * L1 + l2 * L2 + tv * TV`` per image, for the strengths in ``v``."""
    return v["l1"] * l1(images) + v["l2"] * l2(images) + v["tv"] * tv(images)


# ---------------------------------------------------------------- post-update operations


def decay(p: jax.Array, rate: jax.Array) -> jax.Array:
    """L2 decay towards grey: ``p * (1 - rate)``."""
    return p * (1.0 - rate)


def gaussian_blur(p: jax.Array, sigma: jax.Array, radius: int = BLUR_RADIUS) -> jax.Array:
    """Separable Gaussian blur of width ``sigma`` (traced; ``0`` leaves ``p`` unchanged).

    ``p`` is ``(N, H, W, C)``; edges are reflected. Example: ``gaussian_blur(x, 1.0)``.
    """
    offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    s = jnp.maximum(sigma, 1e-3)
    k = jnp.exp(-0.5 * (offsets / s) ** 2)
    k = k / k.sum()
    padded = jnp.pad(p, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="reflect")
    h, w = p.shape[1], p.shape[2]
    rows = sum(k[i] * padded[:, i : i + h] for i in range(2 * radius + 1))
    out = sum(k[i] * rows[:, :, i : i + w] for i in range(2 * radius + 1))
    return jnp.where(sigma > 1e-3, out, p)


def _below_percentile(score: jax.Array, pct: jax.Array) -> jax.Array:
    """Mask ``(N, H, W)`` of entries strictly below each image's ``pct`` percentile."""
    flat = score.reshape(score.shape[0], -1)
    thr = jnp.percentile(flat, pct, axis=1, method="lower")
    return (score < thr[:, None, None]) & (pct > 0)


def clip_small_norm(p: jax.Array, pct: jax.Array) -> jax.Array:
    """Zero (set to grey) the pixels whose channel norm is below the ``pct`` percentile."""
    norm = jnp.linalg.norm(p, axis=-1)
    return jnp.where(_below_percentile(norm, pct)[..., None], 0.0, p)


def clip_small_contribution(p: jax.Array, grad: jax.Array, pct: jax.Array) -> jax.Array:
    """Zero the pixels whose contribution ``|sum_c p * grad|`` is below the ``pct`` percentile."""
    contrib = jnp.abs(jnp.sum(p * grad, axis=-1))
    return jnp.where(_below_percentile(contrib, pct)[..., None], 0.0, p)


def post_update(
    p: jax.Array, grad: jax.Array, step: jax.Array, v: dict[str, jax.Array]
) -> jax.Array:
    """Yosinski's four operations in the paper's order, after the update of step ``step``.

    ``grad`` is the gradient of the objective (the ascent direction) at the old ``p``.
    """
    p = decay(p, v["decay"])
    every = v["blur_every"]
    do_blur = (every > 0) & (jnp.mod(step, jnp.maximum(every, 1)) == 0) & (v["blur_sigma"] > 0)
    # lax.cond runs only the taken branch: switched-off operations (percentiles sort every
    # image) cost nothing, and switching them on does not compile again.
    p = jax.lax.cond(do_blur, lambda q: gaussian_blur(q, v["blur_sigma"]), lambda q: q, p)
    p = jax.lax.cond(v["norm_pct"] > 0, lambda q: clip_small_norm(q, v["norm_pct"]), lambda q: q, p)
    return jax.lax.cond(
        v["contrib_pct"] > 0,
        lambda q: clip_small_contribution(q, grad, v["contrib_pct"]),
        lambda q: q,
        p,
    )
