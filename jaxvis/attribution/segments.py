"""Segmentations of the input into features for feature ablation and KernelSHAP (host side).

``segments`` is ``"slic"`` (scikit-image's SLIC superpixels of each image), ``"grid"`` (a
regular grid of about ``n_segments`` cells) or an int array of labels ``(H, W)`` / ``(N, H, W)``.
Labels come back contiguous over the batch, ``0..K-1`` (``np.unique`` order), int32.

Example::

    labels = segment(probe, x, "slic", n_segments=50)       # (N, H, W) int32
    labels = segment(probe, x, "grid", n_segments=16)       # 4 x 4 cells
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxvis._protocols import ProbeLike
from jaxvis.attribution._checks import check_positive_int

__all__ = ["SEGMENT_KINDS", "segment"]

SEGMENT_KINDS = ("slic", "grid")


def segment(
    probe: ProbeLike,
    x: Any,
    segments: Any = "slic",
    n_segments: int = 50,
    compactness: float = 10.0,
) -> np.ndarray:
    """Labels ``(N, H, W)`` int32, contiguous ``0..K-1`` over the batch ``x`` ``(N, H, W, C)``.

    ``"slic"`` runs ``skimage.segmentation.slic`` on each image rescaled to ``[0, 1]`` by the
    probe's input range (``compactness`` as scikit-image's), ``"grid"`` cuts ``ceil(sqrt(
    n_segments))`` rows and as many columns of (nearly) equal size.

    Example::

        labels = segment(probe, x, np.zeros((28, 28), int))   # one feature: the whole image
    """
    n, h, w = x.shape[:3]
    if isinstance(segments, str):
        n_segments = check_positive_int(n_segments, "n_segments")
        if segments == "grid":
            side = int(np.ceil(np.sqrt(n_segments)))
            if side > min(h, w):
                raise ValueError(
                    f"n_segments={n_segments} needs a {side} x {side} grid, more cells than "
                    f"the image's {h} x {w} pixels"
                )
            rows = np.arange(h) * side // h
            cols = np.arange(w) * side // w
            labels = np.broadcast_to(rows[:, None] * side + cols[None, :], (n, h, w))
        elif segments == "slic":
            labels = _slic(probe, np.asarray(x), n_segments, compactness)
        else:
            raise ValueError(
                f"segments must be one of {', '.join(SEGMENT_KINDS)} or an int array of labels "
                f"(H, W) / (N, H, W), got {segments!r}"
            )
    else:
        labels = np.asarray(segments)
        if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(
                f"segments array must hold int labels, got dtype {labels.dtype}; or give "
                f"{' / '.join(SEGMENT_KINDS)}"
            )
        if labels.shape == (h, w):
            labels = np.broadcast_to(labels, (n, h, w))
        if labels.shape != (n, h, w):
            raise ValueError(
                f"segments array must have shape {(h, w)} or {(n, h, w)}, got {labels.shape}"
            )
    return np.unique(labels, return_inverse=True)[1].reshape(n, h, w).astype(np.int32)


def _slic(probe: ProbeLike, x: np.ndarray, n_segments: int, compactness: float) -> np.ndarray:
    from skimage.segmentation import slic

    lo = np.asarray(probe.input_low, np.float32)
    hi = np.asarray(probe.input_high, np.float32)
    scaled = np.clip((x - lo) / np.maximum(hi - lo, 1e-12), 0.0, 1.0)
    out = [
        slic(
            img.astype(np.float64),
            n_segments=n_segments,
            compactness=compactness,
            start_label=0,
            channel_axis=-1,
        )
        for img in scaled
    ]
    return np.stack(out)
