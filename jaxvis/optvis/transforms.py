"""Random, differentiable image transforms (Lucid's transformation robustness).

Each transform is a small frozen dataclass called as ``t(key, images) -> images`` on a batch
``(N, H, W, C)``; every image gets its own random draw from ``key``, so the result is
reproducible by key. ``jitter``, ``scale`` and ``rotate`` keep the shape; ``pad`` grows the
image (the render loop crops the centre back to the model's input size). Compose with ``compose``.
``lucid`` is Lucid's whole standard chain as one resampling (what ``standard`` returns).

Example::

    t = compose(pad(2), jitter(2), scale((0.9, 1.1)), rotate(10))
    out = t(jax.random.key(0), images)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from jaxvis.optvis._warp import reach_bound, warp

__all__ = [
    "Compose",
    "Transform",
    "compose",
    "jitter",
    "lucid",
    "lucid_standard",
    "pad",
    "rotate",
    "center_crop",
    "scale",
    "scale_rotate",
    "scaled",
    "standard",
]


class Transform:
    """Base class: ``__call__(key, images)`` maps each image with its own random draw.

    A transform needs ``n_random`` uniform numbers per image; ``apply(u, images)`` takes them
    as ``u`` of shape ``(N, n_random)``. All randomness of a chain is drawn in one call, as
    each random draw costs XLA:CPU a noticeable compile time.
    """

    n_random: int = 0

    def one(self, u: jax.Array, image: jax.Array) -> jax.Array:  # pragma: no cover
        raise NotImplementedError

    def apply(self, u: jax.Array, images: jax.Array) -> jax.Array:
        return jax.vmap(self.one)(u, images)

    def __call__(self, key: jax.Array, images: jax.Array) -> jax.Array:
        u = jax.random.uniform(key, (images.shape[0], max(self.n_random, 1)))
        return self.apply(u, images)


@dataclass(frozen=True)
class pad(Transform):  # noqa: N801 - reads like a function, as in Lucid
    """Pad every side by ``n`` pixels (``mode`` ``"reflect"`` or ``"constant"`` grey).

    Example: ``pad(12)``.
    """

    n: int
    mode: str = "reflect"

    def one(self, u: jax.Array, image: jax.Array) -> jax.Array:
        widths = ((self.n, self.n), (self.n, self.n), (0, 0))
        if self.mode == "constant":
            return jnp.pad(image, widths, constant_values=0.5)
        return jnp.pad(image, widths, mode=self.mode)


@dataclass(frozen=True)
class jitter(Transform):  # noqa: N801
    """Shift by a random whole number of pixels in ``[-d, d]`` on each axis; same shape.

    Example: ``jitter(8)``.
    """

    d: int
    n_random = 2

    def one(self, u: jax.Array, image: jax.Array) -> jax.Array:
        if self.d <= 0:
            return image
        h, w, _ = image.shape
        padded = jnp.pad(image, ((self.d, self.d), (self.d, self.d), (0, 0)), mode="reflect")
        oy, ox = (_shift(u, self.d) + self.d).astype(jnp.int32)
        # Shifts as one-hot matrix products: cheaper to compile and differentiate than a
        # batched dynamic slice (a gather/scatter pair under vmap).
        sy = _selection(h, h + 2 * self.d, oy)
        sx = _selection(w, w + 2 * self.d, ox)
        return jnp.einsum("ij,jkc,lk->ilc", sy, padded, sx)


def _selection(n_out: int, n_in: int, offset: jax.Array) -> jax.Array:
    """``(n_out, n_in)`` matrix picking rows ``offset .. offset + n_out - 1``."""
    rows = jnp.arange(n_out)[:, None] + offset
    return (jnp.arange(n_in)[None, :] == rows).astype(jnp.float32)


def _affine(image: jax.Array, factor: jax.Array, angle: jax.Array) -> jax.Array:
    """Scale by ``factor`` and rotate by ``angle`` radians about the centre (bilinear)."""
    h, w, c = image.shape
    yy, xx = jnp.meshgrid(
        jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij"
    )
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    dy, dx = yy - cy, xx - cx
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    sy = jnp.clip((cos * dy - sin * dx) / factor + cy, 0.0, h - 1.0)
    sx = jnp.clip((sin * dy + cos * dx) / factor + cx, 0.0, w - 1.0)
    y0 = jnp.clip(jnp.floor(sy), 0, h - 2).astype(jnp.int32)
    x0 = jnp.clip(jnp.floor(sx), 0, w - 2).astype(jnp.int32)
    fy, fx = (sy - y0)[..., None], (sx - x0)[..., None]
    flat = image.reshape(h * w, c)

    def at(y: jax.Array, x: jax.Array) -> jax.Array:
        return jnp.take(flat, (y * w + x).reshape(-1), axis=0).reshape(h, w, c)

    top = at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx
    bottom = at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy


@dataclass(frozen=True)
class scale(Transform):  # noqa: N801
    """Zoom by a random factor drawn uniformly from ``(lo, hi)``; same shape.

    Example: ``scale((0.9, 1.1))``.
    """

    factors: tuple[float, float] = (0.9, 1.1)
    n_random = 1

    def one(self, u: jax.Array, image: jax.Array) -> jax.Array:
        lo, hi = self.factors
        f = lo + (hi - lo) * u[0]
        return _affine(image, f, jnp.float32(0.0))


@dataclass(frozen=True)
class rotate(Transform):  # noqa: N801
    """Rotate by a random angle in ``[-degrees, degrees]``; same shape.

    Example: ``rotate(10)``.
    """

    degrees: float = 10.0
    n_random = 1

    def one(self, u: jax.Array, image: jax.Array) -> jax.Array:
        a = self.degrees * (2.0 * u[0] - 1.0)
        return _affine(image, jnp.float32(1.0), jnp.deg2rad(a))


@dataclass(frozen=True)
class scale_rotate(Transform):  # noqa: N801
    """Random zoom and rotation in one resampling pass (same as ``scale`` then ``rotate``).

    Example: ``scale_rotate((0.9, 1.1), 10)``.
    """

    factors: tuple[float, float] = (0.9, 1.1)
    degrees: float = 10.0
    n_random = 2

    def one(self, u: jax.Array, image: jax.Array) -> jax.Array:
        lo, hi = self.factors
        f = lo + (hi - lo) * u[0]
        a = self.degrees * (2.0 * u[1] - 1.0)
        return _affine(image, f, jnp.deg2rad(a))


@dataclass(frozen=True)
class lucid(Transform):  # noqa: N801
    """Lucid's standard chain in one bilinear resampling: grey padding, ``jitter(jitter1)``,
    ``scale_rotate(factors, degrees)``, ``jitter(jitter2)``, and the crop back to the input
    size. Same shape as the input.

    It gives what ``compose(pad(p, "constant"), jitter(jitter1), scale_rotate(factors,
    degrees), jitter(jitter2))`` and a centre crop give with the same key whenever the pad
    ``p`` exceeds ``jitter1`` and is at least ``jitter2`` (then every pixel from outside the
    image is grey), at a fraction of the cost: one 4-tap sample per output pixel, and a
    gradient that gathers instead of scattering (see ``_warp``).

    Example: ``lucid(8, (0.9, 1.1), 10, 4)`` (Lucid's numbers for 128-224 pixel images).
    """

    jitter1: int = 8
    factors: tuple[float, float] = (0.9, 1.1)
    degrees: float = 10.0
    jitter2: int = 4
    n_random = 6

    def one(self, u: jax.Array, image: jax.Array) -> jax.Array:
        h, w, _ = image.shape
        lo, hi = self.factors
        f = lo + (hi - lo) * u[2]
        a = jnp.deg2rad(self.degrees * (2.0 * u[3] - 1.0))
        cos, sin = jnp.cos(a), jnp.sin(a)
        m = jnp.stack([jnp.stack([cos, -sin]), jnp.stack([sin, cos])]) / f
        c = jnp.asarray([(h - 1) / 2.0, (w - 1) / 2.0], jnp.float32)
        t1, t2 = _shift(u[0:2], self.jitter1), _shift(u[4:6], self.jitter2)
        b = c + t1 - m @ (c - t2)  # source = m (o - c + t2) + c + t1
        reach = reach_bound(max(abs(lo), abs(hi)), self.degrees)
        return warp(image, m, b, reach)


def _shift(u: jax.Array, d: int) -> jax.Array:
    """The integer shift of :class:`jitter` for its two random numbers ``u``."""
    if d <= 0:
        return jnp.zeros(2, jnp.float32)
    return jnp.minimum(jnp.floor(u * (2 * d + 1)), 2 * d) - d


def center_crop(images: jax.Array, size: Sequence[int]) -> jax.Array:
    """The central ``size`` (H, W) of ``images`` ``(N, H', W', C)`` with ``H' >= H``."""
    h, w = int(size[0]), int(size[1])
    top = (images.shape[1] - h) // 2
    left = (images.shape[2] - w) // 2
    return images[:, top : top + h, left : left + w]


@dataclass(frozen=True)
class Compose(Transform):
    """Apply ``transforms`` in order (one random draw for the whole chain)."""

    transforms: tuple[Transform, ...] = ()

    @property
    def n_random(self) -> int:  # type: ignore[override]
        return sum(t.n_random for t in self.transforms)

    def apply(self, u: jax.Array, images: jax.Array) -> jax.Array:
        start = 0
        for t in self.transforms:
            images = t.apply(u[:, start : start + t.n_random], images)
            start += t.n_random
        return images


def compose(*transforms: Transform) -> Compose:
    """Chain transforms. Example: ``compose(jitter(2), rotate(5))``."""
    for t in transforms:
        if not isinstance(t, Transform):
            raise TypeError(f"transforms must be jaxvis.optvis.transforms objects, got {t!r}")
    return Compose(tuple(transforms))


#: Lucid's ``standard_transforms`` (for 128-224 pixel images), as one resampling.
lucid_standard = lucid(8, (0.9, 1.1), 10.0, 4)


def standard(size: int | Sequence[int]) -> lucid:
    """Lucid's standard set, with the jitters scaled for an image of ``size`` pixels.

    Lucid's numbers (pad 12, jitter 8 then 4) are for ~128-224 pixel images; on a 28-pixel
    digit they would move it off the canvas, so they shrink in proportion (at least 1 pixel).

    Example: ``standard(28)`` -> jitter 2, scale 0.9-1.1, rotate 10°, jitter 1 (Lucid's
    chain with pad 3).
    """
    s = int(size if isinstance(size, int) else max(size[:2]))
    f = s / 128.0
    if f >= 1:
        return lucid_standard

    def px(n: int) -> int:
        return max(1, round(n * f))

    return lucid(px(8), (0.9, 1.1), 10.0, px(4))


def scaled(size: int | Sequence[int]) -> lucid:
    """Lucid's standard chain with every distance a fraction of the image side: jitter
    ``side / 16`` then ``side / 32`` pixels (at least 1), zoom 0.9-1.1, rotation 10 degrees.

    Lucid's 8 and 4 pixels are these fractions of its 128-pixel renders; unlike
    :func:`standard` they keep growing past 128 pixels (14 and 7 at 224).

    Example: ``scaled(224)`` -> ``lucid(14, (0.9, 1.1), 10.0, 7)``.
    """
    s = int(size if isinstance(size, int) else max(size[:2]))
    if s <= 0:
        raise ValueError(f"size must be a positive number of pixels, got {size!r}")
    return lucid(max(1, round(s / 16)), (0.9, 1.1), 10.0, max(1, round(s / 32)))
