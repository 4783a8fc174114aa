"""Objectives: what a feature visualisation maximises, as small composable, registered kinds.

An :class:`Objective` maps the activations of a batch of images to one score per image. Its
*structure* (which kind, which layer, how many images) is static and its *values* (channel
indices, neuron positions, classes, direction vectors, weights) are traced arrays, so changing
a value never compiles again. Objectives compose as in Lucid::

    obj = channel("conv5", 3) - 0.5 * channel("conv5", 7)
    obj = "conv3:5"                     # string shorthand for channel("conv3", 5)
    obj = channel("conv3", "*")         # every channel of conv3, one image each
    obj = channel("conv5", [3] * 4) + 0.5 * diversity("conv4")   # four different images
    obj = interpolate(channel("conv5", 3), channel("conv5", 7), frames=8) + alignment("conv4")
    obj.description                     # 'channel(conv5, 3) - 0.5 * channel(conv5, 7)'

Each kind is one :class:`Kind` subclass registered with :func:`register`: its ``traced``
names the entries of ``Objective.values`` (arrays, traced), the rest of the objective
(``layer``, ``batch``) is static. A new kind is one class::

    @register
    class Peak(Kind):
        name, traced = "peak", ("c",)
        def score(self, act, v):             # one image's activation -> a scalar
            return act[..., v["c"]].max()

    Objective("peak", "conv3", {"c": jnp.int32(2)})

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.layout import LayerLayout, spatial_view

__all__ = [
    "KINDS",
    "OUTPUT",
    "Kind",
    "Objective",
    "alignment",
    "as_objective",
    "channel",
    "deepdream",
    "direction",
    "diversity",
    "feature_distance",
    "interpolate",
    "logit",
    "neuron",
    "neuron_group",
    "register",
    "stack",
]

#: Pseudo layer name for the model's output (logits).
OUTPUT = "__output__"


@dataclass(frozen=True, eq=False)
class Objective:
    """A score per image, to be maximised.

    ``kind`` (a name in :data:`KINDS`), ``layer`` and ``batch`` are static; ``values`` holds
    the kind's traced arrays (with a leading batch axis of size ``batch`` when the kind's
    values are per image, else shared by every image). ``children`` are sub-objectives of the
    composite kinds (``sum``, ``scale``, ``mask``, ``mixed``). ``view`` is set by :meth:`bind`
    for a token layer: the objective then reads its ``(h, w, C)`` patch grid.
    """

    kind: str
    layer: str | None = None
    values: Mapping[str, Any] = field(default_factory=dict)
    batch: int | None = None
    children: tuple[Objective, ...] = ()
    all_channels: bool = False
    view: LayerLayout | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"unknown objective kind {self.kind!r}: expected one of {sorted(KINDS)}"
            )

    # ------------------------------------------------------------ algebra

    def __add__(self, other: Any) -> Objective:
        other = as_objective(other)
        return Objective("sum", children=(self, other), batch=_join_batch(self.batch, other.batch))

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

    @property
    def per_image(self) -> bool:
        """False when some term scores the batch as a whole (``diversity``, ``alignment``)."""
        return KINDS[self.kind].per_image and all(c.per_image for c in self.children)

    def __call__(self, acts: Mapping[str, jax.Array], output: jax.Array | None = None) -> jax.Array:
        """Scores ``(N,)`` for activations ``{layer: (N, ...)}`` and logits ``(N, K)``."""
        return KINDS[self.kind].evaluate(self, acts, output)

    # ------------------------------------------------------------ checks

    def bind(self, probe: Any) -> Objective:
        """Check layers and indices against ``probe``; expand ``"*"`` to every channel.

        Raises ``ValueError`` naming the problem (unknown layer with suggestions, channel out of
        range) before anything is compiled.
        """
        if self.children:
            kids = tuple(c.bind(probe) for c in self.children)
            batch = self.batch if KINDS[self.kind].batched_values else None
            for k in kids:
                batch = _join_batch(batch, k.batch)
            return Objective(self.kind, self.layer, self.values, batch, kids)
        view = None
        if self.layer == OUTPUT:
            shape: tuple[int, ...] = (_output_size(probe),)
        else:
            layout = probe.layout(self.layer)
            shape = layout.shape
            if layout.kind == "tokens" and layout.spatial_shape is not None:
                view, shape = layout, layout.spatial_shape
        values, batch = dict(self.values), self.batch
        if self.all_channels:
            values["c"] = jnp.arange(shape[-1], dtype=jnp.int32)
            batch = shape[-1]
        KINDS[self.kind].check(self.layer, values, shape)
        return Objective(self.kind, self.layer, values, batch, (), False, view)

    # ------------------------------------------------------------ description

    @property
    def description(self) -> str:
        """A readable formula, e.g. ``'channel(conv5, 3) - 0.5 * logit(2)'``."""
        return KINDS[self.kind].describe(self)

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
    return Objective(
        kind, layer, dict(zip(keys, values, strict=True)), batch, kids, all_channels, view
    )


jax.tree_util.register_pytree_node(Objective, _flatten, _unflatten)


# ---------------------------------------------------------------- kinds


class Kind:
    """One kind of objective. Subclasses set ``name`` and ``traced`` and define ``score``
    (one image) or, with ``per_image = False``, ``score_batch`` (the whole batch).

    ``traced`` names the entries of ``Objective.values`` (traced arrays); everything else
    about the objective is static. ``check`` validates values against the layer's shape at
    :meth:`Objective.bind`; ``describe`` writes the formula.
    """

    name: ClassVar[str]
    traced: ClassVar[tuple[str, ...]] = ()
    #: False: the kind scores the batch as a whole (its values are never per image)
    per_image: ClassVar[bool] = True
    #: composite kinds whose own values carry a batch axis (``mask``)
    batched_values: ClassVar[bool] = False

    def score(self, act: jax.Array, v: Mapping[str, jax.Array]) -> jax.Array:
        raise NotImplementedError(f"objective kind {self.name!r} has no per-image score")

    def score_batch(self, act: jax.Array, v: Mapping[str, jax.Array]) -> jax.Array:
        raise NotImplementedError(f"objective kind {self.name!r} has no batch score")

    def evaluate(
        self, obj: Objective, acts: Mapping[str, jax.Array], output: jax.Array | None
    ) -> jax.Array:
        """Scores ``(N,)`` of a leaf objective: the layer's activation, vmapped ``score``."""
        act = output if obj.layer == OUTPUT else acts[obj.layer]
        if act is None:
            raise ValueError("this objective needs the model output, which was not computed")
        if obj.view is not None:
            act = spatial_view(act, obj.view)
        if not self.per_image:
            return self.score_batch(act, obj.values)
        axes = 0 if obj.batch is not None else None
        return jax.vmap(self.score, in_axes=(0, axes))(act, dict(obj.values))

    def check(self, layer: str | None, v: dict[str, Any], shape: tuple[int, ...]) -> None:
        """Raise ``ValueError`` when a value does not fit a layer of ``shape``."""
        if "c" in v:
            _check_range(
                np.asarray(v["c"]), shape[-1], "class" if layer == OUTPUT else "channel", layer
            )

    def describe(self, obj: Objective) -> str:
        return f"{self.name}({obj.layer})"


