"""``jv.Probe``: one view of any Flax, Equinox or plain-JAX image model.

A probe wraps a model without changing it, lists its layers (names, kinds, output shapes,
parameter counts) and gives pure, jitted functions from an input batch to the outputs of any
chosen layers. Every jaxvis tool is built on it.
"""

from __future__ import annotations

import contextlib
import difflib
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis._capture import (
    LayerCapture,
    LayerInfo,
    StopForward,
    linen_interceptor,
    nnx_module_outputs,
    tap,
)
from jaxvis._checks import check_image_batch
from jaxvis._trees import flat_items, path_string
from jaxvis._xla import jit
from jaxvis.layout import LayerLayout, check_token_grid, check_token_layers, layout_of

__all__ = ["Layer", "Probe", "tap"]


class Layer(NamedTuple):
    """One layer of a probed model; ``shape`` excludes the batch axis.

    ``n_params`` counts the layer's own parameters, not its sublayers' (a ResNet block's
    convolutions count in their own rows), so no parameter is counted twice.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    dtype: str
    n_params: int


@dataclass(frozen=True)
class _Adapter:
    """How to call one kind of model as a pure function ``run(params, x)``."""

    kind: str  # "nnx", "linen", "equinox" or "function"
    run: Callable[[Any, jax.Array], Any]
    params: Any
    module_params: Callable[[str], dict[str, np.ndarray]]
    #: ``{module path: {parameter name: shape}}`` of each module's own parameters (not its
    #: children's); None: read from the nesting of ``params["params"]`` (Linen).
    owned_params: dict[str, dict[str, tuple[int, ...]]] | None = None


class Probe:
    """Wrap a model to read the output of any of its layers.

    An NNX model is probed in evaluation mode (dropout off, BatchNorm on its running
    statistics), whatever mode it is left in; the user's object is never changed. Its layers
    are its submodules, in any container, including blocks stacked with ``nnx.vmap`` and run
    with ``nnx.scan`` (``blocks.0``, ``blocks.0.attn``, ...; see
    :func:`jaxvis._capture.nnx_module_outputs` for what is covered).

    Args:
        model: a ``flax.nnx.Module``; a ``flax.linen.Module`` (then pass ``variables``); an
            ``equinox.Module`` called on one unbatched ``(C, H, W)`` example (batched with
            ``jax.vmap``, see :mod:`jaxvis._equinox`); or a function ``fn(params, x)`` whose
            layers are marked with ``jv.tap(name, h)``.
        variables: the Linen variables, the plain function's parameters, or an Equinox model's
            ``eqx.nn.State`` (BatchNorm statistics; None for a stateless model).
        input_shape: one example's shape ``(H, W, C)``. Needed to list layers before the first
            call; inferred from the first batch otherwise.
        input_range: the range of the model's input pixels: ``(lo, hi)``, or per channel
            ``((lo_r, lo_g, lo_b), (hi_r, hi_g, hi_b))``. Default ``(0, 1)``.
        mean, std: instead of ``input_range``, the per-channel normalisation of a model fed
            ``(p - mean) / std`` for pixels ``p`` in ``[0, 1]`` (e.g. ImageNet's); the range is
            then ``((0 - mean) / std, (1 - mean) / std)``.
        class_names: names of the output classes, for widgets and reports.
        call_kwargs: extra keyword arguments for every model call (e.g. ``{"train": False}``).
        token_grid: ``(rows, cols)`` of the patch grid of a token model (a ViT); inferred from
            the token count and the input's aspect ratio when None (see :mod:`jaxvis.layout`).
        channels_last: for an ``equinox.Module`` whose ``__call__`` takes one ``(H, W, C)``
            example; by default Equinox models take ``(C, H, W)`` (see :mod:`jaxvis._equinox`).

    The input range is ``input_low`` and ``input_high``: float32 arrays of shape ``(C,)``, or
    ``(1,)`` for one range shared by all channels, broadcastable over NHWC batches.
    ``input_range`` is ``(lo, hi)`` in the shared case, ``(lows, highs)`` per channel.

    Example::

        probe = jv.Probe(model, input_shape=(28, 28, 1))
        acts = probe.activations(x, layers=["conv3"])   # {"conv3": (N, 14, 14, 8)}
        probe = jv.Probe(resnet, variables, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
        probe.input_low                                 # [-2.118, -2.036, -1.804]
    """

    def __init__(
        self,
        model: Any,
        variables: Any = None,
        *,
        input_shape: Sequence[int] | None = None,
        input_range: Sequence[Any] | None = None,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        class_names: Sequence[str] | None = None,
        call_kwargs: dict[str, Any] | None = None,
        token_grid: Sequence[int] | None = None,
        channels_last: bool = False,
    ) -> None:
        self._adapter = _make_adapter(model, variables, dict(call_kwargs or {}), channels_last)
        low, high = _check_range(input_range, mean, std)
        self.input_range = _range_tuple(low, high)
        self.input_low, self.input_high = low.astype(np.float32), high.astype(np.float32)
        self.class_names = tuple(class_names) if class_names is not None else None
        self.input_shape = None
        if input_shape is not None:
            self._set_input_shape(_check_input_shape(input_shape), "input_shape")
        self.token_grid = check_token_grid(token_grid)
        self._layers: tuple[Layer, ...] | None = None
        self._infos: dict[str, LayerInfo] = {}
        self._other_params: dict[str, int] = {}
        self._jitted: dict[tuple[frozenset[str] | None, bool], Callable] = {}

    # ------------------------------------------------------------------ layers

    @property
    def kind(self) -> str:
        """``"nnx"``, ``"linen"``, ``"equinox"`` or ``"function"``."""
        return self._adapter.kind

    @property
    def params(self) -> Any:
        """The model's parameters and state, as passed to :meth:`apply`."""
        return self._adapter.params

    @property
    def layers(self) -> tuple[Layer, ...]:
        """All layers in call order, found by tracing shapes only (``jax.eval_shape``)."""
        if self._layers is None:
            if self.input_shape is None:
                raise ValueError(
                    "input_shape is unknown: pass input_shape=(H, W, C) to jv.Probe, "
                    "or call the probe on a batch first"
                )
            self._discover()
            try:
                check_token_layers(self._layers, self.input_shape, self.token_grid)
            except ValueError:
                self._layers = None  # asked again, it raises again
                raise
        assert self._layers is not None
        return self._layers

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    def layer(self, name: str) -> Layer:
        """The layer called ``name``; unknown names raise with the closest names suggested."""
        self._check_layer_names([name])
        return next(layer for layer in self.layers if layer.name == name)

    def module_of(self, name: str) -> tuple[str, tuple[int, ...]]:
        """Where layer ``name``'s parameters live: the module's path in the model's graph and,
        inside stacked (``nnx.vmap``-created, ``nnx.scan``-run) blocks, the block index along
        the parameters' leading axes.

        Example::

            probe.module_of("blocks.3.attn.query")   # ("blocks.attn.query", (3,))
            probe.module_of("conv1")                 # ("conv1", ())
        """
        layer = self.layer(name)
        return _module_of(layer.name, self._infos[layer.name])

    def layout(self, name: str) -> LayerLayout:
        """How layer ``name`` is laid out (spatial, vector, tokens over a grid, attention)."""
        layer = self.layer(name)
        return layout_of(layer.shape, self.input_shape, self.token_grid, layer.kind)

    def _discover(self) -> None:
        spec = jax.ShapeDtypeStruct((1, *self.input_shape), jnp.float32)
        recorder = LayerCapture()

        def run(params: Any, x: jax.Array) -> dict[str, Any]:
            with recorder.active():
                self._adapter.run(params, x)
            return recorder.outputs

        shapes = jax.eval_shape(run, self.params, spec)
        self._infos = {
            name: LayerInfo(i.kind, i.settings, path=i.path, index=i.index, looped=i.looped)
            for name, i in recorder.infos.items()
        }
        counts, self._other_params = _count_params(self._infos, _owned_params(self._adapter))
        self._layers = tuple(
            Layer(name, i.kind, tuple(shape.shape[1:]), str(shape.dtype), counts[name])
            for name, i in self._infos.items()
            for shape in [shapes[name]]
        )

    # ------------------------------------------------------------------ compute

    def apply(
        self, params: Any, x: jax.Array, layers: Iterable[str] | None = None, truncate: bool = True
    ) -> tuple[Any, dict[str, jax.Array]]:
        """Pure function of ``params``: ``(output, {layer: activation})`` for ``x``.

        With ``layers`` given and ``truncate`` true, the forward pass stops after the last
        wanted layer and ``output`` is None. Safe to use inside ``jax.jit``/``jax.grad``.
        """
        self._check_params(params)
        wanted = None if layers is None else frozenset(layers)
        # Scans run as Python loops only when a wanted layer lives inside one (see
        # nnx_module_outputs); the output alone compiles the model's own compact loop.
        loops = wanted is None or any(n not in self._infos or self._infos[n].looped for n in wanted)
        truncated = truncate and wanted is not None
        recorder = LayerCapture(wanted=wanted, truncate=truncated, loops=loops)
        output = None
        with recorder.active(), contextlib.suppress(StopForward):  # stopped after the last
            output = self._adapter.run(params, x)
        return output, dict(recorder.outputs)

    def _compiled(self, wanted: frozenset[str] | None, truncate: bool) -> Callable:
        key = (wanted, truncate)
        if key not in self._jitted:

            def run(params: Any, x: jax.Array) -> tuple[Any, dict[str, jax.Array]]:
                return self.apply(params, x, wanted, truncate)

            self._jitted[key] = jit(run)
        return self._jitted[key]

    def __call__(self, x: Any) -> jax.Array:
        """The model's output (logits) for the batch ``x`` (NHWC float)."""
        return self.run(x, layers=())[0]

    def activations(
        self, x: Any, layers: Iterable[str] | str | None = None
    ) -> dict[str, jax.Array]:
        """``{layer name: activation}`` for the chosen layers (all when None), batch first.

        One jitted call; layers after the last chosen one are not computed; calling again with
        a batch of the same shape reuses the compiled function.
        """
        return self._run(x, layers, truncate=True)[1]

    def run(
        self, x: Any, layers: Iterable[str] | str | None = None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """``(output, {layer: activation})`` in one jitted call over the whole model.

        Example::

            logits, acts = probe.run(x, ["conv3"])
        """
        return self._run(x, layers, truncate=False)

    def _run(
        self, x: Any, layers: Iterable[str] | str | None, truncate: bool
    ) -> tuple[Any, dict[str, jax.Array]]:
        x = self.check_input(x)
        if isinstance(layers, str):
            layers = [layers]
        names = self.layer_names if layers is None else list(layers)
        if names:
            self._check_layer_names(names)
        output, acts = self._compiled(frozenset(names), truncate and bool(names))(self.params, x)
        return output, {name: acts[name] for name in names}

    # ------------------------------------------------------------------ reports

    def weights(self, layer: str | None = None) -> dict[str, dict[str, np.ndarray]]:
        """``{layer: {"kernel": array, "bias": array, ...}}`` for layers owning parameters."""
        names = self.layer_names if layer is None else [self.layer(layer).name]
        found = {name: self._adapter.module_params(name) for name in names}
        return {name: params for name, params in found.items() if params}

    @property
    def n_params(self) -> int:
        """The model's parameter count: the layers' own counts plus those in no layer."""
        return sum(layer.n_params for layer in self.layers) + sum(self._other_params.values())

    def summary(self) -> list[dict[str, Any]]:
        """One row per layer: name, kind, output shape, own parameter count and its settings.

        ``n_params`` counts a layer's own parameters (not its sublayers'), so the column sums
        to :attr:`n_params`; ``total_params`` adds the sublayers' and ``depth`` is the number
        of enclosing layers. Parameters of no layer (a ViT's class token and position
        embedding, modules never called) get a last row named ``"(other)"``.

        Example::

            rows = probe.summary()
            assert sum(r["n_params"] for r in rows) == probe.n_params
        """
        names = self.layer_names
        own = {layer.name: layer.n_params for layer in self.layers}
        rows = [
            {
                "name": layer.name,
                "kind": layer.kind,
                "shape": layer.shape,
                "n_params": layer.n_params,
                "total_params": sum(n for other, n in own.items() if _inside(other, layer.name)),
                "depth": sum(_inside(layer.name, other) and other != layer.name for other in names),
                **self._infos[layer.name].settings,
            }
            for layer in self.layers
        ]
        if self._other_params:
            count = sum(self._other_params.values())
            rows.append(
                {
                    "name": "(other)",
                    "kind": "parameters",
                    "shape": (),
                    "n_params": count,
                    "total_params": count,
                    "depth": 0,
                    "params": tuple(self._other_params),
                }
            )
        return rows

    def __repr__(self) -> str:
        mode = "nnx model in evaluation mode" if self.kind == "nnx" else f"{self.kind} model"
        if self._layers is None and self.input_shape is None:
            return f"Probe({mode}, layers unknown until input_shape is given)"
        lines = [f"Probe({mode}, input {self.input_shape}, range {self.input_range})"]
        lines += [
            f"  {layer.name:<24} {layer.kind:<14} {str(layer.shape):<16} {layer.n_params:>9,}"
            for layer in self.layers
        ]
        if self._other_params:
            lines.append(f"  {'(other parameters)':<56} {sum(self._other_params.values()):>9,}")
        lines.append(f"  {'total':<56} {self.n_params:>9,}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ validation

    def check_input(self, x: Any, name: str = "x") -> Any:
        """``x`` if it is a finite float ``(N, H, W, C)`` batch of this probe's image shape.

        Otherwise a ``TypeError``/``ValueError`` naming ``name`` and what was expected. Every
        jaxvis tool validates its images here, before anything compiles.
        """
        check_image_batch(x, name, value_range=self.input_range)
        if self.input_shape is None:
            self._set_input_shape(tuple(int(d) for d in x.shape[1:]), name)
        elif tuple(x.shape[1:]) != self.input_shape:
            what = "channel count" if x.shape[1:3] == self.input_shape[:2] else "image shape"
            raise ValueError(
                f"{name} has the wrong {what}: expected (N, "
                f"{', '.join(map(str, self.input_shape))}), got shape {tuple(x.shape)}"
            )
        if isinstance(x, np.ndarray):  # on the host: no device round trip for a small batch
            finite = bool(np.isfinite(x).all())
        else:
            finite = isinstance(x, jax.core.Tracer) or bool(jnp.all(jnp.isfinite(x)))
        if not finite:
            raise ValueError(f"{name} contains NaN or inf values: expected finite pixel values")
        if isinstance(x, np.ndarray):
            self._check_pixel_scale(x, name)
        return x

    def _check_pixel_scale(self, x: np.ndarray, name: str) -> None:
        """Refuse a batch far outside the input range, as 0-255 pixels for a (0, 1) model.

        Only gross mistakes: values beyond ten times the range's width from it (a (0, 1)
        probe accepts up to 11), so noise, baselines and normalised inputs all pass.
        """
        low, high = float(self.input_low.min()), float(self.input_high.max())
        slack = 10.0 * (high - low)
        top, bottom = float(x.max()), float(x.min())
        if top > high + slack or bottom < low - slack:
            hint = "; divide 0-255 pixels by 255" if top > 100 and bottom >= 0 else ""
            raise ValueError(
                f"{name} has values in [{bottom:g}, {top:g}], far outside the probe's input "
                f"range {self.input_range}: expected pixels in that range{hint}"
            )

    def _check_params(self, params: Any) -> None:
        """Refuse parameters with another number of arrays than the probe's (``{}``, a part
        such as ``variables["params"]``) before the model fails on them deep in its trace."""
        expected = len(jax.tree_util.tree_leaves(self.params))
        got = len(jax.tree_util.tree_leaves(params))
        if got != expected:
            shown = repr(params) if got == 0 else f"a {type(params).__name__}"
            raise ValueError(
                f"params has {got} arrays ({shown}), expected {expected}: pass a pytree shaped "
                "like probe.params (or params=None for the probe's own)"
            )

    def _set_input_shape(self, shape: tuple[int, ...], name: str) -> None:
        """Take ``shape`` as one example's ``(H, W, C)`` if the input range fits its channels."""
        if self.input_low.size not in (1, shape[-1]):
            raise ValueError(
                f"{name} has {shape[-1]} channels (shape {shape}) but the input range has "
                f"{self.input_low.size}: {self.input_range}"
            )
        self.input_shape = shape

    def _check_layer_names(self, names: Iterable[str]) -> None:
        known = self.layer_names
        for name in names:
            if isinstance(name, bool) or not isinstance(name, str):
                raise TypeError(f"layers must be layer names (str); got {name!r}")
            if name not in known:
                close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.4)
                hint = (
                    f"did you mean {', '.join(map(repr, close))}?"
                    if close
                    else f"known layers: {', '.join(known)}"
                )
                raise ValueError(f"unknown layer {name!r}: {hint}")


# ---------------------------------------------------------------------- adapters


def _make_adapter(
    model: Any, variables: Any, call_kwargs: dict[str, Any], channels_last: bool = False
) -> _Adapter:
    from flax import linen as nn
    from flax import nnx

    # an Equinox model means Equinox is imported: jaxvis does not need it otherwise
    eqx_class = getattr(sys.modules.get("equinox"), "Module", None)
    eqx_module = () if eqx_class is None else (eqx_class,)
    is_eqx = isinstance(model, eqx_module)
    if isinstance(model, type) and issubclass(model, (nnx.Module, nn.Module, *eqx_module)):
        raise TypeError(
            f"model must be a model instance, got the class {model.__name__}: create the model "
            f"first, e.g. jv.Probe({model.__name__}(...){', variables' * (variables is not None)})"
        )
    if channels_last and not is_eqx:
        raise TypeError(
            f"channels_last is for Equinox models only, got a {type(model).__name__}: "
            "jaxvis images are always NHWC"
        )
    if isinstance(model, nnx.Module):
        if variables is not None:
            raise TypeError("variables must be None for an nnx.Module: its state is inside it")
        adapter = _nnx_adapter(model, call_kwargs)
    elif isinstance(model, nn.Module):
        _check_linen_variables(variables)
        adapter = _linen_adapter(model, variables, call_kwargs)
    elif is_eqx:
        from jaxvis._equinox import equinox_parts, parameter_layout

        leaves, modules = parameter_layout(model)
        adapter = _Adapter(
            "equinox",
            *equinox_parts(model, variables, call_kwargs, channels_last),
            owned_params=_owned_by_module(leaves, modules),
        )
    elif callable(model):
        adapter = _function_adapter(model, variables, call_kwargs)
    else:
        raise TypeError(
            "model must be a flax.nnx.Module, a flax.linen.Module, an equinox.Module or a "
            f"function fn(params, x), got {type(model).__name__}"
        )
    return replace(adapter, run=_explained(adapter.run, _model_name(model)))


def _model_name(model: Any) -> str:
    return getattr(model, "__name__", None) or type(model).__name__


def _explained(run: Callable[[Any, jax.Array], Any], model: str) -> Callable:
    """``run`` whose errors (a model that does not fit the input) say what to check.

    A missing keyword argument such as ``train`` stays a ``TypeError`` with a hint; any
    other error becomes a ``ValueError`` naming the model and the input shape, chained to the
    original.
    """

    def guarded(params: Any, x: jax.Array) -> Any:
        try:
            return run(params, x)
        except StopForward:
            raise
        except _ModelError:
            raise  # a probe inside a probe: explained once
        except TypeError as exc:
            missing = re.search(r"missing \d+ required .*?argument.*?'(\w+)'", str(exc))
            if missing is None:
                raise _ModelError(_explain(model, x, exc)) from exc
            arg = missing.group(1)
            if arg == "state":  # an Equinox model made with eqx.nn.make_with_state
                fix = "pass the model's state: jv.Probe(model, state)"
            else:
                value = "False" if arg == "train" else "..."
                fix = f"give it with jv.Probe(..., call_kwargs={{{arg!r}: {value}}})"
            raise TypeError(
                f"{model}.__call__ needs the argument {arg!r}, which the probe does not pass: "
                f"{fix} ({exc})"
            ) from exc
        except Exception as exc:
            raise _ModelError(_explain(model, x, exc)) from exc

    return guarded


class _ModelError(ValueError):
    """A model failed on the probe's input; raised once, chained to the model's own error."""


def _explain(model: str, x: jax.Array, exc: Exception) -> str:
    text = str(exc)
    shape = tuple(x.shape[1:])
    if any(word in text.lower() for word in ("dimension", "shape", "size", "incompatible")):
        cause = (
            f"the input shape {shape} (H, W, C) does not fit the model: check input_shape "
            "(the channel count first) or the batch you passed"
        )
    else:
        cause = "see the model's error below"
    return (
        f"model {model} failed on an input of shape {shape} (H, W, C): {cause}. "
        f"The model said: {type(exc).__name__}: {text}"
    )


def _check_linen_variables(variables: Any) -> None:
    """``variables`` must be the whole dict of ``module.init`` (``{"params": ...}``)."""
    if variables is None:
        raise TypeError("a flax.linen.Module needs its variables: jv.Probe(module, variables)")
    if not hasattr(variables, "keys"):
        raise TypeError(
            "variables must be the dict returned by module.init(key, x), got a "
            f"{type(variables).__name__}"
        )
    if not variables:
        raise ValueError(
            "variables is empty ({}): expected the dict returned by module.init(key, x), "
            "e.g. {'params': ...}"
        )
    if "params" not in variables:
        names = {path[-1] for path, _ in flat_items(variables) if path}
        if names & {"kernel", "bias", "scale", "embedding"}:
            raise ValueError(
                "variables looks like variables['params'] (keys "
                f"{', '.join(map(repr, list(variables)[:4]))}), not the whole variables: pass "
                "the full dict from module.init, jv.Probe(module, variables)"
            )


def _nnx_adapter(model: Any, call_kwargs: dict[str, Any]) -> _Adapter:
    """Run an NNX model in evaluation mode, on a fresh copy of its state at every call.

    The probe sees ``nnx.view(model, deterministic=True, use_running_average=True)``: dropout
    off, BatchNorm on its running statistics, whatever mode the user's model is left in. The
    view shares the model's parameters (the probe follows the model as it trains) but not its
    modules, and each forward pass merges a copy of the state, so nothing the pass changes
    (RNG counts, statistics, mode flags) reaches the user's object.
    """
    from flax import nnx

    view = nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)
    graphdef, state = nnx.split(view)

    def run(params: Any, x: jax.Array) -> Any:
        clone = nnx.merge(graphdef, params, copy=True)
        with nnx_module_outputs(clone):
            return clone(x, **call_kwargs)

    modules = {path_string(path): m for path, m in nnx.iter_modules(model)}
    prefixes = {name.rsplit(".", k)[0] for name in modules for k in range(name.count(".") + 1)}
    owned = _owned_by_module(
        [(tuple(map(str, p)), v.shape) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))],
        {tuple(name.split(".")) if name else () for name in modules},
    )

    def locate(name: str) -> tuple[str, tuple[int, ...]] | None:
        """``blocks.3.attn`` -> (``blocks.attn``, (3,)) for stacked blocks; None if unknown."""
        path: list[str] = []
        index: list[int] = []
        for part in name.split("@", maxsplit=1)[0].split("."):
            if ".".join([*path, part]) in prefixes:
                path.append(part)
            elif part.isdigit() and ".".join(path) in modules:
                index.append(int(part))
            else:
                return None
        return (".".join(path), tuple(index)) if ".".join(path) in modules else None

    def module_params(name: str) -> dict[str, np.ndarray]:
        found = locate(name)
        if found is None:
            return {}
        path, index = found
        own = nnx.state(modules[path], nnx.Param)
        return {path_string(p): np.asarray(value)[index] for p, value in flat_items(own)}

    return _Adapter("nnx", run, state, module_params, owned)


