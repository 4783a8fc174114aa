"""Image parameterisations: how the optimised numbers become an image.

A parameterisation is a small frozen (hashable) description. ``make(seed, n, shape)`` returns
the pair ``(params, to_image)``: ``params`` is the pytree the optimiser changes and
``to_image(params)`` gives ``(N, H, W, C)`` images in ``[0, 1]``. Any channel count works
(grayscale MNIST included); colour decorrelation applies to 3-channel images only.

* ``pixel()``: one number per pixel (the classic, and what Yosinski's regularizers act on);
* ``fourier()``: Lucid's 1/f-scaled spectrum, which makes low frequencies cheap;
* ``maco()``: MaCo (Fel et al. 2023): the magnitude spectrum is fixed (a natural-image 1/f
  prior, or estimated from a data set with :func:`magnitude_from`) and only the phase is
  optimised: ``image = irfft2(m * U / |U|)`` for a real parameter image ``u`` with ``U =
  rfft2(u)``, the mean (DC) fixed, clipped to ``[0, 1]``. ``U / |U|`` is the phase of a real
  image, so before the clip ``|rfft2(image)| == m`` exactly;
* ``shared=True`` adds one parameter set common to every image of the batch (Lucid's shared
  parameterisation for interpolation frames);
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

__all__ = ["ImageParam", "as_param", "fourier", "maco", "magnitude_from", "one_over_f", "pixel"]

#: standard deviation of the pixels of the default MaCo 1/f prior (around grey)
MACO_PRIOR_STD = 0.12

_COLOR_SVD_SQRT = np.asarray(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32
)
_COLOR_NORMALIZED = _COLOR_SVD_SQRT / np.max(np.linalg.norm(_COLOR_SVD_SQRT, axis=0))


@dataclass(frozen=True)
class ImageParam:
    """How parameters map to images. Hashable, so compiled loops are cached per setting.

    Args:
        kind: ``"pixel"``, ``"fourier"`` or ``"maco"``.
        decorrelate: apply Lucid's colour decorrelation (3-channel images only).
        squash: ``"sigmoid"`` or ``"clip"`` into ``[0, 1]``.
        sd: standard deviation of the random initial parameters.
        decay_power: spectrum falls off as ``1 / f**decay_power`` (Fourier only).
        shared: one more parameter set, added to every image's (see the module docstring).
    """

    kind: str = "fourier"
    decorrelate: bool = True
    squash: str = "sigmoid"
    sd: float = 0.01
    decay_power: float = 1.0
    shared: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("pixel", "fourier", "maco"):
            raise ValueError(f"param kind must be 'pixel', 'fourier' or 'maco', got {self.kind!r}")
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
        if self.kind == "fourier":
            one, axis = (2, c, *_freqs(h, w).shape), 1
        else:
            one, axis = (h, w, c), 0
        sd = 1.0 if self.kind == "maco" else self.sd  # MaCo keeps only the phase of the draw
        draws = [
            np.random.default_rng((int(seed), i)).standard_normal(one, np.float32)
            for i in range(n + int(self.shared))
        ]
        return (sd * np.stack(draws, axis=axis)).astype(np.float32)

    def constants(self, shape: tuple[int, int, int], magnitude: Any = None) -> dict[str, Any]:
        """The fixed (traced, not optimised) arrays of the parameterisation: MaCo's magnitude
        ``(C, H, W // 2 + 1)`` (``magnitude`` if given, else :func:`one_over_f`); ``{}``
        for the others."""
        if self.kind != "maco":
            if magnitude is not None:
                raise ValueError("magnitude is for param='maco' only")
            return {}
        h, w, c = shape
        mag = one_over_f(shape) if magnitude is None else np.asarray(magnitude, np.float32)
        if mag.shape != (c, h, w // 2 + 1):
            raise ValueError(
                f"magnitude must have shape (C, H, W // 2 + 1) = {(c, h, w // 2 + 1)}, got "
                f"{mag.shape}"
            )
        if not np.isfinite(mag).all() or (mag < 0).any():
            raise ValueError("magnitude must be finite and >= 0")
        return {"magnitude": jnp.asarray(mag)}

    def unsquashed(
        self, params: jax.Array, shape: tuple[int, int, int], const: Any = None
    ) -> jax.Array:
        """The image before the squash into ``[0, 1]`` (MaCo: the exact-spectrum image)."""
        h, w, c = shape
        if self.kind == "maco":
            u = params[:-1] + params[-1:] if self.shared else params
            spec = jnp.fft.rfft2(u, axes=(1, 2)).transpose(0, 3, 1, 2)
            phase = spec / (jnp.abs(spec) + 1e-12)
            phase = phase.at[:, :, 0, 0].set(1.0)  # the mean colour is the magnitude's DC
            x = jnp.fft.irfft2(const["magnitude"] * phase, s=(h, w))
            return x.transpose(0, 2, 3, 1)
        if self.kind == "pixel":
            t = params
        else:
            freqs = _freqs(h, w)
            scale = 1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** self.decay_power
            scale = jnp.asarray(scale * np.sqrt(h * w), jnp.float32)
            spectrum = jax.lax.complex(params[0], params[1]) * scale
            t = jnp.fft.irfft2(spectrum, s=(h, w)).transpose(0, 2, 3, 1) / 4.0
        if self.shared:
            t = t[:-1] + t[-1:]
        if self.decorrelate and c == 3:
            t = t @ jnp.asarray(_COLOR_NORMALIZED.T)
        return t

    def to_image(
        self, params: jax.Array, shape: tuple[int, int, int], const: Any = None
    ) -> jax.Array:
        """Images ``(N, H, W, C)`` in ``[0, 1]`` for ``params`` (``const``: see
        :meth:`constants`)."""
        t = self.unsquashed(params, shape, const)
        if self.kind == "maco":
            return jnp.clip(t, 0.0, 1.0)
        if self.squash == "sigmoid":
            return jax.nn.sigmoid(t)
        return jnp.clip(t + 0.5, 0.0, 1.0)

    def from_image(self, images: np.ndarray) -> np.ndarray:
        """Parameters whose image is ``images`` ``(N, H, W, C)`` in ``[0, 1]`` (a start for
        feature accentuation; pixel values are kept 1e-3 inside ``(0, 1)`` for the sigmoid).

        Example::

            p = pixel().from_image(x0)      # to_image(p, x0.shape[1:]) == x0
        """
        if self.shared:
            raise ValueError("a start image cannot be given with shared=True")
        x = np.asarray(images, np.float32)
        _, h, w, c = x.shape
        if self.kind == "maco":
            return x - x.mean(axis=(1, 2), keepdims=True)  # only its phase is used
        if self.squash == "sigmoid":
            x = np.clip(x, 1e-3, 1 - 1e-3)
            t = np.log(x / (1 - x))
        else:
            t = x - 0.5
        if self.decorrelate and c == 3:
            t = t @ np.linalg.inv(_COLOR_NORMALIZED.T)
        if self.kind == "pixel":
            return t.astype(np.float32)
        freqs = _freqs(h, w)
        scale = 1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** self.decay_power * np.sqrt(h * w)
        spectrum = np.fft.rfft2(4.0 * t.transpose(0, 3, 1, 2)) / scale
        return np.stack([spectrum.real, spectrum.imag]).astype(np.float32)

    def make(
        self, seed: int, n: int, shape: tuple[int, int, int]
    ) -> tuple[np.ndarray, Callable[[jax.Array], jax.Array]]:
        """``(params, to_image)`` for ``n`` images of ``shape``.

        Example::

            params, to_image = pixel().make(0, 1, (28, 28, 1))
        """
        shape = tuple(int(s) for s in shape)  # type: ignore[assignment]
        return self.init(seed, n, shape), partial(
            self.to_image, shape=shape, const=self.constants(shape)
        )

    @property
    def on_pixels(self) -> bool:
        """True when the parameters are the (centred) pixels, so pixel-space ops apply."""
        return self.kind == "pixel"

    @property
    def description(self) -> str:
        if self.kind == "maco":
            return "maco (fixed magnitude, optimised phase) + clip" + (" + shared" * self.shared)
        parts = [self.kind]
        if self.decorrelate:
            parts.append("decorrelated")
        parts.append(self.squash)
        if self.shared:
            parts.append("shared")
        return " + ".join(parts)


def pixel(
    *, squash: str = "clip", decorrelate: bool = False, sd: float = 0.01, shared: bool = False
) -> ImageParam:
    """Pixel parameterisation (centred at grey). Example: ``pixel(squash="sigmoid")``."""
    return ImageParam("pixel", decorrelate, squash, sd, shared=shared)


def fourier(
    *,
    decorrelate: bool = True,
    squash: str = "sigmoid",
    sd: float = 0.01,
    decay_power: float = 1.0,
    shared: bool = False,
) -> ImageParam:
    """Lucid's Fourier parameterisation with a 1/f spectrum. Example: ``fourier()``."""
    return ImageParam("fourier", decorrelate, squash, sd, decay_power, shared)


def maco(*, shared: bool = False) -> ImageParam:
    """MaCo: fixed magnitude spectrum, optimised phase (Fel et al. 2023). The magnitude is
    ``render(..., magnitude=...)``, estimated from ``render(..., dataset=...)`` or the
    :func:`one_over_f` prior. Example: ``render(probe, "conv5:3", param=maco())``."""
    return ImageParam("maco", False, "clip", 1.0, 1.0, shared)


def one_over_f(shape: tuple[int, int, int], std: float = MACO_PRIOR_STD) -> np.ndarray:
    """A natural-image prior magnitude ``(C, H, W // 2 + 1)``: ``1 / f`` scaled so that the
    image's pixels have standard deviation ``std`` around grey (mean 0.5).

    Example: ``one_over_f((32, 32, 3)).shape == (3, 32, 17)``.
    """
    h, w, c = (int(s) for s in shape)
    full = 1.0 / np.maximum(np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.fftfreq(w) ** 2), 1e-9)
    full[0, 0] = 0.0
    # Parseval: var(x) = sum_{k != 0} |X_k|^2 / (H W)^2 over the full spectrum
    full *= std * h * w / np.sqrt(np.sum(full**2))
    half = full[:, : w // 2 + 1].copy()
    half[0, 0] = 0.5 * h * w
    return np.broadcast_to(half, (c, h, w // 2 + 1)).astype(np.float32).copy()


def magnitude_from(images: Any) -> np.ndarray:
    """MaCo's magnitude from a data set: the mean ``|rfft2|`` of ``images`` ``(N, H, W, C)``
    in ``[0, 1]``, per channel, ``(C, H, W // 2 + 1)`` (its DC is the data's mean colour).

    Example: ``magnitude_from(zoo.x_train[:512])``.
    """
    x = np.asarray(images, np.float32)
    if x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"images must be a non-empty batch (N, H, W, C), got shape {x.shape}")
    total = np.zeros((x.shape[3], x.shape[1], x.shape[2] // 2 + 1), np.float64)
    for i in range(0, len(x), 256):
        total += np.abs(np.fft.rfft2(x[i : i + 256].transpose(0, 3, 1, 2))).sum(axis=0)
    return (total / len(x)).astype(np.float32)


def as_param(spec: Any) -> ImageParam:
    """An :class:`ImageParam` from one, or from the names ``"pixel"``, ``"fourier"``,
    ``"maco"``."""
    if isinstance(spec, ImageParam):
        return spec
    if spec == "pixel":
        return pixel()
    if spec == "fourier":
        return fourier()
    if spec == "maco":
        return maco()
    raise ValueError(f"param must be 'pixel', 'fourier', 'maco' or an ImageParam, got {spec!r}")


def _freqs(h: int, w: int) -> np.ndarray:
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return np.sqrt(fx * fx + fy * fy)
