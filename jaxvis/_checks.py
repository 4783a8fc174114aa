"""Argument checks shared by every jaxvis entry point; all run before anything compiles.

Each check returns the value in its canonical form or raises a ``TypeError`` (wrong kind of
value) or ``ValueError`` (right kind, wrong value) whose message names the argument, the value
received and what was expected (see ``docs/design.md``, "Failure rules").

Example::

    k = check_positive_int(k, "k")                       # 9
    lo, hi = check_range((0, 1), "value_range")          # (0.0, 1.0)
    mode = check_choice("max", "reduce", ("max", "mean"))
    x = check_images(probe, x, "images")                 # float32 (N, H, W, C)
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from jaxvis._protocols import ProbeLike

__all__ = [
    "check_choice",
    "check_float",
    "check_image_batch",
    "check_images",
    "check_int",
    "check_layer",
    "check_layer_names",
    "check_optional_positive_int",
    "check_positive_int",
    "check_probability",
    "check_probe",
    "check_range",
]


def check_int(
    value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) within the bounds.

    >>> check_int(3, "bins", minimum=2)
    3
    """
    expected = _bounds_text("an integer", minimum, maximum)
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be {expected}; got {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {expected}; got {value!r}")
    return int(value)


def check_positive_int(value: Any, name: str) -> int:
    """``value`` as an ``int`` if it is an integer >= 1.

    >>> check_positive_int(9, "k")
    9
    """
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be a positive integer; got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def check_optional_positive_int(value: Any, name: str) -> int | None:
    """None, or ``value`` checked by :func:`check_positive_int` (e.g. ``batch_size=None``)."""
    return None if value is None else check_positive_int(value, name)


def check_float(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    open_low: bool = False,
) -> float:
    """``value`` as a finite ``float`` within the bounds (``open_low``: strictly above).

    >>> check_float(0.5, "noise", minimum=0.0)
    0.5
    """
    if minimum is not None and maximum is not None:
        expected = f"a number in {'(' if open_low else '['}{minimum:g}, {maximum:g}]"
    elif minimum == 0 and open_low:
        expected = "a positive number"
    elif minimum is not None:
        expected = f"a finite number {'>' if open_low else '>='} {minimum:g}"
    else:
        expected = "a finite number" + ("" if maximum is None else f" <= {maximum:g}")
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be {expected}; got {value!r}")
    v = float(value)
    below = minimum is not None and (v <= minimum if open_low else v < minimum)
    if not math.isfinite(v) or below or (maximum is not None and v > maximum):
        raise ValueError(f"{name} must be {expected}; got {value!r}")
    return v


def check_probability(value: Any, name: str) -> float:
    """``value`` as a float in ``[0, 1]``.

    >>> check_probability(0.25, "fraction")
    0.25
    """
    return check_float(value, name, minimum=0.0, maximum=1.0)


def check_range(
    value: Any, name: str, *, within: tuple[float, float] | None = None
) -> tuple[float, float]:
    """``(lo, hi)`` floats if ``value`` is a pair of finite numbers with ``lo < hi``.

    ``within`` further requires ``within[0] <= lo`` and ``hi <= within[1]``.

    >>> check_range([0, 255], "value_range")
    (0.0, 255.0)
    """
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair of numbers (lo, hi); got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"{name} must be finite numbers (lo, hi) with lo < hi; got {value!r}")
    if within is not None and not (within[0] <= lo and hi <= within[1]):
        raise ValueError(f"{name} must lie within [{within[0]:g}, {within[1]:g}]; got {value!r}")
    return lo, hi


def check_choice(value: Any, name: str, choices: Collection[Any]) -> Any:
    """``value`` if it is one of ``choices``; else a ValueError listing them.

    >>> check_choice("mean", "reduce", ("max", "mean"))
    'mean'
    """
    try:
        ok = value in choices
    except TypeError:  # an unhashable value in a set of choices
        ok = False
    if not ok:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {valid}; got {value!r}")
    return value


def check_probe(probe: Any, name: str = "probe") -> Any:
    """``probe`` if it is a :class:`jaxvis.Probe`; else a TypeError naming ``name``.

    A ``jv.zoo`` model (which has a ``.probe``) gets a hint to pass its probe."""
    from jaxvis.probe import Probe

    if isinstance(probe, Probe):
        return probe
    hint = ""
    if isinstance(getattr(probe, "probe", None), Probe):
        hint = f"; pass its .probe (e.g. {name}=zoo_model.probe)"
    raise TypeError(f"{name} must be a jaxvis.Probe; got {type(probe).__name__}{hint}")


def check_image_batch(x: Any, name: str, *, value_range: Any = None) -> Any:
    """``x`` if it is a float array of 4 axes ``(N, H, W, C)`` with at least one image.

    The probe-free part of :meth:`jaxvis.Probe.check_input` (whose image shape, finiteness
    and range checks need the probe); ``value_range`` only words the dtype error's hint.
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name} must be a numpy or jax array (N, H, W, C); got {type(x).__name__}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        where = "" if value_range is None else f" in the range {value_range}"
        raise TypeError(
            f"{name} must be a float array{where}; got dtype {x.dtype}: convert it, e.g. "
            "x.astype('float32') / 255"
        )
    if x.ndim != 4:
        hint = f"; add a batch axis with {name}[None]" if x.ndim == 3 else ""
        raise ValueError(f"{name} must have 4 axes (N, H, W, C); got shape {tuple(x.shape)}{hint}")
    if x.shape[0] == 0:
        raise ValueError(
            f"{name} is an empty batch (shape {tuple(x.shape)}): expected at least one image"
        )
    return x


def check_images(probe: ProbeLike, x: Any, name: str = "x") -> jax.Array | np.ndarray:
    """``x`` as a float32 ``(N, H, W, C)`` batch, validated by ``probe.check_input``.

    A numpy batch stays numpy (no device round trip); a jax batch stays on its device.
    """
    checked = probe.check_input(x, name)
    if isinstance(checked, jax.Array):
        return checked.astype(jnp.float32)
    return np.asarray(checked, np.float32)


def check_layer(probe: ProbeLike, layer: Any, name: str = "layer") -> str:
    """``layer`` if it is the name of one of ``probe``'s layers (close names suggested)."""
    if isinstance(layer, bool) or not isinstance(layer, str):
        raise TypeError(f"{name} must be a layer name (str); got {layer!r}")
    probe.layer(layer)  # unknown names raise a ValueError with the closest names
    return layer


def check_layer_names(probe: ProbeLike, layers: Any, name: str = "layers") -> list[str] | None:
    """None, or ``layers`` (one name or a sequence of names) as a list of known layer names."""
    if layers is None:
        return None
    names = [layers] if isinstance(layers, str) else layers
    if not isinstance(names, Iterable):
        raise TypeError(f"{name} must be a layer name or a sequence of them; got {layers!r}")
    return [check_layer(probe, n, name) for n in names]


def _bounds_text(what: str, minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"{what} in [{minimum}, {maximum}]"
    if minimum is not None:
        return f"{what} >= {minimum}"
    if maximum is not None:
        return f"{what} <= {maximum}"
    return what
