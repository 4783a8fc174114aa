"""Concept views, as the Deep Visualization Toolbox shows a unit: each concept's feature
visualisation, its top dataset examples and patches, its heatmap on an input, and its
importance for a class.

* :func:`feature_vis`: all K concepts in one vectorised optimisation (the optvis engine with a
  batched :func:`~jaxvis.optvis.objectives.direction` objective);
* :func:`concept_probe` + :func:`top_k`: a probe whose layer ``"concepts"`` is the codes, fed
  to :func:`jaxvis.dataset.top_k` (streamed, sharded); :func:`patches` crops what the top
  positions saw (the layer's receptive field: codes are computed per position);
* :func:`heatmap`: codes per position ``(N, h, w, K)``, optionally resized to the image;
* :func:`importance`: gradient x code for a class, and CRAFT's total Sobol indices.

Example::

    fv = feature_vis(probe, nmf, steps=128)        # fv.images (K, H, W, 3)
    res = top_k(probe, x_train, nmf, k=9)          # res.indices (K, 9)
    heat = heatmap(probe, nmf, x_test[:4])         # (4, 8, 8, K)
    importance(probe, nmf, x_test[:64], target=3)  # (K,)
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis import tap
from jaxvis._per_probe import PerProbe
from jaxvis._protocols import ProbeLike
from jaxvis._xla import jit
from jaxvis.attribution._edit import edited_apply
from jaxvis.concepts.acts import layer_samples
from jaxvis.concepts.factor import Concepts
from jaxvis.probe import Probe

__all__ = ["concept_probe", "feature_vis", "heatmap", "importance", "patches", "top_k"]

CONCEPTS_LAYER = "concepts"


def _layer_of(concepts: Concepts, layer: str | None) -> str:
    if not isinstance(concepts, Concepts):
        raise TypeError(f"concepts must be a jaxvis.concepts.Concepts, got {type(concepts)}")
    layer = layer if layer is not None else concepts.layer
    if layer is None:
        raise ValueError("layer is unknown: pass layer=, the layer the concepts were fitted on")
    return layer


def _check_fit(probe: ProbeLike, concepts: Concepts, layer: str) -> None:
    if not isinstance(probe, Probe):
        raise TypeError(f"probe must be a jaxvis.Probe, got {type(probe).__name__}")
    lay = probe.layout(layer)  # unknown names raise with the closest names
    if lay.channels != concepts.n_channels:
        raise ValueError(
            f"concepts have {concepts.n_channels} channels but layer {layer!r} has "
            f"{lay.channels}: fit them on this layer"
        )


def _select(concepts: Concepts, which: Any) -> np.ndarray:
    if which is None:
        return np.arange(concepts.n_concepts)
    idx = np.atleast_1d(np.asarray(which))
    if idx.dtype.kind not in "iu" or idx.ndim != 1:
        raise TypeError(f"which must be concept indices (ints), got {which!r}")
    if idx.size == 0 or idx.min() < 0 or idx.max() >= concepts.n_concepts:
        raise ValueError(f"which must lie in [0, {concepts.n_concepts - 1}], got {which!r}")
    return idx


def feature_vis(
    probe: ProbeLike,
    concepts: Concepts,
    *,
    layer: str | None = None,
    which: Any = None,
    **render: Any,
) -> Any:
    """Feature visualisations of concepts ``which`` (default all), one vectorised run.

    ``render`` goes to :func:`jaxvis.optvis.render` (``steps``, ``preset``, ``callback``...).
    Returns its :class:`~jaxvis.optvis.engine.RenderResult`: ``.images[i]`` is concept
    ``which[i]``'s image.
    """
    from jaxvis.optvis import objectives
    from jaxvis.optvis import render as render_fn

    layer = _layer_of(concepts, layer)
    _check_fit(probe, concepts, layer)
    idx = _select(concepts, which)
    return render_fn(probe, objectives.direction(layer, concepts.directions[idx]), **render)


_PROBES: PerProbe = PerProbe()


def concept_probe(probe: ProbeLike, concepts: Concepts, layer: str | None = None) -> Probe:
    """A probe of the same model whose extra layer ``"concepts"`` is the codes ``(h, w, K)``
    (or ``(K,)``) of ``layer``; the concepts' arrays are parameters, not constants."""
    layer = _layer_of(concepts, layer)
    _check_fit(probe, concepts, layer)
    cache = _PROBES.entries(concepts)
    key = (id(probe), layer)
    if key in cache and cache[key][0]() is probe:
        return cache[key][1]
    to_view, _ = layer_samples(probe, layer)

    def fn(params: Any, x: jax.Array) -> jax.Array:
        _, acts = probe.apply(params["model"], x, [layer])
        codes = concepts.encode_with(params["concepts"], to_view(acts[layer]))
        return tap(CONCEPTS_LAYER, codes)

    cp = Probe(
        fn,
        {"model": probe.params, "concepts": concepts.jax_params()},
        input_shape=probe.input_shape,
        input_range=probe.input_range,
    )
    cache[key] = (weakref.ref(probe), cp)
    return cp


