"""Sanity checks for attribution maps (Adebayo et al. 2018) and localisation scores.

The model-parameter randomisation test: re-initialise the weights layer by layer -- from the
output down ("cascading") or one layer at a time ("independent") -- and compare each new map
with the trained model's. A method that explains the model must change when the model does;
one that merely finds edges (guided backprop) stays similar.

Example::

    rt = randomisation_test(probe, x, target=y, method="integrated_gradients")
    rt.layers                 # ('original', 'dense3', 'dense2', ...)
    rt.spearman_signed        # (L, N): drops to ~0 for gradient and IG
    rt.table()                # one row per layer, medians over examples

    loc = localisation(res.values, masks)   # on shapes_cnn
    loc["inside"].mean(), loc["pointing"].mean()
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis._protocols import ProbeLike
from jaxvis.attribution import _checks
from jaxvis.attribution.gradients import saliency
from jaxvis.attribution.metrics import normalise_map, spearman, ssim, to_map
from jaxvis.attribution.registry import get_method

__all__ = [
    "RandomisationResult",
    "localisation",
    "method_fn",
    "randomisation_test",
    "randomise",
]

_STATS = ("mean", "var", "batch_stats", "count")

#: Names compared signed, as in the paper: the plain gradient (saliency without ``abs``).
SIGNED_GRADIENT = ("gradient", "saliency")


def _gradient(probe: ProbeLike, x: Any, target: Any, **kw: Any) -> Any:
    return saliency(probe, x, target, abs=False, **kw)


def method_fn(method: str | Callable[..., Any]) -> Callable[..., Any]:
    """The function behind ``method``: a name in the registry (``jv.attribution.methods()``;
    ``"gradient"`` and ``"saliency"`` mean the signed gradient), or a callable as it is."""
    if callable(method):
        return method
    if method in SIGNED_GRADIENT:
        return _gradient
    try:
        return get_method(method).fn
    except ValueError as err:
        raise ValueError(f"{err} (or 'gradient', the signed gradient)") from None


def _path_names(path: tuple) -> list[str]:
    out = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                out.append(str(getattr(key, attr)))
                break
    return out


def randomise(probe: ProbeLike, layers: Sequence[str], seed: int = 0, params: Any = None) -> Any:
    """A copy of the parameters with those of ``layers`` re-drawn at random.

    Each array is replaced by Gaussian noise with the array's own standard deviation (a
    constant array, such as a zero bias, by noise of the layer kernel's scale); normalisation
    statistics are left alone.

    Example::

        shuffled = randomise(probe, ["dense3", "dense2"])
        integrated_gradients(probe, x, 3, params=shuffled)
    """
    params = probe.params if params is None else params
    for name in layers:
        _checks.check_layer(probe, name)
    # where each layer's parameters live; inside stacked (scanned) blocks, one block's slice
    homes = {name: probe.module_of(name) for name in layers}
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    rng = np.random.default_rng(seed)
    hits: set[str] = set()
    plan: list[tuple[str | None, tuple[int, ...]]] = []
    scale_of: dict[str, float] = {}
    for path, value in leaves:
        names = _path_names(path)
        if names and names[0] == "params":
            names = names[1:]
        layer = next(
            (
                n
                for n, (home, _) in homes.items()
                if names[: len(home.split("."))] == home.split(".")
            ),
            None,
        )
        floating = hasattr(value, "dtype") and jnp.issubdtype(value.dtype, jnp.floating)
        if layer is None or not floating or any(n in _STATS for n in names):
            plan.append((None, ()))
            continue
        index = homes[layer][1]
        plan.append((layer, index))
        std = float(np.std(np.asarray(value)[index]))
        if std > 0:
            scale_of.setdefault(layer, std)
    new = []
    for (_, value), (layer, index) in zip(leaves, plan, strict=True):
        if layer is None:
            new.append(value)
            continue
        hits.add(layer)
        part = np.asarray(value)[index]
        std = float(np.std(part)) or scale_of.get(layer, 0.05)
        noise = jnp.asarray(rng.standard_normal(np.shape(part)) * std, value.dtype)
        new.append(jnp.asarray(value).at[index].set(noise) if index else noise)
    missing = [name for name in layers if name not in hits]
    if missing:
        raise ValueError(
            f"no parameters found for layer(s) {missing}: randomise layers that own weights"
        )
    return jax.tree_util.tree_unflatten(treedef, new)


@dataclass(frozen=True)
class RandomisationResult:
    """Per randomisation step (row 0: the trained model), per example (column) scores."""

    method: str
    mode: str
    layers: tuple[str, ...]
    spearman_abs: np.ndarray
    spearman_signed: np.ndarray
    ssim: np.ndarray
    maps: np.ndarray  # (L, N, H, W) signed maps, channel-summed
    settings: dict[str, Any] = field(default_factory=dict)

    def table(self) -> list[dict[str, Any]]:
        """One row per step: layer and the median of each score over the examples."""
        return [
            {
                "layer": layer,
                "spearman_abs": float(np.median(self.spearman_abs[i])),
                "spearman_signed": float(np.median(self.spearman_signed[i])),
                "ssim": float(np.median(self.ssim[i])),
            }
            for i, layer in enumerate(self.layers)
        ]


def randomisation_test(
    probe: ProbeLike,
    x: Any,
    target: Any = None,
    method: str | Callable[..., Any] = "integrated_gradients",
    mode: str = "cascading",
    layers: Sequence[str] | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> RandomisationResult:
    """Adebayo et al.'s model-parameter randomisation test.

    Args:
        probe, x, target: as for the attribution methods (target None: the trained model's
            prediction, kept fixed through the test).
        method: a registered method name (``"gradient"``/``"saliency"``: the signed gradient)
            or a function ``fn(probe, x, target, params=...)``.
        mode: ``"cascading"`` (randomise from the output layer down, cumulatively) or
            ``"independent"`` (one layer at a time).
        layers: layers with weights to randomise, in the order to go; default: all, from the
            output down.
        kwargs: passed to the method (e.g. ``steps=32``).

    Spearman correlation is computed on absolute and on signed channel-summed maps; SSIM on
    absolute maps scaled to [0, 1]. One compile serves every step: the parameters are traced.
    """
    if mode not in ("cascading", "independent"):
        raise ValueError(f"mode must be 'cascading' or 'independent', got {mode!r}")
    fn = method_fn(method)
    x = _checks.check_images(probe, x)
    if target is None:
        target = np.asarray(jnp.argmax(probe(x), -1))
    if layers is None:
        layers = [lay.name for lay in reversed(probe.layers) if lay.n_params > 0]
    layers = list(layers)

    def attribute(params: Any) -> np.ndarray:
        return np.asarray(fn(probe, x, target, params=params, **kwargs).values)

    original = attribute(probe.params)
    steps, maps = ["original"], [original]
    for i, layer in enumerate(layers):
        chosen = layers[: i + 1] if mode == "cascading" else [layer]
        maps.append(attribute(randomise(probe, chosen, seed)))
        steps.append(layer)
    ref_abs, ref_signed = to_map(original, True), to_map(original, False)
    ref_norm = normalise_map(ref_abs)
    sp_abs, sp_signed, ss = [], [], []
    for m in maps:
        m_abs, m_signed, m_norm = to_map(m, True), to_map(m, False), normalise_map(to_map(m, True))
        sp_abs.append([spearman(a, b) for a, b in zip(ref_abs, m_abs, strict=True)])
        sp_signed.append([spearman(a, b) for a, b in zip(ref_signed, m_signed, strict=True)])
        ss.append([ssim(a, b) for a, b in zip(ref_norm, m_norm, strict=True)])
    name = method if isinstance(method, str) else getattr(method, "__name__", "custom")
    return RandomisationResult(
        method=name,
        mode=mode,
        layers=tuple(steps),
        spearman_abs=np.asarray(sp_abs),
        spearman_signed=np.asarray(sp_signed),
        ssim=np.asarray(ss),
        maps=np.stack([to_map(m) for m in maps]),
        settings={"seed": seed, **kwargs},
    )


def localisation(values: Any, masks: Any) -> dict[str, np.ndarray]:
    """How well maps fall on the object: per example, for masks ``(N, H, W)`` of the object.

    Returns ``inside``: fraction of the positive attribution inside the mask; ``pointing``:
    whether the map's maximum lies in the mask (the pointing game, no tolerance);
    ``area``: the mask's share of the image -- the ``inside`` score of a map spread evenly.

    Example::

        loc = localisation(integrated_gradients(probe, x, y).values, masks)
        float(loc["inside"].mean())
    """
    m = to_map(values)
    masks = np.asarray(masks, bool)
    if masks.shape != m.shape:
        raise ValueError(f"masks must have shape {m.shape} (N, H, W), got {masks.shape}")
    pos = np.maximum(m, 0.0)
    total = pos.reshape(len(m), -1).sum(-1)
    inside = (pos * masks).reshape(len(m), -1).sum(-1) / np.where(total > 0, total, 1.0)
    flat_max = m.reshape(len(m), -1).argmax(-1)
    pointing = masks.reshape(len(m), -1)[np.arange(len(m)), flat_max]
    area = masks.reshape(len(m), -1).mean(-1)
    return {"inside": inside, "pointing": pointing, "area": area}
