"""The result type every attribution method returns.

Example::

    res = jv.attribution.integrated_gradients(probe, x, target=3)
    res.values.shape       # like x: (N, H, W, C)
    res.delta              # completeness gap per example: sum(values) - (f(x) - f(baseline))
    res.relative_delta     # |delta| / |f(x) - f(baseline)|
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

__all__ = ["Attribution"]


@dataclass(frozen=True)
class Attribution:
    """What an attribution method found.

    Attributes:
        values: the attribution, shaped like the input ``(N, H, W, C)`` (interior gradients:
            ``(A, N, H, W, C)``, one map per alpha; Grad-CAM: ``(N, H, W, 1)``).
        delta: completeness gap per example (integrated gradients), else None.
        method: the method's name, e.g. ``"integrated_gradients"``.
        target: the class index per example that was explained, or None for a callable target.
        score: the explained score at the input, per example.
        baseline_score: the score at the baseline(s), per example (averaged over baselines).
        settings: the settings used (steps, quadrature, baseline, noise, ...).
        extra: method-specific arrays (e.g. Grad-CAM's map at the layer's resolution,
            interior gradients' scores per alpha).
        inputs: the explained inputs ``(N, H, W, C)`` when the method kept them (for the
            picture a notebook shows: the map over the input), else None.
        input_range: the range of ``inputs`` (the probe's ``input_range``).

    In a notebook the result shows itself as a picture (``_repr_png_``): the first eight maps
    over their inputs, red positive and blue negative (the maps alone without ``inputs``).
    """

    values: jax.Array
    delta: jax.Array | None
    method: str
    target: np.ndarray | None = None
    score: jax.Array | None = None
    baseline_score: jax.Array | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    inputs: Any = field(default=None, repr=False)
    input_range: Any = (0.0, 1.0)

    @property
    def relative_delta(self) -> np.ndarray | None:
        """``|delta| / |f(x) - f(baseline)|`` per example (None without a delta)."""
        if self.delta is None or self.score is None or self.baseline_score is None:
            return None
        gap = np.abs(np.asarray(self.score) - np.asarray(self.baseline_score))
        return np.abs(np.asarray(self.delta)) / np.maximum(gap, 1e-12)

    def _repr_png_(self) -> bytes | None:
        """The maps over their inputs as PNG (None for shapes that are not images)."""
        from jaxvis.render import preview

        values = np.asarray(self.values)
        if values.ndim < 4:
            return None
        inputs = self.inputs
        if inputs is not None and np.shape(inputs)[:3] != values.shape[-4:-1]:
            inputs = None  # a layer's map (e.g. attention at token resolution): the map alone
        return preview.png(preview.attribution_strip(values, inputs, self.input_range))

    def __repr__(self) -> str:
        shape = tuple(np.shape(self.values))
        text = f"Attribution(method={self.method!r}, values{shape}"
        if self.delta is not None:
            rel = self.relative_delta
            if rel is not None:
                text += f", median |delta| {100 * float(np.median(rel)):.2f}% of f(x)-f(b)"
        return text + ")"