#: kind name -> :class:`Kind` instance (see :func:`register`)
KINDS: dict[str, Kind] = {}


def register(cls: type[Kind]) -> type[Kind]:
    """Register a :class:`Kind` subclass under its ``name`` (a class decorator)."""
    if not isinstance(cls, type) or not issubclass(cls, Kind):
        raise TypeError(f"register takes a Kind subclass, got {cls!r}")
    KINDS[cls.name] = cls()
    return cls


def _check_range(idx: np.ndarray, size: int, what: str, layer: str | None) -> None:
    if idx.size and (idx.min() < 0 or idx.max() >= size):
        bad = int(idx.max()) if idx.max() >= size else int(idx.min())
        where = "the output" if layer == OUTPUT else repr(layer)
        raise ValueError(f"{what} {bad} is out of range for {where}: expected 0..{size - 1}")


def _spatial_mean(a: jax.Array) -> jax.Array:
    return a.reshape(-1, a.shape[-1]).mean(axis=0)


# ------------------------------------------------ composite kinds


@register
class Sum(Kind):
    name = "sum"

    def evaluate(self, obj: Objective, acts: Any, output: Any) -> jax.Array:
        return sum(c(acts, output) for c in obj.children)  # type: ignore[return-value]

    def describe(self, obj: Objective) -> str:
        a, b = obj.children
        if b.kind == "scale" and bool(np.asarray(b.values["w"]) < 0):
            return f"{a.description} - {_fmt(-np.asarray(b.values['w']))} * {_paren(b.children[0])}"
        return f"{a.description} + {b.description}"


