"""Attention maps, attention rollout and gradient-weighted rollout for vision transformers.

Each method reads the probe's attention layers (kind ``"attention"``, ``(heads, T, T)``;
captured from Flax attention modules or marked with ``jv.tap(name, w, kind="attention")``)
and returns an :class:`Attribution` whose ``values`` ``(N, H, W, 1)`` are the map over the
patch grid upsampled bilinearly to the image; ``extra["layer_map"]`` is the map on the grid
``(N, rows, cols)``. Block, head, query, head fusion, discard ratio and target are traced
values: changing them reuses the compiled function.

Example::

    res = attention_map(probe, x, layer=-1, head=0, query=(2, 5))
    roll = attention_rollout(probe, x, head_fusion="max", discard_ratio=0.9)
    grad = gradient_rollout(probe, x, target=7)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis._attention import KIND
from jaxvis._protocols import ProbeLike
from jaxvis.attribution import _checks
from jaxvis.attribution._core import cached_jit, count_trace
from jaxvis.attribution._edit import edited_apply
from jaxvis.attribution.registry import register
from jaxvis.attribution.result import Attribution
from jaxvis.layout import TokenGrid

__all__ = [
    "HEAD_FUSIONS",
    "attention_layers",
    "attention_map",
    "attention_rollout",
    "gradient_rollout",
]

#: Ways to fuse the heads of a block in :func:`attention_rollout`.
HEAD_FUSIONS = ("mean", "max", "min")


def attention_layers(probe: ProbeLike) -> tuple[str, ...]:
    """The names of the probe's attention layers, in call order (first block first).

    Example::

        attention_layers(probe)[0]   # 'Transformer.encoderblock_0.MultiHead...attention_weights'
    """
    return tuple(layer.name for layer in probe.layers if layer.kind == KIND)


@register("attention", "attention map", layer_map=True)
def attention_map(
    probe: ProbeLike,
    x: Any,
    target: Any = None,
    *,
    layer: int | str,
    head: int | None = None,
    query: str | int | tuple[int, int] = "cls",
) -> Attribution:
    """How one block's ``query`` token attends over the patch grid: one head, or their mean.

    ``layer`` is an attention layer's name or its block index (0 = first, -1 = last);
    ``head=None`` averages the heads; ``query`` is ``"cls"`` (the class token), a token index
    or a patch ``(row, col)``. ``target`` is accepted for a uniform signature and not used:
    attention does not depend on the class.

    Example::

        res = attention_map(probe, x, layer=-1, head=2, query=(0, 3))
        res.extra["layer_map"]      # (N, rows, cols): row (0, 3) of head 2's weights
    """
    del target
    x = _checks.check_images(probe, x)
    names = _require_attention(probe)
    name = _resolve_layer(probe, names, layer)
    shape = probe.layer(name).shape
    group = tuple(n for n in names if probe.layer(n).shape == shape)  # stacked: block is traced
    grid = _grid(probe, name)
    heads = shape[0]
    head_index = _check_head(head, heads)
    token = _check_query(query, grid, shape[1])

    def build() -> Any:
        def kernel(
            params: Any, x: jax.Array, block: jax.Array, head: jax.Array, token: jax.Array
        ) -> tuple[jax.Array, jax.Array]:
            count_trace("attention_map")
            acts = probe.apply(params, x, group)[1]
            weights = jnp.stack([acts[n] for n in group])[block]  # (N, heads, T, T)
            mix = jnp.where(head < 0, 1.0 / heads, jax.nn.one_hot(head, heads))
            row = jnp.einsum("nhk,h->nk", weights[:, :, token, :], mix)
            return _to_image(row, grid, x.shape)

        return kernel

    run = cached_jit(probe, ("attention_map", group), build)
    values, layer_map = run(
        probe.params, x, np.int32(group.index(name)), np.int32(head_index), np.int32(token)
    )
    return Attribution(
        values=values,
        delta=None,
        method="attention_map",
        settings={"layer": name, "head": head, "query": query, "token": token},
        extra={"layer_map": layer_map},
    )


@register("attention", "attention rollout", layer_map=True)
def attention_rollout(
    probe: ProbeLike,
    x: Any,
    target: Any = None,
    *,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    layers: Sequence[str] | None = None,
) -> Attribution:
    """Attention rollout (Abnar & Zuidema 2020): attention multiplied through the blocks.

    Per block: fuse the heads (``"mean"``, ``"max"`` or ``"min"``), set the lowest
    ``discard_ratio`` of the fused weights to zero (weights paid to the class token, its
    column, are never dropped; as in jacobgil's vit-explain), add the identity for the
    residual path and renormalise the rows; then ``R = A_l @ ... @ A_1``. The map is the
    class token's row over the patches (the mean row when the model has no class token).
    ``layers`` picks attention layers by name or block index (default: all). ``target`` is
    not used.

    Example::

        roll = attention_rollout(probe, x, head_fusion="max", discard_ratio=0.9)
        roll.extra["rollout"]       # (N, T, T): the full rollout matrix
    """
    del target
    x = _checks.check_images(probe, x)
    chosen = _check_layers(probe, layers)
    fusion = _check_choice(head_fusion, "head_fusion", HEAD_FUSIONS)
    ratio = _check_ratio(discard_ratio)
    grid = _grid(probe, chosen[0])

    def build() -> Any:
        def kernel(
            params: Any, x: jax.Array, fusion: jax.Array, ratio: jax.Array
        ) -> tuple[jax.Array, jax.Array, jax.Array]:
            count_trace("attention_rollout")
            acts = probe.apply(params, x, chosen)[1]
            rollout = None
            for name in chosen:
                a = acts[name]
                fused = jnp.stack([a.mean(1), a.max(1), a.min(1)])[fusion]
                fused = _discard(fused, ratio, grid.prefix)
                eye = jnp.eye(fused.shape[-1], dtype=fused.dtype)
                step = fused + eye
                step = step / step.sum(-1, keepdims=True)
                rollout = step if rollout is None else step @ rollout
            values, layer_map = _to_image(_readout(rollout, grid), grid, x.shape)
            return values, layer_map, rollout

        return kernel

    run = cached_jit(probe, ("attention_rollout", chosen), build)
    values, layer_map, rollout = run(probe.params, x, np.int32(fusion), np.float32(ratio))
    return Attribution(
        values=values,
        delta=None,
        method="attention_rollout",
        settings={"head_fusion": head_fusion, "discard_ratio": ratio, "layers": chosen},
        extra={"layer_map": layer_map, "rollout": rollout},
    )


@register("attention", "gradient rollout", layer_map=True)
def gradient_rollout(
    probe: ProbeLike,
    x: Any,
    target: Any = None,
    *,
    layers: Sequence[str] | None = None,
) -> Attribution:
    """Gradient-weighted rollout (Chefer et al. 2021, "Generic attention-model explainability").

    From ``R = I``, per block: ``R += mean_heads(relu(dA * A)) @ R``, with ``dA`` the
    gradient of the target's logit with respect to that block's attention weights ``A``. The
    map is the class token's row of ``R`` over the patches (the mean row without a class
    token). ``target``: a class index (one per example), None for the predicted class, or a
    callable of the logits; ``layers`` as in :func:`attention_rollout`.

    Example::

        res = gradient_rollout(probe, x, target=3)
        res.score                   # the explained logit per example
    """
    x = _checks.check_images(probe, x)
    chosen = _check_layers(probe, layers)
    grid = _grid(probe, chosen[0])
    tgt = _checks.resolve_target(probe, x, target)

    def build() -> Any:
        def kernel(params: Any, x: jax.Array, index: jax.Array) -> tuple:
            count_trace("gradient_rollout")

            def score(deltas: dict[str, jax.Array]) -> tuple[jax.Array, tuple]:
                edits = {n: (lambda a, d=deltas[n]: a + d) for n in chosen}
                out, acts = edited_apply(probe, params, x, _checks.with_target_layer(edits, tgt))
                s = _checks.pick_edited(out, acts, tgt, index)
                return s.sum(), (s, acts)

            zeros = {
                n: jnp.zeros((x.shape[0], *probe.layer(n).shape), probe.layer(n).dtype)
                for n in chosen
            }
            grads, (s, acts) = jax.grad(score, has_aux=True)(zeros)
            tokens = probe.layer(chosen[0]).shape[-1]
            relevance = jnp.broadcast_to(jnp.eye(tokens), (x.shape[0], tokens, tokens))
            for name in chosen:
                cam = jnp.maximum(grads[name] * acts[name], 0.0).mean(1)
                relevance = relevance + cam @ relevance
            values, layer_map = _to_image(_readout(relevance, grid), grid, x.shape)
            return values, layer_map, relevance, s

        return kernel

    run = cached_jit(probe, ("gradient_rollout", tgt.static_key, chosen), build)
    values, layer_map, relevance, s = run(probe.params, x, tgt.index)
    return Attribution(
        values=values,
        delta=None,
        method="gradient_rollout",
        target=tgt.label,
        score=s,
        settings={"layers": chosen},
        extra={"layer_map": layer_map, "relevance": relevance},
    )


# --------------------------------------------------------------------------- traced helpers


def _discard(fused: jax.Array, ratio: jax.Array, prefix: int) -> jax.Array:
    """Zero the lowest ``ratio`` of each example's weights outside the prefix columns."""
    n, t = fused.shape[0], fused.shape[-1]
    protected = jnp.broadcast_to(jnp.arange(t) < prefix, (t, t)).reshape(-1)
    flat = fused.reshape(n, -1)
    ranked = jnp.where(protected, jnp.inf, flat)
    ranks = jnp.argsort(jnp.argsort(ranked, axis=-1, stable=True), axis=-1, stable=True)
    k = jnp.floor(ratio * (t * (t - prefix))).astype(jnp.int32)
    return jnp.where(ranks < k, 0.0, flat).reshape(fused.shape)


