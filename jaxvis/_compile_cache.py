"""JAX's persistent compilation cache, switched on by ``import jaxvis``.

XLA:CPU needs about a second to compile a model's gradient; with the cache, a second kernel
start (or a second process) loads the compiled programs from disk instead. The cache lives in
``<jaxvis cache folder>/jax-compilation-cache`` (see :func:`jaxvis._paths.cache_dir`).

* ``JAXVIS_COMPILATION_CACHE=0`` (or ``off``/``false``/``no``) before ``import jaxvis``
  leaves JAX's settings alone; ``JAXVIS_COMPILATION_CACHE=/some/dir`` picks the folder.
* A cache the user configured for JAX (``JAX_COMPILATION_CACHE_DIR`` or
  ``jax.config.update("jax_compilation_cache_dir", ...)``) is kept as it is.
* Every compiled program is cached (JAX's default skips those compiling in under a second,
  which on this scale is nearly all of them), unless the user set
  ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS``.

Example::

    import jaxvis as jv
    jv.compilation_cache_dir()        # PosixPath('/home/me/.cache/jaxvis/jax-compilation-cache')
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

from jaxvis._paths import cache_dir

__all__ = ["ENV", "compilation_cache_dir", "setup"]

ENV = "JAXVIS_COMPILATION_CACHE"
_OFF = ("0", "off", "false", "no")


def setup() -> Path | None:
    """Point JAX's persistent compilation cache at jaxvis's folder unless told otherwise.

    Returns the cache folder in use, or None when the cache is off.
    """
    choice = os.environ.get(ENV, "").strip()
    if choice.lower() in _OFF:
        return compilation_cache_dir()
    if jax.config.jax_compilation_cache_dir:  # the user's own setting wins
        return compilation_cache_dir()
    path = Path(choice).expanduser() if choice else cache_dir() / "jax-compilation-cache"
    jax.config.update("jax_compilation_cache_dir", str(path))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return path


def compilation_cache_dir() -> Path | None:
    """The folder of JAX's persistent compilation cache, or None when it is off."""
    current = jax.config.jax_compilation_cache_dir
    return Path(current) if current else None