def _owned_by_module(
    leaves: list[tuple[tuple[str, ...], tuple[int, ...]]], modules: set[tuple[str, ...]]
) -> dict[str, dict[str, tuple[int, ...]]]:
    """Give each parameter (path, shape) to the deepest module whose path starts its own."""
    owned: dict[str, dict[str, tuple[int, ...]]] = {}
    for path, shape in leaves:
        cut = next(k for k in range(len(path) - 1, -1, -1) if path[:k] in modules)
        owned.setdefault(".".join(path[:cut]), {})[".".join(path[cut:])] = tuple(shape)
    return owned


def _owned_params(adapter: _Adapter) -> dict[str, dict[str, tuple[int, ...]]]:
    """``{module path: {name: shape}}`` of each module's own parameters, for any adapter.

    Linen keeps a module's parameters in its own dict of ``variables["params"]``, nested
    by scope; plain functions have no modules.
    """
    if adapter.owned_params is not None:
        return adapter.owned_params
    if adapter.kind != "linen" or not hasattr(adapter.params, "get"):
        return {}
    leaves = [(p, np.shape(v)) for p, v in flat_items(adapter.params.get("params", {}))]
    return _owned_by_module(leaves, {p[:k] for p, _ in leaves for k in range(len(p))})


def _module_of(name: str, info: LayerInfo) -> tuple[str, tuple[int, ...]]:
    return (info.path if info.path is not None else name.split("@", maxsplit=1)[0]), info.index


