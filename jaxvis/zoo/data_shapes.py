"""A synthetic RGB data set of coloured shapes on cluttered backgrounds, with exact masks.

Each image holds one shape (circle, square, triangle, cross, diamond, star, ring or crescent)
of random size, position, rotation and colour, drawn over a background of colour blobs,
stripes and pixel noise. The boolean mask of the shape is known exactly, which makes the set
a ground truth for attribution: a good saliency map lights up the mask.

Generation is pure numpy and deterministic: image ``i`` of seed ``s`` depends only on
``(s, i)``, so ``make_shapes(10, s)`` is the first ten images of ``make_shapes(1000, s)``.

Example::

    from jaxvis.zoo.data_shapes import SHAPE_NAMES, make_shapes
    images, labels, masks = make_shapes(16, seed=0)
    images.shape, masks.shape            # (16, 32, 32, 3), (16, 32, 32)
    SHAPE_NAMES[labels[0]]
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from jaxvis._files import atomic_savez
from jaxvis._paths import cache_dir
from jaxvis.zoo.data import ZooData

__all__ = ["SHAPE_NAMES", "load_shapes", "make_shapes", "shape_mask"]

SHAPE_NAMES = ("circle", "square", "triangle", "cross", "diamond", "star", "ring", "crescent")

#: Bump when the generator changes, so that stale cache files are not reused.
GENERATOR_VERSION = 1
_SUPERSAMPLE = 2


def shape_mask(
    kind: str, size: int, cx: float, cy: float, radius: float, angle: float = 0.0, ss: int = 1
) -> np.ndarray:
    """Coverage ``(size, size)`` float in ``[0, 1]`` of one shape, ``ss``x``ss`` supersampled.

    ``(cx, cy)`` is the centre in pixels, ``radius`` the outer radius in pixels, ``angle`` a
    rotation in radians. Example::

        shape_mask("star", 32, 16, 16, 10).sum() > 0     # True
    """
    offsets = (np.arange(ss) + 0.5) / ss
    coords = (np.arange(size)[:, None] + offsets[None, :]).reshape(-1)
    dx = coords[None, :] - cx
    dy = coords[:, None] - cy
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy  # the pixel in the shape's own frame
    r = np.hypot(u, v)
    if kind == "circle":
        inside = r <= radius
    elif kind == "square":
        inside = np.maximum(np.abs(u), np.abs(v)) <= radius * 0.75
    elif kind == "diamond":
        inside = np.abs(u) + np.abs(v) <= radius
    elif kind == "triangle":
        inside = _star_polygon(u, v, 3, radius, radius * 0.5)
    elif kind == "star":
        inside = _star_polygon(u, v, 5, radius, radius * 0.42)
    elif kind == "cross":
        arm = radius * 0.3
        au, av = np.abs(u), np.abs(v)
        inside = ((au <= arm) & (av <= radius)) | ((av <= arm) & (au <= radius))
    elif kind == "ring":
        inside = (r <= radius) & (r >= radius * 0.55)
    elif kind == "crescent":
        inside = (r <= radius) & (np.hypot(u - radius * 0.55, v) > radius * 0.8)
    else:
        raise ValueError(f"unknown shape {kind!r}: expected one of {SHAPE_NAMES}")
    cover = inside.astype(np.float32)
    if ss > 1:
        cover = cover.reshape(size, ss, size, ss).mean(axis=(1, 3))
    return cover


def _star_polygon(u: np.ndarray, v: np.ndarray, n: int, r_out: float, r_in: float) -> np.ndarray:
    """Inside test of an ``n``-pointed star (outer radius ``r_out``, inner ``r_in``).

    The angle is folded onto one half-spike, where the boundary is the straight edge from the
    tip ``(r_out, 0)`` to the inner corner at angle ``pi/n``. A regular ``n``-gon is the star
    with ``r_in = r_out * cos(pi/n)``; ``n=3`` with ``r_in = r_out/2`` is a triangle.
    """
    sector = 2 * math.pi / n
    theta = np.mod(np.arctan2(v, u), sector)
    phi = np.minimum(theta, sector - theta)  # angle from the nearest tip, in [0, pi/n]
    r = np.hypot(u, v)
    px, py = r * np.cos(phi), r * np.sin(phi)
    ax, ay = r_out, 0.0
    bx, by = r_in * math.cos(math.pi / n), r_in * math.sin(math.pi / n)
    # The origin is inside: the point is inside when it is on the origin's side of edge a-b.
    side_point = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
    side_origin = (bx - ax) * (0 - ay) - (by - ay) * (0 - ax)
    return side_point * side_origin >= 0


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A cluttered background: a base colour, soft colour blobs and faint stripes."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    image = np.empty((size, size, 3), np.float32)
    image[:] = rng.uniform(0.0, 1.0, 3)
    for _ in range(rng.integers(2, 6)):
        bx, by = rng.uniform(0, size, 2)
        sigma = rng.uniform(2.0, 7.0)
        weight = rng.uniform(0.3, 0.8) * np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * sigma**2))
        image += weight[..., None] * (rng.uniform(0.0, 1.0, 3) - image)
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(3.0, 10.0)
    wave = np.sin(2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / period)
    image += rng.uniform(0.05, 0.15) * wave[..., None] * rng.uniform(-1.0, 1.0, 3)
    return image


def _one_image(seed: int, index: int, size: int) -> tuple[np.ndarray, int, np.ndarray]:
    rng = np.random.default_rng([seed, index])
    label = int(rng.integers(len(SHAPE_NAMES)))
    kind = SHAPE_NAMES[label]
    radius = rng.uniform(0.18, 0.4) * size
    margin = radius + 1.0
    cx, cy = rng.uniform(margin, size - margin, 2)
    if kind in ("square", "diamond", "cross"):
        angle = rng.uniform(-0.2, 0.2)  # these are told apart by their orientation
    else:
        angle = rng.uniform(0, 2 * math.pi)
    alpha = shape_mask(kind, size, cx, cy, radius, angle, ss=_SUPERSAMPLE)
    mask = alpha >= 0.5
    background = _background(rng, size)
    under = background[mask].mean(axis=0) if mask.any() else background.mean(axis=(0, 1))
    for _ in range(32):  # a colour that stands out from what lies under the shape
        colour = rng.uniform(0.0, 1.0, 3)
        if np.linalg.norm(colour - under) > 0.45:
            break
    image = background * (1 - alpha[..., None]) + colour * alpha[..., None]
    image += rng.normal(0.0, 0.03, image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32), label, mask


def make_shapes(
    n: int, seed: int = 0, size: int = 32, start: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate images ``start .. start+n-1`` of the shapes set for ``seed``.

    Returns ``(images (n, size, size, 3) float32 in [0, 1], labels (n,) int32,
    masks (n, size, size) bool)``; class ``k`` is ``SHAPE_NAMES[k]``.
    """
    if n < 0 or size < 16:
        raise ValueError(f"need n >= 0 and size >= 16, got n={n}, size={size}")
    images = np.empty((n, size, size, 3), np.float32)
    labels = np.empty((n,), np.int32)
    masks = np.empty((n, size, size), bool)
    for i in range(n):
        images[i], labels[i], masks[i] = _one_image(seed, start + i, size)
    return images, labels, masks


