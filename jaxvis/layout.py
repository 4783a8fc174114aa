"""How a layer's output is laid out, and its spatial view: the one place tools ask.

Layers come in four layouts (shapes exclude the batch axis):

* ``"spatial"``: ``(H, W, C)`` feature maps whose aspect ratio follows the input image's;
* ``"vector"``: ``(C,)``;
* ``"tokens"``: ``(T, D)`` or ``(T, heads, d)`` where ``T = prefix + rows * cols`` over the
  patch grid (``prefix`` leading tokens, e.g. a class token, are kept apart);
* ``"attention"``: attention weights ``(heads, T, T)``, as the probe captures them;

anything else is ``"other"``. Every spatial tool (activation grids, top-k, receptive fields,
Grad-CAM, feature visualisation) reads a token layer through :func:`spatial_view`, which drops
the prefix tokens and reshapes the rest to ``(rows, cols, D)`` (heads and head dims flattened).

Which layers tools offer and start on is decided here too, once: :func:`spatial_layers` (the
layers with a spatial view), :func:`unit_layers` (those with channels to pick, vectors too),
:func:`block_layers` (a ViT's residual stream, block by block) and
:func:`default_spatial_layer` (the layer a tool starts on: the last block's tokens of a ViT,
the last feature map of a CNN).

Example::

    lay = layout_of((197, 384), input_shape=(224, 224, 3))
    lay.kind, lay.grid                    # 'tokens', TokenGrid(rows=14, cols=14, prefix=1)
    spatial_view(acts, lay).shape         # (N, 14, 14, 384)
    default_spatial_layer(probe)          # 'Transformer.encoderblock_11'
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jaxvis._protocols import ProbeLike

__all__ = [
    "LayerLayout",
    "TokenGrid",
    "block_layers",
    "check_token_layers",
    "default_spatial_layer",
    "layout_of",
    "prefix_view",
    "spatial_layers",
    "spatial_view",
    "unit_layers",
]

#: how far a feature map's aspect ratio may stray from the input's and still be "spatial"
_ASPECT_SLACK = 0.25
#: leading non-patch tokens tried when no grid is given (none, or one class token)
_PREFIXES = (0, 1)


@dataclass(frozen=True)
class TokenGrid:
    """Tokens ``prefix .. prefix + rows * cols`` are patches in row-major order."""

    rows: int
    cols: int
    prefix: int

    @property
    def n_patches(self) -> int:
        return self.rows * self.cols

    def token(self, row: int, col: int) -> int:
        """Index of the token of patch ``(row, col)``."""
        if not (0 <= row < self.rows and 0 <= col < self.cols):
            raise ValueError(
                f"patch (row, col) must lie in the {self.rows}x{self.cols} grid, got ({row}, {col})"
            )
        return self.prefix + row * self.cols + col


@dataclass(frozen=True)
class LayerLayout:
    """A layer's layout; ``spatial_shape`` is its ``(h, w, C)`` view, or None if it has none."""

    kind: str
    shape: tuple[int, ...]
    grid: TokenGrid | None = None

    @property
    def spatial_shape(self) -> tuple[int, int, int] | None:
        if self.kind == "spatial":
            return (self.shape[0], self.shape[1], self.shape[2])
        if self.kind == "tokens" and self.grid is not None:
            return (self.grid.rows, self.grid.cols, math.prod(self.shape[1:]))
        return None

    @property
    def channels(self) -> int | None:
        """Channels of the spatial view, or of a vector; None otherwise."""
        if self.kind == "vector":
            return self.shape[0]
        spatial = self.spatial_shape
        return None if spatial is None else spatial[2]


def check_token_grid(token_grid: Any) -> tuple[int, int] | None:
    """``token_grid`` as ``(rows, cols)`` of positive ints, or None; else a clear error."""
    if token_grid is None:
        return None
    try:
        rows, cols = (int(v) for v in token_grid)
    except (TypeError, ValueError):
        raise TypeError(
            f"token_grid must be a pair (rows, cols) of positive integers, got {token_grid!r}"
        ) from None
    if rows <= 0 or cols <= 0:
        raise ValueError(f"token_grid must have positive sizes, got {token_grid!r}")
    return rows, cols


