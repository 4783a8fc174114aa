"""Input validation shared by the attribution methods; everything here runs before compiling."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis._checks import check_images, check_layer, check_positive_int
from jaxvis._per_probe import PerProbe
from jaxvis._protocols import ProbeLike
from jaxvis.attribution.targets import Channel, Direction, Region, Unit

__all__ = ["check_images", "check_layer", "check_positive_int"]  # shared checks, re-exported

#: Output (or layer) shape per probe and (example shape, layer); filled by eval_shape.
OUTPUT_SHAPES: PerProbe[tuple[int, ...]] = PerProbe()
_ACTIVATION_FLOATS: PerProbe[int] = PerProbe()


def output_shape(
    probe: ProbeLike, example_shape: tuple[int, ...], layer: str | None
) -> tuple[int, ...]:
    """Shape (without batch) of the model output, or of ``layer``'s activation; traced once."""

    def make() -> tuple[int, ...]:
        spec = jax.ShapeDtypeStruct((1, *example_shape), jnp.float32)
        if layer is None:
            out = jax.eval_shape(lambda p, x: probe.apply(p, x, (), False)[0], probe.params, spec)
        else:
            out = jax.eval_shape(
                lambda p, x: probe.apply(p, x, [layer])[1][layer], probe.params, spec
            )
        return tuple(out.shape[1:])

    return OUTPUT_SHAPES.get(probe, (tuple(example_shape), layer), make)


@dataclass(frozen=True)
class Target:
    """A resolved target. ``index`` holds its numbers, traced, one row per example:

    * ``class`` / ``channel``: int32 ``(N,)`` class or channel;
    * ``unit``: int32 ``(N,)`` flat index into the layer's activation (channel last);
    * ``direction``: float32 ``(N, C)`` vectors;
    * ``region``: float32 ``(N, *output_shape)`` weights (the mask times the class one-hot);
    * ``callable``: zeros ``(N,)``.

    ``label`` is the class (or channel) per example for the result, None where there is none;
    ``shape`` the shape (without batch) of the value the score is taken from.
    """

    kind: str
    index: np.ndarray
    fn: Callable[[jax.Array], jax.Array] | None
    layer: str | None
    label: np.ndarray | None = None
    shape: tuple[int, ...] | None = None

    @property
    def static_key(self) -> tuple[Any, ...]:
        return (self.kind, self.fn, self.layer, self.shape)


_LAYER_TARGETS = (Channel, Unit, Direction)


def resolve_target(probe: ProbeLike, x: Any, target: Any, layer: str | None = None) -> Target:
    """Check ``target`` against the model (or ``layer``) and make its numbers traced arrays.

    ``target`` is a class index (int, or one per example), None for the predicted class, a
    callable mapping the output (or ``layer``'s activation) batch to one score per example,
    or one of :mod:`jaxvis.attribution.targets` (``Channel``, ``Unit``, ``Direction``,
    ``Region``). With ``layer`` given, an int target is a channel of that layer (its mean is
    explained). On a spatial output ``(H', W', K)`` an int (or None: the class with the
    largest summed logit) is the sum of that class's logit over every position.
    """
    n = x.shape[0]
    if isinstance(target, _LAYER_TARGETS):
        if layer is not None and layer != target.layer:
            raise ValueError(
                f"layer={layer!r} and target {target!r} name different layers; give one"
            )
        layer = target.layer
    if layer is not None:
        layer = check_layer(probe, layer)
    shape = output_shape(probe, tuple(x.shape[1:]), layer)
    if callable(target) and not isinstance(target, np.ndarray | jax.Array):
        return _callable_target(target, shape, n, layer)
    if isinstance(target, Unit):
        return _unit_target(target, shape, n)
    if isinstance(target, Direction):
        return _direction_target(target, shape, n)
    if isinstance(target, Region):
        if layer is not None:
            raise ValueError("a Region target is on the model output: give layer=None")
        return _region_target(probe, x, target, shape, n)
    if isinstance(target, Channel):
        target = target.channel
    elif layer is None and len(shape) >= 3:
        return _region_target(probe, x, Region(target), shape, n)
    what = "class" if layer is None else "channel"
    if target is None:
        if layer is not None:
            raise ValueError("target=None (predicted class) needs layer=None; give a channel index")
        target = np.asarray(jnp.argmax(probe(x), axis=-1))
    arr = _indices(target, n, shape[-1] if shape else 1, what, probe if layer is None else None)
    kind = "class" if layer is None else "channel"
    return Target(kind, arr, None, layer, arr, shape)


