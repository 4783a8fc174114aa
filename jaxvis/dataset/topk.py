"""``top_k``: the k dataset images that excite each channel of a layer most, streamed and sharded.

One jitted step per batch: the batch is split over a 1-D device mesh (``jax.sharding.Mesh``
over the batch axis, ``NamedSharding``), each device computes its shard's layer activations,
reduces them per image and channel (``"max"`` or ``"mean"`` over the spatial axes, keeping the
position of the maximum), takes its own top-k, and the per-device top-k are gathered and merged
with the running top-k (``jax.shard_map`` with ``lax.all_gather`` and ``lax.top_k``). Only that
running ``(C, k)`` state lives between steps (its buffers are donated), and at most
``MAX_IN_FLIGHT`` steps are dispatched ahead of the device, so memory stays flat however many
batches stream through.

Results do not depend on the number of devices: ties are broken the same way everywhere
(the lower image index first), and every image's activation is computed by the same function.
The last, short batch is padded to the compiled shape with masked entries, so a dataset of any
length compiles once.

Multi-host (``jax.distributed``): start one process per host, call
``jax.distributed.initialize()`` first, and let every process feed *its own* part of each
global batch; the mesh then spans every device of every host and the merged result is the same
on all of them. Image indices count the global stream, whose batch ``s`` is the concatenation
of the processes' batch ``s`` in process order. Every process must run the same number of
batches (pad with a short or empty batch where one runs out)::

    # on each of 2 hosts:  python topk_job.py  (with the coordinator's address)
    import jax, numpy as np, jaxvis as jv

    jax.distributed.initialize("10.0.0.1:1234", num_processes=2,
                               process_id=int(os.environ["HOST_ID"]))
    probe = jv.zoo.load("mnist_cnn").probe
    shard = np.load(f"digits_part{jax.process_index()}.npy")   # this host's images
    batches = (shard[i:i + 256] for i in range(0, len(shard), 256))
    res = jv.dataset.top_k(probe, batches, "act5", k=9)
    # res.indices[c, j] = position in the global stream: with the same batch size on both
    # hosts, global batch s is [host 0's 256 images, host 1's 256 images].

A ViT's token layer ``(T, D)`` (or ``(T, heads, d)``) is read through its spatial view over the
patch grid (:func:`jaxvis.layout.spatial_view`): a unit is a (channel, patch), an image's score
is the max (or mean) over the patch tokens and ``positions`` are patch ``(row, col)``; with
``position="cls"`` the class token is the unit instead.

Example::

    zoo = jv.zoo.load("mnist_cnn")
    res = jv.dataset.top_k(zoo.probe, zoo.x_train, "conv3", k=9, batch_size=500)
    res.values.shape, res.indices.shape, res.positions.shape   # (8, 9) (8, 9) (8, 9, 2)
    vit = jv.dataset.top_k(vit_probe, x, "Transformer.encoderblock_11", position="cls")
"""

from __future__ import annotations

import collections
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxvis._checks import check_choice, check_int, check_layer, check_positive_int, check_probe
from jaxvis._per_probe import PerProbe
from jaxvis._protocols import ProbeLike
from jaxvis._xla import jit
from jaxvis.layout import LayerLayout, prefix_view, spatial_view

__all__ = ["POSITIONS", "REDUCTIONS", "TopK", "top_k"]

#: How a spatial activation map becomes one score per image and channel.
REDUCTIONS = ("max", "mean")
#: Which tokens of a token layer are the units: the patch tokens (over the grid) or the class token.
POSITIONS = ("patches", "cls")
#: Steps dispatched ahead of the device at most: with JAX's asynchronous dispatch a fast host
#: would otherwise queue every batch of the dataset on the device before the first one ran.
MAX_IN_FLIGHT = 2
#: The largest ``k`` for a stream of unknown length (a generator); arrays clamp k to their size.
MAX_STREAM_K = 4096
_AXIS = "batch"


