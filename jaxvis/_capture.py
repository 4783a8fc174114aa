"""Recording of intermediate layer outputs while a model runs.

Three sources feed one :class:`LayerCapture`:

* ``jv.tap(name, h)`` calls inside any function (plain functions, or models that tap);
* Flax NNX submodules of the probe's private copy of the model (see :func:`nnx_module_outputs`:
  no library class is changed; the copy's modules get recording subclasses of their own);
* Flax Linen submodules, through Linen's official ``nn.intercept_methods``.

When only some layers are wanted, the recorder raises :class:`StopForward` as soon as the last
of them has been produced, so later layers are never traced, let alone computed.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np

from jaxvis._attention import capture_attention, check_attention_tap

_ACTIVE: contextvars.ContextVar[LayerCapture | None] = contextvars.ContextVar(
    "jaxvis_recorder", default=None
)

#: Module attributes reported as a layer's settings in ``Probe.summary()``.
SETTING_NAMES = (
    "in_features",
    "out_features",
    "features",
    "kernel_size",
    "strides",
    "padding",
    "kernel_dilation",
    "window_shape",
    "feature_group_count",
    "use_bias",
    "rate",
    "epsilon",
    "momentum",
    "fn",
    "activation",
)


class StopForward(Exception):
    """Raised inside a forward pass once every wanted layer has been recorded."""


@dataclass
class LayerInfo:
    """What discovery learns about one layer besides its output shape.

    ``path`` is the module's path in the model's graph and ``index`` the block indices of a
    layer inside stacked (``nnx.vmap``-created, ``nnx.scan``-run) modules: layer
    ``blocks.3.attn`` is module ``blocks.attn`` at index ``(3,)``. ``looped``: recorded inside
    a scan or fori loop run as a Python loop.
    """

    kind: str
    settings: dict[str, Any]
    module: Any = None
    path: str | None = None
    index: tuple[int, ...] = ()
    looped: bool = False


@dataclass
class _Entry:
    """A module output produced inside one iteration of a looped scan, named at its end."""

    name: str
    path: str
    value: Any
    module: Any
    top: bool
    index: tuple[int, ...] = ()
    kind: str | None = None  # None: the module's class name


@dataclass
class _Iteration:
    index: int
    depth: int
    entries: list[_Entry] = field(default_factory=list)


@dataclass
class LayerCapture:
    """Collects layer outputs in call order; ``wanted=None`` keeps them all.

    ``loops``: let NNX scans and fori loops run as Python loops, so the layers inside them
    are recorded (:func:`nnx_module_outputs`); without it they stay compiled loops.
    """

    wanted: frozenset[str] | None = None
    truncate: bool = False
    loops: bool = True
    outputs: dict[str, Any] = field(default_factory=dict)
    infos: dict[str, LayerInfo] = field(default_factory=dict)
    _seen: dict[str, int] = field(default_factory=dict)
    #: whether the module at a path, called inside a scan step, is a slice of a stack
    #: (set by :func:`nnx_module_outputs`; a module shared by all steps is not).
    is_slice: Callable[[str, Any], bool] = lambda path, module: True
    _trace: Any = None
    _depth: int = 0
    _looping: int = 0
    _iterations: list[_Iteration] = field(default_factory=list)

    def record(
        self,
        name: str,
        value: Any,
        kind: str = "tap",
        module: Any = None,
        path: str | None = None,
        index: tuple[int, ...] = (),
    ) -> None:
        if not _is_array(value):
            return
        count = self._seen.get(name, 0)
        self._seen[name] = count + 1
        if count:
            name = f"{name}@{count + 1}"
        if self.wanted is None or name in self.wanted:
            self.outputs[name] = value
        looped = self._looping > 0
        self.infos[name] = LayerInfo(kind, _settings_of(module), module, path, index, looped)
        if self.truncate and self.wanted is not None and self.wanted <= self.outputs.keys():
            raise StopForward

    @contextlib.contextmanager
    def active(self) -> Iterator[LayerCapture]:
        token = _ACTIVE.set(self)
        self._trace = _current_trace()
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    def at_home(self) -> bool:
        """Whether JAX traces at the level this recorder started at (not inside a vmap body)."""
        return _current_trace() == self._trace

    def may_loop(self, steps: int) -> bool:
        """Whether a scan or fori loop of ``steps`` steps, traced now, should run as a loop."""
        return self.loops and 0 < steps <= MAX_LOOPED_SCAN and self.at_home()

    @contextlib.contextmanager
    def looping(self) -> Iterator[None]:
        self._looping += 1
        try:
            yield
        finally:
            self._looping -= 1

    def record_module(self, path: str, value: Any, module: Any, kind: str | None = None) -> None:
        """Record a submodule's output, unless it was computed inside another transform's trace.

        Inside a looped scan the output is kept until the iteration ends, when the block
        index is put into its name (:meth:`iteration`).
        """
        if not _is_array(value) or not self.at_home():
            return
        if self._iterations:
            frame = self._iterations[-1]
            top = self._depth == frame.depth
            frame.entries.append(_Entry(path, path, value, module, top, kind=kind))
        else:
            self.record(path, value, kind or type(module).__name__, module, path)

    @contextlib.contextmanager
    def iteration(self, index: int) -> Iterator[None]:
        """One step of a scan run as a Python loop: module paths inside get ``.{index}``.

        The stacked module is the common path of the slices called at the top of the step
        (the block itself in ``block(x)``): ``blocks.attn`` becomes ``blocks.3.attn``. Modules
        every step shares (broadcast or closed over) keep their names (``norm``, ``norm@2``).
        """
        frame = _Iteration(index, self._depth)
        self._iterations.append(frame)
        try:
            yield
        finally:
            self._iterations.pop()
        roots = _scan_roots(
            [e.name for e in frame.entries if e.top and self.is_slice(e.path, e.module)]
        )
        for entry in frame.entries:
            root = next((r for r in roots if _under(entry.name, r)), None)
            if root is not None:
                entry.name = f"{root}.{index}{entry.name[len(root) :]}"
                entry.index = (index, *entry.index)
            if self._iterations:  # a scan inside a scan: the outer step names it further
                outer = self._iterations[-1]
                entry.top = entry.top and outer.depth == frame.depth
                outer.entries.append(entry)
            else:
                kind = entry.kind or type(entry.module).__name__
                self.record(entry.name, entry.value, kind, entry.module, entry.path, entry.index)


def _scan_roots(paths: list[str]) -> list[str]:
    """The stacked modules of one scan step: the common path of its top calls, else each one."""
    if not paths:
        return []
    common = paths[0].split(".")
    for path in paths[1:]:
        parts = path.split(".")
        n = 0
        while n < min(len(common), len(parts)) and common[n] == parts[n]:
            n += 1
        common = common[:n]
    return [".".join(common)] if common else sorted(set(paths), key=len, reverse=True)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + ".")


def _current_trace() -> Any:
    return jax.extend.core.get_opaque_trace_state(convention="nnx")


def tap(name: str, value: Any, kind: str = "tap") -> Any:
    """Mark ``value`` as the output of a layer called ``name``; returns ``value`` unchanged.

    ``kind="attention"`` marks attention weights ``(N, heads, T, T)`` of hand-written
    attention (tap the array that then multiplies the values). Outside a probe this is the
    identity, so a model that taps runs as before::

        def mlp(params, x):
            h = jv.tap("hidden", jnp.tanh(x @ params["w1"]))
            return h @ params["w2"]
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"tap name must be a non-empty string, got {name!r}")
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"tap kind must be a non-empty string, got {kind!r}")
    if kind == "attention":
        check_attention_tap(name, value)
    recorder = _ACTIVE.get()
    if recorder is not None:
        recorder.record(name, value, kind)
    return value


