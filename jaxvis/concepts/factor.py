"""Factorisations of an activation matrix ``X (N, C) ~ codes (N, K) @ directions (K, C)``.

* ``"nmf"``: non-negative codes and directions (HALS, Cichocki & Phan 2009: exact block
  coordinate descent on ``0.5 ||X - WH||^2``, NNDSVDa start as in scikit-learn), for
  non-negative layers (ReLU; shift an ELU/GELU layer by its minimum, or use Semi-NMF);
* ``"seminmf"``: non-negative codes, signed directions (Ding, Li & Jordan 2010), for signed
  layers (tanh, ELU, GELU, ViT tokens);
* ``"pca"``: principal directions of the centred data, a baseline;
* ``"ica"``: independent components (symmetric FastICA with the log-cosh contrast on the
  ``K`` leading whitened principal components, as scikit-learn's ``FastICA``);
* ``"topk"``, ``"batchtopk"``, ``"jumprelu"``: sparse autoencoders (:mod:`jaxvis.concepts.sae`).

Every fit and every ``encode``/``decode`` is one jitted program per shape. Directions are
returned with unit norm (the scale moves into the codes), so ``directions[k]`` plugs straight
into :func:`jaxvis.optvis.objectives.direction`.

Example::

    c = fit(ds.samples, 8, method="nmf")
    c.directions.shape, c.encode(ds.samples).shape      # (8, 64) (N, 8)
    c.reconstruction_error(ds.samples)                  # ||X - X^||^2 / ||X||^2
    c.save("/tmp/act5_nmf.npz"); Concepts.load("/tmp/act5_nmf.npz")
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis._checks import check_choice, check_positive_int
from jaxvis._files import atomic_savez
from jaxvis._xla import jit

__all__ = ["FACTOR_METHODS", "METHODS", "Concepts", "fit"]

FACTOR_METHODS = ("nmf", "seminmf", "pca", "ica")
SAE_METHODS = ("topk", "batchtopk", "jumprelu")
METHODS = FACTOR_METHODS + SAE_METHODS
_EPS = 1e-10
_FORMAT = "jaxvis.concepts/1"


@dataclass(frozen=True, eq=False)
class Concepts:
    """A fitted dictionary of ``K`` concepts over ``C`` channels.

    Attributes:
        method: one of :data:`METHODS`.
        directions: ``(K, C)`` float32, unit-norm rows: concept ``k``'s direction in the
            layer's channel space (the decoder rows of an SAE).
        params: the arrays ``encode``/``decode`` need (method-specific).
        info: fit details (iterations, objective, training curve, layer name...), JSON-able.
    """

    method: str
    directions: np.ndarray
    params: dict[str, np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_concepts(self) -> int:
        return int(self.directions.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.directions.shape[1])

    @property
    def layer(self) -> str | None:
        return self.info.get("layer")

    # -------------------------------------------------------------- encode / decode

    def encode(self, acts: Any) -> jax.Array:
        """Codes ``(..., K)`` of activations ``(..., C)`` (jitted; usable inside jit/grad)."""
        x = self._check_acts(acts)
        flat = x.reshape(-1, self.n_channels)
        codes = _encoder(self.method, self.info.get("encode_iters", 200))(self._jparams(), flat)
        return codes.reshape(*x.shape[:-1], self.n_concepts)

    def encode_with(self, params: dict[str, jax.Array], acts: jax.Array) -> jax.Array:
        """``encode`` with the arrays passed in (``params`` as :meth:`jax_params` gives them),
        so a jitted caller takes them as arguments instead of baking them in as constants."""
        flat = acts.reshape(-1, self.n_channels).astype(jnp.float32)
        codes = _encoder(self.method, self.info.get("encode_iters", 200))(params, flat)
        return codes.reshape(*acts.shape[:-1], self.n_concepts)

    def decode_with(self, params: dict[str, jax.Array], codes: jax.Array) -> jax.Array:
        out = codes @ params["directions"]
        return out + params["mean"] if "mean" in params else out

    def jax_params(self) -> dict[str, jax.Array]:
        """The arrays of :meth:`encode_with`/:meth:`decode_with` (``directions`` included)."""
        return dict(self._jparams())

    def decode(self, codes: Any) -> jax.Array:
        """Activations ``(..., C)`` rebuilt from codes ``(..., K)``."""
        z = jnp.asarray(codes, jnp.float32)
        if z.ndim < 1 or z.shape[-1] != self.n_concepts:
            raise ValueError(
                f"codes must have {self.n_concepts} concepts on the last axis, got shape "
                f"{tuple(z.shape)}"
            )
        p = self._jparams()
        out = z @ p["directions"]
        if "mean" in p:
            out = out + p["mean"]
        return out

    def reconstruct(self, acts: Any) -> jax.Array:
        return self.decode(self.encode(acts))

    def reconstruction_error(self, acts: Any) -> float:
        """Relative squared error ``||X - decode(encode(X))||^2 / ||X||^2``."""
        x = self._check_acts(acts).reshape(-1, self.n_channels)
        err = jnp.sum((x - self.reconstruct(x)) ** 2)
        return float(err / jnp.maximum(jnp.sum(x**2), _EPS))

    def r2(self, acts: Any) -> float:
        """Explained variance: ``1 - ||X - X^||^2 / ||X - mean(X)||^2``."""
        x = self._check_acts(acts).reshape(-1, self.n_channels)
        err = jnp.sum((x - self.reconstruct(x)) ** 2)
        return float(1.0 - err / jnp.maximum(jnp.sum((x - x.mean(0)) ** 2), _EPS))

    def _jparams(self) -> dict[str, jax.Array]:
        cached = self.__dict__.get("_jax_params")
        if cached is None:
            with jax.ensure_compile_time_eval():  # concrete even when first called under jit
                cached = {k: jnp.asarray(v) for k, v in self.params.items()}
                cached["directions"] = jnp.asarray(self.directions)
            object.__setattr__(self, "_jax_params", cached)
        return cached

    def _check_acts(self, acts: Any, name: str = "acts") -> jax.Array:
        if not hasattr(acts, "shape"):
            acts = np.asarray(acts)
        if acts.ndim < 1 or acts.shape[-1] != self.n_channels:
            raise ValueError(
                f"{name} must have {self.n_channels} channels on the last axis (the layer the "
                f"concepts were fitted on), got shape {tuple(acts.shape)}"
            )
        return jnp.asarray(acts, jnp.float32)

    # -------------------------------------------------------------- files

    def save(self, path: str | os.PathLike[str]) -> Any:
        """Write to a ``.npz`` (atomically; loads with ``allow_pickle=False``)."""
        arrays = {f"param_{k}": np.asarray(v) for k, v in self.params.items()}
        arrays["directions"] = np.asarray(self.directions, np.float32)
        meta = {"format": _FORMAT, "method": self.method, "info": self.info}
        arrays["meta"] = np.asarray(json.dumps(meta, default=_json_default))
        return atomic_savez(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Concepts:
        """Read what :meth:`save` wrote (no pickle)."""
        with np.load(os.fspath(path), allow_pickle=False) as f:
            if "meta" not in f or "directions" not in f:
                raise ValueError(f"{path} is not a jaxvis concepts file (no meta/directions)")
            meta = json.loads(str(f["meta"]))
            if meta.get("format") != _FORMAT:
                raise ValueError(f"{path}: unknown concepts format {meta.get('format')!r}")
            params = {k[6:]: f[k] for k in f.files if k.startswith("param_")}
            return cls(meta["method"], f["directions"], params, meta.get("info", {}))

    def _repr_png_(self) -> bytes:
        """The ``(K, C)`` directions as a red/white/blue table (a row per concept); concept
        images: ``jv.concepts.top_k``, ``patches``, ``feature_vis``."""
        from jaxvis.render import preview

        return preview.png(preview.matrix(self.directions, signed=True))

    def __repr__(self) -> str:
        layer = f", layer {self.layer!r}" if self.layer else ""
        return f"Concepts({self.method}, {self.n_concepts} x {self.n_channels}{layer})"


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON-serialisable")


# ------------------------------------------------------------------ fit


def fit(
    acts: Any,
    n_concepts: int,
    method: str = "nmf",
    *,
    max_iter: int = 500,
    tol: float = 1e-5,
    seed: int = 0,
    layer: str | None = None,
    **sae_options: Any,
) -> Concepts:
    """Fit ``n_concepts`` concepts to activations ``acts`` with ``method``.

    Args:
        acts: ``(N, C)`` samples (an :class:`~jaxvis.concepts.ActivationDataset`, or an array
            ``(..., C)``, flattened to rows). SAEs stream random mini-batches from it.
        n_concepts: ``K``; at most ``C`` for the factorisations, any size for SAEs.
        method: one of :data:`METHODS`.
        max_iter: iterations of NMF/Semi-NMF (stopping earlier once the objective's relative
            change over 10 iterations is below ``tol``).
        seed: seed of random starts (SAE initialisation and sampling).
        layer: the layer's name, kept in ``info`` (taken from an ActivationDataset).
        sae_options: options of :func:`jaxvis.concepts.sae.train_sae` (``k``, ``steps``...).
    """
    from jaxvis.concepts.acts import ActivationDataset

    method = check_choice(method, "method", METHODS)
    n_concepts = check_positive_int(n_concepts, "n_concepts")
    if isinstance(acts, ActivationDataset):
        layer = layer if layer is not None else acts.layer
        acts = acts.samples
    if method in SAE_METHODS:
        from jaxvis.concepts.sae import train_sae

        return train_sae(acts, int(n_concepts), kind=method, seed=seed, layer=layer, **sae_options)
    if sae_options:
        raise TypeError(f"method {method!r} takes no options {sorted(sae_options)}")
    x = _check_matrix(acts)
    n, c = x.shape
    if n_concepts > c:
        raise ValueError(
            f"n_concepts must be at most the number of channels ({c}) for method {method!r}, "
            f"got {n_concepts} (an SAE, e.g. method='topk', can be overcomplete)"
        )
    if n_concepts > n:
        raise ValueError(
            f"n_concepts must be at most the number of samples ({n}), got {n_concepts}"
        )
    if method == "nmf" and float(x.min()) < 0:
        raise ValueError(
            f"acts must be non-negative for method='nmf' (minimum {float(x.min()):.4g}): use "
            "method='seminmf' for signed layers, or shift the data (acts - acts.min())"
        )
    max_iter = check_positive_int(max_iter, "max_iter")
    k = int(n_concepts)
    xj = jnp.asarray(x)
    info: dict[str, Any] = {"layer": layer, "n_samples": n}
    if method == "pca":
        mean, comps, var = _pca(xj, k)
        info["explained_variance"] = np.asarray(var).tolist()
        return Concepts("pca", np.asarray(comps), {"mean": np.asarray(mean)}, info)
    if method == "ica":
        mean, dirs, w_enc, it = _ica_fn(k, max_iter)(xj, jnp.float32(tol), jax.random.key(seed))
        info["n_iter"] = int(it)
        return Concepts(
            "ica", np.asarray(dirs), {"mean": np.asarray(mean), "w_enc": np.asarray(w_enc)}, info
        )
    solver = _nmf_fit if method == "nmf" else _seminmf_fit
    w, h, it, obj = solver(k, max_iter)(xj, jnp.float32(tol))
    w, h = _unit_rows(w, h)
    info.update(n_iter=int(it), objective=float(obj), encode_iters=200)
    concepts = Concepts(method, np.asarray(h), {}, info)
    object.__setattr__(concepts, "train_codes", np.asarray(w))
    return concepts


def _check_matrix(acts: Any, name: str = "acts") -> np.ndarray:
    if not hasattr(acts, "shape") or not hasattr(acts, "dtype"):
        if isinstance(acts, list | tuple):
            acts = np.asarray(acts)
        else:
            raise TypeError(f"{name} must be an (N, C) array, got {type(acts).__name__}")
    if not np.issubdtype(np.dtype(acts.dtype), np.floating) and not np.issubdtype(
        np.dtype(acts.dtype), np.integer
    ):
        raise TypeError(f"{name} must be a float array (N, C), got dtype {acts.dtype}")
    if acts.ndim < 2:
        raise ValueError(f"{name} must be an (N, C) array (rows are samples), got {acts.shape}")
    x = np.asarray(acts, np.float32).reshape(-1, acts.shape[-1])
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty: got shape {tuple(acts.shape)}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return x


def _unit_rows(w: jax.Array, h: jax.Array) -> tuple[jax.Array, jax.Array]:
    norms = jnp.maximum(jnp.linalg.norm(h, axis=1), _EPS)
    return w * norms, h / norms[:, None]


# ------------------------------------------------------------------ NMF (HALS)


def _nndsvda(x: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """Boutsidis & Gallopoulos' NNDSVD start, zeros filled with the data mean (sklearn's)."""
    u, s, vt = jnp.linalg.svd(x, full_matrices=False)
    u, s, vt = u[:, :k], s[:k], vt[:k]
    up, un = jnp.maximum(u, 0), jnp.maximum(-u, 0)
    vp, vn = jnp.maximum(vt, 0), jnp.maximum(-vt, 0)
    nup, nun = jnp.linalg.norm(up, axis=0), jnp.linalg.norm(un, axis=0)
    nvp, nvn = jnp.linalg.norm(vp, axis=1), jnp.linalg.norm(vn, axis=1)
    pos = nup * nvp >= nun * nvn
    uu = jnp.where(pos, up / jnp.maximum(nup, _EPS), un / jnp.maximum(nun, _EPS))
    vv = jnp.where(
        pos[:, None], vp / jnp.maximum(nvp, _EPS)[:, None], vn / jnp.maximum(nvn, _EPS)[:, None]
    )
    sigma = jnp.sqrt(s * jnp.where(pos, nup * nvp, nun * nvn))
    w = uu * sigma
    h = vv * sigma[:, None]
    # the first pair is the (non-negative) leading singular pair itself
    w = w.at[:, 0].set(jnp.sqrt(s[0]) * jnp.abs(u[:, 0]))
    h = h.at[0].set(jnp.sqrt(s[0]) * jnp.abs(vt[0]))
    avg = jnp.mean(x)
    w = jnp.where(w < _EPS, avg, w)
    h = jnp.where(h < _EPS, avg, h)
    return w, h


def _hals_cols(w: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    """One HALS sweep over the columns of ``w`` for ``min ||X - w H||``: ``a = X H^T``,
    ``b = H H^T``."""

    def body(k: int, w: jax.Array) -> jax.Array:
        col = w[:, k] + (a[:, k] - w @ b[:, k]) / jnp.maximum(b[k, k], _EPS)
        return w.at[:, k].set(jnp.maximum(col, 0.0))

    return jax.lax.fori_loop(0, w.shape[1], body, w)


def _objective(x: jax.Array, w: jax.Array, h: jax.Array) -> jax.Array:
    return 0.5 * jnp.sum((x - w @ h) ** 2)


def _iterate(update, x, w, h, max_iter: int, tol: jax.Array):
    """Run ``update`` in blocks of 10 until ``max_iter`` or a relative change below ``tol``."""
    block = 10

    def cond(state):
        _, _, it, prev, obj = state
        return (it < max_iter) & ((it == 0) | (prev - obj > tol * jnp.maximum(prev, _EPS)))

    def body(state):
        w, h, it, _, obj = state
        w, h = jax.lax.fori_loop(0, block, lambda _, wh: update(x, *wh), (w, h))
        return w, h, it + block, obj, _objective(x, w, h)

    obj0 = _objective(x, w, h)
    w, h, it, _, obj = jax.lax.while_loop(cond, body, (w, h, 0, obj0, obj0))
    return w, h, it, obj


def _hals_step(x, w, h):
    w = _hals_cols(w, x @ h.T, h @ h.T)
    ht = _hals_cols(h.T, x.T @ w, w.T @ w)
    return w, ht.T


@functools.cache
def _nmf_fit(k: int, max_iter: int):
    def run(x, tol):
        w, h = _nndsvda(x, k)
        return _iterate(_hals_step, x, w, h, max_iter, tol)

    return jit(run)


# ------------------------------------------------------------------ Semi-NMF


def _seminmf_w(x, w, h):
    """Ding et al.'s multiplicative update of the non-negative factor ``w``."""
    a = x @ h.T
    b = h @ h.T
    pos = lambda m: (jnp.abs(m) + m) / 2  # noqa: E731
    neg = lambda m: (jnp.abs(m) - m) / 2  # noqa: E731
    num = pos(a) + w @ neg(b)
    den = neg(a) + w @ pos(b)
    return w * jnp.sqrt(num / jnp.maximum(den, _EPS))


