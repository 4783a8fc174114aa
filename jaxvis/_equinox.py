"""Equinox models in a probe: one unbatched example per call, batched here by ``jax.vmap``.

jaxvis images are NHWC batches. An Equinox image model is written for one channels-first
example ``(C, H, W)`` (``eqx.nn.Conv2d``), so the probe transposes each example to CHW, runs
the model under ``jax.vmap`` and reports every rank-3 activation ``(C, h, w)`` channels-last,
``(h, w, C)``, like every other model's (rank-2 tokens ``(T, D)``, vectors and attention
weights ``(heads, T, T)`` tapped with ``kind="attention"`` stay as they are).
``channels_last=True`` is for a model that takes ``(H, W, C)`` examples: nothing is
transposed then. Layers report their settings under Flax's names (``strides``,
``kernel_dilation``), and ``probe.weights()`` gives a convolution's or linear
layer's weight as Flax's ``kernel`` (``(kh, kw, in, out)``), so every tool reads them alike.

Layers are the outputs of the submodules found through the module tree (fields, and lists,
tuples and dicts of modules such as ``eqx.nn.Sequential``'s ``layers``), named by attribute
path (``conv1``, ``layers.0``), plus ``jv.tap`` calls. No class is patched: each call runs a
copy of the model whose submodules are wrapped in recording modules. What a vmapped call
records is returned from the vmapped function, so no tracer leaks out of the vmap; early
stopping works inside it too.

The model runs in inference mode (``eqx.nn.inference_mode`` of the probe's copy; the user's
model is untouched): a ``__call__`` taking ``inference`` gets ``True``, one requiring ``key``
gets a fixed key, which dropout in inference mode ignores. A stateful model (``eqx.nn.BatchNorm``
made with ``eqx.nn.make_with_state``, called as ``model(x, state) -> (out, state)``) is probed
with its state, ``jv.Probe(model, state)``: BatchNorm in inference mode uses the running
statistics, and the state's float arrays are parameters like the weights.

Example::

    probe = jv.Probe(eqx_cnn, input_shape=(28, 28, 1))
    probe.activations(x)["layers.0"].shape      # (N, 26, 26, 8), from Conv2d's (8, 26, 26)
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxvis._capture import _ACTIVE, SETTING_NAMES, LayerCapture, StopForward

#: Flax's names for Equinox's layer settings, as summaries and receptive fields read them.
_EQUINOX_NAMES = {
    "strides": "stride",
    "kernel_dilation": "dilation",
    "feature_group_count": "groups",
    "features": "out_channels",
    "rate": "p",
    "epsilon": "eps",
}


class _Recorded(eqx.nn.StatefulLayer):
    """``inner``, whose output goes to the active recorder as layer ``path``."""

    inner: Any
    path: str = eqx.field(static=True)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self.inner(*args, **kwargs)
        recorder = _ACTIVE.get()
        if recorder is not None:
            recorder.record(self.path, _value(out), _kind(self.inner), _flax_settings(self.inner))
        return out

    def is_stateful(self) -> bool:  # as the wrapped layer, for eqx.nn.Sequential
        return isinstance(self.inner, eqx.nn.StatefulLayer) and self.inner.is_stateful()

    def __getattr__(self, name: str) -> Any:  # the model may read its submodules' fields
        if name == "inner" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.inner, name)


def equinox_parts(
    model: eqx.Module, state: eqx.nn.State | None, call_kwargs: dict[str, Any], channels_last: bool
) -> tuple[Callable[[Any, jax.Array], Any], Any, Callable[[str], dict[str, np.ndarray]]]:
    """``(run, params, module_params)`` for an Equinox model, in inference mode.

    ``params`` are the model's float arrays (``eqx.partition(model, eqx.is_inexact_array)``),
    paired with the state's when there is one; ``run(params, x)`` takes an NHWC batch and is
    pure.
    """
    if state is not None and not isinstance(state, eqx.nn.State):
        raise TypeError(
            "variables must be None or the model's eqx.nn.State (from eqx.nn.make_with_state) "
            f"for an equinox.Module, got a {type(state).__name__}"
        )
    model_in_inference = eqx.nn.inference_mode(model)
    tree = model_in_inference if state is None else (model_in_inference, state)
    params, static = eqx.partition(tree, eqx.is_inexact_array)
    kwargs = _default_call_kwargs(model, call_kwargs)

    def run(p: Any, x: jax.Array) -> Any:
        combined = eqx.combine(p, static)
        recorded = _instrument(combined if state is None else combined[0], "")
        state_args = () if state is None else (combined[1],)
        outer = _ACTIVE.get()
        inner = LayerCapture(
            wanted=None if outer is None else outer.wanted,
            truncate=outer is not None and outer.truncate,
        )

        def one(example: jax.Array) -> tuple[Any, dict[str, jax.Array]]:
            out = None
            # StopForward: every wanted layer is recorded
            with inner.active(), contextlib.suppress(StopForward):
                out = _value(recorded(example, *state_args, **kwargs))
            return out, inner.outputs

        out, acts = jax.vmap(one)(x if channels_last else jnp.moveaxis(x, -1, 1))
        if outer is not None:
            for name in inner.outputs:  # call order (the vmap's dict is sorted)
                value = acts[name]
                info = inner.infos[name]
                if not channels_last and value.ndim == 4 and info.kind != "attention":
                    value = jnp.moveaxis(value, 1, -1)
                outer.record(name, value, info.kind, info.module)
        return out

    modules = dict(_submodules(model, ""))

    def module_params(name: str) -> dict[str, np.ndarray]:
        module = modules.get(name.split("@", maxsplit=1)[0])
        return {} if module is None else _own_params(module)

    return run, params, module_params


def parameter_layout(
    model: eqx.Module,
) -> tuple[list[tuple[tuple[str, ...], tuple[int, ...]]], set[tuple[str, ...]]]:
    """``(leaves, modules)``: each float array's path and shape, and every submodule's path
    (the root is ``()``), for counting each module's own parameters."""
    arrays, _ = eqx.partition(model, eqx.is_inexact_array)
    leaves = [
        (tuple(_name("", path).split(".")), tuple(np.shape(leaf)))
        for path, leaf in jax.tree_util.tree_leaves_with_path(arrays)
    ]
    modules = {(), *(tuple(path.split(".")) for path, _ in _submodules(model, ""))}
    return leaves, modules