def top_k(
    probe: ProbeLike,
    batches: Any,
    concepts: Concepts,
    k: int = 9,
    *,
    layer: str | None = None,
    **options: Any,
) -> Any:
    """The ``k`` images of ``batches`` where each concept's code peaks (``reduce="max"``),
    by :func:`jaxvis.dataset.top_k` on :func:`concept_probe`. ``result.layer`` is the
    concepts' layer, so :func:`jaxvis.dataset.patches` with the original probe crops what the
    top positions saw."""
    from jaxvis.dataset import top_k as dataset_top_k

    layer = _layer_of(concepts, layer)
    res = dataset_top_k(
        concept_probe(probe, concepts, layer), batches, CONCEPTS_LAYER, k, **options
    )
    return dataclasses.replace(res, layer=layer)


def patches(probe: ProbeLike, images: Any, result: Any, concept: int, **options: Any) -> Any:
    """Input crops under ``concept``'s top-k positions (``result`` from :func:`top_k`)."""
    from jaxvis.dataset import patches as dataset_patches

    return dataset_patches(probe, images, result, concept, **options)


def heatmap(
    probe: ProbeLike,
    concepts: Concepts,
    x: Any,
    *,
    layer: str | None = None,
    upsample: bool = False,
) -> np.ndarray:
    """Codes at every position of ``layer`` for images ``x``: ``(N, h, w, K)``; with
    ``upsample`` resized (bilinear) to the images' ``(H, W)``."""
    layer = _layer_of(concepts, layer)
    cp = concept_probe(probe, concepts, layer)
    xs = probe.check_input(x, "x")
    codes = cp.activations(xs, [CONCEPTS_LAYER])[CONCEPTS_LAYER]
    if codes.ndim != 4:
        raise ValueError(f"layer {layer!r} has no spatial positions: no heatmap")
    if upsample:
        n, _, _, k = codes.shape
        h, w = xs.shape[1:3]
        codes = jax.image.resize(codes, (n, h, w, k), "bilinear")
    return np.asarray(codes)


_IMPORTANCE: PerProbe = PerProbe()