def _is_array(value: Any) -> bool:
    return isinstance(value, jax.Array | np.ndarray) and value.ndim >= 1


def _describe(value: Any) -> Any:
    if callable(value) and hasattr(value, "__name__"):
        return value.__name__
    if isinstance(value, list):
        return tuple(value)
    return value


def _settings_of(module: Any) -> dict[str, Any]:
    if module is None:
        return {}
    settings = {}
    for name in SETTING_NAMES:
        value = getattr(module, name, None)
        if value is not None and isinstance(value, int | float | str | tuple | list | Callable):
            settings[name] = _describe(value)
    return settings


# --------------------------------------------------------------------------- NNX

#: Scans and fori loops longer than this stay compiled loops (their layers stay unlisted).
MAX_LOOPED_SCAN = 256


@contextlib.contextmanager
def nnx_module_outputs(root: Any) -> Iterator[None]:
    """Record, into the active recorder, the output of every submodule call of ``root``.

    ``root`` must be the probe's private copy of the model: each of its callable submodules
    gets a subclass of its own class (made once per class and path) whose ``__call__`` records
    the output under the module's path. The subclass travels in the graph definition, so the
    copies NNX transforms make inside ``nnx.scan`` bodies record too. Library classes and the
    user's modules are never changed; recording goes to the recorder of the current context
    only, so probes traced at once in different threads never see each other's layers.

    Covered: modules in attributes, ``nnx.List``, dicts, tuples, custom containers and
    ``nnx.Sequential``; blocks stacked with ``nnx.vmap`` and run with ``nnx.scan`` (as a
    function or a method decorator): while a recorder with ``loops`` is active (the probe sets
    it when a wanted layer lies inside a loop), such scans run as a Python loop over slices of
    the stacked state (the same operations, unrolled: slower to compile), and block ``i``'s
    layers are named ``blocks.i``, ``blocks.i.attn``... (modules every step shares keep their
    names: ``norm``, ``norm@2``); ``nnx.fori_loop`` with Python-int bounds loops the same way,
    its repeated calls named ``block``, ``block@2``... Not covered: modules called only inside
    the bodies of other transforms (``nnx.vmap``, ``nnx.remat``, ``nnx.cond``,
    ``nnx.while_loop``, ``nnx.jit``) or of loops longer than :data:`MAX_LOOPED_SCAN` steps:
    their outputs live in an inner trace and are skipped; the module around them is recorded.

    Example::

        clone = nnx.merge(graphdef, state, copy=True)
        with recorder.active(), nnx_module_outputs(clone):
            clone(x)
    """
    from flax import nnx

    originals: dict[str, Any] = {}
    for path, module in nnx.iter_modules(root):
        if path and callable(module):
            name = ".".join(map(str, path))
            originals[name] = module
            object.__setattr__(module, "__class__", _recording_class(type(module), name))
    recorder = _ACTIVE.get()
    if recorder is not None:
        recorder.is_slice = lambda path, module: _is_slice(module, originals.get(path))
    with _looped_scans():
        yield


