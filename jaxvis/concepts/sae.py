"""Sparse autoencoders on activation datasets: TopK, BatchTopK (Gao et al. 2024; Bussmann et
al. 2024) and JumpReLU (Rajamanoharan et al. 2024), trained with optax, data-parallel.

``x -> z = act((x - b_dec) W_enc + b_enc) -> x^ = z W_dec + b_dec`` with unit-norm decoder rows
(the concepts' directions). Training works on inputs centred and scaled to unit mean squared
norm; the returned :class:`~jaxvis.concepts.Concepts` works on raw activations.

* ``"topk"``: keep each sample's ``k`` largest pre-activations (ReLU'd);
* ``"batchtopk"``: keep the ``k * B`` largest over the whole batch; at inference a threshold
  (the running mean of the smallest kept value) replaces the batch;
* ``"jumprelu"``: ``z = pre * [pre > theta]`` per latent, trained with an L0 penalty through
  straight-through estimators (a rectangle kernel of width ``bandwidth``).

Training: Adam with linear learning-rate warm-up and a linear decay over the last fifth, the
decoder's rows renormalised (and their gradient's parallel component removed) after every
step, and every ``resample_every`` steps latents that have not fired for ``dead_after``
steps are re-initialised towards badly reconstructed samples. Steps run in jitted chunks
(``lax.scan``); the chunk's samples are split over a 1-D device mesh
(``jax.sharding.NamedSharding``), the parameters replicated, so the same call trains
data-parallel on every device JAX sees.

Example::

    sae = train_sae(ds.samples, 256, kind="topk", k=8, steps=2000)
    sae_metrics(sae, ds.samples)       # {'r2': 0.93, 'l0': 8.0, 'dead': 0.0, 'dense': 0.01}
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxvis._checks import check_positive_int
from jaxvis._per_probe import PerProbe
from jaxvis._protocols import ProbeLike
from jaxvis._xla import jit
from jaxvis.concepts.factor import SAE_METHODS, Concepts, _check_matrix
from jaxvis.dataset.topk import _mesh, _progress_bar

__all__ = ["encode_fn", "loss_recovered", "sae_metrics", "train_sae"]

_AXIS = "batch"


# ------------------------------------------------------------------ activations


@jax.custom_vjp
def _step_fn(pre: jax.Array, theta: jax.Array, bandwidth: jax.Array) -> jax.Array:
    return (pre > theta).astype(pre.dtype)


def _step_fwd(pre, theta, bandwidth):
    return _step_fn(pre, theta, bandwidth), (pre, theta, bandwidth)


def _step_bwd(res, g):
    pre, theta, bw = res
    kernel = (jnp.abs((pre - theta) / bw) < 0.5).astype(pre.dtype)
    dtheta = jnp.sum(-g * kernel / bw, axis=tuple(range(pre.ndim - 1)))
    return jnp.zeros_like(pre), dtheta, jnp.zeros_like(bw)


_step_fn.defvjp(_step_fwd, _step_bwd)


@jax.custom_vjp
def _jump(pre: jax.Array, theta: jax.Array, bandwidth: jax.Array) -> jax.Array:
    return pre * (pre > theta)


def _jump_fwd(pre, theta, bandwidth):
    return _jump(pre, theta, bandwidth), (pre, theta, bandwidth)


def _jump_bwd(res, g):
    pre, theta, bw = res
    kernel = (jnp.abs((pre - theta) / bw) < 0.5).astype(pre.dtype)
    dpre = g * (pre > theta)
    dtheta = jnp.sum(-g * theta / bw * kernel, axis=tuple(range(pre.ndim - 1)))
    return dpre, dtheta, jnp.zeros_like(bw)


_jump.defvjp(_jump_fwd, _jump_bwd)


def _topk_act(pre: jax.Array, k: int) -> jax.Array:
    # the k-th largest value per row as a threshold: no scatter (ties at it are kept too)
    kth = jax.lax.top_k(pre, k)[0][:, -1:]
    return jnp.where(pre >= kth, jax.nn.relu(pre), 0.0)


def _batchtopk_act(pre: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    relu = jax.nn.relu(pre)
    kth = jax.lax.top_k(relu.reshape(-1), k * pre.shape[0])[0][-1]
    z = jnp.where(relu >= kth, relu, 0.0)
    return z, kth


def encode_fn(method: str, p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """Codes of raw activations ``x (N, C)`` for a fitted SAE's parameters ``p``."""
    pre = (x - p["mean"]) @ p["w_enc"] + p["b_enc"]
    if method == "topk":
        z = _topk_act(pre, int(p["k"].shape[0]))
    elif method == "batchtopk":
        z = jax.nn.relu(pre) * (pre > p["threshold"])
    else:
        z = pre * (pre > p["theta"])
    return z * p["scale"]