@dataclass(frozen=True)
class TopK:
    """What :func:`top_k` returns: per channel, the k highest-scoring images, best first.

    Attributes:
        layer: the layer's name; ``reduce``: ``"max"`` or ``"mean"`` over spatial positions.
        values: ``(C, k)`` float32 scores, descending along each row.
        indices: ``(C, k)`` int64 positions of the images in the stream of batches (the first
            image of the first batch is 0). Ties go to the lower index.
        positions: ``(C, k, 2)`` int64 ``(row, col)`` of each image's maximum in the layer's
            map (for ``"mean"`` too; for a token layer, the patch in its grid), or None for a
            layer without spatial axes and for the class token.
        n_images: how many images streamed through; ``k`` is ``min(k asked, n_images)``.
        layer_shape: the layer's output shape without the batch axis.
        n_devices: devices the step ran on.
        position: ``"patches"`` or ``"cls"`` for a token layer (which tokens are the units),
            None for other layers.
    """

    layer: str
    reduce: str
    values: np.ndarray
    indices: np.ndarray
    positions: np.ndarray | None
    n_images: int
    layer_shape: tuple[int, ...]
    n_devices: int
    position: str | None = None

    @property
    def k(self) -> int:
        return int(self.values.shape[1])

    @property
    def n_channels(self) -> int:
        return int(self.values.shape[0])

    def images(self, dataset: Any, channel: int) -> np.ndarray:
        """The ``(k, H, W, C)`` top images of ``channel``, taken from ``dataset`` (indexable)."""
        c = _check_channel(channel, self.n_channels)
        return np.stack([np.asarray(dataset[int(i)]) for i in self.indices[c]])

    def _repr_png_(self) -> bytes:
        """The ``(C, k)`` scores as a heat table (a row per channel, best image first); the
        images themselves: :meth:`images` or ``jv.dataset.patches``."""
        from jaxvis.render import preview

        return preview.png(preview.matrix(self.values))

    def __repr__(self) -> str:
        return (
            f"TopK({self.layer!r}, {self.reduce}, {self.n_channels} channels x top-{self.k}, "
            f"{self.n_images} images, {self.n_devices} device(s))"
        )


