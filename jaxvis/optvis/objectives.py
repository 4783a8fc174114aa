"""Objectives: what a feature visualisation maximises, as small composable functions.

An :class:`Objective` maps the activations of a batch of images to one score per image. Its
*structure* (which kinds, which layers) is static and its *values* (channel indices, neuron
positions, classes, direction vectors, weights) are traced arrays, so changing a value never
compiles again. Objectives compose as in Lucid::

    obj = channel("conv5", 3) - 0.5 * channel("conv5", 7)
    obj = "conv3:5"                     # string shorthand for channel("conv3", 5)
    obj = channel("conv3", "*")         # every channel of conv3, one image each
    obj.description                     # 'channel(conv5, 3) - 0.5 * channel(conv5, 7)'

On a token layer (a ViT's ``(T, D)`` or ``(T, heads, d)`` tokens) every objective reads the
layer's spatial view over the patch grid (:func:`jaxvis.layout.spatial_view`, class token left
out): ``channel`` is the mean over the patch tokens, ``neuron(layer, c, y, x)`` the token of
patch ``(y, x)``.

Example::

    probe = jv.zoo.load("mnist_cnn").probe
    obj = logit(7).bind(probe)           # validated against the probe
    scores = obj(acts, logits)           # (N,)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.layout import LayerLayout, spatial_view

__all__ = [
    "OUTPUT",
    "Objective",
    "as_objective",
    "channel",
    "deepdream",
    "direction",
    "diversity",
    "logit",
    "neuron",
    "stack",
]

#: Pseudo layer name for the model's output (logits).
OUTPUT = "__output__"

# kind -> (per-image function(act, values) -> scalar, needs whole batch?)
_KINDS: dict[str, Callable[..., jax.Array]] = {}


def _kind(name: str) -> Callable[[Callable[..., jax.Array]], Callable[..., jax.Array]]:
    def register(fn: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
        _KINDS[name] = fn
        return fn

    return register


@dataclass(frozen=True, eq=False)
class Objective:
    """A score per image, to be maximised.

    ``kind`` and ``layer`` are static; ``values`` holds traced arrays (with a leading batch
    axis of size ``batch`` when ``batch`` is not None, else shared by every image).
    ``children`` are sub-objectives for ``sum`` and ``scale``. ``view`` is set by
    :meth:`bind` for a token layer: the objective then reads its ``(h, w, C)`` patch grid.
    """

    kind: str
    layer: str | None = None
    values: Mapping[str, Any] = field(default_factory=dict)
    batch: int | None = None
    children: tuple[Objective, ...] = ()
    all_channels: bool = False
    view: LayerLayout | None = None

    # ------------------------------------------------------------ algebra

    def __add__(self, other: Any) -> Objective:
        other = as_objective(other)
        return Objective("sum", children=(self, other), batch=_join_batch(self, other))

    def __radd__(self, other: Any) -> Objective:
        if isinstance(other, (int, float)) and other == 0:  # sum([...]) starts from 0
            return self
        return as_objective(other) + self

    def __sub__(self, other: Any) -> Objective:
        return self + (-1.0) * as_objective(other)

    def __rsub__(self, other: Any) -> Objective:
        return as_objective(other) + (-1.0) * self

    def __neg__(self) -> Objective:
        return (-1.0) * self

    def __mul__(self, weight: Any) -> Objective:
        if isinstance(weight, Objective):
            raise TypeError("objectives multiply by scalars only, not by other objectives")
        w = jnp.asarray(weight, jnp.float32)
        if w.ndim != 0:
            raise ValueError(f"weight must be a scalar, got shape {w.shape}")
        if self.kind == "scale":  # fold weights: -1 * (0.5 * a) == -0.5 * a
            return Objective(
                "scale",
                values={"w": w * self.values["w"]},
                children=self.children,
                batch=self.batch,
            )
        return Objective("scale", values={"w": w}, children=(self,), batch=self.batch)

    __rmul__ = __mul__

    def __truediv__(self, weight: float) -> Objective:
        return self * (1.0 / float(weight))

    # ------------------------------------------------------------ evaluation

    @property
    def layers(self) -> frozenset[str]:
        """Layers whose activations the objective reads (``OUTPUT`` for the logits)."""
        own = {self.layer} if self.layer is not None else set()
        return frozenset(own).union(*(c.layers for c in self.children))

    def __call__(self, acts: Mapping[str, jax.Array], output: jax.Array | None = None) -> jax.Array:
        """Scores ``(N,)`` for activations ``{layer: (N, ...)}`` and logits ``(N, K)``."""
        if self.kind == "sum":
            return sum(c(acts, output) for c in self.children)  # type: ignore[return-value]
        if self.kind == "scale":
            return self.values["w"] * self.children[0](acts, output)
        if self.kind == "mask":
            return self.values["m"] * self.children[0](acts, output)
        if self.kind == "mixed":
            return self.children[0](acts, output)
        act = output if self.layer == OUTPUT else acts[self.layer]
        if act is None:
            raise ValueError("this objective needs the model output, which was not computed")
        if self.view is not None:
            act = spatial_view(act, self.view)
        fn = _KINDS[self.kind]
        if self.kind == "diversity":
            return fn(act, self.values)
        axes = 0 if self.batch is not None else None
        return jax.vmap(fn, in_axes=(0, axes))(act, dict(self.values))

    # ------------------------------------------------------------ checks

    def bind(self, probe: Any) -> Objective:
        """Check layers and indices against ``probe``; expand ``"*"`` to every channel.

        Raises ``ValueError`` naming the problem (unknown layer with suggestions, channel out of
        range) before anything is compiled.
        """
        if self.children:
            kids = tuple(c.bind(probe) for c in self.children)
            batch = None
            for k in kids:
                batch = _join_batch_values(batch, k.batch)
            return Objective(self.kind, self.layer, self.values, batch, kids)
        view = None
        if self.layer == OUTPUT:
            size = _output_size(probe)
            shape: tuple[int, ...] = (size,)
            what = "class"
        else:
            layout = probe.layout(self.layer)
            shape = layout.shape
            if layout.kind == "tokens" and layout.spatial_shape is not None:
                view, shape = layout, layout.spatial_shape
            what = "channel"
        values = dict(self.values)
        batch = self.batch
        if self.all_channels:
            values["c"] = jnp.arange(shape[-1], dtype=jnp.int32)
            batch = shape[-1]
        if "c" in values:
            c = np.asarray(values["c"])
            if c.size and (c.min() < 0 or c.max() >= shape[-1]):
                raise ValueError(
                    f"{what} {int(c.max()) if c.max() >= shape[-1] else int(c.min())} is out of "
                    f"range for {'the output' if self.layer == OUTPUT else repr(self.layer)}: "
                    f"expected 0..{shape[-1] - 1}"
                )
        if self.kind == "neuron" and len(shape) == 3:
            for axis, key in ((0, "y"), (1, "x")):
                v = np.asarray(values[key])
                if v.size and v.max() >= shape[axis]:
                    raise ValueError(
                        f"neuron {key}={int(v.max())} is out of range for {self.layer!r}: "
                        f"expected 0..{shape[axis] - 1} (or None for the centre)"
                    )
        if self.kind == "direction":
            vec = values["v"]
            if vec.shape[-1] != shape[-1]:
                raise ValueError(
                    f"direction vector has {vec.shape[-1]} entries but {self.layer!r} has "
                    f"{shape[-1]} channels"
                )
        return Objective(self.kind, self.layer, values, batch, (), False, view)

    # ------------------------------------------------------------ description

    @property
    def description(self) -> str:
        """A readable formula, e.g. ``'channel(conv5, 3) - 0.5 * logit(2)'``."""
        if self.kind == "mixed":
            return f"one of {len(self.children[0].layers)} layers per image ({self.batch} images)"
        if self.kind == "mask":
            return f"masked({self.children[0].description})"
        if self.kind == "sum":
            a, b = self.children
            right = b.description
            if b.kind == "scale" and _is_negative(b.values["w"]):
                return f"{a.description} - {_fmt(-np.asarray(b.values['w']))} * " + _paren(
                    b.children[0]
                )
            return f"{a.description} + {right}"
        if self.kind == "scale":
            w = np.asarray(self.values["w"])
            if float(w) == -1.0:
                return f"-{_paren(self.children[0])}"
            return f"{_fmt(w)} * {_paren(self.children[0])}"
        if self.kind == "logit":
            return f"logit({_fmt(self.values['c'])})"
        if self.all_channels:
            return f"{self.kind}({self.layer}, *)"
        if self.kind in ("channel",):
            return f"channel({self.layer}, {_fmt(self.values['c'])})"
        if self.kind == "neuron":
            y, x = (np.asarray(self.values[k]) for k in ("y", "x"))
            pos = "centre" if (y < 0).all() and (x < 0).all() else f"y={_fmt(y)}, x={_fmt(x)}"
            return f"neuron({self.layer}, {_fmt(self.values['c'])}, {pos})"
        return f"{self.kind}({self.layer})"

    def __repr__(self) -> str:
        return f"Objective({self.description})"


# ---------------------------------------------------------------- pytree registration


def _flatten(obj: Objective) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    keys = tuple(sorted(obj.values))
    return (tuple(obj.values[k] for k in keys), obj.children), (
        obj.kind,
        obj.layer,
        keys,
        obj.batch,
        obj.all_channels,
        obj.view,
    )


def _unflatten(aux: tuple[Any, ...], children: tuple[Any, ...]) -> Objective:
    kind, layer, keys, batch, all_channels, view = aux
    values, kids = children
    values = dict(zip(keys, values, strict=True))
    return Objective(kind, layer, values, batch, kids, all_channels, view)


jax.tree_util.register_pytree_node(Objective, _flatten, _unflatten)


# ---------------------------------------------------------------- per-image kinds


def _spatial_mean(a: jax.Array) -> jax.Array:
    return a.reshape(-1, a.shape[-1]).mean(axis=0)


@_kind("channel")
def _channel(act: jax.Array, v: Mapping[str, jax.Array]) -> jax.Array:
    return _spatial_mean(act)[v["c"]]


@_kind("logit")
def _logit(act: jax.Array, v: Mapping[str, jax.Array]) -> jax.Array:
    return act[v["c"]]


@_kind("neuron")
def _neuron(act: jax.Array, v: Mapping[str, jax.Array]) -> jax.Array:
    if act.ndim == 1:
        return act[v["c"]]
    h, w = act.shape[0], act.shape[1]
    y = jnp.where(v["y"] < 0, h // 2, v["y"])
    x = jnp.where(v["x"] < 0, w // 2, v["x"])
    return act[y, x, v["c"]]


@_kind("direction")
def _direction(act: jax.Array, v: Mapping[str, jax.Array]) -> jax.Array:
    vec = v["v"] / (jnp.linalg.norm(v["v"]) + 1e-8)
    return jnp.dot(_spatial_mean(act), vec)


@_kind("deepdream")
def _deepdream(act: jax.Array, v: Mapping[str, jax.Array]) -> jax.Array:
    return jnp.mean(act**2)


@_kind("diversity")
def _diversity(act: jax.Array, v: Mapping[str, jax.Array]) -> jax.Array:
    """Lucid's diversity: minus the mean cosine similarity of Gram matrices across the batch."""
    n = act.shape[0]
    flat = act.reshape(n, -1, act.shape[-1])
    gram = jnp.einsum("npc,npd->ncd", flat, flat).reshape(n, -1)
    gram = gram / (jnp.linalg.norm(gram, axis=1, keepdims=True) + 1e-8)
    sim = gram @ gram.T
    off = (jnp.sum(sim, axis=1) - jnp.diag(sim)) / jnp.maximum(n - 1, 1)
    return -off


