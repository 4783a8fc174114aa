"""The registry of attribution methods: one call shape, read by the widget, the metrics and
the report.

Every registered method is called as ``fn(probe, x, target=None, **options)`` and returns an
:class:`~jaxvis.attribution.Attribution`; its options are keyword arguments. A method module
registers itself with :func:`register` where it is defined, so a new method is one addition.

Example::

    import jaxvis as jv
    jv.attribution.methods()                       # {'saliency': Method(...), ...}
    jv.attribution.methods(family="cam")           # the CAM family only
    res = jv.attribution.attribute(probe, x, 3, method="integrated_gradients", steps=32)
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jaxvis._protocols import ProbeLike
from jaxvis.attribution.result import Attribution

__all__ = ["FAMILIES", "Method", "attribute", "get_method", "methods", "register"]

#: Method families, in the order the widget lists them.
FAMILIES = ("gradient", "path", "cam", "perturbation", "relevance", "attention")


@dataclass(frozen=True)
class Method:
    """A registered attribution method.

    Attributes:
        name: the function's name, e.g. ``"integrated_gradients"``.
        fn: ``fn(probe, x, target=None, **options) -> Attribution``.
        family: one of :data:`FAMILIES`.
        label: a short human label for menus, e.g. ``"integrated gradients"``.
        layer_map: True when ``values`` is a ``(N, H, W, 1)`` map upsampled from a layer
            (CAMs), False when it is shaped like the input.
        summary: one line on what the method computes.
    """

    name: str
    fn: Callable[..., Any]
    family: str
    label: str
    layer_map: bool = False
    summary: str = ""


_METHODS: dict[str, Method] = {}


def register(
    family: str, label: str, *, layer_map: bool = False, name: str | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``fn`` as an attribution method of ``family`` under its name.

    Example::

        @register("perturbation", "occlusion")
        def occlusion(probe, x, target=None, *, window=8, stride=4, baseline=0.0): ...
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")

    def add(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def method(probe: ProbeLike, x: Any, target: Any = None, **options: Any) -> Any:
            return _with_inputs(fn(probe, x, target, **options), probe, x)

        key = name or fn.__name__
        doc = (fn.__doc__ or "").strip().splitlines()
        _METHODS[key] = Method(key, method, family, label, layer_map, doc[0] if doc else "")
        return method

    return add


def _with_inputs(result: Any, probe: ProbeLike, x: Any) -> Any:
    """``result`` with the explained inputs kept for its picture, when the method left them out
    (a reference, not a copy: a device array stays on its device until the picture is drawn)."""
    if not isinstance(result, Attribution) or result.inputs is not None:
        return result
    return dataclasses.replace(
        result, inputs=x, input_range=getattr(probe, "input_range", (0.0, 1.0))
    )


def methods(family: str | None = None) -> dict[str, Method]:
    """The registered methods by name (of one ``family`` when given), in registration order."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)} or None, got {family!r}")
    return {k: m for k, m in _METHODS.items() if family is None or m.family == family}


def get_method(name: str) -> Method:
    """The method registered as ``name``; a ``ValueError`` listing the names otherwise."""
    if not isinstance(name, str) or name not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(sorted(_METHODS))}, got {name!r}")
    return _METHODS[name]


def attribute(probe: ProbeLike, x: Any, target: Any = None, *, method: str, **options: Any) -> Any:
    """Run the registered ``method`` on ``(probe, x, target)`` with keyword ``options``.

    Example::

        res = attribute(probe, x, 3, method="smoothgrad", samples=16)
    """
    return get_method(method).fn(probe, x, target, **options)