def top_k(
    probe: ProbeLike,
    batches: Any,
    layer: str,
    k: int = 9,
    *,
    reduce: str = "max",
    position: str = "patches",
    batch_size: int = 256,
    devices: Sequence[jax.Device] | None = None,
    progress: bool = True,
) -> TopK:
    """The ``k`` images of ``batches`` that excite each channel of ``layer`` most.

    Args:
        probe: a :class:`jaxvis.Probe`.
        batches: an iterable of image batches ``(B, H, W, C)`` (numpy or jax, float, any
            number and size; ``(images, labels)`` tuples and ``{"image": ...}`` dicts are
            accepted too), or one array ``(N, H, W, C)`` which is split into ``batch_size``
            batches. Only the running top-k is kept, so a generator over a huge dataset is fine.
        layer: a layer with outputs ``(H, W, C)`` (a score per image and channel is the
            ``reduce`` over positions), tokens ``(T, D)`` / ``(T, heads, d)`` over a patch grid
            (the same over the patch tokens) or ``(C,)``.
        k: how many images per channel (at most the number of images).
        reduce: ``"max"`` (the Toolbox's choice: the unit's strongest response anywhere) or
            ``"mean"`` over the spatial positions.
        position: for a token layer, ``"patches"`` (the units are (channel, patch)) or
            ``"cls"`` (the class token's channels, one value per image).
        batch_size: batch size used when ``batches`` is one array.
        devices: the devices of the mesh (default: every device JAX sees, ``jax.devices()``).
        progress: show a progress bar (tqdm).

    Example::

        res = top_k(probe, (x[i:i + 512] for i in range(0, len(x), 512)), "conv5", k=9)
        res.indices[3]        # the 9 images channel 3 of conv5 likes most, best first
    """
    check_probe(probe)
    k = check_positive_int(k, "k")
    batch_size = check_positive_int(batch_size, "batch_size")
    reduce = check_choice(reduce, "reduce", REDUCTIONS)
    position = check_choice(position, "position", POSITIONS)
    stream = checked_stream(probe, batches, batch_size)
    info, layout = _check_unit_layer(probe, layer, position)
    k = _state_k(k, _total_images(batches))
    mesh = _mesh(devices)
    step = _step(probe, layer, layout, position, k, reduce, mesh)
    bar = _progress_bar(progress, _total_images(batches), f"top-{k} {layer}")
    try:
        state = _stream(probe, stream, step, mesh, (layout.channels, k), bar)
    finally:
        if bar is not None:
            bar.close()
    values, indices, flat_pos, total = (np.asarray(a.addressable_data(0)) for a in state)
    keep = min(k, int(total))
    positions = None
    if layout.spatial_shape is not None and position == "patches":
        width = layout.spatial_shape[1]
        flat = flat_pos[:, :keep].astype(np.int64)
        positions = np.stack([flat // width, flat % width], axis=-1)
    return TopK(
        layer=layer,
        reduce=reduce,
        values=values[:, :keep].astype(np.float32),
        indices=indices[:, :keep].astype(np.int64),
        positions=positions,
        n_images=int(total),
        layer_shape=tuple(info.shape),
        n_devices=mesh.size,
        position=position if layout.kind == "tokens" else None,
    )


# ---------------------------------------------------------------- the jitted, sharded step

_STEPS: PerProbe[Callable] = PerProbe()


def _step(
    probe: ProbeLike,
    layer: str,
    layout: LayerLayout,
    position: str,
    k: int,
    reduce: str,
    mesh: Mesh,
) -> Callable:
    """The jitted step ``(params, x, mask, values, indices, positions, count) -> state``."""
    key = (layer, position, k, reduce, tuple(d.id for d in mesh.devices.flat))

    def make() -> Callable:
        n_dev = mesh.size

        def local(params, x, mask, values, indices, positions, count):
            _, acts = probe.apply(params, x, [layer])
            act = acts[layer].astype(jnp.float32)
            if layout.kind == "tokens":  # the patch grid (h, w, C), or the class token (C,)
                if position == "cls":
                    act = prefix_view(act, layout)[:, 0]
                else:
                    act = spatial_view(act, layout)
            b = act.shape[0]
            if act.ndim == 4:
                flat = act.reshape(b, -1, act.shape[-1])  # (b, H*W, C)
                where = jnp.argmax(flat, axis=1).astype(jnp.int32)  # first maximum, row-major
                score = jnp.max(flat, axis=1) if reduce == "max" else jnp.mean(flat, axis=1)
            else:
                score = act
                where = jnp.zeros(act.shape, jnp.int32)
            score = jnp.where(mask[:, None], score, -jnp.inf)
            # global image index: valid images of earlier devices come first (process order)
            valid = mask.astype(jnp.int32)
            counts = jax.lax.all_gather(jnp.sum(valid), _AXIS)  # (n_dev,)
            before = jnp.sum(jnp.where(jnp.arange(n_dev) < jax.lax.axis_index(_AXIS), counts, 0))
            index = count + before + jnp.cumsum(valid) - 1  # (b,)
            kk = min(k, b)
            v, j = jax.lax.top_k(score.T, kk)  # (C, kk); ties: lower local index first
            i = index[j]
            p = jnp.take_along_axis(where.T, j, axis=1)
            # gather every device's top-k in device order (= index order), merge with the state
            v, i, p = (jax.lax.all_gather(a, _AXIS, axis=1, tiled=True) for a in (v, i, p))
            top, sel = jax.lax.top_k(jnp.concatenate([values, v], axis=1), k)
            new_i = jnp.take_along_axis(jnp.concatenate([indices, i], axis=1), sel, axis=1)
            new_p = jnp.take_along_axis(jnp.concatenate([positions, p], axis=1), sel, axis=1)
            total = count + jnp.sum(counts)
            return top, new_i, new_p, total, total + 0  # the last: a token, never donated

        sharded = jax.shard_map(
            local,
            mesh=mesh,
            in_specs=(P(), P(_AXIS), P(_AXIS), P(), P(), P(), P()),
            out_specs=(P(), P(), P(), P(), P()),
            check_vma=False,  # replicated by construction: every device merges the same gathers
        )
        return jit(sharded, donate_argnums=(3, 4, 5, 6))

    return _STEPS.get(probe, key, make)


def _check_unit_layer(probe: ProbeLike, layer: Any, position: str) -> tuple[Any, LayerLayout]:
    """``(layer info, layout)`` of a layer top_k can rank units of, with ``position``."""
    info = probe.layer(check_layer(probe, layer))  # unknown names raise with close names
    layout = probe.layout(layer)
    if layout.channels is None:
        raise ValueError(
            f"layer {layer!r} has outputs of shape {info.shape} ({layout.kind}): top_k needs "
            "(H, W, C), (C,) or (T, D) / (T, heads, d) tokens over a patch grid"
        )
    if position == "cls" and (layout.grid is None or layout.grid.prefix == 0):
        raise ValueError(
            f"position='cls' needs a token layer with a class token; {layer!r} has shape "
            f"{info.shape} ({layout.kind}, no class token)"
        )
    return info, layout


def _stream(
    probe: ProbeLike,
    stream: Iterator[Any],
    step: Callable,
    mesh: Mesh,
    shape: tuple[int, int],
    bar: Any,
) -> list[jax.Array]:
    """Run ``step`` over every batch of ``stream``; the final ``(values, indices, positions,
    count)`` state. At most :data:`MAX_IN_FLIGHT` steps are dispatched ahead."""
    n_local = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P(_AXIS))
    params = jax.device_put(probe.params, replicated)
    state = jax.device_put(  # built on the host: no program compiles for the initial state
        [
            np.full(shape, -np.inf, np.float32),
            np.full(shape, -1, np.int32),
            np.zeros(shape, np.int32),
            np.zeros((), np.int32),
        ],
        replicated,
    )
    capacity = 0
    in_flight: collections.deque = collections.deque()
    for i, batch in enumerate(stream):
        x = _check_batch(probe, batch, i)
        n = x.shape[0]
        capacity = max(capacity, _round_up(n, n_local))
        x_pad = np.zeros((capacity, *x.shape[1:]), np.float32)
        x_pad[:n] = x
        mask = np.arange(capacity) < n
        xs = jax.make_array_from_process_local_data(batch_sharding, x_pad)
        ms = jax.make_array_from_process_local_data(batch_sharding, mask)
        *state, token = step(params, xs, ms, *state)
        in_flight.append(token)
        if len(in_flight) > MAX_IN_FLIGHT:  # bound the queue of dispatched steps
            in_flight.popleft().block_until_ready()
        if bar is not None:
            bar.update(n)
    return state


def _mesh(devices: Sequence[jax.Device] | None) -> Mesh:
    if devices is None:
        devices = jax.devices()
    devices = list(devices)
    if not devices or not all(isinstance(d, jax.Device) for d in devices):
        raise TypeError(f"devices must be a non-empty sequence of jax devices, got {devices!r}")
    return Mesh(np.array(devices), (_AXIS,))


# ---------------------------------------------------------------- batches


def checked_stream(probe: ProbeLike, batches: Any, batch_size: int) -> Iterator[Any]:
    """The batches of ``batches``, the first one checked now: before anything is allocated
    or compiled, and so that a probe without ``input_shape`` learns its image shape."""
    stream = _iter_batches(batches, batch_size)
    first = next(stream, None)
    if first is None:
        raise ValueError("batches is empty: expected at least one image")
    return itertools.chain([_check_batch(probe, first, 0)], stream)


def _iter_batches(batches: Any, batch_size: int) -> Iterator[Any]:
    if hasattr(batches, "shape") and hasattr(batches, "ndim"):
        if batches.ndim != 4:
            raise ValueError(
                "batches must be an iterable of (B, H, W, C) batches or one (N, H, W, C) "
                f"array, got an array of shape {tuple(batches.shape)}"
            )
        for start in range(0, batches.shape[0], batch_size):
            yield batches[start : start + batch_size]
        return
    if isinstance(batches, str | bytes) or not isinstance(batches, Iterable):
        raise TypeError(
            "batches must be an iterable of image batches or one (N, H, W, C) array, got "
            f"{type(batches).__name__}"
        )
    for item in batches:
        yield _images_of(item)


def _images_of(item: Any) -> Any:
    if isinstance(item, tuple | list):
        return item[0] if item else item
    if isinstance(item, dict):
        for key in ("image", "images", "x"):
            if key in item:
                return item[key]
        raise ValueError(
            f"a batch dict needs an 'image', 'images' or 'x' entry, got keys {sorted(item)}"
        )
    return item


def _check_batch(probe: ProbeLike, x: Any, i: int) -> np.ndarray:
    name = f"batch {i} of batches"
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name} must be a numpy or jax array (B, H, W, C), got {type(x)}")
    if getattr(x, "ndim", 0) == 4 and x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch: expected at least one image")
    probe.check_input(x[:1], name)  # dtype, rank, image shape (one image: cheap)
    x = np.asarray(x, np.float32)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values: expected finite pixel values")
    return x


