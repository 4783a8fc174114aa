"""``render``: optimise images so that an objective is as large as possible.

One call runs one vectorised optimisation: every image of the batch (one per unit, class or
objective) is updated at once. The jitted pieces are cached per *shape and structure*; the
objective's values (channels, classes, positions, weights), every regularizer strength, the
learning rate and the seed are traced, so changing them does not compile again.

Steps run in chunks; between chunks ``callback(progress)`` sees the step, the objective and
(lazily) the current images, and can stop the run by returning ``False``. A chunk is one jitted
``lax.scan`` over its steps, or a Python loop over one jitted step. Inside a loop XLA:CPU used
to run a convolution's input gradient several times slower (see docs/design.md, "XLA on the CPU");
inside the scan the model is traced with :mod:`jaxvis.fast_conv`, which avoids that (the
one-step program keeps XLA's convolutions, which are fast there and compile faster; both use
the fast max-pooling gradient). ``loop="auto"`` (the default) picks by the model's cost
(:mod:`jaxvis._plan`): the scan for small models, where the dispatch of a step per call would
dominate (``benchmarks/optvis.py``), the Python loop once a step costs at least
:data:`jaxvis._plan.PYTHON_MIN_FLOPS` (a ResNet at 224x224), where it is what a user would
write and compiles one program less.

Example::

    import jaxvis as jv
    probe = jv.zoo.load("mnist_cnn").probe
    res = jv.optvis.render(probe, jv.optvis.objectives.logit(range(10)), steps=128)
    res.images.shape      # (10, 28, 28, 1), in [0, 1]
    res.history.shape     # (128, 10)
"""

from __future__ import annotations

import contextvars
import math
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvis import _plan, _rng
from jaxvis._xla import jit
from jaxvis.fast_conv import fast_convolutions
from jaxvis.optvis import defaults as _defaults
from jaxvis.optvis import objectives as _obj
from jaxvis.optvis._redirect import redirected
from jaxvis.optvis.param import ImageParam, as_param, magnitude_from
from jaxvis.optvis.presets import get_preset
from jaxvis.optvis.regularizers import Regularizers, penalty, post_update
from jaxvis.optvis.transforms import Transform, center_crop, standard

__all__ = ["Progress", "RenderResult", "accentuate", "render"]


#: Adam with its learning rate injected as a traced hyperparameter (one shared object).
_DEFAULT_OPT = optax.inject_hyperparams(optax.adam)(learning_rate=0.05)

#: set while the chunk's ``lax.scan`` is traced: the custom-VJP convolutions are for loops
_IN_SCAN: contextvars.ContextVar[bool] = contextvars.ContextVar("jaxvis_in_scan", default=False)


@dataclass
class RenderResult:
    """What :func:`render` returns.

    Attributes:
        images: ``(N, H, W, C)`` float32 in ``[0, 1]`` (the parameterisation's output).
        history: ``(steps_done, N)`` objective per step (with transforms, before the update).
        values: ``(N,)`` objective of the final images, without transforms.
        snapshots: ``(S, N, H, W, C)`` images every ``snapshot_every`` steps, or None.
        snapshot_steps: the step number of each snapshot.
        objective: the bound objective; ``steps``: steps done; ``stopped``: stopped early.
        inputs: ``images`` mapped to the model's input range (what the model sees).
        transparency: ``(N, H, W)`` the objective's absolute input gradient summed over the
            steps (MaCo's transparency / attribution map: where the image mattered).
        dataset_best: ``(N,)`` with ``render(..., dataset=x)``: each image's objective on its
            best data set image (``dataset_index``: which), to compare with ``values``.
        settings: the settings used, in words (``preset="auto"``: chosen from the model).
    """

    images: np.ndarray
    history: np.ndarray
    values: np.ndarray
    objective: _obj.Objective
    steps: int
    stopped: bool
    inputs: np.ndarray
    snapshots: np.ndarray | None = None
    snapshot_steps: list[int] = field(default_factory=list)
    params: Any = None
    transparency: np.ndarray | None = None
    dataset_best: np.ndarray | None = None
    dataset_index: np.ndarray | None = None
    settings: str = ""

    @property
    def beats_dataset(self) -> np.ndarray | None:
        """``values > dataset_best`` per image (None without a data set)."""
        return None if self.dataset_best is None else self.values > self.dataset_best

    def _repr_png_(self) -> bytes:
        """The images side by side, as a notebook shows the result."""
        from jaxvis.render import preview

        return preview.png(preview.image_strip(self.images))


