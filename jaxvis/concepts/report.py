"""Do concepts match known factors? AUROC of each concept at telling images with a factor from
images without it, the best concept per factor, against the same measure for raw channels.

The synthetic shapes set (:mod:`jaxvis.zoo.data_shapes`) has known factors: the shape's kind
(8), its colour and the background's colour (the dominant RGB channel under and outside the
shape's mask, read from the image and its exact mask). :func:`shapes_factors` turns images,
labels and masks into boolean factors; :func:`image_scores` gives each image one score per
concept (the code's maximum over positions, as ``top_k`` ranks images) or per raw channel;
:func:`factor_auroc` reports, per factor, the unit with the highest AUROC (``max(auc, 1 -
auc)``, so a unit that fires on the factor's absence counts too, for concepts and channels
alike).

Example::

    factors = shapes_factors(zoo.x_test, zoo.y_test, zoo.masks_test)
    table = factor_auroc(image_scores(zoo.probe, zoo.x_test, "act5", nmf), factors)
    raw = factor_auroc(image_scores(zoo.probe, zoo.x_test, "act5"), factors)
    print(format_table({"nmf": table, "channels": raw}))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxvis._protocols import ProbeLike
from jaxvis.concepts.factor import Concepts

__all__ = ["auroc", "factor_auroc", "format_table", "image_scores", "shapes_factors"]

COLOURS = ("red", "green", "blue")


def auroc(scores: Any, positive: Any) -> np.ndarray:
    """AUROC of every column of ``scores (N, K)`` at ranking ``positive (N,)`` images first
    (Mann-Whitney U with tied ranks averaged); 0.5 where a class is empty."""
    s = np.asarray(scores, np.float64)
    if s.ndim == 1:
        s = s[:, None]
    y = np.asarray(positive, bool)
    if y.shape != (s.shape[0],):
        raise ValueError(f"positive must have shape ({s.shape[0]},), got {y.shape}")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return np.full(s.shape[1], 0.5)
    from scipy.stats import rankdata

    ranks = rankdata(s, axis=0)
    u = ranks[y].sum(0) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def shapes_factors(images: Any, labels: Any, masks: Any) -> dict[str, np.ndarray]:
    """Boolean factors of shapes images: ``shape=<kind>``, ``colour=<r/g/b>`` (the shape's
    dominant channel), ``background=<r/g/b>`` (the background's)."""
    from jaxvis.zoo.data_shapes import SHAPE_NAMES

    x = np.asarray(images, np.float32)
    m = np.asarray(masks, bool)[..., None]
    y = np.asarray(labels)
    inside = (x * m).sum((1, 2)) / np.maximum(m.sum((1, 2)), 1)
    outside = (x * ~m).sum((1, 2)) / np.maximum((~m).sum((1, 2)), 1)
    out = {f"shape={name}": y == i for i, name in enumerate(SHAPE_NAMES)}
    for name, mean in (("colour", inside), ("background", outside)):
        dom = mean.argmax(1)
        out.update({f"{name}={c}": dom == i for i, c in enumerate(COLOURS)})
    return out


def image_scores(
    probe: ProbeLike,
    images: Any,
    layer: str,
    concepts: Concepts | None = None,
    *,
    reduce: str = "max",
    batch_size: int = 250,
) -> np.ndarray:
    """``(N, K)`` per-image concept scores (or ``(N, C)`` raw channels when ``concepts`` is
    None): the code's ``"max"`` or ``"mean"`` over the layer's positions."""
    from jaxvis.concepts.acts import layer_samples

    if reduce not in ("max", "mean"):
        raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")
    to_view, grid = layer_samples(probe, layer)
    x = np.asarray(images, np.float32)
    out = []
    for s in range(0, len(x), batch_size):
        a = to_view(probe.activations(x[s : s + batch_size], [layer])[layer])
        z = a if concepts is None else concepts.encode(a)
        z = np.asarray(z)
        if grid is not None:
            z = z.reshape(z.shape[0], -1, z.shape[-1])
            z = z.max(1) if reduce == "max" else z.mean(1)
        out.append(z)
    return np.concatenate(out)


def factor_auroc(scores: Any, factors: dict[str, Any]) -> dict[str, tuple[int, float]]:
    """Per factor, ``(best unit, its AUROC)`` with AUROC taken as ``max(auc, 1 - auc)``."""
    table = {}
    for name, pos in factors.items():
        a = auroc(scores, pos)
        a = np.maximum(a, 1 - a)
        best = int(np.argmax(a))
        table[name] = (best, float(a[best]))
    return table


def format_table(tables: dict[str, dict[str, tuple[int, float]]]) -> str:
    """A text table: one row per factor, one column per method, and the mean."""
    names = list(tables)
    factors = list(next(iter(tables.values())))
    lines = ["factor".ljust(20) + "".join(n.rjust(12) for n in names)]
    for f in factors:
        lines.append(f.ljust(20) + "".join(f"{tables[n][f][1]:12.3f}" for n in names))
    means = [np.mean([v[1] for v in tables[n].values()]) for n in names]
    lines.append("mean".ljust(20) + "".join(f"{m:12.3f}" for m in means))
    return "\n".join(lines)