def _children(module: eqx.Module) -> list[tuple[Any, Any]]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(module, is_leaf=_is_child(module))
    return leaves


def _is_child(module: eqx.Module) -> Callable[[Any], bool]:
    return lambda node: node is not module and isinstance(node, eqx.Module)


def _name(prefix: str, path: Any) -> str:
    key = jax.tree_util.keystr(path, simple=True, separator=".")
    return f"{prefix}.{key}" if prefix else key


def _submodules(module: eqx.Module, prefix: str) -> Iterator[tuple[str, eqx.Module]]:
    """``(path, submodule)`` for every module under ``module``, parents first."""
    for path, node in _children(module):
        if isinstance(node, eqx.Module):
            name = _name(prefix, path)
            yield name, node
            yield from _submodules(node, name)


def _instrument(module: eqx.Module, prefix: str) -> eqx.Module:
    """A copy of ``module`` with every callable submodule wrapped in a :class:`_Recorded`
    (others, such as BatchNorm's ``eqx.nn.StateIndex``, are only searched)."""

    def wrap(path: Any, node: Any) -> Any:
        if not isinstance(node, eqx.Module):
            return node
        name = _name(prefix, path)
        inner = _instrument(node, name)
        return _Recorded(inner, name) if callable(node) else inner

    return jax.tree_util.tree_map_with_path(wrap, module, is_leaf=_is_child(module))


def _value(out: Any) -> Any:
    """A stateful layer's output without its state: ``(y, state)`` -> ``y``."""
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], eqx.nn.State):
        return out[0]
    return out


def _kind(module: eqx.Module) -> str:
    """The class name; for ``eqx.nn.Lambda(jax.nn.relu)`` the function's name (``"relu"``)."""
    if isinstance(module, eqx.nn.Lambda):
        return getattr(module.fn, "__name__", "Lambda")
    return type(module).__name__


def _flax_settings(module: eqx.Module) -> SimpleNamespace:
    """The module's settings under Flax's names (``stride`` as ``strides``, ...)."""
    found = {name: getattr(module, _EQUINOX_NAMES.get(name, name), None) for name in SETTING_NAMES}
    return SimpleNamespace(**{name: value for name, value in found.items() if value is not None})


def _own_params(module: eqx.Module) -> dict[str, np.ndarray]:
    """The module's arrays by path; a convolution's or linear layer's weight is reported as
    Flax's ``kernel`` (``(kh, kw, in, out)``, ``(in, out)``) and its bias flat."""
    arrays, _ = eqx.partition(module, eqx.is_inexact_array)
    found = {
        _name("", path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(arrays)
    }
    if isinstance(module, eqx.nn.Conv | eqx.nn.Linear) and "weight" in found:
        weight = found.pop("weight")
        found = {"kernel": np.moveaxis(weight, (0, 1), (-1, -2)), **found}
        if "bias" in found:
            found["bias"] = found["bias"].reshape(-1)
    return found


def _default_call_kwargs(model: eqx.Module, call_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``call_kwargs`` plus ``inference=True`` and a fixed ``key`` where ``__call__`` takes
    them and they were not given (the model is in inference mode: dropout ignores the key)."""
    kwargs = dict(call_kwargs)
    signature = inspect.signature(model.__call__)
    if "inference" in signature.parameters:
        kwargs.setdefault("inference", True)
    key = signature.parameters.get("key")
    if key is not None and key.default is inspect.Parameter.empty:
        kwargs.setdefault("key", jax.random.PRNGKey(0))
    return kwargs
