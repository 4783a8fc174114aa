"""Recording of intermediate layer outputs while a model runs.

Three sources feed one :class:`Recorder`:

* ``jv.tap(name, h)`` calls inside any function (plain functions, or models that tap);
* Flax NNX submodules, found by temporarily wrapping ``__call__`` of the module classes in the
  model's graph (the mechanism of ``nnx.capture(..., method_outputs=...)``, extended to keep the
  call order and to stop early);
* Flax Linen submodules, through Linen's official ``nn.intercept_methods``.

When only some layers are wanted, the recorder raises :class:`StopForward` as soon as the last
of them has been produced, so later layers are never traced, let alone computed.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from jaxvis._attention import capture_attention, check_attention_tap

_ACTIVE: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar(
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
    """What discovery learns about one layer besides its output shape."""

    kind: str
    settings: dict[str, Any]
    module: Any = None


@dataclass
class Recorder:
    """Collects layer outputs in call order; ``wanted=None`` keeps them all."""

    wanted: frozenset[str] | None = None
    truncate: bool = False
    outputs: dict[str, Any] = field(default_factory=dict)
    infos: dict[str, LayerInfo] = field(default_factory=dict)
    _seen: dict[str, int] = field(default_factory=dict)
    _active_modules: set[int] = field(default_factory=set)

    def record(self, name: str, value: Any, kind: str = "tap", module: Any = None) -> None:
        if not _is_array(value):
            return
        count = self._seen.get(name, 0)
        self._seen[name] = count + 1
        if count:
            name = f"{name}@{count + 1}"
        if self.wanted is None or name in self.wanted:
            self.outputs[name] = value
        self.infos[name] = LayerInfo(kind, _settings_of(module), module)
        if self.truncate and self.wanted is not None and self.wanted <= self.outputs.keys():
            raise StopForward

    @contextlib.contextmanager
    def active(self) -> Iterator[Recorder]:
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)


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


@contextlib.contextmanager
def nnx_module_outputs(root: Any) -> Iterator[None]:
    """Record, into the active recorder, the output of every submodule call of ``root``.

    The classes of the modules in ``root``'s graph get a wrapping ``__call__`` for the duration
    of the block; the wrapper only records calls of modules of this graph, by their path.
    """
    from flax import nnx

    paths = {id(m): ".".join(map(str, p)) for p, m in nnx.iter_modules(root) if p}
    classes = {type(m) for _, m in nnx.iter_modules(root)}
    patched: list[tuple[type, Any]] = []
    try:
        for cls in classes:
            if getattr(cls.__call__, "_jaxvis_wrapper", False) and "__call__" in cls.__dict__:
                continue
            patched.append((cls, cls.__dict__.get("__call__", _MISSING)))
            cls.__call__ = _recording_call(cls.__call__, paths)
        yield
    finally:
        for cls, original in reversed(patched):
            if original is _MISSING:
                del cls.__call__
            else:
                cls.__call__ = original


_MISSING = object()


def _recording_call(call: Callable, paths: dict[int, str]) -> Callable:
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        recorder = _ACTIVE.get()
        path = paths.get(id(self))
        if recorder is None or path is None or id(self) in recorder._active_modules:
            return call(self, *args, **kwargs)
        recorder._active_modules.add(id(self))
        try:
            with capture_attention(self, path, recorder):  # jaxvis._attention
                out = call(self, *args, **kwargs)
        finally:
            recorder._active_modules.discard(id(self))
        recorder.record(path, out, type(self).__name__, self)
        return out

    wrapper._jaxvis_wrapper = True  # type: ignore[attr-defined]
    wrapper.__wrapped__ = call  # type: ignore[attr-defined]
    return wrapper


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
