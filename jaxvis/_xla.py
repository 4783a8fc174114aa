"""jaxvis's ``jit``: ``jax.jit`` with XLA:CPU options that run convolutions twice as fast.

JAX 0.10's XLA:CPU hands every convolution to YNNPACK by default
(``xla_cpu_experimental_ynn_fusion_type`` includes ``individual_convolution``). On this
project's 2-core machine those YNNPACK convolutions, forward and input gradient, ran at about
half the speed of XLA's own (Eigen) convolutions: a 3x3, 32->32 convolution of 16 images of
128x128 pixels took 172 ms against 79 ms, the VGG-style network's saliency at batch 16 438 ms
against 284 ms, with results equal to float32 rounding. jaxvis compiles its own programs with
YNNPACK kept for matrix products only (:data:`CPU_OPTIONS`), through ``jit``'s
``compiler_options``, so nothing outside jaxvis changes and the persistent compilation cache
keys the programs apart.

* The options apply only when JAX's default backend is the CPU, and only when this jaxlib knows
  them (checked once by compiling a one-element program); otherwise ``jit`` is ``jax.jit``.
* JAX accepts compiler options on top-level calls only: called inside another ``jax.jit``
  (say, ``probe(x)`` in a user's jitted loss), the function is traced into the outer program
  like any jitted function, and compiles with the outer program's options.
* ``JAXVIS_XLA_CPU_OPTIONS=0`` (or ``off``/``false``/``no``) before the first jaxvis call
  compiles with XLA's defaults.

Example::

    from jaxvis._xla import jit

    grad = jit(jax.grad(loss))     # as jax.jit; faster convolutions on a CPU
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["CPU_OPTIONS", "ENV", "compiler_options", "jit"]

ENV = "JAXVIS_XLA_CPU_OPTIONS"
#: the start of JAX's error for compiler options on a nested ``jit``
_NESTED = "`compiler_options` can only be passed to top-level"
_OFF = ("0", "off", "false", "no")

#: XLA:CPU debug options jaxvis compiles with: YNNPACK for matrix products, XLA's own
#: convolutions (see the module docstring for the measurements)
CPU_OPTIONS: dict[str, str] = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
}


def jit(fn: Callable, **kwargs: Any) -> Callable:
    """``jax.jit(fn, **kwargs)`` compiled with :func:`compiler_options` when called at the top
    level; inside another jitted function, plain ``jax.jit(fn, **kwargs)``."""
    options = compiler_options()
    plain = jax.jit(fn, **kwargs)
    if options is None:
        return plain
    tuned = jax.jit(fn, compiler_options=options, **kwargs)

    @functools.wraps(fn)
    def run(*args: Any, **call_kwargs: Any) -> Any:
        try:
            return tuned(*args, **call_kwargs)
        except ValueError as error:
            if not str(error).startswith(_NESTED):
                raise
            return plain(*args, **call_kwargs)

    run.lower = tuned.lower  # type: ignore[attr-defined]
    return run


@functools.cache
def compiler_options() -> dict[str, str] | None:
    """:data:`CPU_OPTIONS` on a CPU backend whose XLA accepts them, else None (defaults)."""
    if os.environ.get(ENV, "").strip().lower() in _OFF:
        return None
    if jax.default_backend() != "cpu":
        return None
    try:
        jax.jit(jnp.negative, compiler_options=CPU_OPTIONS)(jnp.zeros((1,), jnp.float32))
    except Exception:  # noqa: BLE001 - an XLA without these options: keep its defaults
        return None
    return dict(CPU_OPTIONS)