def _readout(matrix: jax.Array, grid: TokenGrid) -> jax.Array:
    """The class token's row (the mean row without prefix tokens) of ``(N, T, T)``."""
    return matrix[:, 0] if grid.prefix else matrix.mean(1)


def _to_image(row: jax.Array, grid: TokenGrid, x_shape: tuple) -> tuple[jax.Array, jax.Array]:
    """``(values (N, H, W, 1), layer_map (N, rows, cols))`` from one row ``(N, T)``."""
    patches = row[:, grid.prefix : grid.prefix + grid.n_patches]
    layer_map = patches.reshape(row.shape[0], grid.rows, grid.cols)
    up = jax.image.resize(layer_map, (row.shape[0], *x_shape[1:3]), "bilinear")
    return up[..., None], layer_map


# --------------------------------------------------------------------------- checks


def _require_attention(probe: ProbeLike) -> tuple[str, ...]:
    names = attention_layers(probe)
    if not names:
        raise ValueError(
            "the model has no attention layers: jaxvis finds Flax's "
            "nn.MultiHeadDotProductAttention (Linen) and nnx.MultiHeadAttention (NNX); mark "
            "hand-written attention with jv.tap(name, weights, kind='attention')"
        )
    return names


def _resolve_layer(probe: ProbeLike, names: tuple[str, ...], layer: Any) -> str:
    if isinstance(layer, bool) or not isinstance(layer, int | np.integer | str):
        raise TypeError(f"layer must be an attention layer name or a block index, got {layer!r}")
    if isinstance(layer, str):
        if probe.layer(layer).kind != KIND:  # unknown names raise with close names
            raise ValueError(
                f"layer {layer!r} is not an attention layer; attention layers: {', '.join(names)}"
            )
        return layer
    if not -len(names) <= int(layer) < len(names):
        raise ValueError(
            f"layer (block index) must be in [{-len(names)}, {len(names) - 1}] for "
            f"{len(names)} attention layers, got {layer}"
        )
    return names[int(layer)]