# ------------------------------------------------------------------ training


def _init(key: jax.Array, c: int, m: int, kind: str) -> dict[str, jax.Array]:
    w_dec = jax.random.normal(key, (m, c), jnp.float32)
    w_dec = w_dec / jnp.linalg.norm(w_dec, axis=1, keepdims=True)
    params = {
        "w_enc": w_dec.T * 1.0,
        "b_enc": jnp.zeros((m,), jnp.float32),
        "w_dec": w_dec,
        "b_dec": jnp.zeros((c,), jnp.float32),
    }
    if kind == "jumprelu":
        params["log_theta"] = jnp.full((m,), math.log(0.1 / math.sqrt(c) * 4), jnp.float32)
    return params


def _forward(kind: str, k: int, params, x, bandwidth):
    pre = (x - params["b_dec"]) @ params["w_enc"] + params["b_enc"]
    aux: dict[str, jax.Array] = {}
    if kind == "topk":
        z = _topk_act(pre, k)
        l0 = jnp.float32(0.0)
    elif kind == "batchtopk":
        z, aux["smallest"] = _batchtopk_act(pre, k)
        l0 = jnp.float32(0.0)
    else:
        theta = jnp.exp(params["log_theta"])
        z = _jump(pre, theta, bandwidth)
        l0 = jnp.mean(jnp.sum(_step_fn(pre, theta, bandwidth), axis=-1))
    xhat = z @ params["w_dec"] + params["b_dec"]
    return z, xhat, l0, aux


def _make_chunk(kind: str, k: int, opt: optax.GradientTransformation, sharding):
    def loss_fn(params, x, l0_coeff, bandwidth):
        z, xhat, l0, aux = _forward(kind, k, params, x, bandwidth)
        mse = jnp.mean(jnp.sum((x - xhat) ** 2, axis=-1))
        loss = mse + (l0_coeff * l0 if kind == "jumprelu" else 0.0)
        return loss, (z, xhat, mse, aux)

    def step(carry, x, hp):
        params, opt_state, since, thr, key = carry
        (loss, (z, xhat, mse, aux)), g = jax.value_and_grad(loss_fn, has_aux=True)(
            params, x, hp["l0_coeff"], hp["bandwidth"]
        )
        # keep the decoder's rows on the unit sphere: drop the gradient along each row
        wd = params["w_dec"]
        g["w_dec"] = g["w_dec"] - jnp.sum(g["w_dec"] * wd, axis=1, keepdims=True) * wd
        updates, opt_state = opt.update(g, opt_state, params)
        params = optax.apply_updates(params, updates)
        params["w_dec"] = params["w_dec"] / jnp.linalg.norm(
            params["w_dec"], axis=1, keepdims=True
        ).clip(1e-8)
        fired = jnp.any(z > 0, axis=0)
        since = jnp.where(fired, 0, since + x.shape[0])
        if kind == "batchtopk":
            thr = 0.99 * thr + 0.01 * aux["smallest"]
        l0 = jnp.mean(jnp.sum(z > 0, axis=-1))
        var = jnp.mean(jnp.sum((x - x.mean(0)) ** 2, axis=-1))
        return (params, opt_state, since, thr, key), (mse, l0, 1 - mse / var, xhat)

    def chunk(carry, xs, hp):
        def body(carry, x):
            carry, (mse, l0, r2, xhat) = step(carry, x, hp)
            return carry, (mse, l0, r2)

        carry, hist = jax.lax.scan(body, carry, xs)
        carry = _resample(carry, xs[-1], hp, kind, k)
        return carry, hist

    return jit(chunk, donate_argnums=(0,), in_shardings=(None, sharding, None))


