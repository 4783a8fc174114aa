"""Input checks shared by the renderers: one clear error per kind of bad input."""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxvis._checks import check_choice, check_float, check_int, check_probability

__all__ = [
    "as_float",
    "as_numeric",
    "check_choice",
    "check_float",
    "check_int",
    "check_probability",
]


def as_numeric(x: Any, name: str) -> np.ndarray:
    """``np.asarray(x)`` checked to be a non-empty, finite, real numeric array.

    >>> as_numeric([0, 1], "x").dtype.kind
    'i'
    """
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array; got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty; got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite; it contains NaN or inf")
    return arr


def as_float(x: Any, name: str) -> np.ndarray:
    """Checked numeric array as float32 (float64 stays float64, for exactness)."""
    arr = as_numeric(x, name)
    return arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float32)