def _count_params(
    infos: dict[str, LayerInfo], owned: dict[str, dict[str, tuple[int, ...]]]
) -> tuple[dict[str, int], dict[str, int]]:
    """Each layer's own parameter count, and ``{name: size}`` of parameters in no layer.

    A module called twice counts once (its first call); a stacked module's parameters are
    split over its blocks (``blocks.3`` gets slice 3). The counts and the leftover sum to
    the model's parameter count exactly.
    """
    counts: dict[str, int] = {}
    seen: set[tuple[str, tuple[int, ...]]] = set()
    for name, info in infos.items():
        path, index = _module_of(name, info)
        counts[name] = 0
        if path in owned and (path, index) not in seen:
            seen.add((path, index))
            counts[name] = sum(int(np.prod(s[len(index) :])) for s in owned[path].values())
    covered = {path for path, _ in seen}
    other = {
        f"{module}.{name}" if module else name: int(np.prod(shape))
        for module, params in owned.items()
        if module not in covered
        for name, shape in params.items()
    }
    return counts, other


def _linen_adapter(module: Any, variables: Any, call_kwargs: dict[str, Any]) -> _Adapter:
    from flax import linen as nn

    def run(params: Any, x: jax.Array) -> Any:
        with nn.intercept_methods(linen_interceptor):
            return module.apply(params, x, **call_kwargs)

    def module_params(name: str) -> dict[str, np.ndarray]:
        subtree: Any = variables.get("params", {})
        for part in name.split("@", maxsplit=1)[0].split("."):
            subtree = subtree.get(part, {}) if hasattr(subtree, "get") else {}
        return {path_string(path): np.asarray(value) for path, value in flat_items(subtree)}

    return _Adapter("linen", run, variables, module_params)