def _callable_target(fn: Callable, shape: tuple[int, ...], n: int, layer: str | None) -> Target:
    spec = jax.ShapeDtypeStruct((2, *shape), jnp.float32)
    try:
        got = jax.eval_shape(fn, spec)
    except Exception as err:  # noqa: BLE001 - reported with context
        raise ValueError(f"target callable failed on a batch of shape {spec.shape}: {err}") from err
    if getattr(got, "shape", None) != (2,):
        raise ValueError(
            "target callable must return one score per example, shape (N,); for a batch "
            f"of shape {spec.shape} it returned {getattr(got, 'shape', got)}"
        )
    return Target("callable", np.zeros((n,), np.int32), fn, layer, None, shape)


def _indices(
    target: Any, n: int, size: int, what: str, probe: ProbeLike = None, where: str = ""
) -> np.ndarray:
    """``target`` as int32 ``(N,)``, each in ``0..size-1``."""
    arr = np.asarray(target)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(
            f"target must be a {what} index (int), one per example, None, a callable or a "
            f"jv.attribution target (Channel, Unit, Direction, Region); got {target!r}"
        )
    if arr.ndim == 0:
        arr = np.full((n,), int(arr))
    if arr.shape != (n,):
        raise ValueError(
            f"target must be one {what} index or {n} of them (one per example), "
            f"got shape {arr.shape}"
        )
    bad = arr[(arr < 0) | (arr >= size)]
    if bad.size:
        names = _name_hint(probe) if probe is not None else ""
        raise ValueError(
            f"target {what} {int(bad[0])} is out of range{where}: expected 0..{size - 1}{names}"
        )
    return arr.astype(np.int32)


def _unit_target(target: Unit, shape: tuple[int, ...], n: int) -> Target:
    channel = _indices(
        target.channel, n, shape[-1], "channel", where=f" for layer {target.layer!r}"
    )
    k = len(shape) - 1
    pos = np.asarray(target.position)
    if pos.shape not in ((k,), (n, k)):
        raise ValueError(
            f"Unit position must be {k} ints (layer {target.layer!r} has shape {shape}) or an "
            f"({n}, {k}) array, got {target.position!r}"
        )
    if pos.size and (pos.dtype == bool or not np.issubdtype(pos.dtype, np.integer)):
        raise TypeError(f"Unit position must be {k} ints, got {target.position!r}")
    pos = np.broadcast_to(pos.astype(np.int64), (n, k))
    limits = np.asarray(shape[:-1])
    if np.any((pos < 0) | (pos >= limits)):
        raise ValueError(
            f"Unit position {target.position!r} is outside layer {target.layer!r}'s positions "
            f"{tuple(int(v) for v in limits)}"
        )
    flat = np.ravel_multi_index((*pos.T, channel), shape).astype(np.int32)
    return Target("unit", flat, None, target.layer, channel, shape)


def _direction_target(target: Direction, shape: tuple[int, ...], n: int) -> Target:
    vec = np.asarray(target.vector, np.float32) if _is_numeric(target.vector) else None
    if vec is None or vec.shape not in ((shape[-1],), (n, shape[-1])):
        got = getattr(target.vector, "shape", target.vector)
        raise ValueError(
            f"Direction vector must have shape ({shape[-1]},) or ({n}, {shape[-1]}) for layer "
            f"{target.layer!r} of shape {shape}, got {got!r}"
        )
    if not np.all(np.isfinite(vec)):
        raise ValueError("Direction vector must be finite")
    return Target(
        "direction",
        np.ascontiguousarray(np.broadcast_to(vec, (n, shape[-1]))),
        None,
        target.layer,
        None,
        shape,
    )


def _region_target(
    probe: ProbeLike, x: Any, target: Region, shape: tuple[int, ...], n: int
) -> Target:
    if len(shape) < 3:
        raise ValueError(
            f"a Region target needs a spatial output (H', W', classes); the model's output "
            f"has shape {shape}: give a class index"
        )
    grid, classes = shape[:-1], shape[-1]
    label = target.label
    if label is None:
        label = np.asarray(jnp.argmax(probe(x).sum(axis=tuple(range(1, len(shape)))), -1))
    label = _indices(label, n, classes, "class", probe)
    if target.mask is not None and target.box is not None:
        raise ValueError("a Region takes a mask or a box, not both")
    if target.box is not None:
        mask = np.zeros(grid, np.float32)
        mask[_box_slices(target.box, grid)] = 1.0
    elif target.mask is not None:
        mask = np.asarray(target.mask) if _is_numeric(target.mask) else None
        if mask is None or mask.shape not in (grid, (n, *grid)):
            got = getattr(target.mask, "shape", target.mask)
            raise ValueError(
                f"Region mask must have the output's spatial shape {grid} or {(n, *grid)}, "
                f"got {got!r}"
            )
        mask = mask.astype(np.float32)
        if not np.all(np.isfinite(mask)):
            raise ValueError("Region mask must be finite")
    else:
        mask = np.ones(grid, np.float32)
    mask = np.broadcast_to(mask, (n, *grid))
    weights = mask[..., None] * np.eye(classes, dtype=np.float32)[label].reshape(
        n, *([1] * len(grid)), classes
    )
    return Target("region", np.ascontiguousarray(weights), None, None, label, shape)


