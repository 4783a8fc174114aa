"""jaxvis's ``jit``: ``jax.jit`` with XLA:CPU options that run convolutions twice as fast.

JAX 0.10's XLA:CPU hands every convolution to YNNPACK by default
(``xla_cpu_experimental_ynn_fusion_type`` includes ``individual_convolution``). On this
project's 2-core machine those YNNPACK convolutions, forward and input gradient, ran at about
half the speed of XLA's own (Eigen) convolutions: a 3x3, 32->32 convolution of 16 images of
128x128 pixels took 172 ms against 79 ms, the VGG-style network's saliency at batch 16 438 ms
against 284 ms, with results equal to float32 rounding. jaxvis compiles its own programs with
YNNPACK kept for matrix products only (:data:`CPU_OPTIONS`), through ``jit``'s
``compiler_options``, so nothing outside jaxvis changes (the options are part of the key of
jaxvis's store of compiled programs).

* The options apply only when JAX's default backend is the CPU, and only when this jaxlib knows
  them (checked once by compiling a one-element program); otherwise programs compile with
  XLA's defaults.
* ``jit`` compiles ahead of time: at the top level, a call looks its arguments' signature
  (pytree, shapes, dtypes, weak types, shardings, static values, JAX's trace context) up in a
  table of compiled programs; a new signature is lowered, then loaded from jaxvis's persistent
  store or compiled (:func:`jaxvis._compile_cache.compile_cached`). Called inside another
  ``jax.jit`` or transformation (say, ``probe(x)`` in a user's jitted loss), the function is
  traced into the outer program like any ``jax.jit`` function and compiles with it.
* The signature uses two long-standing JAX internals, ``jax._src.config.trace_context`` (what
  ``jax.jit`` keys its own cache on) and ``jax._src.core.trace_state_clean``.
* ``static_argnums`` must be non-negative; ``static_argnames`` is not supported.
* ``JAXVIS_XLA_CPU_OPTIONS=0`` (or ``off``/``false``/``no``) before the first jaxvis call
  compiles with XLA's defaults.

Example::

    from jaxvis._xla import jit

    grad = jit(jax.grad(loss))     # as jax.jit; faster convolutions on a CPU
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax._src.config import trace_context
from jax._src.core import trace_state_clean

from jaxvis._compile_cache import compile_cached

__all__ = ["CPU_OPTIONS", "ENV", "Jitted", "compiler_options", "jit"]

ENV = "JAXVIS_XLA_CPU_OPTIONS"
_OFF = ("0", "off", "false", "no")

#: XLA:CPU debug options jaxvis compiles with: YNNPACK for matrix products, XLA's own
#: convolutions (see the module docstring for the measurements)
CPU_OPTIONS: dict[str, str] = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
}


class Jitted:
    """What :func:`jit` returns: call it as the ``jax.jit`` function; ``lower`` as well.

    Example::

        square = Jitted(lambda v: v * v)
        square(np.arange(3.0))          # compiled (or loaded) once per signature
        square.lower(np.arange(3.0)).as_text()
    """

    def __init__(self, fn: Callable, static_argnums: int | Sequence[int] = (), **kwargs: Any):
        static = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
        if any(i < 0 for i in static) or "static_argnames" in kwargs:
            raise TypeError("jaxvis's jit takes non-negative static_argnums only")
        self._static = frozenset(static)
        self._fn, self._kwargs = fn, {"static_argnums": static, **kwargs}
        self._plain = jax.jit(fn, **self._kwargs)
        self._programs: dict[Hashable, jax.stages.Compiled] = {}
        functools.update_wrapper(self, fn)

    @functools.cached_property
    def _tuned(self) -> Any:
        options = compiler_options()
        if options is None:
            return self._plain
        return jax.jit(self._fn, compiler_options=options, **self._kwargs)

    def lower(self, *args: Any, **kwargs: Any) -> jax.stages.Lowered:
        """``jax.jit(fn, ...).lower(*args, **kwargs)``, with jaxvis's compiler options."""
        return self._tuned.lower(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not trace_state_clean():  # inside a user's jit or grad: traced into their program
            return self._plain(*args, **kwargs)
        signature, dynamic, leaves = self._signature(args, kwargs)
        program = self._programs.get(signature)
        if program is None:
            program = self._compile(signature, leaves, self.lower(*args, **kwargs))
        return program(*dynamic, **kwargs)

    def prepare(self, *args: Any, **kwargs: Any) -> Callable[[], jax.stages.Compiled]:
        """Trace and lower for these arguments here; the function returned compiles (or loads)
        the program, say on a thread, for a later call with the same signature to reuse.

        Example::

            threading.Thread(target=finish.prepare(p, hp, params)).start()
        """
        signature, _, leaves = self._signature(args, kwargs)
        lowered = self.lower(*args, **kwargs)
        return functools.partial(self._compile, signature, leaves, lowered)

    def _signature(self, args: tuple, kwargs: dict) -> tuple[Hashable, Sequence, list]:
        if self._static:
            dynamic: Sequence = [a for i, a in enumerate(args) if i not in self._static]
            static = tuple(a for i, a in enumerate(args) if i in self._static)
        else:
            dynamic, static = args, ()
        leaves, tree = jax.tree_util.tree_flatten((dynamic, kwargs) if kwargs else dynamic)
        signature = (tree, static, tuple(map(_leaf_signature, leaves)), trace_context())
        return signature, dynamic, leaves

    def _compile(
        self, signature: Hashable, leaves: list, lowered: jax.stages.Lowered
    ) -> jax.stages.Compiled:
        program = compile_cached(lowered, _device(leaves), compiler_options())
        self._programs[signature] = program
        return program


def jit(fn: Callable, **kwargs: Any) -> Jitted:
    """``jax.jit(fn, **kwargs)`` compiled with :func:`compiler_options` and kept in jaxvis's
    persistent store of compiled programs when called at the top level; inside another jitted
    function or transformation, plain ``jax.jit(fn, **kwargs)``."""
    return Jitted(fn, **kwargs)


_ARRAY_TYPES: set[type] = set()  # the jax.Array classes seen (isinstance on the ABC is slow)


def _leaf_signature(x: Any) -> Hashable:
    """What jit's program depends on: the abstract value (shape, dtype, weak type) of an
    array, and its sharding when the array is committed to devices."""
    if type(x) in _ARRAY_TYPES or isinstance(x, jax.Array):
        _ARRAY_TYPES.add(type(x))
        return (x.aval, x.sharding) if x.committed else x.aval
    if isinstance(x, np.ndarray | np.generic):
        return x.shape, x.dtype
    return type(x)  # a Python scalar: weakly typed


def _device(leaves: Sequence[Any]) -> jax.Device | None:
    """The one device a program on these arguments runs on, or None for several."""
    found = None
    for x in leaves:
        if isinstance(x, jax.Array) and x.committed:
            devices = x.sharding.device_set
            if len(devices) != 1 or (found is not None and devices != {found}):
                return None
            (found,) = devices
    if found is not None:
        return found
    default = jax.config.jax_default_device
    if isinstance(default, jax.Device):
        return default
    return jax.devices(default)[0]


@functools.cache
def compiler_options() -> dict[str, str] | None:
    """:data:`CPU_OPTIONS` on a CPU backend whose XLA accepts them, else None (defaults)."""
    if os.environ.get(ENV, "").strip().lower() in _OFF:
        return None
    if jax.default_backend() != "cpu":
        return None
    one = jax.ShapeDtypeStruct((1,), jnp.float32)
    try:  # through the store: a second process compiles nothing for this check either
        lowered = jax.jit(jnp.negative, compiler_options=CPU_OPTIONS).lower(one)
        compile_cached(lowered, jax.devices()[0], CPU_OPTIONS)
    except Exception:  # noqa: BLE001 - an XLA without these options: keep its defaults
        return None
    return dict(CPU_OPTIONS)