def layout_of(
    shape: Sequence[int],
    input_shape: Sequence[int] | None,
    token_grid: tuple[int, int] | None = None,
    kind: str | None = None,
) -> LayerLayout:
    """The layout of a layer with output ``shape`` (no batch axis) on images of ``input_shape``.

    ``token_grid=(rows, cols)`` fixes the patch grid (then any ``T >= rows * cols`` tokens have
    ``prefix = T - rows * cols``); otherwise the grid is the one with the input's aspect ratio
    and a prefix of 0 or 1 tokens. ``kind="attention"`` (the probe's layer kind for captured
    attention weights) marks ``(heads, T, T)`` layers.
    """
    shape = tuple(int(d) for d in shape)
    if kind == "attention" and len(shape) == 3 and shape[1] == shape[2]:
        return LayerLayout("attention", shape, _grid_for(shape[1], input_shape, token_grid))
    if len(shape) == 1:
        return LayerLayout("vector", shape)
    if len(shape) == 3 and _is_spatial(shape, input_shape):
        return LayerLayout("spatial", shape)
    if len(shape) in (2, 3):
        grid = _grid_for(shape[0], input_shape, token_grid)
        if grid is not None:
            return LayerLayout("tokens", shape, grid)
    return LayerLayout("other", shape)


def spatial_view(acts: Any, layout: LayerLayout) -> Any:
    """``acts`` (batch first) as ``(N, h, w, C)``; a ``ValueError`` for layers without one."""
    if layout.kind == "spatial":
        return acts
    if layout.kind == "tokens" and layout.grid is not None:
        grid = layout.grid
        patches = acts[:, grid.prefix : grid.prefix + grid.n_patches]
        return patches.reshape(acts.shape[0], grid.rows, grid.cols, -1)
    raise ValueError(
        f"a layer of shape {layout.shape} ({layout.kind}) has no spatial (h, w, C) view"
    )


def prefix_view(acts: Any, layout: LayerLayout) -> Any:
    """The prefix tokens (e.g. the class token) of a token layer, ``(N, prefix, C)``."""
    if layout.kind != "tokens" or layout.grid is None:
        raise ValueError(f"a layer of shape {layout.shape} ({layout.kind}) has no tokens")
    prefix = acts[:, : layout.grid.prefix]
    return prefix.reshape(acts.shape[0], layout.grid.prefix, -1)


def spatial_layers(probe: ProbeLike, *, tokens: bool = True) -> list[str]:
    """Names of the layers with a spatial ``(h, w, C)`` view, in call order.

    Feature maps, and with ``tokens`` true token layers over a patch grid too (attention
    weights and vectors are not). Example::

        spatial_layers(probe)                  # ['embedding', 'Transformer.encoderblock_0...', ...]
        spatial_layers(probe, tokens=False)    # ['embedding']: feature maps only
    """
    kinds = ("spatial", "tokens") if tokens else ("spatial",)
    return [layer.name for layer in probe.layers if probe.layout(layer.name).kind in kinds]


def unit_layers(probe: ProbeLike) -> list[str]:
    """Names of the layers whose channels are units a tool can pick, in call order.

    Feature maps, token layers (read on their patch grid) and vectors; not attention weights
    or other shapes. Example::

        unit_layers(vit_probe)[-1]    # 'head'
    """
    return [layer.name for layer in probe.layers if probe.layout(layer.name).channels is not None]


def block_layers(probe: ProbeLike) -> list[str]:
    """The outputs of a token model's repeated blocks (its residual stream), in call order.

    Among the ``(T, D)`` token layers, those not inside a layer of a kind that repeats (so not a
    block's LayerNorm, attention or MLP), grouped by kind and name up to a trailing index
    (``encoderblock_3``, ``blocks.3``): the largest group of two or more (so not the final
    norm). Empty for a model without such blocks. Example::

        block_layers(vit)   # ['Transformer.encoderblock_0', ..., 'Transformer.encoderblock_11']
    """
    stream = [
        layer
        for layer in probe.layers
        if len(layer.shape) == 2 and probe.layout(layer.name).kind == "tokens"
    ]
    counts = Counter(layer.kind for layer in stream)
    repeated = [layer.name for layer in stream if counts[layer.kind] >= 2]
    outer = [
        layer for layer in stream if not any(layer.name.startswith(name + ".") for name in repeated)
    ]
    groups = Counter(_block_key(layer) for layer in outer).most_common(1)
    if not groups or groups[0][1] < 2:
        return []
    return [layer.name for layer in outer if _block_key(layer) == groups[0][0]]