@register
class Scale(Kind):
    name, traced = "scale", ("w",)

    def evaluate(self, obj: Objective, acts: Any, output: Any) -> jax.Array:
        return obj.values["w"] * obj.children[0](acts, output)

    def describe(self, obj: Objective) -> str:
        w = np.asarray(obj.values["w"])
        if float(w) == -1.0:
            return f"-{_paren(obj.children[0])}"
        return f"{_fmt(w)} * {_paren(obj.children[0])}"


@register
class Mask(Kind):
    """A per-image weight ``m`` (N,) on a child: masks of :func:`stack`, frames of
    :func:`interpolate`."""

    name, traced, batched_values = "mask", ("m",), True

    def evaluate(self, obj: Objective, acts: Any, output: Any) -> jax.Array:
        return obj.values["m"] * obj.children[0](acts, output)

    def describe(self, obj: Objective) -> str:
        return f"masked({obj.children[0].description})"


@register
class Mixed(Kind):
    """A :func:`stack` of objectives of different structure (a sum of masked terms)."""

    name = "mixed"

    def evaluate(self, obj: Objective, acts: Any, output: Any) -> jax.Array:
        return obj.children[0](acts, output)

    def describe(self, obj: Objective) -> str:
        return f"one of {len(obj.children[0].layers)} layers per image ({obj.batch} images)"


# ------------------------------------------------ per-image kinds


@register
class Channel(Kind):
    name, traced = "channel", ("c",)

    def score(self, act: jax.Array, v: Mapping[str, jax.Array]) -> jax.Array:
        return _spatial_mean(act)[v["c"]]

    def describe(self, obj: Objective) -> str:
        c = "*" if obj.all_channels else _fmt(obj.values["c"])
        return f"channel({obj.layer}, {c})"


@register
class Logit(Kind):
    name, traced = "logit", ("c",)

    def score(self, act: jax.Array, v: Mapping[str, jax.Array]) -> jax.Array:
        return act[v["c"]]

    def describe(self, obj: Objective) -> str:
        return f"logit({_fmt(obj.values['c'])})"


