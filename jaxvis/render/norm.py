"""Map arbitrary values to [0, 1] (``normalize``) and [0, 1] to bytes (``to_uint8``).

Constant inputs never divide by zero: where the range of a layer or channel is empty,
``"layer"`` and ``"channel"`` give 0 (1 for values above a given ``vmax``), and
``"symmetric"`` gives 0.5 for zeros (and 0 or 1 for the sign of anything else).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxvis.render._checks import as_float, as_numeric, check_choice

MODES = ("layer", "channel", "symmetric", "none")


def from_range(x: Any, value_range: Any, name: str = "value_range") -> np.ndarray:
    """``x`` mapped from ``value_range`` to float32 ``[0, 1]``, clipped.

    ``value_range`` is ``(lo, hi)`` for all values, or ``((lo_0, lo_1, ...), (hi_0, hi_1,
    ...))`` with one pair per index of the last (channel) axis: the form of
    ``probe.input_range``, so a normalised model's inputs show as the pixels they came from.

    >>> from_range([[-1.0, 0.0], [1.0, 2.0]], ((-1.0, 0.0), (1.0, 4.0))).tolist()
    [[0.0, 0.0], [1.0, 0.5]]
    """
    arr = as_float(x, "x")
    try:
        lo, hi = np.broadcast_arrays(*(np.asarray(v, np.float32) for v in value_range))
    except (TypeError, ValueError):
        lo = hi = None
    if lo is None or lo.ndim > 1 or not np.all(lo < hi):
        raise ValueError(
            f"{name} must be (lo, hi) or per channel ((lo, ...), (hi, ...)) with lo < hi; "
            f"got {value_range!r}"
        )
    if lo.size not in (1, arr.shape[-1]):
        raise ValueError(
            f"{name} has {lo.size} channels but x has {arr.shape[-1]} (shape {arr.shape})"
        )
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0).astype(np.float32, copy=False)


def _check_bound(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    try:
        bound = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or None; got {value!r}") from None
    if not np.isfinite(bound):
        raise ValueError(f"{name} must be finite; got {value!r}")
    return bound


def scale01(
    x: np.ndarray,
    mode: str,
    axes: tuple[int, ...] | None,
    vmin: float | None = None,
    vmax: float | None = None,
) -> np.ndarray:
    """Core of :func:`normalize`: statistics are taken over ``axes`` (None: all).

    ``x`` must already be a checked float array; used by ``grid`` for per-tile scaling.
    """
    if mode == "none":
        out = np.clip(x, 0.0, 1.0)
    elif mode == "symmetric":
        if vmin is None and vmax is None:
            m = np.max(np.abs(x), axis=axes, keepdims=True)
        else:
            m = max(abs(b) for b in (vmin, vmax) if b is not None)
            m = np.asarray(m, x.dtype)
        safe = np.where(m > 0, m, 1)
        out = np.where(m > 0, 0.5 + 0.5 * np.clip(x / safe, -1.0, 1.0), 0.5 + 0.5 * np.sign(x))
    else:
        lo = np.min(x, axis=axes, keepdims=True) if vmin is None else np.asarray(vmin, x.dtype)
        hi = np.max(x, axis=axes, keepdims=True) if vmax is None else np.asarray(vmax, x.dtype)
        rng = hi - lo
        safe = np.where(rng > 0, rng, 1)
        out = np.where(rng > 0, np.clip((x - lo) / safe, 0.0, 1.0), (x > hi).astype(x.dtype))
    return out.astype(np.float32, copy=False)


def normalize(
    x: Any,
    mode: str = "layer",
    vmin: float | None = None,
    vmax: float | None = None,
) -> np.ndarray:
    """Scale ``x`` to float32 in [0, 1].

    Modes:
      * ``"layer"``: one min/max over the whole array (``vmin``/``vmax`` override them).
      * ``"channel"``: min/max per index of the last axis (channels-last, HWC/NHWC),
        taken over all other axes. Needs at least 2 dims.
      * ``"symmetric"``: ``0.5 + 0.5 * x / max|x|``, so 0 -> 0.5, keeping the sign
        (for signed maps and the ``"rwb"`` colormap). With ``vmin``/``vmax`` the limit is
        ``max(|vmin|, |vmax|)``.
      * ``"none"``: values are already in [0, 1]; they are only clipped.

    Values outside ``[vmin, vmax]`` are clipped. A constant layer/channel maps to 0 (and
    ``vmin == vmax`` is allowed: values above it map to 1, the rest to 0); an all-zero array
    maps to 0.5 in ``"symmetric"`` mode. No division by zero ever happens.

    >>> normalize([0.0, 2.0, 4.0]).tolist()
    [0.0, 0.5, 1.0]
    >>> normalize([-2.0, 0.0, 1.0], "symmetric").tolist()
    [0.0, 0.5, 0.75]
    """
    mode = check_choice(mode, "mode", MODES)
    arr = as_float(x, "x")
    vmin = _check_bound(vmin, "vmin")
    vmax = _check_bound(vmax, "vmax")
    if mode == "none" and (vmin is not None or vmax is not None):
        raise ValueError("vmin/vmax are not used with mode='none'; pick 'layer' or 'symmetric'")
    if vmin is not None and vmax is not None and vmin > vmax:
        raise ValueError(f"vmin must be <= vmax; got vmin={vmin}, vmax={vmax}")
    if mode == "channel":
        if arr.ndim < 2:
            raise ValueError(
                f"x must have >= 2 dims (channels last) for mode='channel'; got shape {arr.shape}"
            )
        axes: tuple[int, ...] | None = tuple(range(arr.ndim - 1))
    else:
        axes = None
    return scale01(arr, mode, axes, vmin, vmax)


def to_uint8(image01: Any) -> np.ndarray:
    """Float image in [0, 1] -> uint8 in [0, 255] (rounded, clipped); uint8 passes through.

    >>> to_uint8([0.0, 0.5, 1.0]).tolist()
    [0, 128, 255]
    """
    arr = as_numeric(image01, "image01")
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind != "f":
        raise TypeError(
            f"image01 must be a float array in [0, 1] or uint8; got dtype {arr.dtype} "
            "(use normalize() first)"
        )
    return np.rint(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