def _block_key(layer: Any) -> tuple[str, str]:
    """``(kind, name without its trailing index)``: what the blocks of one stack share."""
    return layer.kind, re.sub(r"\d+$", "", layer.name)


def default_spatial_layer(probe: ProbeLike, *, gradients: bool = False) -> str | None:
    """The layer a spatial tool starts on, or None when no layer has a spatial view.

    A token model's last block output (not its q/k/v projections, not attention weights); a
    CNN's last feature map. With ``gradients`` true (Grad-CAM) and a class token, the last
    block's *input* instead: a class-token head reads nothing from the patch tokens of the last
    block's output, so their gradient is exactly zero (pytorch-grad-cam's ViT recipe hooks the
    same place, ``blocks[-1].norm1``). Example::

        default_spatial_layer(vit_probe)                    # 'Transformer.encoderblock_11'
        default_spatial_layer(vit_probe, gradients=True)    # 'Transformer.encoderblock_10'
        default_spatial_layer(cnn_probe)                    # 'act6'
    """
    blocks = block_layers(probe)
    if blocks:
        grid = probe.layout(blocks[-1]).grid
        if gradients and len(blocks) >= 2 and grid is not None and grid.prefix > 0:
            return blocks[-2]
        return blocks[-1]
    views = spatial_layers(probe)
    tokens = [name for name in views if len(probe.layout(name).shape) == 2]
    maps = [name for name in views if probe.layout(name).kind == "spatial"]
    chosen = tokens or maps or views
    return chosen[-1] if chosen else None


def check_token_layers(
    layers: Sequence[Any], input_shape: Sequence[int] | None, token_grid: tuple[int, int] | None
) -> None:
    """A ``ValueError`` when ``token_grid`` was given and no layer's tokens fit it.

    ``layers`` are the probe's ``Layer`` rows (``name``, ``kind``, ``shape``). Example::

        check_token_layers(probe.layers, (32, 32, 3), (5, 5))
        # ValueError: token_grid=(5, 5) fits no layer: it needs at least 25 tokens ...
    """
    if token_grid is None:
        return
    layouts = [layout_of(lay.shape, input_shape, token_grid, lay.kind) for lay in layers]
    if any(lay.grid is not None for lay in layouts):
        return
    rows, cols = token_grid
    counts = sorted(
        {
            int(lay.shape[1] if lay.kind == "attention" else lay.shape[0])
            for lay in layers
            if len(lay.shape) in (2, 3)
            and layout_of(lay.shape, input_shape, None, lay.kind).kind != "spatial"
        }
    )
    seen = (
        f"the model's (T, D) / (T, heads, d) layers have T in {counts}"
        if counts
        else "the model has no (T, D) or (T, heads, d) token layers"
    )
    hint = ""
    inferred = [
        layout_of(lay.shape, input_shape, None, lay.kind).grid for lay in layers if lay.shape
    ]
    grids = {(g.rows, g.cols) for g in inferred if g is not None}
    if len(grids) == 1:
        hint = f"; their patch grid looks like token_grid={grids.pop()} (or pass None to infer it)"
    raise ValueError(
        f"token_grid={(rows, cols)} fits no layer: it needs at least {rows * cols} tokens "
        f"({rows}x{cols} patches, plus any class token), but {seen}{hint}"
    )


def _is_spatial(shape: tuple[int, ...], input_shape: Sequence[int] | None) -> bool:
    if input_shape is None:
        return True
    height, width = int(input_shape[0]), int(input_shape[1])
    if shape[0] > height or shape[1] > width:
        return False
    want = height / width
    return abs(shape[0] / shape[1] - want) <= _ASPECT_SLACK * want


def _grid_for(
    n_tokens: int, input_shape: Sequence[int] | None, token_grid: tuple[int, int] | None
) -> TokenGrid | None:
    if token_grid is not None:
        rows, cols = token_grid
        extra = n_tokens - rows * cols
        return TokenGrid(rows, cols, extra) if extra >= 0 else None
    if input_shape is None:
        return None
    height, width = int(input_shape[0]), int(input_shape[1])
    for prefix in _PREFIXES:
        n = n_tokens - prefix
        if n < 4:
            continue
        rows = round(math.sqrt(n * height / width))
        if rows > 0 and n % rows == 0:
            cols = n // rows
            if (
                rows <= height
                and cols <= width
                and abs(rows / cols - height / width) <= (_ASPECT_SLACK * height / width)
            ):
                return TokenGrid(rows, cols, prefix)
    return None
