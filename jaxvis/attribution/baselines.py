"""Baselines for integrated gradients: the "absence of signal" a path starts from.

A baseline spec is one of

* ``"black"`` / ``"white"``: the low / high end of the probe's input range, per channel
  (``probe.input_low`` / ``probe.input_high``: ``-mean / std`` is black for a normalised model);
* ``"zero"`` or a number: a constant image;
* ``"uniform"``: uniform noise over the input range, per channel (``seed`` chooses the draw);
* ``"blur"`` or ``("blur", sigma)``: the input blurred with a Gaussian of ``sigma`` pixels
  (default: a tenth of the image side), as in Sturmfels et al. 2020;
* an array shaped like one image ``(H, W, C)`` or like the batch ``(N, H, W, C)``;
* a list of the above: integrated gradients is averaged over them (expected gradients style).

Example::

    b = make_baselines(probe, x, ["black", "blur", ("blur", 1.0)])   # (3, N, H, W, C)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis._protocols import ProbeLike
from jaxvis._xla import jit

__all__ = ["blur", "describe", "make_baselines"]

NAMED = ("black", "white", "zero", "uniform", "blur")


def make_baselines(
    probe: ProbeLike, x: jax.Array, baseline: Any = "black", seed: int = 0
) -> np.ndarray:
    """All baselines for the batch ``x`` as one float32 array ``(K, N, H, W, C)``.

    Built on the host (constants with numpy), so nothing compiles outside jaxvis's own
    programs (which the compilation cache keeps)."""
    specs = list(baseline) if isinstance(baseline, list) else [baseline]
    if not specs:
        raise ValueError("baseline is an empty list: give at least one baseline")
    return np.stack([np.asarray(_one(probe, x, spec, seed + i)) for i, spec in enumerate(specs)])


def describe(baseline: Any) -> str:
    """A short human name for a baseline spec, for reports and widgets."""
    if isinstance(baseline, list):
        return " + ".join(describe(b) for b in baseline)
    if isinstance(baseline, tuple):
        return f"{baseline[0]}({', '.join(map(str, baseline[1:]))})"
    if isinstance(baseline, str | int | float):
        return str(baseline)
    return f"array{tuple(np.shape(baseline))}"


def _one(probe: ProbeLike, x: jax.Array, spec: Any, seed: int) -> jax.Array:
    lo, hi = probe.input_low, probe.input_high  # (C,) or (1,), broadcast over NHWC
    if isinstance(spec, tuple):
        if len(spec) == 2 and spec[0] == "blur" and _is_number(spec[1]) and spec[1] > 0:
            return blur(x, float(spec[1]))
        raise ValueError(f"baseline tuple must be ('blur', sigma > 0), got {spec!r}")
    if isinstance(spec, str):
        if spec == "black":
            return np.broadcast_to(np.asarray(lo, np.float32), x.shape)
        if spec == "white":
            return np.broadcast_to(np.asarray(hi, np.float32), x.shape)
        if spec == "zero":
            return np.zeros(x.shape, np.float32)
        if spec == "uniform":
            with jax.threefry_partitionable(False):  # as every jaxvis draw (see _rng)
                return jax.random.uniform(jax.random.key(seed), x.shape, jnp.float32, lo, hi)
        if spec == "blur":
            return blur(x, max(x.shape[1:3]) / 10.0)
        raise ValueError(
            f"unknown baseline {spec!r}: expected one of {', '.join(NAMED)}, a number, "
            "('blur', sigma), an array or a list of these"
        )
    if _is_number(spec):
        return np.full(x.shape, float(spec), np.float32)
    if hasattr(spec, "shape"):
        arr = np.asarray(spec)
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"baseline array must be float, got dtype {arr.dtype}")
        if arr.shape in (x.shape[1:], (1, *x.shape[1:])):
            arr = np.broadcast_to(arr, x.shape)
        if arr.shape != x.shape:
            raise ValueError(
                f"baseline array must have the shape of one image {tuple(x.shape[1:])} or of "
                f"the batch {tuple(x.shape)}, got {np.shape(spec)}"
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError("baseline array contains NaN or inf values")
        return arr.astype(np.float32)
    raise TypeError(
        f"baseline must be a name, a number, an array or a list, got {type(spec).__name__}"
    )


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


@jit
def _blur(x: jax.Array, sigma: jax.Array) -> jax.Array:
    def along(img: jax.Array, axis: int) -> jax.Array:
        size = img.shape[axis]
        d = jnp.arange(-(size - 1), size, dtype=jnp.float32)
        k = jnp.exp(-0.5 * (d / sigma) ** 2)
        k = k / k.sum()
        pad = [(0, 0)] * img.ndim
        pad[axis] = (size - 1, size - 1)
        padded = jnp.pad(img, pad, mode="edge")
        moved = jnp.moveaxis(padded, axis, -1)
        out = jax.vmap(lambda row: jnp.convolve(row, k, mode="valid"))(
            moved.reshape(-1, moved.shape[-1])
        )
        return jnp.moveaxis(out.reshape(*moved.shape[:-1], size), -1, axis)

    return along(along(x, 1), 2)


def blur(x: jax.Array, sigma: float) -> jax.Array:
    """Gaussian blur over the two spatial axes of NHWC ``x`` (edges repeated); sigma in pixels.

    Example::

        soft = blur(x, 3.0)      # same shape as x
    """
    return _blur(jnp.asarray(x, jnp.float32), jnp.float32(sigma))