def _box_slices(box: Any, grid: tuple[int, ...]) -> tuple[slice, slice]:
    arr = np.asarray(box)
    if len(grid) != 2 or arr.shape != (4,) or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"Region box must be 4 ints (y0, x0, y1, x1) on an (H', W') output, got {box!r}"
        )
    y0, x0, y1, x1 = (int(v) for v in arr)
    h, w = grid
    if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
        raise ValueError(
            f"Region box {tuple(arr.tolist())} must satisfy 0 <= y0 < y1 <= {h} and "
            f"0 <= x0 < x1 <= {w} (ends excluded)"
        )
    return slice(y0, y1), slice(x0, x1)


def _is_numeric(value: Any) -> bool:
    try:
        return np.issubdtype(np.asarray(value).dtype, np.number) or np.asarray(value).dtype == bool
    except (TypeError, ValueError):
        return False


def _name_hint(probe: ProbeLike) -> str:
    names = getattr(probe, "class_names", None)
    return f" ({', '.join(names)})" if names else ""


def score_fn(probe: ProbeLike, target: Target) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
    """``score(params, x, index) -> (B,)``: the per-example score being explained."""

    def from_output(params: Any, x: jax.Array) -> jax.Array:
        if target.layer is None:
            return probe.apply(params, x, (), False)[0]
        return probe.apply(params, x, [target.layer])[1][target.layer]

    return lambda params, x, index: pick(from_output(params, x), target, index)


def with_target_layer(
    edits: dict[str, Callable[[jax.Array], jax.Array]], target: Target
) -> dict[str, Callable[[jax.Array], jax.Array]]:
    """``edits`` for :func:`~jaxvis.attribution._edit.edited_apply`, with the target's layer
    (left as it is) added so that its activation comes back."""
    if target.layer is None or target.layer in edits:
        return edits
    return {**edits, target.layer: lambda a: a}


def pick_edited(out: Any, acts: dict[str, jax.Array], target: Target, index: jax.Array) -> Any:
    """The score from ``edited_apply``'s ``(out, acts)`` (edits from :func:`with_target_layer`)."""
    return pick(out if target.layer is None else acts[target.layer], target, index)


def pick(out: jax.Array, target: Target, index: jax.Array) -> jax.Array:
    """The score per example from the model output (or layer activation) ``out``."""
    if target.shape is not None and tuple(out.shape[1:]) != target.shape:
        where = "the model output" if target.layer is None else f"layer {target.layer!r}"
        raise ValueError(
            f"this method computed the target from a value of shape {tuple(out.shape[1:])}, "
            f"but the target is on {where} of shape {target.shape}"
        )
    if target.kind == "callable":
        assert target.fn is not None
        return target.fn(out)
    if target.kind == "channel":
        chosen = jnp.take_along_axis(
            out.reshape(out.shape[0], -1, out.shape[-1]), index[:, None, None], -1
        )
        return chosen.mean(axis=(1, 2))
    if target.kind == "direction":
        flat = out.reshape(out.shape[0], -1, out.shape[-1])
        return jnp.einsum("npc,nc->np", flat, index).mean(-1)
    if target.kind == "region":
        return (out * index).reshape(out.shape[0], -1).sum(-1)
    return jnp.take_along_axis(out.reshape(out.shape[0], -1), index[:, None], -1)[:, 0]


def auto_batch_size(probe: ProbeLike, total: int, budget: int = 1 << 20) -> int:
    """Points per model call: about ``budget`` activation floats, a power of two in 8..256.

    Measured on 2 CPU cores: IG with all interpolation points in one batch ran 3x slower than
    chunks of about 32; the best chunk falls as the model's activations grow.
    """
    per_example = _activation_floats(probe)
    size = budget // max(per_example, 1)
    size = 1 << max(3, min(8, int(np.log2(max(size, 1)))))
    return max(1, min(size, total))


def _activation_floats(probe: ProbeLike) -> int:
    """Floats of all of one example's layer outputs (0 while the layers cannot be listed)."""
    try:
        return _ACTIVATION_FLOATS.get(
            probe, None, lambda: sum(int(np.prod(layer.shape)) for layer in probe.layers)
        )
    except (ValueError, TypeError):
        return 0