def _resample(carry, x, hp, kind, k):
    """Re-initialise latents silent for ``dead_after`` samples towards poorly fit samples."""
    params, opt_state, since, thr, key = carry
    dead = (since > hp["dead_after"]) & hp["do_resample"]
    key, sub = jax.random.split(key)
    _, xhat, _, _ = _forward(kind, k, params, x, hp["bandwidth"])
    err = jnp.sum((x - xhat) ** 2, axis=-1)
    pick = jax.random.categorical(sub, jnp.log(err + 1e-12), shape=(dead.shape[0],))
    resid = x[pick] - xhat[pick]
    resid = resid / jnp.linalg.norm(resid, axis=1, keepdims=True).clip(1e-8)
    alive_norm = jnp.mean(jnp.linalg.norm(params["w_enc"], axis=0))
    params = dict(params)
    params["w_dec"] = jnp.where(dead[:, None], resid, params["w_dec"])
    params["w_enc"] = jnp.where(dead[None, :], resid.T * alive_norm, params["w_enc"])
    params["b_enc"] = jnp.where(dead, 0.0, params["b_enc"])
    since = jnp.where(dead, 0, since)
    return params, opt_state, since, thr, key


def train_sae(
    acts: Any,
    n_latents: int,
    *,
    kind: str = "topk",
    k: int = 8,
    steps: int = 2000,
    batch_size: int = 1024,
    lr: float = 4e-3,
    warmup: int = 100,
    l0_coeff: float = 1e-3,
    bandwidth: float = 0.05,
    resample_every: int = 250,
    dead_after: int | None = None,
    chunk: int = 50,
    seed: int = 0,
    layer: str | None = None,
    devices: Sequence[jax.Device] | None = None,
    progress: bool = True,
    callback: Callable[[dict[str, Any]], Any] | None = None,
) -> Concepts:
    """Train a sparse autoencoder of ``n_latents`` latents on ``acts``.

    Args:
        acts: ``(N, C)`` samples (or an ActivationDataset); mini-batches are drawn from them
            at random, streaming (a fresh slab of ``chunk x batch_size`` rows per chunk).
        n_latents: dictionary size ``M`` (may exceed ``C``: overcomplete).
        kind: ``"topk"``, ``"batchtopk"`` or ``"jumprelu"``.
        k: active latents per sample (TopK, BatchTopK on average).
        steps: optimisation steps; batch_size: samples per step (split over devices).
        lr: Adam's peak learning rate after ``warmup`` linear warm-up steps (the last fifth
            decays linearly to 0).
        l0_coeff, bandwidth: JumpReLU's L0 penalty and its straight-through kernel width (in
            units of the normalised inputs).
        resample_every: steps between dead-latent checks; ``dead_after``: samples without a
            firing after which a latent counts as dead (default ``20 * batch_size``).
        chunk: steps per jitted chunk (between progress updates and ``callback`` calls; a
            ``callback`` returning ``False`` stops training, the SAE so far is returned).
        devices: mesh devices for data parallelism (default every device JAX sees).
    """
    from jaxvis.concepts.acts import ActivationDataset

    if isinstance(acts, ActivationDataset):
        layer = layer if layer is not None else acts.layer
        acts = acts.samples
    if kind not in SAE_METHODS:
        raise ValueError(f"kind must be one of {SAE_METHODS}, got {kind!r}")
    x = _check_matrix(acts)
    n, c = x.shape
    m = check_positive_int(n_latents, "n_latents")
    k = check_positive_int(k, "k")
    if k > m:
        raise ValueError(f"k must be at most n_latents ({m}), got {k}")
    steps = check_positive_int(steps, "steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    chunk = min(check_positive_int(chunk, "chunk"), steps)
    resample_every = check_positive_int(resample_every, "resample_every")
    warmup = max(0, int(warmup))
    dead_after = (
        20 * batch_size if dead_after is None else check_positive_int(dead_after, "dead_after")
    )
    mesh = _mesh(devices)
    if batch_size % mesh.size:
        raise ValueError(
            f"batch_size must be a multiple of the number of devices ({mesh.size}), "
            f"got {batch_size}"
        )
    mean = x.mean(0)
    scale = float(np.sqrt(np.mean(np.sum((x - mean) ** 2, axis=1)))) or 1.0
    xn = ((x - mean) / scale).astype(np.float32)

    decay_start = max(warmup, int(steps * 0.8))
    schedule = optax.join_schedules(
        [
            optax.linear_schedule(lr * 0.01, lr, max(warmup, 1)),
            optax.constant_schedule(lr),
            optax.linear_schedule(lr, 0.0, max(steps - decay_start, 1)),
        ],
        [max(warmup, 1), decay_start],
    )
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))
    slab_sharding = NamedSharding(mesh, P(None, _AXIS))
    fn = _chunk_fn(kind, k, chunk, opt, slab_sharding)
    rep = NamedSharding(mesh, P())
    key = jax.random.key(seed)
    key, init_key = jax.random.split(key)
    params = _init(init_key, c, m, kind)
    carry = jax.device_put(
        (params, opt.init(params), jnp.zeros((m,), jnp.int32), jnp.float32(0.0), key), rep
    )
    rng = np.random.default_rng(seed)
    history: dict[str, list[float]] = {"mse": [], "l0": [], "r2": []}
    bar = _progress_bar(progress, steps, f"SAE {kind}")
    done = 0
    try:
        while done < steps:
            s = min(chunk, steps - done)
            idx = rng.integers(0, n, size=(chunk, batch_size))
            slab = jax.device_put(xn[idx], slab_sharding)
            hp = {
                "l0_coeff": jnp.float32(l0_coeff),
                "bandwidth": jnp.float32(bandwidth),
                "dead_after": jnp.int32(dead_after),
                "do_resample": jnp.bool_(
                    (done + s) // resample_every > done // resample_every and done + s < decay_start
                ),
            }
            carry, hist = fn(carry, slab, hp)
            hist = [np.asarray(h)[:s] for h in hist]
            for name, h in zip(("mse", "l0", "r2"), hist, strict=True):
                history[name].extend(float(v) for v in h)
            done += s
            if bar is not None:
                bar.update(s)
            if (
                callback is not None
                and callback(
                    {
                        "step": done,
                        "steps": steps,
                        "mse": history["mse"][-1],
                        "l0": history["l0"][-1],
                        "r2": history["r2"][-1],
                    }
                )
                is False
            ):
                break
    finally:
        if bar is not None:
            bar.close()
    params, _, _, thr, _ = carry
    p = {name: np.asarray(v) for name, v in params.items()}
    out = {
        "mean": (p["b_dec"] * scale + mean).astype(np.float32),
        "w_enc": (p["w_enc"] / scale).astype(np.float32),
        "b_enc": p["b_enc"].astype(np.float32),
        "scale": np.float32(scale),
        "k": np.zeros((k,), np.int8),  # its length carries k (a shape, static under jit)
    }
    # pre = (xn - b_dec) W_enc + b_enc with xn = (x - mean) / scale
    #     = (x - (mean + scale b_dec)) (W_enc / scale) + b_enc
    if kind == "batchtopk":
        out["threshold"] = np.float32(thr)
    if kind == "jumprelu":
        out["theta"] = np.exp(p["log_theta"]).astype(np.float32)
    info = {
        "layer": layer,
        "kind": kind,
        "k": k,
        "n_latents": m,
        "steps": done,
        "batch_size": batch_size,
        "n_devices": mesh.size,
        "final_r2": float(np.mean(history["r2"][-20:])),
        "history_r2": history["r2"][:: max(1, len(history["r2"]) // 200)],
    }
    return Concepts(kind, p["w_dec"].astype(np.float32), out, info)


@functools.cache
def _chunk_fn(kind, k, chunk, opt, sharding):
    return _make_chunk(kind, k, opt, sharding)


# ------------------------------------------------------------------ metrics


def sae_metrics(
    concepts: Concepts, acts: Any, *, dense_above: float = 0.1, batch: int = 8192
) -> dict[str, float]:
    """R², L0, dead and dense latents of ``concepts`` (any method) on ``acts (N, C)``.

    ``r2``: explained variance ``1 - ||X - X^||^2 / ||X - mean||^2``; ``l0``: mean number of
    non-zero codes per sample; ``dead``: fraction of latents that never fire on ``acts``;
    ``dense``: fraction that fire on more than ``dense_above`` of the samples.
    """
    from jaxvis.concepts.acts import ActivationDataset

    if isinstance(acts, ActivationDataset):
        acts = acts.samples
    x = _check_matrix(acts)
    err = 0.0
    fires = np.zeros(concepts.n_concepts, np.int64)
    nnz = 0
    for s in range(0, len(x), batch):
        xb = x[s : s + batch]
        z = np.asarray(concepts.encode(xb))
        xhat = np.asarray(concepts.decode(z))
        err += float(np.sum((xb - xhat) ** 2))
        active = z != 0
        fires += active.sum(0)
        nnz += int(active.sum())
    total = float(np.sum((x - x.mean(0)) ** 2))
    n = len(x)
    return {
        "r2": 1.0 - err / max(total, 1e-12),
        "l0": nnz / n,
        "dead": float(np.mean(fires == 0)),
        "dense": float(np.mean(fires > dense_above * n)),
    }


def loss_recovered(
    probe: ProbeLike,
    concepts: Concepts,
    images: Any,
    labels: Any | None = None,
    *,
    layer: str | None = None,
    batch_size: int = 256,
) -> dict[str, float]:
    """How much of the model's loss survives replacing ``layer`` by its reconstruction.

    Cross-entropy against ``labels`` (or KL to the model's own predictions when None), for the
    original model, with the layer replaced by ``decode(encode(.))`` at every position
    (spliced in with :func:`jaxvis.attribution._edit.edited_apply`), and with it replaced by
    its mean (mean ablation). ``recovered = (ablated - spliced) / (ablated - original)``: 1 is
    perfect, 0 is no better than the mean.
    """
    layer = layer or concepts.layer
    if layer is None:
        raise ValueError("layer is unknown: pass layer=, the layer the concepts were fitted on")
    probe.layer(layer)
    x_all = np.asarray(images, np.float32)
    probe.check_input(x_all[:1], "images")
    lay = probe.layout(layer)
    if lay.kind not in ("spatial", "vector"):
        raise ValueError(f"loss_recovered supports spatial and vector layers, not {lay.kind}")

    losses = _loss_fn(probe, concepts, layer, labels is None)
    cparams = concepts.jax_params()
    acts_mean = None
    tot = np.zeros(3)
    for s in range(0, len(x_all), batch_size):
        xb = jnp.asarray(x_all[s : s + batch_size])
        if acts_mean is None:
            a = probe.activations(xb, [layer])[layer]
            acts_mean = jnp.mean(a.reshape(-1, a.shape[-1]), axis=0)
        yb = (
            None
            if labels is None
            else jnp.asarray(np.asarray(labels)[s : s + batch_size], jnp.int32)
        )
        tot += np.array([float(v) for v in losses(probe.params, cparams, xb, yb, acts_mean)])
    orig, rec, abl = tot / len(x_all)
    return {
        "original": orig,
        "spliced": rec,
        "ablated": abl,
        "recovered": (abl - rec) / (abl - orig) if abl != orig else float("nan"),
    }


_LOSS_FNS: PerProbe[Callable] = PerProbe()


def _loss_fn(probe: ProbeLike, concepts: Concepts, layer: str, kl: bool) -> Callable:
    """The jitted ``(params, concept params, x, y, mean act) -> summed losses`` (cached per
    probe, method and layer; the concepts' arrays are arguments, not constants)."""
    from jaxvis.attribution._edit import edited_apply

    key = (
        concepts.method,
        concepts.n_concepts,
        concepts.info.get("encode_iters"),
        layer,
        kl,
    )
    cache = _LOSS_FNS.entries(probe)
    if key in cache:
        return cache[key]

    def losses(params, cparams, x, y, mean_act):
        def splice(a):
            rec = concepts.decode_with(cparams, concepts.encode_with(cparams, a))
            return rec.astype(a.dtype)

        out, _ = probe.apply(params, x, truncate=False)
        logp = jax.nn.log_softmax(out)
        rec, _ = edited_apply(probe, params, x, {layer: splice})
        abl, _ = edited_apply(
            probe, params, x, {layer: lambda a: jnp.broadcast_to(mean_act, a.shape)}
        )

        def ce(o):
            lp = jax.nn.log_softmax(o)
            if kl:
                return jnp.sum(jnp.exp(logp) * (logp - lp), axis=-1)
            return -jnp.take_along_axis(lp, y[:, None], axis=1)[:, 0]

        return jnp.sum(ce(out)), jnp.sum(ce(rec)), jnp.sum(ce(abl))

    cache[key] = jit(losses)
    return cache[key]
