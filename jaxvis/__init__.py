"""jaxvis: see inside JAX/Flax image models from a notebook."""

from importlib import import_module
from typing import Any

from jaxvis.probe import Layer, Probe, tap

__all__ = ["Layer", "Probe", "tap", "render", "zoo", "widgets"]
__version__ = "0.1.0"

_LAZY_SUBPACKAGES = {"render", "zoo", "widgets"}


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBPACKAGES:
        return import_module(f"jaxvis.{name}")
    raise AttributeError(f"module 'jaxvis' has no attribute {name!r}")
