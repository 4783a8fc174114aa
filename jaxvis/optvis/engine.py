"""``render``: optimise images so that an objective is as large as possible.

One call runs one vectorised optimisation: every image of the batch (one per unit, class or
objective) is updated at once. The jitted pieces are cached per *shape and structure*; the
objective's values (channels, classes, positions, weights), every regularizer strength, the
learning rate and the seed are traced, so changing them does not compile again.

Steps run in chunks; between chunks ``callback(progress)`` sees the step, the objective and
(lazily) the current images, and can stop the run by returning ``False``. A chunk is one jitted
``lax.scan`` over its steps, or a Python loop over one jitted step. Inside a loop XLA:CPU used
to run a convolution's input gradient several times slower (see DESIGN.md, "XLA on the CPU");
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

import contextlib
import contextvars
import math
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvis import _plan, _rng
from jaxvis._xla import jit
from jaxvis.fast_conv import fast_convolutions
from jaxvis.optvis import objectives as _obj
from jaxvis.optvis.param import ImageParam, as_param
from jaxvis.optvis.presets import get_preset
from jaxvis.optvis.regularizers import Regularizers, penalty, post_update
from jaxvis.optvis.transforms import Transform, center_crop, standard

__all__ = ["Progress", "RenderResult", "default_optimizer", "render"]


def default_optimizer() -> optax.GradientTransformation:
    """Adam with its learning rate injected as a traced hyperparameter (one shared object)."""
    return _DEFAULT_OPT


_DEFAULT_OPT = optax.inject_hyperparams(optax.adam)(learning_rate=0.05)

#: Trace the model with :func:`jaxvis.fast_conv.fast_convolutions` (read when a step compiles).
FAST_CONV = True
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
    steps: int = 256,
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
) -> RenderResult:
    """Optimise a batch of images to maximise ``objective`` on ``probe``'s model.

    Args:
        probe: a :class:`jaxvis.Probe`.
        objective: an :class:`~jaxvis.optvis.objectives.Objective`, a ``"layer:ch"`` string
            (``"conv3:*"`` for every channel) or a list of them (one image each).
        steps: optimisation steps (> 0).
        seed: random seed (traced: a new seed does not compile again). Image ``i`` starts
            from the same noise in any batch (see :mod:`jaxvis.optvis.param`).
        preset: ``"lucid"`` (default) or ``"yosinski1"``..``"yosinski4"``; explicit
            ``param``/``transforms``/``regularizers``/``lr`` override it.
        param: ``"pixel"``, ``"fourier"`` or an :class:`~jaxvis.optvis.param.ImageParam`.
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

    Example::

        res = render(probe, "conv5:*", steps=128)          # every channel of conv5 at once
        res = render(probe, objectives.logit(3), preset="yosinski3", seed=1)
    """
    spec = _settings(probe, preset, param, transforms, regularizers, lr)
    ip, tf, reg, lr_value = spec
    steps = _positive_int(steps, "steps")
    chunk = _positive_int(chunk, "chunk")
    if snapshot_every is not None:
        chunk = _positive_int(snapshot_every, "snapshot_every")
    if loop not in ("python", "scan", "auto"):
        raise ValueError(f"loop must be 'python', 'scan' or 'auto', got {loop!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    obj = _obj.as_objective(objective).bind(probe)
    n_images = _batch_size(obj, n)
    if loop == "auto":
        cost = _plan.estimate(probe, tuple(probe.input_shape))
        loop = "python" if cost.flops * n_images >= _plan.PYTHON_MIN_FLOPS else "scan"
    if reg.uses_pixels and not ip.on_pixels:
        raise ValueError(
            "Yosinski's post-update regularizers (decay, blur, norm and contribution clipping) "
            "act on pixels: use param='pixel' or switch them off"
        )
    opt = optimizer if optimizer is not None else _DEFAULT_OPT
    fns, fresh = _compiled(probe, obj, ip, tf, ip.on_pixels, n_images, opt)

    hp = {"obj": obj, "reg": reg.values()}
    seed_arr = jnp.asarray(seed, jnp.uint32)
    model_params = probe.params
    p = jnp.asarray(ip.init(int(seed), n_images, tuple(probe.input_shape)))
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
            snaps.append(np.asarray(fns.images(p)))
            snap_steps.append(done)
        if callback is not None:
            hist = np.concatenate([np.asarray(h) for h in history])
            history = [hist]
            current = p
            progress = Progress(done, steps, hist, lambda q=current: np.asarray(fns.images(q)))
            if callback(progress) is False:
                stopped = done < steps
                break

    if finish_compiled is not None:
        finish_compiled.join()
    images, values = (np.asarray(a) for a in fns.finish(p, hp, model_params))
    hist = np.concatenate([np.asarray(h) for h in history]) if history else np.zeros((0, n_images))
    lo, hi = probe.input_low, probe.input_high
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
    )


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
        with fast_convolutions(_IN_SCAN.get()) if FAST_CONV else contextlib.nullcontext():
            return probe.apply(model_params, x, wanted, truncate=not needs_output)

    def init(p: jax.Array, lr: jax.Array) -> Any:
        return _set_lr(opt.init(p), lr)

    def step(
        p: Any, s: Any, i: jax.Array, seed: jax.Array, hp: dict[str, Any], model_params: Any
    ) -> tuple[Any, Any, jax.Array]:
        key = jax.random.fold_in(jax.random.key(seed), i)

        def loss(q: Any) -> tuple[jax.Array, jax.Array]:
            img = ip.to_image(q, shape)
            pen = penalty(img, hp["reg"])
            t = tf(key, img) if tf is not None else img
            if t.shape[1] >= shape[0] and t.shape[2] >= shape[1]:
                t = center_crop(t, shape[:2])
            if t.shape[1:3] != shape[:2]:
                t = jax.image.resize(t, (t.shape[0], *shape), "linear")
            out, acts = forward(model_params, t)
            value = hp["obj"](acts, out)
            return -jnp.sum(value - pen), value

        grad, value = jax.grad(loss, has_aux=True)(p)
        updates, s = opt.update(grad, s, p)
        p = optax.apply_updates(p, updates)
        if pixel_ops:
            p = post_update(p, -grad, i + 1, hp["reg"])
        if clip_params:
            p = jnp.clip(p, -0.5, 0.5)
        return p, s, value

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
        images = ip.to_image(p, shape)
        out, acts = forward(model_params, images)
        return images, hp["obj"](acts, out)

    return _Compiled(
        init=jit(init),
        step=_rng.fast_draws(jit(step)),
        scan=_rng.fast_draws(jit(scan, static_argnums=6)),
        images=jit(lambda p: ip.to_image(p, shape)),
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
) -> tuple[ImageParam, Transform | None, Regularizers, float]:
    if not hasattr(probe, "apply") or not hasattr(probe, "layers"):
        raise TypeError(f"probe must be a jaxvis.Probe, got {type(probe).__name__}")
    if probe.input_shape is None:
        raise ValueError(
            "probe.input_shape is unknown: create the probe with input_shape=(H, W, C)"
        )
    pre = get_preset(preset or "lucid")
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
    return ip, tf, reg, float(lr_value)


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