def _check_layers(probe: ProbeLike, layers: Sequence[str] | None) -> tuple[str, ...]:
    names = _require_attention(probe)
    if layers is None:
        chosen = names
    else:
        if isinstance(layers, str):
            layers = [layers]
        chosen = tuple(_resolve_layer(probe, names, n) for n in layers)
        if not chosen:
            raise ValueError("layers must name at least one attention layer (or be None: all)")
        chosen = tuple(n for n in names if n in chosen)  # call order
    tokens = {probe.layer(n).shape[-1] for n in chosen}
    if len(tokens) > 1:
        raise ValueError(
            f"rollout needs the same token count in every attention layer, got {sorted(tokens)}"
            "; pick layers of one size with layers=[...]"
        )
    return chosen


def _grid(probe: ProbeLike, name: str) -> TokenGrid:
    grid = probe.layout(name).grid
    if grid is None:
        raise ValueError(
            f"the {probe.layer(name).shape[-1]} tokens of {name!r} do not form a patch grid for "
            f"images of shape {probe.input_shape}: pass jv.Probe(..., token_grid=(rows, cols))"
        )
    return grid


def _check_head(head: Any, heads: int) -> int:
    """-1 for the mean of the heads, else the head index."""
    if head is None:
        return -1
    if isinstance(head, bool) or not isinstance(head, int | np.integer):
        raise TypeError(f"head must be None (mean of the heads) or an int, got {head!r}")
    if not 0 <= int(head) < heads:
        raise ValueError(f"head must be in [0, {heads - 1}] ({heads} heads) or None, got {head}")
    return int(head)


def _check_query(query: Any, grid: TokenGrid, tokens: int) -> int:
    """The token index of ``query``."""
    if isinstance(query, str):
        if query != "cls":
            raise ValueError(f"query must be 'cls', a token index or (row, col), got {query!r}")
        if not grid.prefix:
            raise ValueError(
                "query='cls' needs a class token, and this model has none: pick a patch with "
                "query=(row, col)"
            )
        return 0
    if isinstance(query, int | np.integer) and not isinstance(query, bool):
        if not 0 <= int(query) < tokens:
            raise ValueError(f"query token must be in [0, {tokens - 1}], got {query}")
        return int(query)
    if isinstance(query, tuple | list) and len(query) == 2:
        row, col = (int(v) for v in query)
        if not (0 <= row < grid.rows and 0 <= col < grid.cols):
            raise ValueError(
                f"query patch (row, col) must lie in the {grid.rows}x{grid.cols} patch grid, "
                f"got ({row}, {col})"
            )
        return grid.token(row, col)
    raise TypeError(f"query must be 'cls', a token index or (row, col), got {query!r}")


def _check_choice(value: Any, name: str, choices: Sequence[str]) -> int:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return list(choices).index(value)


def _check_ratio(ratio: Any) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, int | float | np.floating | np.integer):
        raise TypeError(f"discard_ratio must be a number in [0, 1), got {ratio!r}")
    if not 0.0 <= float(ratio) < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {ratio}")
    return float(ratio)