def _total_images(batches: Any) -> int | None:
    if hasattr(batches, "shape"):
        return int(batches.shape[0]) if len(batches.shape) else None
    if isinstance(batches, list | tuple) and all(hasattr(b, "shape") for b in batches):
        return sum(int(b.shape[0]) for b in batches)
    return None


def _progress_bar(progress: bool, total: int | None, desc: str) -> Any:
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, desc=desc, unit="img", leave=False)


def _round_up(n: int, multiple: int) -> int:
    return max(multiple, math.ceil(n / multiple) * multiple)


def _state_k(k: int, total: int | None) -> int:
    """The k the running state holds: at most the images there are.

    The state is ``(C, k)`` per array, allocated before the first batch: with the dataset's
    size known, k is clamped to it; for a stream of unknown length k is bounded by
    :data:`MAX_STREAM_K` so a typo (``k=10**8``) cannot allocate gigabytes.
    """
    if total is not None:
        return max(1, min(k, total))
    if k > MAX_STREAM_K:
        raise ValueError(
            f"k must be at most {MAX_STREAM_K} for a stream of batches of unknown length "
            f"(the running top-k is allocated up front); got k={k}. Pass one array or a list "
            "of arrays to clamp k to the number of images"
        )
    return k


def _check_channel(channel: Any, n_channels: int, name: str = "channel") -> int:
    return check_int(channel, name, minimum=0, maximum=n_channels - 1)
