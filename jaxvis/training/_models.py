"""What a user hands to ``Recorder.record``, turned into a probe and its parameters.

Accepted: an ``nnx.Module``; an NNX ``State`` (all of it, or only its ``nnx.Param`` part); a
Linen/optax train state (anything with ``.params``, e.g. ``flax.training.train_state``); Linen
variables ``{"params": ...}``; a bare parameter pytree of the probe's model; a ``jv.Probe``.
"""

from __future__ import annotations

from typing import Any

import jax

from jaxvis._protocols import ProbeLike
from jaxvis._trees import weight_arrays as tree_weight_arrays
from jaxvis.probe import Probe

__all__ = ["make_probe", "params_for", "weight_arrays"]


def is_nnx_module(obj: Any) -> bool:
    from flax import nnx

    return isinstance(obj, nnx.Module)


def _is_linen_module(obj: Any) -> bool:
    from flax import linen as nn

    return isinstance(obj, nn.Module)


def _train_state_variables(state: Any) -> dict[str, Any]:
    variables = {"params": state.params}
    for extra in ("batch_stats",):
        if getattr(state, extra, None) is not None:
            variables[extra] = getattr(state, extra)
    return variables


def _is_train_state(obj: Any) -> bool:
    return hasattr(obj, "params") and not isinstance(obj, dict) and not is_nnx_module(obj)


def make_probe(model: Any, first: Any, input_shape: tuple[int, ...]) -> Probe:
    """A probe for the recorder: from ``model`` (given at construction) or from the first
    object passed to ``record`` (an NNX module or a Linen train state with ``apply_fn``)."""
    if model is not None:
        return _probe_of_model(model, first, input_shape)
    if isinstance(first, Probe):
        return first
    if is_nnx_module(first):
        return Probe(first, input_shape=input_shape)
    if _is_train_state(first):
        module = getattr(getattr(first, "apply_fn", None), "__self__", None)
        if _is_linen_module(module):
            return Probe(module, _train_state_variables(first), input_shape=input_shape)
    raise TypeError(
        "model_or_params must be an nnx.Module or a Linen train state with apply_fn when the "
        f"Recorder has no model; got {type(first).__name__}. For NNX states or parameter "
        "pytrees create the recorder with model=... (the module or a jv.Probe)"
    )


def _probe_of_model(model: Any, first: Any, input_shape: tuple[int, ...]) -> Probe:
    """The probe of the recorder's ``model`` (``first``: the Linen variables or the function's
    parameters, from the first ``record``)."""
    if isinstance(model, Probe):
        return model
    if is_nnx_module(model):
        return Probe(model, input_shape=input_shape)
    if _is_linen_module(model):
        return Probe(model, params_for_linen(first), input_shape=input_shape)
    if callable(model):
        return Probe(model, first, input_shape=input_shape)
    raise TypeError(
        "model must be a jv.Probe, an nnx.Module, a flax.linen.Module or a function "
        f"fn(params, x), got {type(model).__name__}"
    )


def params_for_linen(obj: Any) -> Any:
    if _is_train_state(obj):
        return _train_state_variables(obj)
    if isinstance(obj, dict) and "params" in obj:
        return obj
    return {"params": obj}


def params_for(probe: ProbeLike, obj: Any) -> Any:
    """The parameters in the form ``probe.apply`` takes, from what was passed to ``record``."""
    if isinstance(obj, Probe):
        return obj.params
    if probe.kind == "nnx":
        from flax import nnx

        if is_nnx_module(obj):
            return nnx.state(obj)
        if _is_train_state(obj) and not isinstance(obj, nnx.State):
            obj = obj.params
        if not isinstance(obj, nnx.State) and not isinstance(obj, dict):
            raise TypeError(
                "model_or_params must be an nnx.Module, an nnx.State or a train state with "
                f".params for an NNX model, got {type(obj).__name__}"
            )
        reference = probe.params
        if jax.tree_util.tree_structure(obj) == jax.tree_util.tree_structure(reference):
            return obj
        try:  # only the nnx.Param part: take the rest (e.g. batch statistics) from the model
            merged = nnx.merge_state(reference, obj)
        except Exception as exc:  # noqa: BLE001 - re-raised with the argument named
            raise ValueError(f"model_or_params does not match the recorder's model: {exc}") from exc
        if jax.tree_util.tree_structure(merged) != jax.tree_util.tree_structure(reference):
            raise ValueError("model_or_params does not match the structure of the recorder's model")
        return merged
    if probe.kind == "linen":
        return params_for_linen(obj)
    if is_nnx_module(obj) or _is_linen_module(obj):
        raise TypeError(
            f"model_or_params must be the parameters of the probe's function, got a module "
            f"({type(obj).__name__})"
        )
    return obj


def weight_arrays(kind: str, params: Any) -> dict[str, Any]:
    """``{"layer.param": array}`` of the float parameter arrays in ``params`` (traceable).

    NNX: the ``nnx.Param`` variables; Linen: ``variables["params"]``; plain functions: every
    float leaf.
    """
    if kind == "nnx":
        from flax import nnx

        params = nnx.filter_state(params, nnx.Param) if isinstance(params, nnx.State) else params
    elif kind == "linen":
        params = params.get("params", params) if hasattr(params, "get") else params
    return tree_weight_arrays(params)