@register
class Neuron(Kind):
    name, traced = "neuron", ("c", "y", "x")

    def score(self, act: jax.Array, v: Mapping[str, jax.Array]) -> jax.Array:
        if act.ndim == 1:
            return act[v["c"]]
        h, w = act.shape[0], act.shape[1]
        y = jnp.where(v["y"] < 0, h // 2, v["y"])
        x = jnp.where(v["x"] < 0, w // 2, v["x"])
        return act[y, x, v["c"]]

    def check(self, layer: str | None, v: dict[str, Any], shape: tuple[int, ...]) -> None:
        super().check(layer, v, shape)
        if len(shape) != 3:
            return
        for axis, key in ((0, "y"), (1, "x")):
            pos = np.asarray(v[key])
            if pos.size and pos.max() >= shape[axis]:
                raise ValueError(
                    f"neuron {key}={int(pos.max())} is out of range for {layer!r}: "
                    f"expected 0..{shape[axis] - 1} (or None for the centre)"
                )

    def describe(self, obj: Objective) -> str:
        y, x = (np.asarray(obj.values[k]) for k in ("y", "x"))
        pos = "centre" if (y < 0).all() and (x < 0).all() else f"y={_fmt(y)}, x={_fmt(x)}"
        return f"neuron({obj.layer}, {_fmt(obj.values['c'])}, {pos})"


@register
class Direction(Kind):
    name, traced = "direction", ("v",)

    def score(self, act: jax.Array, v: Mapping[str, jax.Array]) -> jax.Array:
        vec = v["v"] / (jnp.linalg.norm(v["v"]) + 1e-8)
        return jnp.dot(_spatial_mean(act), vec)

    def check(self, layer: str | None, v: dict[str, Any], shape: tuple[int, ...]) -> None:
        if v["v"].shape[-1] != shape[-1]:
            raise ValueError(
                f"direction vector has {v['v'].shape[-1]} entries but {layer!r} has "
                f"{shape[-1]} channels"
            )


@register
class DeepDream(Kind):
    name = "deepdream"

    def score(self, act: jax.Array, v: Mapping[str, jax.Array]) -> jax.Array:
        return jnp.mean(act**2)


@register
class FeatureDistance(Kind):
    """Minus the squared distance to target activations ``t``, relative to ``|t|^2``."""

    name, traced = "feature_distance", ("t",)

    def score(self, act: jax.Array, v: Mapping[str, jax.Array]) -> jax.Array:
        t = v["t"]
        return -jnp.sum((act - t) ** 2) / (jnp.sum(t**2) + 1e-8)

    def check(self, layer: str | None, v: dict[str, Any], shape: tuple[int, ...]) -> None:
        got = tuple(v["t"].shape[-len(shape) :])
        if got != tuple(shape):
            raise ValueError(
                f"feature_distance target has shape {tuple(v['t'].shape)} but {layer!r} has "
                f"{tuple(shape)} per image"
            )


# ------------------------------------------------ batch kinds


@register
class Diversity(Kind):
    """Lucid's diversity: minus the mean cosine similarity of an image's Gram matrix to the
    others' in the batch."""

    name, per_image = "diversity", False

    def score_batch(self, act: jax.Array, v: Mapping[str, jax.Array]) -> jax.Array:
        n = act.shape[0]
        flat = act.reshape(n, -1, act.shape[-1])
        gram = jnp.einsum("npc,npd->ncd", flat, flat).reshape(n, -1)
        gram = gram / (jnp.linalg.norm(gram, axis=1, keepdims=True) + 1e-8)
        sim = gram @ gram.T
        return -(jnp.sum(sim, axis=1) - jnp.diag(sim)) / max(n - 1, 1)


@register
class Alignment(Kind):
    """Lucid's alignment: minus the mean squared activation difference of each image to the
    next ``ALIGNMENT_REACH`` images, weighted ``decay ** -d`` for a neighbour ``d`` away."""

    name, traced, per_image = "alignment", ("decay",), False

    def score_batch(self, act: jax.Array, v: Mapping[str, jax.Array]) -> jax.Array:
        n = act.shape[0]
        flat = act.reshape(n, -1)
        total = jnp.zeros((n,), flat.dtype)
        for d in range(1, min(ALIGNMENT_REACH, n - 1) + 1):
            gap = jnp.mean((flat[:-d] - flat[d:]) ** 2, axis=1) / v["decay"] ** d
            total = total.at[:-d].add(-gap)
        return total


#: how many following frames each frame is aligned to (Lucid's 4)
ALIGNMENT_REACH = 4


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
    if (y is not None and y < 0) or (x is not None and x < 0):
        raise ValueError(f"neuron position must be >= 0 (or None for the centre), got {(y, x)}")
    yy = jnp.full(idx.shape, -1 if y is None else int(y), jnp.int32)
    xx = jnp.full(idx.shape, -1 if x is None else int(x), jnp.int32)
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


def neuron_group(layer: str, group: Any, which: Any = None) -> Objective:
    """One image per group of neurons: a :func:`direction` per row of ``group``.

    ``group`` is a ``(K, C)`` array of directions, a list of channel-index lists (equal
    weights), or a concepts fit (anything with ``.directions``, e.g. from
    :func:`jaxvis.concepts.fit`); ``which`` picks rows.

    Example::

        neuron_group("conv5", [[1, 4], [2, 3, 7]])       # two images, two groups
        neuron_group("conv5", concepts, which=[0, 2])    # concepts 0 and 2
    """
    rows = getattr(group, "directions", group)
    if isinstance(rows, (list, tuple)) and rows and all(isinstance(r, (list, tuple)) for r in rows):
        width = 1 + max((int(c) for r in rows for c in r), default=0)
        mat = np.zeros((len(rows), width), np.float32)
        for i, r in enumerate(rows):
            idx, _ = _index(list(r), "group channel")
            mat[i, np.asarray(idx)] = 1.0
        rows = mat
    mat = np.asarray(rows, np.float32)
    if mat.ndim != 2 or mat.shape[0] == 0:
        raise ValueError(
            f"group must be a (K, C) array of directions, lists of channels or a concepts fit, "
            f"got shape {mat.shape}"
        )
    if which is not None:
        idx, _ = _index(np.atleast_1d(which), "which")
        _check_range(np.asarray(idx), mat.shape[0], "group", layer)
        mat = mat[np.asarray(idx)]
    return direction(layer, mat)


def deepdream(layer: str) -> Objective:
    """Mean squared activation of the whole layer (DeepDream). Example: ``deepdream("conv4")``."""
    return Objective("deepdream", _layer(layer))


def diversity(layer: str) -> Objective:
    """Minus the Gram-matrix similarity between batch images at ``layer`` (Lucid); add it with
    a positive weight to make the images of a batch differ.

    Example::

        channel("conv5", [3, 3, 3, 3]) + 0.5 * diversity("conv4")
    """
    return Objective("diversity", _layer(layer))


def alignment(layer: str, decay: float = 2.0) -> Objective:
    """Minus the activation distance between neighbouring images of the batch at ``layer``
    (Lucid), ``decay ** -d`` for images ``d`` apart (up to 4): add it to keep the frames of an
    :func:`interpolate` close to each other.

    Example::

        interpolate(channel("conv5", 3), channel("conv5", 7), 8) + 0.1 * alignment("conv3")
    """
    d = float(decay)
    if not np.isfinite(d) or d < 1:
        raise ValueError(f"decay must be a finite number >= 1, got {decay!r}")
    return Objective("alignment", _layer(layer), {"decay": jnp.asarray(d, jnp.float32)})


def interpolate(a: Objective | str, b: Objective | str, frames: int) -> Objective:
    """``frames`` images from ``a`` to ``b``: frame ``i`` maximises ``(1 - t) a + t b`` with
    ``t = i / (frames - 1)``. Render with ``shared=True`` (a component common to all
    frames) and ``+ alignment(layer)`` for a smooth sequence.

    Example::

        obj = interpolate("conv5:3", "conv5:7", 8)
    """
    a, b = as_objective(a), as_objective(b)
    if a.batch is not None or b.batch is not None or a.all_channels or b.all_channels:
        raise ValueError("interpolate takes two single (unbatched) objectives")
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 2:
        raise ValueError(f"frames must be an integer >= 2, got {frames!r}")
    t = jnp.linspace(0.0, 1.0, int(frames), dtype=jnp.float32)
    n = int(frames)
    return Objective("mask", values={"m": 1.0 - t}, children=(a,), batch=n) + Objective(
        "mask", values={"m": t}, children=(b,), batch=n
    )


def feature_distance(layer: str, target: Any) -> Objective:
    """Minus ``|a - target|^2 / |target|^2`` at ``layer``: stay close to ``target``'s
    activations (``(N, ...)``: one per image, or ``(1, ...)`` shared by all). Feature
    accentuation adds it to a unit's objective (see :func:`jaxvis.optvis.accentuate`).

    Example::

        ref = probe.activations(x0, ["conv3"])["conv3"]
        obj = channel("conv5", 2) + 2.0 * feature_distance("conv3", ref)
    """
    t = jnp.asarray(target, jnp.float32)
    if t.ndim < 2:
        raise ValueError(
            f"target must be a layer's activations (N, ...) with a leading batch axis, got shape "
            f"{t.shape}"
        )
    if t.shape[0] == 1:
        return Objective("feature_distance", _layer(layer), {"t": t[0]})
    return Objective("feature_distance", _layer(layer), {"t": t}, int(t.shape[0]))


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
    if any(o.batch is not None or o.all_channels or not o.per_image for o in objs):
        raise ValueError("objectives in a list must be single (unbatched, per-image) objectives")
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


def _join_batch(a: int | None, b: int | None) -> int | None:
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