def _importance_fns(probe: ProbeLike, concepts: Concepts, layer: str):
    cache = _IMPORTANCE.entries(concepts)
    key = (id(probe), layer)
    if key in cache:
        return cache[key]
    lay = probe.layout(layer)
    if lay.kind not in ("spatial", "vector"):
        raise ValueError(f"importance supports spatial and vector layers, not {lay.kind!r}")

    def logits_with(params, cparams, x, codes, codes0):
        # the layer keeps its value; only the part the codes explain depends on ``codes``
        def edit(a):
            delta = concepts.decode_with(cparams, codes) - concepts.decode_with(cparams, codes0)
            return a + delta.astype(a.dtype)

        out, _ = edited_apply(probe, params, x, {layer: edit})
        return out

    def codes_of(params, cparams, x):
        _, acts = probe.apply(params, x, [layer])
        return concepts.encode_with(cparams, acts[layer])

    def gradxcode(params, cparams, x, target):
        codes0 = codes_of(params, cparams, x)

        def f(codes):
            out = logits_with(params, cparams, x, codes, codes0)
            return jnp.sum(jnp.take_along_axis(out, target[:, None], 1))

        g = jax.grad(f)(codes0)
        axes = tuple(range(1, codes0.ndim - 1))
        return jnp.sum(g * codes0, axis=axes)  # (N, K)

    def sobol(params, cparams, x, target, masks_a, masks_b):
        codes0 = codes_of(params, cparams, x)  # (N, ..., K)
        n_design, k = masks_a.shape

        def f(mask):  # one mask (K,) -> the target logit of every image (N,)
            codes = codes0 * mask
            out = logits_with(params, cparams, x, codes, codes0)
            return jnp.take_along_axis(out, target[:, None], 1)[:, 0]

        fa = jax.lax.map(f, masks_a)  # (D, N)
        fb = jax.lax.map(f, masks_b)
        eye = jnp.eye(k, dtype=bool)
        mixed = jnp.where(eye[:, None, :], masks_b[None], masks_a[None])  # (K, D, K)
        fab = jax.lax.map(f, mixed.reshape(-1, k)).reshape(k, n_design, -1)
        var = jnp.var(jnp.concatenate([fa, fb]), axis=0)  # (N,)
        st = jnp.mean((fa[None] - fab) ** 2, axis=1) / 2  # Jansen's estimator, (K, N)
        return (st / jnp.maximum(var, 1e-12)).T  # (N, K)

    cache[key] = (jit(gradxcode), jit(sobol))
    return cache[key]


def importance(
    probe: ProbeLike,
    concepts: Concepts,
    x: Any,
    target: Any,
    *,
    layer: str | None = None,
    method: str = "gradxcode",
    n_design: int = 32,
    seed: int = 0,
    per_image: bool = False,
) -> np.ndarray:
    """How much each concept matters for class ``target`` on images ``x``: ``(K,)`` (mean over
    images) or ``(N, K)`` with ``per_image``.

    ``method="gradxcode"``: the code times the gradient of the target logit with respect to
    it, summed over positions (the layer's part outside the concepts' span kept fixed);
    ``"sobol"``: CRAFT's total Sobol index of each concept (codes scaled by random masks in
    [0, 1], Jansen's estimator over ``n_design`` pairs of masks).
    """
    layer = _layer_of(concepts, layer)
    _check_fit(probe, concepts, layer)
    if method not in ("gradxcode", "sobol"):
        raise ValueError(f"method must be 'gradxcode' or 'sobol', got {method!r}")
    xs = jnp.asarray(probe.check_input(x, "x"), jnp.float32)
    n = xs.shape[0]
    t = np.broadcast_to(np.asarray(target), (n,))
    if t.dtype.kind not in "iu":
        raise TypeError(f"target must be a class index (int), got {target!r}")
    n_classes = probe(xs[:1]).shape[-1]
    if t.min() < 0 or t.max() >= n_classes:
        raise ValueError(f"target must lie in [0, {n_classes - 1}], got {target!r}")
    grad_fn, sobol_fn = _importance_fns(probe, concepts, layer)
    cparams = concepts.jax_params()
    tj = jnp.asarray(t, jnp.int32)
    if method == "gradxcode":
        out = grad_fn(probe.params, cparams, xs, tj)
    else:
        rng = np.random.default_rng(seed)
        k = concepts.n_concepts
        a = jnp.asarray(rng.uniform(size=(n_design, k)), jnp.float32)
        b = jnp.asarray(rng.uniform(size=(n_design, k)), jnp.float32)
        out = sobol_fn(probe.params, cparams, xs, tj, a, b)
    out = np.asarray(out)
    return out if per_image else out.mean(0)