def _function_adapter(fn: Callable, params: Any, call_kwargs: dict[str, Any]) -> _Adapter:
    def run(p: Any, x: jax.Array) -> Any:
        return fn(p, x, **call_kwargs)

    return _Adapter("function", run, params, lambda name: {})


def _inside(name: str, parent: str) -> bool:
    """Whether layer ``name`` is ``parent`` or one of its sublayers (by dotted path)."""
    return name == parent or name.startswith(parent + ".")


def _check_range(
    input_range: Sequence[Any] | None, mean: Any = None, std: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)``: float64 arrays of shape ``(C,)`` or ``(1,)`` from ``input_range`` or
    ``mean``/``std`` (pixels in ``[0, 1]`` fed as ``(p - mean) / std``)."""
    if mean is not None or std is not None:
        if input_range is not None:
            raise TypeError(
                f"give input_range or mean/std, not both: got input_range={input_range!r}, "
                f"mean={mean!r}, std={std!r}"
            )
        if mean is None or std is None:
            raise TypeError(f"mean and std go together, got mean={mean!r}, std={std!r}")
        m, s = _channel_values(mean, "mean"), _channel_values(std, "std")
        if not np.all(s > 0):
            raise ValueError(f"std must be > 0 for every channel, got {std!r}")
        low, high = (0.0 - m) / s, (1.0 - m) / s
    else:
        pair = (0.0, 1.0) if input_range is None else input_range
        if isinstance(pair, str) or not hasattr(pair, "__len__") or len(pair) != 2:
            raise TypeError(
                "input_range must be a pair (lo, hi) or per channel ((lo, ...), (hi, ...)), "
                f"got {input_range!r}"
            )
        low, high = (_channel_values(v, "input_range") for v in pair)
    try:
        low, high = np.broadcast_arrays(low, high)
    except ValueError:
        raise ValueError(
            f"per-channel values must have one entry per channel, got {low.size} and "
            f"{high.size} (input_range={input_range!r}, mean={mean!r}, std={std!r})"
        ) from None
    if not np.all(low < high):
        raise ValueError(
            f"input_range must have lo < hi in every channel, got low={low.tolist()}, "
            f"high={high.tolist()} (input_range={input_range!r})"
        )
    return low, high


def _channel_values(value: Any, name: str) -> np.ndarray:
    """A finite number or one per channel, as a float64 array of shape ``(1,)`` or ``(C,)``."""
    try:
        arr = np.asarray(value, np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be a number or one number per channel, got {value!r}"
        ) from None
    if arr.size == 0 or np.ndim(value) > 1 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite numbers, one or one per channel: got {value!r}")
    return arr


def _range_tuple(low: np.ndarray, high: np.ndarray) -> tuple[Any, Any]:
    """``(lo, hi)`` floats for one shared range, ``(lows, highs)`` tuples per channel."""
    if low.size == 1:
        return float(low[0]), float(high[0])
    return tuple(low.tolist()), tuple(high.tolist())


def _check_input_shape(shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(d) for d in shape)
    if len(shape) != 3 or min(shape) <= 0:
        raise ValueError(f"input_shape must be (H, W, C) with positive sizes, got {shape}")
    return shape