def _is_slice(module: Any, original: Any) -> bool:
    """Whether ``module`` (called in a scan step) is one step's slice of stacked ``original``.

    A slice has the original's parameters less their leading (stack) axes; the original itself
    (closed over) or a same-shape copy (broadcast with ``in_axes=None``) is shared by all
    steps. A module without parameters counts as a slice unless it is the original.
    """
    from flax import nnx

    if module is original:
        return False
    if original is None:
        return True
    ours = jax.tree.leaves(nnx.state(module, nnx.Param))
    theirs = jax.tree.leaves(nnx.state(original, nnx.Param))
    return not ours or any(np.ndim(a) < np.ndim(b) for a, b in zip(ours, theirs, strict=False))


_CLASSES: dict[tuple[type, str], type] = {}
_CLASSES_LOCK = threading.Lock()


def _recording_class(base: type, path: str) -> type:
    """``base`` with a ``__call__`` that records its output as layer ``path`` (cached)."""
    with _CLASSES_LOCK:
        if (base, path) not in _CLASSES:

            def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
                recorder = _ACTIVE.get()
                if recorder is None:
                    return base.__call__(self, *args, **kwargs)
                recorder._depth += 1
                try:
                    with capture_attention(self, path, recorder):  # jaxvis._attention
                        out = base.__call__(self, *args, **kwargs)
                finally:
                    recorder._depth -= 1
                recorder.record_module(path, out, self)
                return out

            def body(ns: dict[str, Any]) -> None:
                ns.update(
                    __call__=__call__, __module__=base.__module__, __qualname__=base.__qualname__
                )

            kwds = {"pytree": base._pytree__is_pytree}  # declared as the base was
            _CLASSES[base, path] = types.new_class(base.__name__, (base,), kwds, body)
        return _CLASSES[base, path]


