"""Blur IG and Guided IG: integrated gradients along paths other than the straight line,
after PAIR's ``saliency`` library (its conventions, step counts and defaults).

* Blur IG (Xu et al. 2020): the path from the image blurred with a Gaussian of ``max_sigma``
  pixels to the image itself, ``sigma_i = i * max_sigma / steps`` (``i = 0 .. steps - 1``; with
  ``sqrt``, ``sqrt(i * max_sigma / steps)``); the path's derivative by a forward difference
  in sigma of ``h = grad_step``:
  ``values = -sum_i (sigma_{i+1} - sigma_i) (L(sigma_i + h) - L(sigma_i)) / h grad f(L(sigma_i))``
  with ``L(s)`` the image blurred by ``s`` (scipy's ``gaussian_filter``: kernel truncated at
  ``4 s``, zero outside the image). ``values`` sums to about ``f(x) - f(L(max_sigma))``.
* Guided IG (Kapishnikov et al. 2021): from the baseline to the image in ``steps`` steps; at
  step ``k`` the features with the smallest ``|gradient|`` (a ``fraction`` of them, ties
  included) move first towards the image until the L1 distance to it is
  ``(1 - k / steps)`` of the total, each feature kept within ``max_dist`` (as a fraction of the
  way) of the straight line; ``values`` sums the gradient times each move.

Example::

    res = blur_ig(probe, x, target=3, steps=100, max_sigma=50.0)
    res.delta                 # sum(values) - (f(x) - f(fully blurred x))
    guided_ig(probe, x, target=3, steps=200, fraction=0.25, max_dist=0.02).values
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis._checks import check_optional_positive_int
from jaxvis._protocols import ProbeLike
from jaxvis.attribution import _checks
from jaxvis.attribution._core import cached_jit, count_trace
from jaxvis.attribution.baselines import describe, make_baselines
from jaxvis.attribution.registry import register
from jaxvis.attribution.result import Attribution

__all__ = ["blur_ig", "guided_ig"]

TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default: the kernel ends at 4 sigma


def check_number(value: Any, name: str, low: float, high: float | None = None) -> float:
    """``value`` as a float in ``(low, high]`` (``high`` None: no upper end), else ValueError."""
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if not ok or not np.isfinite(value) or value <= low or (high is not None and value > high):
        span = f"({low}, {high}]" if high is not None else f"> {low}"
        raise ValueError(f"{name} must be a number in {span}, got {value!r}")
    return float(value)


def blur_sigmas(steps: int, max_sigma: float, sqrt: bool) -> np.ndarray:
    """The ``steps + 1`` sigmas of the blur path, from 0 to ``max_sigma`` (PAIR's schedule)."""
    frac = np.arange(steps + 1, dtype=np.float64) * max_sigma / steps
    return np.sqrt(frac) if sqrt else frac


def _kernel_terms(sigmas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sigma, the truncation radius ``int(4 sigma + 0.5)`` and the kernel's sum over it."""
    radius = (TRUNCATE * sigmas + 0.5).astype(np.int64)
    norm = np.ones_like(sigmas)
    for i, (s, r) in enumerate(zip(sigmas, radius, strict=True)):
        if s > 0:
            d = np.arange(-r, r + 1, dtype=np.float64)
            norm[i] = np.exp(-0.5 * (d / s) ** 2).sum()
    return radius.astype(np.float32), norm.astype(np.float32)


def _blur_matrix(size: int, sigma: jax.Array, radius: jax.Array, norm: jax.Array) -> jax.Array:
    """``(size, size)``: a truncated, normalised Gaussian over one axis, zeros past the edges
    (sigma 0: the identity)."""
    d = jnp.arange(size, dtype=jnp.float32)
    d = d[:, None] - d[None, :]
    safe = jnp.where(sigma > 0, sigma, 1.0)
    w = jnp.where(jnp.abs(d) <= radius, jnp.exp(-0.5 * (d / safe) ** 2) / norm, 0.0)
    return jnp.where(sigma > 0, w, (d == 0).astype(jnp.float32))


def _blurred(x: jax.Array, sigma: jax.Array, radius: jax.Array, norm: jax.Array) -> jax.Array:
    """``x`` (N, H, W, C) blurred over H and W."""
    rows = _blur_matrix(x.shape[1], sigma, radius, norm)
    cols = _blur_matrix(x.shape[2], sigma, radius, norm)
    return jnp.einsum("ih,nhwc,jw->nijc", rows, x, cols)


@register("path", "Blur IG")
def blur_ig(
    probe: ProbeLike,
    x: Any,
    target: Any = None,
    *,
    steps: int = 100,
    max_sigma: float = 50.0,
    grad_step: float = 0.01,
    sqrt: bool = False,
    batch_size: int | None = None,
    params: Any = None,
) -> Attribution:
    """Blur IG: integrated gradients along the path from a blurred image to the image.

    Defaults are PAIR's (``steps=100, max_sigma=50, grad_step=0.01``). ``steps`` is the
    shape of the computation (changing it compiles); ``max_sigma``, ``grad_step`` and
    ``sqrt`` are traced. ``batch_size``: path points per model call (memory cap; rounded to
    whole steps of the batch), None chooses from the model's activation sizes.

    Returns an :class:`Attribution` with ``values`` like ``x``, ``delta = sum(values) -
    (f(x) - f(blurred x))``, ``score`` and ``baseline_score`` (the fully blurred image's).

    Example::

        res = blur_ig(probe, x, target=[3, 1], steps=32, max_sigma=10.0)
    """
    x = _checks.check_images(probe, x)
    steps = _checks.check_positive_int(steps, "steps")
    max_sigma = check_number(max_sigma, "max_sigma", 0.0)
    grad_step = check_number(grad_step, "grad_step", 0.0)
    batch_size = check_optional_positive_int(batch_size, "batch_size")
    tgt = _checks.resolve_target(probe, x, target)
    n = x.shape[0]
    if batch_size is None:
        batch_size = _checks.auto_batch_size(probe, steps * n)
    chunk = max(1, min(steps, batch_size // n))
    sigmas = blur_sigmas(steps, max_sigma, bool(sqrt))
    both = np.concatenate([sigmas, sigmas[:-1] + grad_step])
    radius, norm = _kernel_terms(both)
    score = _checks.score_fn(probe, tgt)

    def build() -> Any:
        def kernel(params: Any, x: jax.Array, index: jax.Array, sig: jax.Array, rad: jax.Array,
                   nrm: jax.Array, h: jax.Array) -> tuple:  # fmt: skip
            count_trace("blur_ig")
            n_chunks = -(-steps // chunk)

            def add(acc: jax.Array, ids: jax.Array) -> tuple[jax.Array, None]:
                valid = ids < steps
                i = jnp.minimum(ids, steps - 1)
                j = steps + 1 + i  # sigma_i + grad_step
                blur = jax.vmap(lambda a, b, c: _blurred(x, a, b, c))
                at = blur(sig[i], rad[i], nrm[i])  # (chunk, N, H, W, C)
                ahead = blur(sig[j], rad[j], nrm[j])
                points = at.reshape(-1, *x.shape[1:])

                def total(p: jax.Array) -> jax.Array:
                    return score(params, p, jnp.tile(index, chunk)).sum()

                grads = jax.grad(total)(points).reshape(at.shape)
                step = jnp.where(valid, sig[i + 1] - sig[i], 0.0).reshape(-1, 1, 1, 1, 1)
                return acc - (step * (ahead - at) / h * grads).sum(0), None

            ids = jnp.arange(n_chunks * chunk, dtype=jnp.int32).reshape(n_chunks, chunk)
            values = jax.lax.scan(add, jnp.zeros(x.shape, jnp.float32), ids)[0]
            f_x = score(params, x, index)
            f_b = score(params, _blurred(x, sig[steps], rad[steps], nrm[steps]), index)
            delta = values.reshape(n, -1).sum(-1) - (f_x - f_b)
            return values, delta, f_x, f_b

        return kernel

    run = cached_jit(probe, ("blur_ig", tgt.static_key, steps, chunk), build)
    params = probe.params if params is None else params
    values, delta, f_x, f_b = run(
        params, x, tgt.index, jnp.asarray(both, jnp.float32), jnp.asarray(radius),
        jnp.asarray(norm), jnp.float32(grad_step),
    )  # fmt: skip
    return Attribution(
        values=values,
        delta=delta,
        method="blur_ig",
        target=None if tgt.kind == "callable" else tgt.index,
        score=f_x,
        baseline_score=f_b,
        settings={
            "steps": steps,
            "max_sigma": max_sigma,
            "grad_step": grad_step,
            "sqrt": bool(sqrt),
            "batch_size": chunk * n,
        },
    )


@register("path", "Guided IG")
def guided_ig(
    probe: ProbeLike,
    x: Any,
    target: Any = None,
    *,
    steps: int = 200,
    fraction: float = 0.25,
    max_dist: float = 0.02,
    baseline: Any = "black",
    params: Any = None,
) -> Attribution:
    """Guided IG: a path that moves the features with the smallest gradient first.

    Defaults are PAIR's (``steps=200`` (its ``x_steps``), ``fraction=0.25``,
    ``max_dist=0.02``); PAIR's default baseline is zeros, jaxvis's ``"black"`` (the low end of
    the input range; zeros for a ``[0, 1]`` model). Every option is traced: changing
    ``steps``, ``fraction``, ``max_dist`` or the baseline compiles nothing new. One model
    call per step on the whole batch; the selection runs per example.

    ``max_dist=0`` is the straight line (IG with ``steps`` right-Riemann nodes); ``1`` lets
    the path go anywhere in the box between baseline and image.

    Example::

        res = guided_ig(probe, x, target=3, steps=64, fraction=0.1)
        res.delta             # sum(values) - (f(x) - f(baseline))
    """
    x = _checks.check_images(probe, x)
    steps = _checks.check_positive_int(steps, "steps")
    fraction = check_number(fraction, "fraction", 0.0, 1.0)
    number = isinstance(max_dist, int | float | np.integer | np.floating)
    if isinstance(max_dist, bool) or not number or not 0 <= max_dist <= 1:
        raise ValueError(f"max_dist must be a number in [0, 1], got {max_dist!r}")
    max_dist = float(max_dist)
    if isinstance(baseline, list):
        raise ValueError("guided_ig takes one baseline, not a list")
    tgt = _checks.resolve_target(probe, x, target)
    base = make_baselines(probe, x, baseline)[0]
    score = _checks.score_fn(probe, tgt)

    def build() -> Any:
        def kernel(params: Any, x: jax.Array, base: jax.Array, index: jax.Array,
                   n_steps: jax.Array, frac: jax.Array, dist: jax.Array) -> tuple:  # fmt: skip
            count_trace("guided_ig")
            n = x.shape[0]
            x_in, b = x.reshape(n, -1), base.reshape(n, -1)
            grad_fn = jax.grad(lambda p: score(params, p, index).sum())
            l1_total = jnp.abs(x_in - b).sum(-1)
            rank = jnp.floor(frac * (x_in.shape[1] - 1)).astype(jnp.int32)

            def one_step(k: jax.Array, carry: tuple) -> tuple:
                pos, attr = carry
                g = grad_fn(pos.reshape(x.shape)).reshape(n, -1)
                alpha = (k + 1.0) / n_steps
                lo, hi = jnp.maximum(alpha - dist, 0.0), jnp.minimum(alpha + dist, 1.0)
                target_l1 = l1_total * (1.0 - (k + 1.0) / n_steps)
                moved = jax.vmap(_guided_moves, in_axes=(0, 0, 0, 0, 0, None, None, None, 0))
                return moved(pos, attr, g, x_in, b, lo, hi, rank, target_l1)

            zeros = jnp.zeros_like(x_in)
            _, attr = jax.lax.fori_loop(0, n_steps, one_step, (b, zeros))
            values = attr.reshape(x.shape)
            f_x, f_b = score(params, x, index), score(params, base, index)
            delta = values.reshape(n, -1).sum(-1) - (f_x - f_b)
            return values, delta, f_x, f_b

        return kernel

    run = cached_jit(probe, ("guided_ig", tgt.static_key), build)
    params = probe.params if params is None else params
    values, delta, f_x, f_b = run(
        params, x, base, tgt.index, jnp.int32(steps), jnp.float32(fraction), jnp.float32(max_dist)
    )
    return Attribution(
        values=values,
        delta=delta,
        method="guided_ig",
        target=None if tgt.kind == "callable" else tgt.index,
        score=f_x,
        baseline_score=f_b,
        settings={
            "steps": steps,
            "fraction": fraction,
            "max_dist": max_dist,
            "baseline": describe(baseline),
        },
    )


def _guided_moves(
    pos: jax.Array,
    attr: jax.Array,
    grad: jax.Array,
    x_in: jax.Array,
    base: jax.Array,
    alpha_min: jax.Array,
    alpha_max: jax.Array,
    rank: jax.Array,
    target_l1: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """One Guided IG step of one example (flat features): move the features with the smallest
    ``|grad|`` towards ``x_max`` until the L1 distance to ``x_in`` is ``target_l1``."""
    diff = x_in - base
    x_min, x_max = base + diff * alpha_min, base + diff * alpha_max
    tol = 1e-6 * jnp.maximum(jnp.abs(diff).sum(), 1e-30)  # float32: PAIR's 1e-9 on float64

    def body(state: tuple) -> tuple:
        pos, attr, _ = state
        old = pos
        frac = jnp.where(diff != 0, (pos - base) / jnp.where(diff != 0, diff, 1.0), alpha_max)
        pos = jnp.where(frac < alpha_min, x_min, pos)  # those behind catch up to the band
        l1 = jnp.abs(pos - x_in).sum()
        reached = jnp.abs(l1 - target_l1) <= tol
        g = jnp.where(pos == x_max, jnp.inf, grad)  # features at the band's end are done
        threshold = jnp.sort(jnp.abs(g))[rank]
        chosen = (jnp.abs(g) <= threshold) & (g != jnp.inf)
        l1_chosen = (jnp.abs(pos - x_max) * chosen).sum()
        gamma = jnp.where(
            l1_chosen > 0, (l1 - target_l1) / jnp.where(l1_chosen > 0, l1_chosen, 1.0), jnp.inf
        )
        step = jnp.where(gamma > 1.0, x_max, pos + gamma * (x_max - pos))
        pos = jnp.where(reached | ~chosen, pos, step)
        attr = attr + (pos - old) * grad
        go = ~reached & (gamma > 1.0) & (l1_chosen > 0)
        return pos, attr, go

    pos, attr, _ = jax.lax.while_loop(lambda s: s[2], body, (pos, attr, jnp.bool_(True)))
    return pos, attr