# ---------------------------------------------------------------- constructors


def _index(value: Any, what: str) -> tuple[jax.Array, int | None]:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{what} must be an integer or a list of integers, got {value!r}")
    if arr.ndim > 1:
        raise ValueError(f"{what} must be an integer or a 1-D list, got shape {arr.shape}")
    if arr.ndim == 1 and arr.size == 0:
        raise ValueError(f"{what} is an empty list: give at least one index")
    if (arr < 0).any():
        raise ValueError(f"{what} must be >= 0, got {value!r}")
    return jnp.asarray(arr, jnp.int32), (int(arr.shape[0]) if arr.ndim == 1 else None)


def _layer(layer: Any) -> str:
    if not isinstance(layer, str) or not layer:
        raise TypeError(f"layer must be a layer name (str), got {layer!r}")
    return layer


def channel(layer: str, c: int | Sequence[int] | str) -> Objective:
    """Mean activation of channel ``c`` of ``layer`` over all positions.

    ``c`` may be a list (one image per channel) or ``"*"`` (every channel of the layer).

    Example::

        channel("conv5", 3);  channel("conv5", [0, 1, 2]);  channel("conv5", "*")
    """
    layer = _layer(layer)
    if isinstance(c, str):
        if c != "*":
            raise ValueError(f"channel must be an integer, a list or '*', got {c!r}")
        return Objective("channel", layer, {}, None, (), True)
    idx, batch = _index(c, "channel")
    return Objective("channel", layer, {"c": idx}, batch)