@dataclass
class Progress:
    """Passed to ``callback`` between chunks. ``images`` is computed on first access."""

    step: int
    steps: int
    history: np.ndarray
    _images: Callable[[], np.ndarray]

    @property
    def values(self) -> np.ndarray:
        """The objective at the last step, ``(N,)``."""
        return self.history[-1]

    @property
    def images(self) -> np.ndarray:
        """Current images ``(N, H, W, C)`` in ``[0, 1]``."""
        return self._images()


class _Compiled(NamedTuple):
    init: Callable
    step: Callable
    scan: Callable
    images: Callable
    finish: Callable


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def render(
    probe: Any,
    objective: Any,
    *,
    steps: int | None = None,
    seed: int = 0,
    preset: str | None = None,
    param: ImageParam | str | None = None,
    transforms: Transform | str | None = "default",
    regularizers: Regularizers | None = None,
    optimizer: optax.GradientTransformation | None = None,
    lr: float | None = None,
    n: int | None = None,
    chunk: int = 32,
    snapshot_every: int | None = None,
    callback: Callable[[Progress], Any] | None = None,
    loop: str = "auto",
    dataset: Any = None,
    init: Any = None,
    shared: bool = False,
    magnitude: Any = None,
    redirect_relu: int | None = None,
) -> RenderResult:
    """Optimise a batch of images to maximise ``objective`` on ``probe``'s model.

    Args:
        probe: a :class:`jaxvis.Probe`.
        objective: an :class:`~jaxvis.optvis.objectives.Objective`, a ``"layer:ch"`` string
            (``"conv3:*"`` for every channel) or a list of them (one image each).
        steps: optimisation steps (> 0); default from the model
            (:func:`jaxvis.optvis.defaults.auto_steps`: 256 below 64 pixels, else 512).
        seed: random seed (traced: a new seed does not compile again). Image ``i`` starts
            from the same noise in any batch (see :mod:`jaxvis.optvis.param`).
        preset: ``"auto"`` (the default: chosen from the model's input size and channels, see
            :mod:`jaxvis.optvis.defaults`), ``"lucid"`` or ``"yosinski1"``..``"yosinski4"``;
            explicit ``param``/``transforms``/``regularizers``/``lr`` override it.
        param: ``"pixel"``, ``"fourier"``, ``"maco"`` or an
            :class:`~jaxvis.optvis.param.ImageParam`.
        transforms: a transform, ``"standard"`` (Lucid's, sized to the image), None for none;
            ``"default"`` takes the preset's.
        regularizers: strengths of penalties and post-update operations.
        optimizer: any optax ``GradientTransformation`` (keep the same object between calls to
            reuse the compiled step); default Adam with an injected learning rate.
        lr: learning rate, set in an ``optax.inject_hyperparams`` state (traced).
        n: images per objective when the objective is not batched (default 1).
        chunk: steps between callbacks.
        snapshot_every: keep the images every this many steps (an animation).
        callback: called with a :class:`Progress` after every chunk; returning ``False``
            stops the run (the images so far are kept).
        loop: ``"scan"`` (a jitted chunk), ``"python"`` (a jitted step per step) or
            ``"auto"`` (the default: by the model's cost, see the module docstring).
        dataset: images ``(M, H, W, C)`` in the model's input range: the result's
            ``dataset_best`` is each objective's best value over them (per-image objectives
            only), and MaCo's magnitude is estimated from them unless ``magnitude`` is given.
        init: start images ``(N, H, W, C)`` in the model's input range instead of noise
            (feature accentuation, see :func:`jaxvis.optvis.accentuate`).
        shared: add a parameter set common to every image (smooth interpolation frames).
        magnitude: MaCo's fixed magnitude ``(C, H, W // 2 + 1)`` (``param="maco"`` only).
        redirect_relu: steps at the start with Lucid's redirected ReLU gradient (traced; the
            default, :data:`jaxvis.optvis.defaults.REDIRECT_STEPS`, where the model has ReLUs).

    Example::

        res = render(probe, "conv5:*", steps=128)          # every channel of conv5 at once
        res = render(probe, objectives.logit(3), preset="yosinski3", seed=1)
        res = render(probe, "conv3:2", dataset=zoo.x_test)  # res.values vs res.dataset_best
    """
    spec = _settings(probe, preset, param, transforms, regularizers, lr)
    ip, tf, reg, lr_value, described = spec
    steps = _defaults.auto_steps(probe) if steps is None else _positive_int(steps, "steps")
    chunk = _positive_int(chunk, "chunk")
    if snapshot_every is not None:
        chunk = _positive_int(snapshot_every, "snapshot_every")
    if loop not in ("python", "scan", "auto"):
        raise ValueError(f"loop must be 'python', 'scan' or 'auto', got {loop!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    if not isinstance(shared, bool):
        raise TypeError(f"shared must be True or False, got {shared!r}")
    redirect = _defaults.REDIRECT_STEPS if redirect_relu is None else redirect_relu
    if isinstance(redirect, bool) or not isinstance(redirect, (int, np.integer)) or redirect < 0:
        raise ValueError(f"redirect_relu must be an integer >= 0 (steps), got {redirect_relu!r}")
    if shared:
        ip = replace(ip, shared=True)
    obj = _obj.as_objective(objective).bind(probe)
    n_images = _batch_size(obj, n)
    data = None if dataset is None else _images(probe, dataset, "dataset")
    if data is not None and not obj.per_image:
        raise ValueError(
            "dataset= compares per-image objectives; this one scores the batch as a whole "
            f"({obj.description}): compare its per-image terms instead"
        )
    start = None if init is None else _images(probe, init, "init")
    if start is not None and start.shape[0] != n_images:
        raise ValueError(f"init has {start.shape[0]} images but the objective has {n_images}")
    if magnitude is None and data is not None and ip.kind == "maco":
        magnitude = magnitude_from(_unit(probe, data))
    const = ip.constants(tuple(probe.input_shape), magnitude)
    if loop == "auto":
        cost = _plan.estimate(probe, tuple(probe.input_shape))
        loop = "python" if cost.flops * n_images >= _plan.PYTHON_MIN_FLOPS else "scan"
    if reg.uses_pixels and not ip.on_pixels:
        raise ValueError(
            "Yosinski's post-update regularizers (decay, blur, norm and contribution clipping) "
            "act on pixels: use param='pixel' or switch them off"
        )
    if reg.uses_pixels and ip.shared:
        raise ValueError("Yosinski's post-update regularizers cannot act on shared parameters")
    opt = optimizer if optimizer is not None else _DEFAULT_OPT
    fns, fresh = _compiled(probe, obj, ip, tf, ip.on_pixels, n_images, opt)

    hp = {"obj": obj, "reg": reg.values(), "param": const, "redirect": jnp.int32(redirect)}
    seed_arr = jnp.asarray(seed, jnp.uint32)
    model_params = probe.params
    if start is None:
        p = jnp.asarray(ip.init(int(seed), n_images, tuple(probe.input_shape)))
    else:
        p = jnp.asarray(ip.from_image(_unit(probe, start)))
    s = fns.init(p, jnp.asarray(lr_value, jnp.float32))
    # a new setting: compile the last program on another thread while the loop compiles
    finish_compiled = _compile_in_background(fns.finish, p, hp, model_params) if fresh else None

    history: list[Any] = []
    snaps: list[np.ndarray] = []
    snap_steps: list[int] = []
    done, stopped = 0, False
    while done < steps:
        length = min(chunk, steps - done)
        # A short last chunk runs step by step: scanning it would compile another length.
        if loop == "scan" and length == chunk:
            p, s, h = fns.scan(
                p, s, jnp.asarray(done, jnp.int32), seed_arr, hp, model_params, length
            )
            history.append(h)
        else:
            for i in range(done, done + length):
                p, s, v = fns.step(p, s, jnp.asarray(i, jnp.int32), seed_arr, hp, model_params)
                history.append(v[None])
        done += length
        if snapshot_every is not None:
            snaps.append(np.asarray(fns.images(p, hp)))
            snap_steps.append(done)
        if callback is not None:
            hist = np.concatenate([np.asarray(h) for h in history])
            history = [hist]
            current = p
            progress = Progress(done, steps, hist, lambda q=current: np.asarray(fns.images(q, hp)))
            if callback(progress) is False:
                stopped = done < steps
                break

    if finish_compiled is not None:
        finish_compiled.join()
    images, values = (np.asarray(a) for a in fns.finish(p, hp, model_params))
    hist = np.concatenate([np.asarray(h) for h in history]) if history else np.zeros((0, n_images))
    lo, hi = probe.input_low, probe.input_high
    best = where = None
    if data is not None:
        best, where = _dataset_best(probe, obj, data)
    return RenderResult(
        images=images,
        history=hist,
        values=values,
        objective=obj,
        steps=done,
        stopped=stopped,
        inputs=(lo + (hi - lo) * images).astype(np.float32),
        snapshots=np.stack(snaps) if snaps else None,
        snapshot_steps=snap_steps,
        params=p,
        transparency=np.asarray(s[1]),
        dataset_best=best,
        dataset_index=where,
        settings=described,
    )


def accentuate(
    probe: Any,
    images: Any,
    objective: Any,
    *,
    layer: str | None = None,
    strength: float = 1.0,
    **kwargs: Any,
) -> RenderResult:
    """Feature accentuation (Hamblin et al. 2024): start from real ``images`` (model input
    range) and raise ``objective`` while staying close to each image's activations at
    ``layer`` (default: the objective's own layer): ``objective + strength *
    feature_distance(layer, acts(images))``, rendered with ``init=images``.

    Example::

        res = accentuate(probe, zoo.x_test[:4], obj.channel("conv5", [2] * 4), strength=2.0)
    """
    x = _images(probe, images, "images")
    obj = _obj.as_objective(objective)
    if layer is None:
        own = sorted(obj.layers - {_obj.OUTPUT})
        if len(own) != 1:
            raise ValueError(
                f"layer is needed: the objective reads {len(own)} layers ({own}); name the "
                "layer whose activations the images should stay close to"
            )
        layer = own[0]
    w = float(strength)
    if not math.isfinite(w) or w < 0:
        raise ValueError(f"strength must be a finite number >= 0, got {strength!r}")
    ref = np.asarray(probe.activations(x, [layer])[layer])
    if obj.batch is None and len(x) > 1:
        obj = _obj.stack([obj] * len(x))
    total = obj + w * _obj.feature_distance(layer, ref)
    return render(probe, total, init=x, **kwargs)


# ---------------------------------------------------------------- data set comparison


def _dataset_best(probe: Any, obj: _obj.Objective, data: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each image's objective on every data set image: the best value and its index."""
    fn = _dataset_scores(probe, obj)
    best = np.full(_batch_size(obj, None), -np.inf, np.float32)
    where = np.zeros(best.shape, np.int64)
    for i in range(0, len(data), _DATA_BATCH):
        scores = np.asarray(fn(obj, probe.params, jnp.asarray(data[i : i + _DATA_BATCH])))
        top = scores.argmax(axis=1)
        val = scores[np.arange(len(best)), top]
        better = val > best
        best[better], where[better] = val[better], top[better] + i
    return best, where


_DATA_BATCH = 256


def _dataset_scores(probe: Any, obj: _obj.Objective) -> Callable:
    """Jitted ``(obj, params, x) -> (n_objective_images, len(x))``, cached per structure."""
    per_probe = _CACHE.setdefault(probe, {})
    key = ("dataset", jax.tree_util.tree_structure(obj))
    if key in per_probe:
        return per_probe[key]
    layers = obj.layers
    needs_output = _obj.OUTPUT in layers
    wanted = frozenset(layers - {_obj.OUTPUT})
    axes = _batch_axes(obj)
    size = _batch_size(obj, None)

    def scores(o: _obj.Objective, params: Any, x: jax.Array) -> jax.Array:
        out, acts = probe.apply(params, x, wanted, truncate=not needs_output)
        # one objective image at a time over the whole data batch; the activations do not
        # depend on the mapped values, so vmap computes them once
        return jax.vmap(lambda one: one(acts, out), in_axes=(axes,), axis_size=size)(_unbatch(o))

    per_probe[key] = jit(scores)
    return per_probe[key]


def _unbatch(obj: _obj.Objective) -> _obj.Objective:
    kids = tuple(_unbatch(c) for c in obj.children)
    return _obj.Objective(obj.kind, obj.layer, obj.values, None, kids, obj.all_channels, obj.view)


def _batch_axes(obj: _obj.Objective) -> _obj.Objective:
    """A pytree like ``obj`` with 0 on per-image values and None on shared ones."""
    kind = _obj.KINDS[obj.kind]
    mapped = obj.batch is not None and (kind.batched_values or not obj.children)
    values = {k: (0 if mapped else None) for k in obj.values}
    kids = tuple(_batch_axes(c) for c in obj.children)
    return _obj.Objective(obj.kind, obj.layer, values, None, kids, obj.all_channels, obj.view)


# ---------------------------------------------------------------- compiled pieces


def _compiled(
    probe: Any,
    obj: _obj.Objective,
    ip: ImageParam,
    tf: Transform | None,
    pixel_ops: bool,
    n: int,
    opt: optax.GradientTransformation,
) -> tuple[_Compiled, bool]:
    """The jitted pieces for this setting, and whether they were just built (not compiled)."""
    per_probe = _CACHE.setdefault(probe, {})
    key = (jax.tree_util.tree_structure(obj), ip, tf, pixel_ops, n, opt, probe.input_shape)
    fresh = key not in per_probe
    if fresh:
        per_probe[key] = _build(probe, obj, ip, tf, pixel_ops, n, opt)
    return per_probe[key], fresh


def _compile_in_background(fn: Callable, *args: Any) -> threading.Thread:
    """Trace ``fn`` for ``args`` here and compile it (or load it from jaxvis's store) on a daemon
    thread (XLA compiles without the GIL); a later ``fn(*args)`` reuses the result once the
    thread is joined. On 2 cores this hides the ~0.2 s compile of ``finish`` behind the loop's
    compile."""
    thread = threading.Thread(target=fn.prepare(*args), name="jaxvis-compile", daemon=True)
    thread.start()
    return thread


def _build(
    probe: Any,
    obj: _obj.Objective,
    ip: ImageParam,
    tf: Transform | None,
    pixel_ops: bool,
    n: int,
    opt: optax.GradientTransformation,
) -> _Compiled:
    shape = tuple(probe.input_shape)
    lo, hi = probe.input_low, probe.input_high  # (C,) or (1,): per channel where normalised
    layers = obj.layers
    needs_output = _obj.OUTPUT in layers
    wanted = frozenset(layers - {_obj.OUTPUT})
    clip_params = ip.on_pixels and ip.squash == "clip"

    def forward(model_params: Any, images: jax.Array) -> tuple[Any, dict[str, jax.Array]]:
        x = lo + (hi - lo) * images
        # a CPU-friendly max-pooling gradient, and in the scan convolutions' (same values)
        with fast_convolutions(_IN_SCAN.get()):
            return probe.apply(model_params, x, wanted, truncate=not needs_output)

    def init(p: jax.Array, lr: jax.Array) -> Any:
        # optimiser state, and the transparency map (the summed absolute input gradient)
        return _set_lr(opt.init(p), lr), jnp.zeros((n, *shape[:2]), jnp.float32)

    def step(
        p: Any, s: Any, i: jax.Array, seed: jax.Array, hp: dict[str, Any], model_params: Any
    ) -> tuple[Any, Any, jax.Array]:
        key = jax.random.fold_in(jax.random.key(seed), i)
        opt_state, attr = s

        def score(img: jax.Array) -> tuple[jax.Array, jax.Array]:
            pen = penalty(img, hp["reg"])
            t = tf(key, img) if tf is not None else img
            if t.shape[1] >= shape[0] and t.shape[2] >= shape[1]:
                t = center_crop(t, shape[:2])
            if t.shape[1:3] != shape[:2]:
                t = jax.image.resize(t, (t.shape[0], *shape), "linear")
            fwd = redirected(forward, (model_params, t))
            if fwd is None:
                out, acts = forward(model_params, t)
            else:
                out, acts = fwd((i < hp["redirect"]).astype(jnp.float32), model_params, t)
            value = hp["obj"](acts, out)
            return -jnp.sum(value - pen), value

        img, pull = jax.vjp(lambda q: ip.to_image(q, shape, hp["param"]), p)
        g_img, value = jax.grad(score, has_aux=True)(img)
        (grad,) = pull(g_img)
        updates, opt_state = opt.update(grad, opt_state, p)
        p = optax.apply_updates(p, updates)
        if pixel_ops:
            p = post_update(p, -grad, i + 1, hp["reg"])
        if clip_params:
            p = jnp.clip(p, -0.5, 0.5)
        return p, (opt_state, attr + jnp.abs(g_img).sum(axis=-1)), value

    def scan(
        p: Any,
        s: Any,
        i0: jax.Array,
        seed: jax.Array,
        hp: dict[str, Any],
        model_params: Any,
        length: int,
    ) -> tuple[Any, Any, jax.Array]:
        def body(carry: tuple[Any, Any], i: jax.Array) -> tuple[tuple[Any, Any], jax.Array]:
            q, t = carry
            q, t, v = step(q, t, i, seed, hp, model_params)
            return (q, t), v

        token = _IN_SCAN.set(True)
        try:
            ids = i0 + jnp.arange(length, dtype=jnp.int32)
            (p, s), hist = jax.lax.scan(body, (p, s), ids)
        finally:
            _IN_SCAN.reset(token)
        return p, s, hist

    def finish(p: Any, hp: dict[str, Any], model_params: Any) -> tuple[jax.Array, jax.Array]:
        images = ip.to_image(p, shape, hp["param"])
        out, acts = forward(model_params, images)
        return images, hp["obj"](acts, out)

    return _Compiled(
        init=jit(init),
        step=_rng.fast_draws(jit(step)),
        scan=_rng.fast_draws(jit(scan, static_argnums=6)),
        images=jit(lambda p, hp: ip.to_image(p, shape, hp["param"])),
        finish=jit(finish),
    )


def _set_lr(state: Any, lr: jax.Array) -> Any:
    """Put ``lr`` into an ``optax.inject_hyperparams`` state (unchanged otherwise)."""
    hyper = getattr(state, "hyperparams", None)
    if isinstance(hyper, dict) and "learning_rate" in hyper:
        old = hyper["learning_rate"]
        return state._replace(hyperparams={**hyper, "learning_rate": lr.astype(old.dtype)})
    return state


# ---------------------------------------------------------------- argument checks


def _settings(
    probe: Any,
    preset: str | None,
    param: Any,
    transforms: Any,
    regularizers: Regularizers | None,
    lr: float | None,
) -> tuple[ImageParam, Transform | None, Regularizers, float, str]:
    if not hasattr(probe, "apply") or not hasattr(probe, "layers"):
        raise TypeError(f"probe must be a jaxvis.Probe, got {type(probe).__name__}")
    if probe.input_shape is None:
        raise ValueError(
            "probe.input_shape is unknown: create the probe with input_shape=(H, W, C)"
        )
    name = "auto" if preset is None else preset
    pre = _defaults.auto(probe) if name == "auto" else get_preset(name)
    ip = as_param(param) if param is not None else pre.param
    tf = pre.transforms if (isinstance(transforms, str) and transforms == "default") else transforms
    if isinstance(tf, str):
        if tf != "standard":
            raise ValueError(f"transforms must be a Transform, 'standard' or None, got {tf!r}")
        tf = standard(probe.input_shape[:2])
    if tf is not None and not isinstance(tf, Transform):
        raise TypeError(f"transforms must be a jaxvis.optvis.transforms object, got {tf!r}")
    reg = regularizers if regularizers is not None else pre.regularizers
    if not isinstance(reg, Regularizers):
        raise TypeError(f"regularizers must be a Regularizers, got {type(reg).__name__}")
    lr_value = pre.lr if lr is None else lr
    if not isinstance(lr_value, (int, float)) or not math.isfinite(lr_value) or lr_value <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    described = pre.description
    if param is not None or not (isinstance(transforms, str) and transforms == "default"):
        described += f" (overridden: param {ip.description}, transforms {tf!r})"
    return ip, tf, reg, float(lr_value), described


def _images(probe: Any, x: Any, name: str) -> np.ndarray:
    """``x`` checked as a batch of the probe's input images, as float32 numpy."""
    return np.asarray(probe.check_input(x, name), np.float32)


def _unit(probe: Any, x: np.ndarray) -> np.ndarray:
    """Images in the model's input range mapped to ``[0, 1]`` (clipped)."""
    lo, hi = np.asarray(probe.input_low), np.asarray(probe.input_high)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return int(value)


def _batch_size(obj: _obj.Objective, n: int | None) -> int:
    if obj.batch is not None:
        if n is not None and n != obj.batch:
            raise ValueError(f"n={n} but the objective has {obj.batch} images")
        return obj.batch
    return 1 if n is None else _positive_int(n, "n")
