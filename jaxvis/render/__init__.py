"""numpy/jax arrays -> pictures: normalise, colour, tile, overlay, encode.

Pure numpy + Pillow: no widgets, no models. Any array-like (numpy, jax, lists) is accepted
through ``np.asarray``.

>>> import numpy as np
>>> from jaxvis import render
>>> img = render.grid(np.random.rand(28, 28, 16))  # 16 channels -> 4 x 4 tiles of 56 px
>>> img.shape, img.dtype
((227, 227, 3), dtype('uint8'))
>>> render.png_bytes(img)[:4]
b'\\x89PNG'
"""

from jaxvis.render.blend import overlay
from jaxvis.render.colormaps import CMAPS, colorize
from jaxvis.render.encode import png_bytes, write_gif
from jaxvis.render.norm import MODES, from_range, normalize, to_uint8
from jaxvis.render.resample import upscale
from jaxvis.render.tiling import grid, grid_shape

__all__ = [
    "CMAPS",
    "MODES",
    "colorize",
    "from_range",
    "grid",
    "grid_shape",
    "normalize",
    "overlay",
    "png_bytes",
    "to_uint8",
    "upscale",
    "write_gif",
]