def neuron(
    layer: str, c: int | Sequence[int], y: int | None = None, x: int | None = None
) -> Objective:
    """Activation of channel ``c`` at one position ``(y, x)`` (the centre by default).

    Example::

        neuron("conv3", 5)            # centre of the map
        neuron("conv3", 5, y=2, x=3)
    """
    layer = _layer(layer)
    idx, batch = _index(c, "channel")
    yy = jnp.full(idx.shape, -1 if y is None else int(y), jnp.int32)
    xx = jnp.full(idx.shape, -1 if x is None else int(x), jnp.int32)
    if (y is not None and y < 0) or (x is not None and x < 0):
        raise ValueError(f"neuron position must be >= 0 (or None for the centre), got {(y, x)}")
    return Objective("neuron", layer, {"c": idx, "y": yy, "x": xx}, batch)


def logit(k: int | Sequence[int]) -> Objective:
    """The score of class ``k`` before the softmax (the model's output).

    Example::

        logit(7);  logit(range(10))   # ten images, one per class
    """
    idx, batch = _index(list(k) if isinstance(k, range) else k, "class")
    return Objective("logit", OUTPUT, {"c": idx}, batch)


def direction(layer: str, vector: Any) -> Objective:
    """Projection of the spatially averaged activations of ``layer`` onto ``vector``.

    A 2-D ``vector`` (one row per image) gives a batch. Example::

        direction("conv5", np.eye(16)[3] - np.eye(16)[4])
    """
    layer = _layer(layer)
    vec = jnp.asarray(vector, jnp.float32)
    if vec.ndim not in (1, 2):
        raise ValueError(f"vector must be 1-D (channels) or 2-D (batch, channels), got {vec.shape}")
    return Objective("direction", layer, {"v": vec}, vec.shape[0] if vec.ndim == 2 else None)


