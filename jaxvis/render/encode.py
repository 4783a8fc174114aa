"""Encode uint8 images as PNG bytes and frame sequences as animated GIFs (Pillow)."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from jaxvis._files import atomic_write
from jaxvis.render._checks import as_numeric, check_float, check_int
from jaxvis.render.norm import to_uint8


def _pil_image(img: np.ndarray, name: str) -> Image.Image:
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(img))  # mode "L"
    if img.ndim == 3 and img.shape[-1] in (3, 4):
        return Image.fromarray(np.ascontiguousarray(img))
    raise ValueError(f"{name} must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {img.shape}")


def png_bytes(img_uint8: Any, *, compress_level: int = 1) -> bytes:
    """Encode a uint8 (H, W), (H, W, 3) or (H, W, 4) image as PNG.

    ``compress_level`` 1 (zlib's fastest) keeps slider updates quick; 9 is smallest.

    >>> png_bytes(np.zeros((2, 2, 3), np.uint8))[:8]
    b'\\x89PNG\\r\\n\\x1a\\n'
    """
    arr = as_numeric(img_uint8, "img_uint8")
    if arr.dtype != np.uint8:
        raise TypeError(f"img_uint8 must have dtype uint8; got {arr.dtype} (use to_uint8())")
    buf = io.BytesIO()
    _pil_image(arr, "img_uint8").save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def write_gif(
    frames: Sequence[Any] | Any,
    path: str | os.PathLike[str] | None = None,
    fps: float = 8,
    *,
    loop: int = 0,
) -> bytes:
    """Encode frames as an animated GIF; return its bytes and, if ``path``, save it atomically.

    ``frames``: a (T, H, W[, 3]) array or a sequence of (H, W[, 3]) images, uint8 or floats in
    [0, 1], all one shape. ``loop=0`` repeats forever. GIF stores delays in 10 ms units, and
    Pillow merges identical consecutive frames into one longer frame.

    >>> gif = write_gif(np.zeros((3, 4, 4), np.float32) + np.arange(3)[:, None, None] / 2)
    >>> gif[:6]
    b'GIF89a'
    """
    fps = check_float(fps, "fps", minimum=0.0, open_low=True)
    loop = check_int(loop, "loop", minimum=0)
    if isinstance(frames, Sequence) and not isinstance(frames, str | bytes):
        if len(frames) == 0:
            raise ValueError("frames must not be empty")
        items = [to_uint8(as_numeric(f, f"frames[{i}]")) for i, f in enumerate(frames)]
    else:
        arr = as_numeric(frames, "frames")
        if arr.ndim not in (3, 4):
            raise ValueError(f"frames must be (T, H, W) or (T, H, W, 3); got shape {arr.shape}")
        items = list(to_uint8(arr))
    shapes = {f.shape for f in items}
    if len(shapes) != 1:
        raise ValueError(f"frames must all have one shape; got {sorted(shapes)}")
    images = [_pil_image(f, "frames[i]") for f in items]
    if images[0].mode == "RGBA":
        images = [im.convert("RGB") for im in images]
    if images[0].mode == "RGB":  # per-frame adaptive palette, no dithering (crisp tiles)
        images = [im.quantize(256, dither=Image.Dither.NONE) for im in images]
    buf = io.BytesIO()
    images[0].save(
        buf,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=1000.0 / float(fps),
        loop=loop,
    )
    data = buf.getvalue()
    if path is not None:
        atomic_write(path, lambda f: f.write(data))
    return data