_LOOP_LOCK = threading.Lock()
_LOOP_USERS = 0


@contextlib.contextmanager
def _looped_scans() -> Iterator[None]:
    """Let ``nnx.scan``/``nnx.fori_loop`` run as Python loops for an active recorder.

    NNX calls ``jax.lax.scan``/``fori_loop`` through its module's ``jax`` name; for the
    duration of the block that name is a proxy which loops only for the context that has an
    active recorder, at that recorder's trace level, and otherwise calls ``jax.lax`` itself (so
    other threads, and models outside probes, run exactly as before). Concurrent probes share
    it through a lock-guarded count; the last one out puts flax's own ``jax`` back.
    """
    global _LOOP_USERS
    from flax.nnx.transforms import iteration

    with _LOOP_LOCK:
        if _LOOP_USERS == 0:
            iteration.jax = _JaxWithLoopedScan(iteration.jax)
        _LOOP_USERS += 1
    try:
        yield
    finally:
        with _LOOP_LOCK:
            _LOOP_USERS -= 1
            if _LOOP_USERS == 0:
                iteration.jax = iteration.jax._jax


class _JaxWithLoopedScan:
    """``jax`` whose ``lax.scan``/``lax.fori_loop`` loop in Python for an active recorder."""

    def __init__(self, jax_module: Any) -> None:
        self._jax = jax_module
        self.lax = _LaxWithLoopedScan(jax_module.lax)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._jax, name)


class _LaxWithLoopedScan:
    def __init__(self, lax: Any) -> None:
        self._lax = lax

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lax, name)

    def scan(self, f: Callable, init: Any, xs: Any = None, length: int | None = None, **kw: Any):
        """``lax.scan`` as a loop over ``xs[i]`` (same operations), each step an iteration."""
        recorder = _ACTIVE.get()
        leaves = jax.tree.leaves(xs)
        n = length if length is not None else (leaves[0].shape[0] if leaves else 0)
        if recorder is None or not recorder.may_loop(n):
            return self._lax.scan(f, init, xs, length, **kw)
        steps = range(n - 1, -1, -1) if kw.get("reverse", False) else range(n)
        carry, ys = init, {}
        with recorder.looping():
            for i in steps:
                with recorder.iteration(i):
                    carry, ys[i] = f(carry, jax.tree.map(lambda a, i=i: a[i], xs))
        stacked = jax.tree.map(lambda *y: jnp.stack(y), *(ys[i] for i in range(n)))
        return carry, stacked

    def fori_loop(self, lower: Any, upper: Any, body: Callable, init: Any, **kw: Any) -> Any:
        """``lax.fori_loop`` with Python-int bounds as a loop: calls repeat as ``m``, ``m@2``."""
        recorder = _ACTIVE.get()
        bounds = isinstance(lower, int) and isinstance(upper, int)
        if recorder is None or not bounds or not recorder.may_loop(upper - lower):
            return self._lax.fori_loop(lower, upper, body, init, **kw)
        value = init
        with recorder.looping():
            for i in range(lower, upper):
                value = body(jnp.asarray(i, jnp.int32), value)
        return value


# --------------------------------------------------------------------------- Linen


def linen_interceptor(next_fun: Callable, args: tuple, kwargs: dict, context: Any) -> Any:
    """An ``nn.intercept_methods`` interceptor recording each submodule's ``__call__`` output."""
    recorder = _ACTIVE.get()
    module = context.module
    path = module.scope.path if module.scope is not None else ()
    recording = recorder is not None and context.method_name == "__call__" and bool(path)
    with capture_attention(module, ".".join(path), recorder if recording else None):
        out = next_fun(*args, **kwargs)  # jaxvis._attention records attention weights
    if recording:
        recorder.record(".".join(path), out, type(module).__name__, module)
    return out