def deepdream(layer: str) -> Objective:
    """Mean squared activation of the whole layer (DeepDream). Example: ``deepdream("conv4")``."""
    return Objective("deepdream", _layer(layer))


def diversity(layer: str) -> Objective:
    """Minus the Gram-matrix similarity between batch images at ``layer`` (Lucid).

    Example::

        channel("conv5", [3, 3, 3, 3]) + 0.5 * diversity("conv4")
    """
    return Objective("diversity", _layer(layer))


def stack(objectives: Sequence[Objective | str]) -> Objective:
    """One batched objective from a list: image ``i`` maximises ``objectives[i]``.

    Objectives of the same structure (kind and layer) have their values stacked; a mixed list
    (different layers or kinds) becomes a masked sum, one term per structure, so it still runs
    as one vectorised optimisation.

    Example::

        stack([channel("conv5", 0), channel("conv5", 3)])   # == channel("conv5", [0, 3])
        stack(["conv3:1", "conv5:2", logit(4)])              # three images, one batch
    """
    objs = [as_objective(o) for o in objectives]
    if not objs:
        raise ValueError("objectives is an empty list: give at least one objective")
    if any(o.batch is not None or o.all_channels for o in objs):
        raise ValueError("objectives in a list must be single (unbatched) objectives")
    n = len(objs)
    groups: dict[Any, list[int]] = {}
    for i, o in enumerate(objs):
        groups.setdefault(jax.tree_util.tree_structure(o), []).append(i)
    if len(groups) == 1:
        return _set_batch(jax.tree_util.tree_map(lambda *v: jnp.stack(v), *objs), n)
    terms = []
    for members in groups.values():
        fill = [objs[i if i in members else members[0]] for i in range(n)]
        stacked = _set_batch(jax.tree_util.tree_map(lambda *v: jnp.stack(v), *fill), n)
        mask = jnp.asarray([i in members for i in range(n)], jnp.float32)
        terms.append(Objective("mask", values={"m": mask}, children=(stacked,), batch=n))
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return Objective("mixed", children=(total,), batch=n)


