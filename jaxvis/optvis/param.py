"""Image parameterisations: how the optimised numbers become an image.

A parameterisation is a small frozen (hashable) description. ``make(seed, n, shape)`` returns
the pair ``(params, to_image)``: ``params`` is the pytree the optimiser changes and
``to_image(params)`` gives ``(N, H, W, C)`` images in ``[0, 1]``. Any channel count works
(grayscale MNIST included); colour decorrelation applies to 3-channel images only.

* ``pixel()``: one number per pixel (the classic, and what Yosinski's regularizers act on);
* ``fourier()``: Lucid's 1/f-scaled spectrum, which makes low frequencies cheap;
* ``decorrelate``: Lucid's ImageNet colour decorrelation;
* ``squash="sigmoid"`` or ``"clip"`` maps to ``[0, 1]``: displayable pixels, which the engine
  maps to the model's input range channel by channel (``probe.input_low + (probe.input_high -
  probe.input_low) * image``, so a mean/std-normalised model sees ``(image - mean) / std``).

Example::

    params, to_image = fourier().make(0, 4, (28, 28, 1))
    to_image(params).shape        # (4, 28, 28, 1), values in [0, 1]

Initial parameters are drawn on the host, image ``i`` from ``numpy.random.default_rng((seed,
i))``: no random-number program to compile (a first render call is ~0.2 s shorter on a CPU),
and an image starts from the same numbers whatever the batch it is rendered in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ImageParam", "fourier", "pixel", "as_param"]

_COLOR_SVD_SQRT = np.asarray(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32
)
_COLOR_NORMALIZED = _COLOR_SVD_SQRT / np.max(np.linalg.norm(_COLOR_SVD_SQRT, axis=0))


@dataclass(frozen=True)
class ImageParam:
    """How parameters map to images. Hashable, so compiled loops are cached per setting.

    Args:
        kind: ``"pixel"`` or ``"fourier"``.
        decorrelate: apply Lucid's colour decorrelation (3-channel images only).
        squash: ``"sigmoid"`` or ``"clip"`` into ``[0, 1]``.
        sd: standard deviation of the random initial parameters.
        decay_power: spectrum falls off as ``1 / f**decay_power`` (Fourier only).
    """

    kind: str = "fourier"
    decorrelate: bool = True
    squash: str = "sigmoid"
    sd: float = 0.01
    decay_power: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("pixel", "fourier"):
            raise ValueError(f"param kind must be 'pixel' or 'fourier', got {self.kind!r}")
        if self.squash not in ("sigmoid", "clip"):
            raise ValueError(f"squash must be 'sigmoid' or 'clip', got {self.squash!r}")

    def init(self, seed: int, n: int, shape: tuple[int, int, int]) -> np.ndarray:
        """Random initial parameters for ``n`` images of ``shape`` (H, W, C), drawn on the
        host: image ``i`` from ``numpy.random.default_rng((seed, i))``."""
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise TypeError(f"seed must be an integer, got {seed!r}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        h, w, c = shape
        if self.kind == "pixel":
            one, axis = (h, w, c), 0
        else:
            one, axis = (2, c, *_freqs(h, w).shape), 1
        draws = [
            np.random.default_rng((int(seed), i)).standard_normal(one, np.float32) for i in range(n)
        ]
        return (self.sd * np.stack(draws, axis=axis)).astype(np.float32)

    def to_image(self, params: jax.Array, shape: tuple[int, int, int]) -> jax.Array:
        """Images ``(N, H, W, C)`` in ``[0, 1]`` for ``params``."""
        h, w, c = shape
        if self.kind == "pixel":
            t = params
        else:
            freqs = _freqs(h, w)
            scale = 1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** self.decay_power
            scale = jnp.asarray(scale * np.sqrt(h * w), jnp.float32)
            spectrum = jax.lax.complex(params[0], params[1]) * scale
            t = jnp.fft.irfft2(spectrum, s=(h, w)).transpose(0, 2, 3, 1) / 4.0
        if self.decorrelate and c == 3:
            t = t @ jnp.asarray(_COLOR_NORMALIZED.T)
        if self.squash == "sigmoid":
            return jax.nn.sigmoid(t)
        return jnp.clip(t + 0.5, 0.0, 1.0)

    def make(
        self, seed: int, n: int, shape: tuple[int, int, int]
    ) -> tuple[np.ndarray, Callable[[jax.Array], jax.Array]]:
        """``(params, to_image)`` for ``n`` images of ``shape``.

        Example::

            params, to_image = pixel().make(0, 1, (28, 28, 1))
        """
        shape = tuple(int(s) for s in shape)  # type: ignore[assignment]
        return self.init(seed, n, shape), partial(self.to_image, shape=shape)

    @property
    def on_pixels(self) -> bool:
        """True when the parameters are the (centred) pixels, so pixel-space ops apply."""
        return self.kind == "pixel"

    @property
    def description(self) -> str:
        parts = [self.kind]
        if self.decorrelate:
            parts.append("decorrelated")
        parts.append(self.squash)
        return " + ".join(parts)


def pixel(*, squash: str = "clip", decorrelate: bool = False, sd: float = 0.01) -> ImageParam:
    """Pixel parameterisation (centred at grey). Example: ``pixel(squash="sigmoid")``."""
    return ImageParam("pixel", decorrelate, squash, sd)


def fourier(
    *, decorrelate: bool = True, squash: str = "sigmoid", sd: float = 0.01, decay_power: float = 1.0
) -> ImageParam:
    """Lucid's Fourier parameterisation with a 1/f spectrum. Example: ``fourier()``."""
    return ImageParam("fourier", decorrelate, squash, sd, decay_power)


def as_param(spec: Any) -> ImageParam:
    """An :class:`ImageParam` from one, or from the names ``"pixel"`` / ``"fourier"``."""
    if isinstance(spec, ImageParam):
        return spec
    if spec == "pixel":
        return pixel()
    if spec == "fourier":
        return fourier()
    raise ValueError(f"param must be 'pixel', 'fourier' or an ImageParam, got {spec!r}")


def _freqs(h: int, w: int) -> np.ndarray:
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return np.sqrt(fx * fx + fy * fy)
