"""Colormaps from small tables of anchor colours with linear interpolation (no matplotlib).

* ``"gray"``: black -> white.
* ``"viridis"``: perceptually uniform sequential map; 17 anchors sampled from matplotlib's
  viridis at k/16 (within 6/255 of the full 256-colour table).
* ``"rwb"``: diverging map for signed values after ``normalize(..., "symmetric")``:
  0 (most negative) -> blue (0, 0, 255), 0.5 (zero) -> white, 1 (most positive) -> red
  (255, 0, 0), as in "watch a neural network learn to see".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxvis.render._checks import as_numeric, check_choice

_VIRIDIS = [
    (68, 1, 84), (72, 24, 106), (71, 45, 123), (66, 64, 134), (59, 82, 139), (51, 99, 141),
    (44, 114, 142), (38, 130, 142), (33, 145, 140), (31, 160, 136), (40, 174, 128),
    (63, 188, 115), (94, 201, 98), (132, 212, 75), (173, 220, 48), (216, 226, 25),
    (253, 231, 37),
]  # fmt: skip

#: name -> (anchor positions in [0, 1], anchor colours (K, 3) in 0..255)
ANCHORS: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "gray": (np.array([0.0, 1.0]), np.array([(0, 0, 0), (255, 255, 255)], np.float64)),
    "viridis": (np.linspace(0.0, 1.0, len(_VIRIDIS)), np.array(_VIRIDIS, np.float64)),
    "rwb": (
        np.array([0.0, 0.5, 1.0]),
        np.array([(0, 0, 255), (255, 255, 255), (255, 0, 0)], np.float64),
    ),
}
CMAPS = tuple(ANCHORS)


def colorize(x01: Any, cmap: str = "gray") -> np.ndarray:
    """Map floats in [0, 1] (clipped) to uint8 RGB with shape ``x01.shape + (3,)``.

    >>> colorize([0.0, 0.5, 1.0], "rwb").tolist()
    [[0, 0, 255], [255, 255, 255], [255, 0, 0]]
    """
    cmap = check_choice(cmap, "cmap", CMAPS)
    arr = as_numeric(x01, "x01")
    if arr.dtype.kind != "f":
        raise TypeError(
            f"x01 must be a float array in [0, 1]; got dtype {arr.dtype} (use normalize() first)"
        )
    pos, colours = ANCHORS[cmap]
    flat = np.clip(arr.reshape(-1), 0.0, 1.0)
    out = np.empty((flat.size, 3), np.uint8)
    for k in range(3):  # three vectorised interpolations, one per colour channel
        out[:, k] = np.rint(np.interp(flat, pos, colours[:, k]))
    return out.reshape(arr.shape + (3,))
