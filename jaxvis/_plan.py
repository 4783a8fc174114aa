"""How a gradient tool loops over its points, chosen from the model's cost, per (model, shape).

A gradient tool (integrated, interior and SmoothGrad gradients, saliency) evaluates ``total``
points, each one model call with its gradient. It can run them

* ``"batch"``: all points in one batched call (one jitted program, no loop);
* ``"python"``: a Python loop over one jitted chunk of ``chunk`` points (the accumulators
  are donated from one call to the next), as the plain JAX a user would write;
* ``"scan"``: a ``lax.scan`` over the chunks inside one jitted program.

:func:`estimate` reads one example's cost off the model's forward jaxpr (traced once per
probe and input shape, shapes only): the floating-point operations of its convolutions and
matrix products, and the bytes of every intermediate value (what the backward pass keeps).
:func:`choose` turns a cost into a :class:`Plan`:

* the chunk: points per call, about :data:`CHUNK_FLOATS` activation floats, a power of two in
  8..256 (measured on 2 cores: IG with all points in one batch ran 3x slower than chunks of
  about 32; the best chunk falls as the activations grow) -- or the user's ``batch_size``;
* one chunk holds every point: ``"batch"``;
* a chunk costs at least :data:`PYTHON_MIN_FLOPS`: ``"python"``. Each call then runs for tens
  of milliseconds and the ~0.3 ms of a Python dispatch is lost in the noise, while a
  ``lax.scan`` over such chunks measured slower than the Python loop on XLA:CPU (ResNet-18 at
  224x224, IG 16 steps: 2.26 s against 1.14 s; docs/design.md, "XLA on the CPU");
* smaller chunks (the 28x28 demo models): ``"scan"``, where dispatch would dominate.

Plans are cached per probe and (tool, input shape, points, batch size). :func:`forced` fixes
the mode (and chunk) for a block, for tests and benchmarks.

Example::

    from jaxvis import _plan

    cost = _plan.estimate(probe, (224, 224, 3))     # Cost(flops=..., act_bytes=...)
    _plan.choose(50, cost)                          # Plan(mode='python', chunk=8)
    with _plan.forced("scan"):
        jv.attribution.integrated_gradients(probe, x, 3)
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Hashable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis._per_probe import PerProbe

__all__ = ["MODES", "Cost", "Plan", "choose", "estimate", "forced", "plan"]

MODES = ("batch", "python", "scan")

#: activation floats per chunk (4 MB of float32): the measured sweet spot of the old constant
CHUNK_FLOATS = 1 << 20
#: forward floating-point operations per chunk from which a Python loop beats a ``lax.scan``
PYTHON_MIN_FLOPS = 1e9
#: a model's backward pass costs about twice its forward pass
BACKWARD_FACTOR = 3.0


class Cost(NamedTuple):
    """One example's forward pass: floating-point operations and intermediate bytes."""

    flops: float
    act_bytes: float


class Plan(NamedTuple):
    mode: str
    chunk: int


_FORCED: contextvars.ContextVar[tuple[str | None, int | None] | None] = contextvars.ContextVar(
    "jaxvis_plan", default=None
)
_COSTS: PerProbe[Cost] = PerProbe()
_PLANS: PerProbe[Plan] = PerProbe()


@contextlib.contextmanager
def forced(mode: str | None = None, chunk: int | None = None) -> Iterator[None]:
    """Within the block, gradient tools loop in ``mode`` (and chunks of ``chunk`` points)."""
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    token = _FORCED.set((mode, chunk))
    try:
        yield
    finally:
        _FORCED.reset(token)


def choose(total: int, cost: Cost, batch_size: int | None = None) -> Plan:
    """The loop for ``total`` points of one example's ``cost`` (see the module docstring)."""
    total = max(int(total), 1)
    if batch_size is None:
        floats = max(cost.act_bytes / 4.0, 1.0)
        size = 1 << max(3, min(8, int(np.log2(max(CHUNK_FLOATS / floats, 1.0)))))
        chunk = max(1, min(size, total))
    else:
        chunk = max(1, min(int(batch_size), total))
    if chunk >= total:
        return Plan("batch", total)
    if chunk * cost.flops >= PYTHON_MIN_FLOPS:
        return Plan("python", chunk)
    return Plan("scan", chunk)


def plan(
    probe: Any, key: Hashable, example_shape: tuple[int, ...], total: int, batch_size: int | None
) -> Plan:
    """:func:`choose` for ``probe`` at ``example_shape``, cached per ``key``; :func:`forced`
    settings win."""
    forced_mode, forced_chunk = _FORCED.get() or (None, None)
    if forced_chunk is not None:
        batch_size = forced_chunk
    table = _PLANS.entries(probe)
    cache_key = (key, tuple(example_shape), int(total), batch_size)
    if cache_key not in table:
        table[cache_key] = choose(total, estimate(probe, example_shape), batch_size)
    chosen = table[cache_key]
    if forced_mode is not None and forced_mode != chosen.mode:
        if forced_mode == "batch":
            return Plan("batch", int(total))
        return Plan(forced_mode, chosen.chunk)
    return chosen


def estimate(probe: Any, example_shape: tuple[int, ...]) -> Cost:
    """One example's :class:`Cost`, from the jaxpr of the model's forward pass (traced once per
    probe and shape, on abstract values). Also records the output shape for
    :func:`jaxvis.attribution._checks.output_shape`, which then traces nothing."""
    table = _COSTS.entries(probe)
    shape = tuple(int(d) for d in example_shape)
    if shape not in table:
        spec = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
        closed, out = jax.make_jaxpr(
            lambda p, x: probe.apply(p, x, (), False)[0], return_shape=True
        )(probe.params, spec)
        flops, size = _jaxpr_cost(closed.jaxpr)
        table[shape] = Cost(float(flops), float(size))
        try:
            from jaxvis.attribution import _checks

            _checks.OUTPUT_SHAPES.entries(probe)[(shape, None)] = tuple(out.shape[1:])
        except (ImportError, AttributeError):  # pragma: no cover - layering changed
            pass
    return table[shape]


def _jaxpr_cost(jaxpr: Any, times: float = 1.0) -> tuple[float, float]:
    """(flops, bytes of intermediate values) of ``jaxpr``; nested jaxprs included, a scan's
    body counted ``length`` times."""
    flops = 0.0
    size = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        for v in eqn.outvars:
            aval = getattr(v, "aval", None)
            if hasattr(aval, "shape") and hasattr(aval, "dtype"):
                size += float(np.prod(aval.shape)) * np.dtype(aval.dtype).itemsize
        if name == "conv_general_dilated":
            out = eqn.outvars[0].aval
            rhs = eqn.invars[1].aval
            dn = eqn.params["dimension_numbers"]
            per_out = float(np.prod(rhs.shape)) / rhs.shape[dn.rhs_spec[0]]
            flops += 2.0 * float(np.prod(out.shape)) * per_out
        elif name == "dot_general":
            out = eqn.outvars[0].aval
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval
            k = float(np.prod([lhs.shape[d] for d in contract])) if contract else 1.0
            flops += 2.0 * float(np.prod(out.shape)) * k
        repeat = float(eqn.params.get("length", 1)) if name == "scan" else 1.0
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple | list) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    f, s = _jaxpr_cost(inner, repeat)
                    flops += f
                    size += s
    return flops * times, size * times
