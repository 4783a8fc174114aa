"""jaxvis: see inside JAX/Flax image models from a notebook.

Example::

    import jaxvis as jv
    demo = jv.zoo.load("mnist_cnn")
    jv.widgets.LayerExplorer(demo.probe, demo.x_test[:10])

Importing changes no ``jax.config`` value and compiles nothing. ``jv.enable_compilation_cache()``
keeps jaxvis's own compiled programs (never the user's ``jax.jit`` ones) in a bounded
persistent store (opt-in; see :mod:`jaxvis._compile_cache`).
"""

from importlib import import_module
from typing import Any

from jaxvis._compile_cache import (
    compilation_cache_dir,
    disable_compilation_cache,
    enable_compilation_cache,
)
from jaxvis.probe import Layer, Probe, tap

_LAZY_SUBPACKAGES = (
    "attribution",
    "concepts",
    "dataset",
    "optvis",
    "render",
    "training",
    "widgets",
    "zoo",
)
_LAZY_NAMES = {"Recorder": "training", "Recording": "training"}

__all__ = [  # noqa: PLE0604 - the lazy names are strings, spelled once above
    "Layer",
    "Probe",
    "compilation_cache_dir",
    "disable_compilation_cache",
    "enable_compilation_cache",
    "tap",
    *_LAZY_NAMES,
    *_LAZY_SUBPACKAGES,
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import subpackages on first use, so ``import jaxvis`` stays fast."""
    if name in _LAZY_SUBPACKAGES:
        return import_module(f"jaxvis.{name}")
    if name in _LAZY_NAMES:
        return getattr(import_module(f"jaxvis.{_LAZY_NAMES[name]}"), name)
    raise AttributeError(f"module 'jaxvis' has no attribute {name!r}")