def load_shapes(
    seed: int = 0, n_train: int = 6000, n_test: int = 1000, size: int = 32, cache: bool = True
) -> ZooData:
    """The shapes demo split: images ``0..n_train-1`` train, the next ``n_test`` test.

    Generated once (a few seconds) and cached as ``.npz`` in the user cache folder.
    """
    name = f"shapes_v{GENERATOR_VERSION}_s{seed}_{size}px_{n_train}_{n_test}.npz"
    path = cache_dir() / name
    arrays = None
    if cache and path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {key: f[key] for key in ("images", "labels", "masks")}
        except (OSError, KeyError, ValueError):
            arrays = None
    if arrays is None:
        images, labels, masks = make_shapes(n_train + n_test, seed, size)
        arrays = {
            "images": np.rint(images * 255).astype(np.uint8),
            "labels": labels,
            "masks": masks,
        }
        if cache:  # a read-only home still gets the data, just not cached
            with contextlib.suppress(OSError):
                atomic_savez(path, arrays)
    x = arrays["images"].astype(np.float32) / 255.0
    y = arrays["labels"].astype(np.int32)
    m = arrays["masks"].astype(bool)
    return ZooData(
        name="shapes_cnn",
        class_names=SHAPE_NAMES,
        x_train=x[:n_train],
        y_train=y[:n_train],
        x_test=x[n_train:],
        y_test=y[n_train:],
        masks_train=m[:n_train],
        masks_test=m[n_train:],
    )
