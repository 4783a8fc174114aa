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

Example::

    lay = layout_of((197, 384), input_shape=(224, 224, 3))
    lay.kind, lay.grid                    # 'tokens', TokenGrid(rows=14, cols=14, prefix=1)
    spatial_view(acts, lay).shape         # (N, 14, 14, 384)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["LayerLayout", "TokenGrid", "layout_of", "prefix_view", "spatial_view"]

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