def _lstsq_h(x, w):
    g = w.T @ w
    g = g + 1e-6 * jnp.trace(g) / g.shape[0] * jnp.eye(g.shape[0])
    return jnp.linalg.solve(g, w.T @ x)


def _seminmf_step(x, w, h):
    h = _lstsq_h(x, w)
    return _seminmf_w(x, w, h), h


def _seminmf_init(x: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """A non-negative start: hard k-means-like assignment to the leading SVD directions (+/-),
    softened with 0.2 as Ding et al. do for their k-means start."""
    _, _, vt = jnp.linalg.svd(x - 0 * x.mean(0), full_matrices=False)
    cand = jnp.concatenate([vt, -vt])[:k] if k > vt.shape[0] else vt[:k]
    proj = x @ cand.T
    w = jnp.maximum(proj, 0.0) + 0.2 * jnp.mean(jnp.abs(proj))
    return w, _lstsq_h(x, w)


@functools.cache
def _seminmf_fit(k: int, max_iter: int):
    def run(x, tol):
        w, h = _seminmf_init(x, k)
        return _iterate(_seminmf_step, x, w, h, max_iter, tol)

    return jit(run)


# ------------------------------------------------------------------ PCA


@functools.cache
def _pca_fn(k: int):
    def run(x):
        mean = x.mean(0)
        _, s, vt = jnp.linalg.svd(x - mean, full_matrices=False)
        # sign convention: the largest-magnitude entry of each direction is positive
        big = jnp.take_along_axis(vt[:k], jnp.argmax(jnp.abs(vt[:k]), 1)[:, None], 1)
        comps = vt[:k] * jnp.sign(big)
        return mean, comps, s[:k] ** 2 / (x.shape[0] - 1)

    return jit(run)


def _pca(x: jax.Array, k: int):
    return _pca_fn(k)(x)


# ------------------------------------------------------------------ ICA


def _sym_decorrelate(w: jax.Array) -> jax.Array:
    s, u = jnp.linalg.eigh(w @ w.T)
    return (u * (1.0 / jnp.sqrt(jnp.maximum(s, 1e-12)))) @ u.T @ w


@functools.cache
def _ica_fn(k: int, max_iter: int):
    def run(x, tol, key):
        mean = x.mean(0)
        xc = x - mean
        _, s, vt = jnp.linalg.svd(xc, full_matrices=False)
        std = s[:k] / jnp.sqrt(x.shape[0])
        white = vt[:k].T / std  # (C, K): whitened = xc @ white has identity covariance
        z = xc @ white
        w0 = _sym_decorrelate(jax.random.normal(key, (k, k), jnp.float32))

        def cond(state):
            _, it, lim = state
            return (it < max_iter) & (lim > tol)

        def body(state):
            w, it, _ = state
            g = jnp.tanh(z @ w.T)  # (N, K)
            w1 = g.T @ z / z.shape[0] - jnp.mean(1 - g**2, axis=0)[:, None] * w
            w1 = _sym_decorrelate(w1)
            lim = jnp.max(jnp.abs(jnp.abs(jnp.sum(w1 * w, axis=1)) - 1))
            return w1, it + 1, lim

        w, it, _ = jax.lax.while_loop(cond, body, (w0, 0, jnp.float32(jnp.inf)))
        enc = white @ w.T  # (C, K): sources = xc @ enc
        mix = w @ (vt[:k] * std[:, None])  # (K, C): xc ~ sources @ mix
        norms = jnp.linalg.norm(mix, axis=1)
        return mean, mix / norms[:, None], enc * norms, it

    return jit(run)


# ------------------------------------------------------------------ encoders


@functools.cache
def _encoder(method: str, iters: int):
    if method == "pca":
        return jax.jit(lambda p, x: (x - p["mean"]) @ p["directions"].T)
    if method == "ica":
        return jax.jit(lambda p, x: (x - p["mean"]) @ p["w_enc"])
    if method in SAE_METHODS:
        from jaxvis.concepts.sae import encode_fn

        return jax.jit(functools.partial(encode_fn, method))

    def nnls(p, x):
        h = p["directions"]
        w0 = jnp.maximum(x @ jnp.linalg.pinv(h), 0.0) + _EPS
        if method == "nmf":
            a, b = x @ h.T, h @ h.T
            return jax.lax.fori_loop(0, iters, lambda _, w: _hals_cols(w, a, b), w0)
        return jax.lax.fori_loop(0, iters, lambda _, w: _seminmf_w(x, w, h), w0 + 1e-3)

    return jax.jit(nnls)
