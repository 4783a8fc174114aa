"""Activation datasets: a layer's activations over a stream of batches, one row per position.

Every spatial position of a spatial layer ``(H, W, C)``, every patch token of a ViT layer
(through :func:`jaxvis.layout.spatial_view`, the class token left out) and every image of a
vector layer ``(C,)`` is one sample of ``C`` features. Batches go through one jitted step whose
input is split over a 1-D device mesh (``jax.sharding.NamedSharding`` over the batch axis, as
:func:`jaxvis.dataset.top_k` does); ``max_samples`` keeps a uniform reservoir sample (Vitter's
algorithm R, exact in distribution) so host memory stays bounded however long the stream is.

Example::

    zoo = jv.zoo.load("shapes_cnn")
    ds = jv.concepts.activations(zoo.probe, zoo.x_train[:512], "act5", max_samples=20_000)
    ds.samples.shape, ds.image_index.shape, ds.positions.shape   # (20000, 64) (20000,) (20000, 2)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxvis._checks import check_float, check_layer, check_positive_int, check_probe
from jaxvis._per_probe import PerProbe
from jaxvis._protocols import ProbeLike
from jaxvis._xla import jit
from jaxvis.dataset.topk import (
    _check_batch,
    _mesh,
    _progress_bar,
    _round_up,
    _total_images,
    checked_stream,
)
from jaxvis.layout import spatial_view

__all__ = ["ActivationDataset", "activations", "layer_samples"]

_AXIS = "batch"


@dataclass(frozen=True)
class ActivationDataset:
    """What :func:`activations` returns.

    Attributes:
        layer: the layer's name.
        samples: ``(N, C)`` float32, one row per kept position (or image for a vector layer).
        image_index: ``(N,)`` int64 index of each row's image in the stream of batches.
        positions: ``(N, 2)`` int64 ``(row, col)`` of each row in the layer's spatial view
            (zeros for vector layers).
        grid: ``(h, w)`` of the spatial view, or None for a vector layer.
        n_images: images streamed; ``n_seen``: rows seen before subsampling.
        n_devices: devices the step ran on.
    """

    layer: str
    samples: np.ndarray
    image_index: np.ndarray
    positions: np.ndarray
    grid: tuple[int, int] | None
    n_images: int
    n_seen: int
    n_devices: int

    @property
    def n_channels(self) -> int:
        return int(self.samples.shape[1])

    def __len__(self) -> int:
        return int(self.samples.shape[0])

    def batches(self, batch_size: int, *, seed: int = 0, epochs: int = 1) -> Any:
        """Shuffled ``(batch_size, C)`` rows, ``epochs`` passes (a stream for SAE training)."""
        rng = np.random.default_rng(seed)
        for _ in range(epochs):
            order = rng.permutation(len(self))
            for s in range(0, len(order) - batch_size + 1, batch_size):
                yield self.samples[order[s : s + batch_size]]

    def __repr__(self) -> str:
        return (
            f"ActivationDataset({self.layer!r}, {len(self)} x {self.n_channels}, "
            f"{self.n_images} images, grid {self.grid}, {self.n_devices} device(s))"
        )


def layer_samples(
    probe: ProbeLike, layer: str
) -> tuple[Callable[[Any], Any], tuple[int, int] | None]:
    """``(to_view, grid)``: ``to_view(acts)`` maps the layer's raw batch ``(B, ...)`` to
    ``(B, h, w, C)`` (spatial or token layers) or ``(B, C)`` (vectors)."""
    lay = probe.layout(layer)
    if lay.kind == "vector":
        return (lambda a: a), None
    if lay.spatial_shape is None:
        raise ValueError(
            f"layer {layer!r} has outputs of shape {lay.shape} ({lay.kind}): concepts need a "
            "spatial (H, W, C), token (T, D) over a patch grid, or vector (C,) layer"
        )
    h, w, _ = lay.spatial_shape
    return (lambda a: spatial_view(a, lay).reshape(a.shape[0], h, w, -1)), (h, w)


_STEPS: PerProbe = PerProbe()


def _step(probe: ProbeLike, layer: str, mesh: Mesh, pooled: bool = False) -> Callable:
    cache = _STEPS.entries(probe)
    key = (layer, tuple(d.id for d in mesh.devices.flat), pooled)
    if key not in cache:
        to_view, grid = layer_samples(probe, layer)
        full = tuple(probe.input_shape)

        def run(params: Any, x: jax.Array) -> jax.Array:
            if pooled:  # crops: resized to the model's input, the layer averaged over positions
                x = jax.image.resize(x, (x.shape[0], *full), "bilinear")
            _, acts = probe.apply(params, x, [layer])
            view = to_view(acts[layer]).astype(jnp.float32)
            if pooled and grid is not None:
                view = view.mean(axis=(1, 2))
            return view

        cache[key] = jit(
            run,
            in_shardings=(NamedSharding(mesh, P()), NamedSharding(mesh, P(_AXIS))),
            out_shardings=NamedSharding(mesh, P(_AXIS)),
        )
    return cache[key]


def activations(
    probe: ProbeLike,
    batches: Any,
    layer: str,
    *,
    max_samples: int | None = None,
    positions_per_image: int | None = None,
    crops: int | None = None,
    crop_size: float = 0.5,
    seed: int = 0,
    batch_size: int = 256,
    devices: Sequence[jax.Device] | None = None,
    progress: bool = True,
) -> ActivationDataset:
    """Stream ``batches`` through ``probe`` and collect ``layer``'s activations as samples.

    Args:
        probe: a :class:`jaxvis.Probe`.
        batches: an iterable of image batches ``(B, H, W, C)`` (or ``(images, labels)``
            tuples, ``{"image": ...}`` dicts), or one ``(N, H, W, C)`` array.
        layer: a spatial, token (ViT patch tokens, prefix tokens dropped) or vector layer.
        max_samples: keep at most this many rows, a uniform random sample of all rows
            (reservoir sampling: memory is ``max_samples x C`` floats). None keeps all.
        positions_per_image: first draw this many random positions per image (fewer rows per
            image, more images for the same memory), None for all.
        crops: instead of positions, take this many random square crops per image (side
            ``crop_size`` times the image's shorter side), resize each to the input size and
            average the layer over its positions: one sample per crop, as CRAFT does.
            ``positions`` then holds each crop's top-left pixel ``(row, col)`` in its image.
        seed: seed of the subsampling (and of the crops).
        batch_size: batch size when ``batches`` is one array.
        devices: mesh devices (default every device JAX sees).
        progress: show a progress bar.
    """
    check_probe(probe)
    if isinstance(layer, bool) or not isinstance(layer, str):
        raise TypeError(f"layer must be a layer name (str); got {layer!r}")
    if max_samples is not None:
        max_samples = check_positive_int(max_samples, "max_samples")
    if positions_per_image is not None:
        positions_per_image = check_positive_int(positions_per_image, "positions_per_image")
    if crops is not None:
        crops = check_positive_int(crops, "crops")
        crop_size = check_float(crop_size, "crop_size", minimum=0.0, maximum=1.0, open_low=True)
    batch_size = check_positive_int(batch_size, "batch_size")
    stream = checked_stream(probe, batches, batch_size)
    check_layer(probe, layer)  # unknown names raise with the closest names
    _, grid = layer_samples(probe, layer)
    mesh = _mesh(devices)
    step = _step(probe, layer, mesh, pooled=crops is not None)
    params = jax.device_put(probe.params, NamedSharding(mesh, P()))
    rng = np.random.default_rng(seed)
    reservoir = _Reservoir(max_samples, rng)
    n_images = 0
    bar = _progress_bar(progress, _total_images(batches), f"activations {layer}")
    try:
        for i, x in enumerate(stream):
            x = _check_batch(probe, x, i)
            n = x.shape[0]
            if crops is not None:
                rows, img, pos = _crop_samples(step, params, x, crops, crop_size, rng, mesh.size)
                reservoir.add(rows, n_images + img, pos)
                n_images += n
                if bar is not None:
                    bar.update(n)
                continue
            cap = _round_up(n, mesh.size)
            x_pad = np.zeros((cap, *x.shape[1:]), np.float32)
            x_pad[:n] = x
            view = np.asarray(step(params, x_pad))[:n]
            reservoir.add(*_position_samples(view, n_images, grid, positions_per_image, rng))
            n_images += n
            if bar is not None:
                bar.update(n)
    finally:
        if bar is not None:
            bar.close()
    if n_images == 0:
        raise ValueError("batches is empty: expected at least one image")
    samples, img, pos = reservoir.result()
    return ActivationDataset(
        layer=layer,
        samples=samples,
        image_index=img,
        positions=pos,
        grid=None if crops is not None else grid,
        n_images=n_images,
        n_seen=reservoir.seen,
        n_devices=mesh.size,
    )


def _position_samples(
    view: np.ndarray,
    first_image: int,
    grid: tuple[int, int] | None,
    per_image: int | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, image index, (row, col))`` of a batch's layer ``view``: one row per image for
    a vector layer, else one per grid position (``per_image`` of them drawn at random)."""
    n = view.shape[0]
    image = first_image + np.arange(n)
    if grid is None:
        return view, image, np.zeros((n, 2), np.int64)
    h, w = grid
    rows = view.reshape(n * h * w, -1)
    img = np.repeat(image, h * w)
    flat = np.tile(np.arange(h * w), n)
    if per_image is not None and per_image < h * w:
        pick = np.argsort(rng.random((n, h * w)), axis=1)[:, :per_image]
        sel = (np.arange(n)[:, None] * h * w + pick).reshape(-1)
        rows, img, flat = rows[sel], img[sel], flat[sel]
    return rows, img, np.stack([flat // w, flat % w], axis=-1)


def _crop_samples(step, params, x, crops, crop_size, rng, n_dev):
    """``crops`` random square crops of every image of ``x``, through the pooled step."""
    n, h, w = x.shape[:3]
    side = max(1, round(crop_size * min(h, w)))
    tops = rng.integers(0, h - side + 1, size=(n, crops))
    lefts = rng.integers(0, w - side + 1, size=(n, crops))
    cut = np.stack(
        [
            x[i, t : t + side, c : c + side]
            for i in range(n)
            for t, c in zip(tops[i], lefts[i], strict=True)
        ]
    )
    m = len(cut)
    cap = _round_up(m, n_dev)
    pad = np.zeros((cap, *cut.shape[1:]), np.float32)
    pad[:m] = cut
    rows = np.asarray(step(params, pad))[:m]
    img = np.repeat(np.arange(n), crops)
    pos = np.stack([tops.reshape(-1), lefts.reshape(-1)], axis=-1)
    return rows, img, pos


class _Reservoir:
    """Algorithm R over row blocks: after ``seen`` rows every row is kept with equal chance."""

    def __init__(self, capacity: int | None, rng: np.random.Generator) -> None:
        self.capacity, self.rng, self.seen = capacity, rng, 0
        self.parts: list[tuple[np.ndarray, ...]] = []
        self.buf: tuple[np.ndarray, ...] | None = None
        self.fill = 0

    def add(self, rows: np.ndarray, img: np.ndarray, pos: np.ndarray) -> None:
        rows = rows.astype(np.float32, copy=False)
        img, pos = img.astype(np.int64), pos.astype(np.int64)
        if self.capacity is None:
            self.parts.append((rows, img, pos))
            self.seen += len(rows)
            return
        if self.buf is None:
            cap = self.capacity
            self.buf = (
                np.empty((cap, rows.shape[1]), np.float32),
                np.empty(cap, np.int64),
                np.empty((cap, 2), np.int64),
            )
        take = min(self.capacity - self.fill, len(rows))
        for b, a in zip(self.buf, (rows, img, pos), strict=True):
            b[self.fill : self.fill + take] = a[:take]
        self.fill += take
        self.seen += take
        rest = len(rows) - take
        if rest:
            # row t (1-based over the stream) replaces a random slot with chance cap / t
            t = self.seen + 1 + np.arange(rest)
            slot = (self.rng.random(rest) * t).astype(np.int64)
            keep = slot < self.capacity
            src = take + np.nonzero(keep)[0]
            # later rows win a contested slot, as in the sequential algorithm
            for b, a in zip(self.buf, (rows, img, pos), strict=True):
                b[slot[keep]] = a[src]
            self.seen += rest

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.capacity is None:
            rows, img, pos = (np.concatenate(p) for p in zip(*self.parts, strict=True))
            return rows, img, pos
        assert self.buf is not None
        return tuple(b[: self.fill] for b in self.buf)  # type: ignore[return-value]