def _set_batch(obj: Objective, n: int) -> Objective:
    kids = tuple(_set_batch(c, n) for c in obj.children)
    return Objective(obj.kind, obj.layer, obj.values, n, kids, obj.all_channels, obj.view)


def as_objective(spec: Any) -> Objective:
    """An :class:`Objective` from an objective, a ``"layer:channel"`` string or a list.

    ``"conv3:5"`` is ``channel("conv3", 5)``, ``"conv3:*"`` every channel,
    ``"logit:7"`` the class score. Example::

        as_objective("conv3:5").description   # 'channel(conv3, 5)'
    """
    if isinstance(spec, Objective):
        return spec
    if isinstance(spec, str):
        layer, sep, ch = spec.rpartition(":")
        if not sep or not layer:
            raise ValueError(f"objective string must look like 'layer:channel', got {spec!r}")
        if ch == "*":
            return channel(layer, "*")
        try:
            c = int(ch)
        except ValueError:
            raise ValueError(
                f"objective string must look like 'layer:channel' with an integer channel or "
                f"'*', got {spec!r}"
            ) from None
        return logit(c) if layer in ("logit", "logits") else channel(layer, c)
    if isinstance(spec, (list, tuple)):
        return stack(spec)
    raise TypeError(
        f"objective must be an Objective, a 'layer:channel' string or a list, got {spec!r}"
    )


# ---------------------------------------------------------------- helpers


def _join_batch(a: Objective, b: Objective) -> int | None:
    return _join_batch_values(a.batch, b.batch)


def _join_batch_values(a: int | None, b: int | None) -> int | None:
    if a is not None and b is not None and a != b:
        raise ValueError(f"cannot combine objectives over {a} and {b} images")
    return a if a is not None else b


def _output_size(probe: Any) -> int:
    if getattr(probe, "class_names", None):
        return len(probe.class_names)
    shape = (1, *probe.input_shape)
    out = jax.eval_shape(
        lambda x: probe.apply(probe.params, x)[0], jax.ShapeDtypeStruct(shape, jnp.float32)
    )
    return int(out.shape[-1])


def _is_negative(w: Any) -> bool:
    return bool(np.asarray(w) < 0)


def _fmt(v: Any) -> str:
    arr = np.asarray(v)
    if arr.ndim == 0:
        f = float(arr)
        return str(int(f)) if f == int(f) else f"{f:g}"
    if arr.size > 6:
        return f"[{', '.join(_fmt(a) for a in arr[:3])}, ... {_fmt(arr[-1])}]"
    return "[" + ", ".join(_fmt(a) for a in arr) + "]"


def _paren(obj: Objective) -> str:
    text = obj.description
    return f"({text})" if obj.kind == "sum" else text
