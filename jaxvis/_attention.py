"""Capture of attention weights from Flax attention modules, without editing the model.

Flax's ``nn.MultiHeadDotProductAttention`` (Linen) and ``nnx.MultiHeadAttention`` (NNX) compute
their weights in ``attention_fn`` (``dot_product_attention``), which sows the post-softmax
weights through ``module.sow(collection, "attention_weights", weights)`` when given a
``module=``, and then multiplies the very same array with the values. While a recorder is
active, :func:`capture_attention` gives one module call an ``attention_fn`` that passes a
:class:`_Sower` as ``module=``: its ``sow`` records the weights as the layer
``<module path>.attention_weights`` (kind ``"attention"``). Nothing is sown into Flax
collections and no class is patched; the module's own attribute is restored after the call.
Because the recorded value is the array the module goes on to use, editing it (see
:func:`jaxvis.attribution._edit.edited_apply`) changes the output and gradients flow through it.

Example::

    with capture_attention(module, "encoder.block_0.attn", recorder):
        out = call(module, x)     # records "encoder.block_0.attn.attention_weights"
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["KIND", "WEIGHTS_NAME", "capture_attention", "check_attention_tap"]

#: The layer kind of captured attention weights (see :mod:`jaxvis.layout`).
KIND = "attention"
#: Suffix of a captured layer's name after its module's path.
WEIGHTS_NAME = "attention_weights"


class _Sower:
    """Stands in for ``module=`` in Flax's ``dot_product_attention``: records what is sown.

    A module the caller passed itself (``sow_weights=True``) still gets its own ``sow``.
    """

    def __init__(self, recorder: Any, name: str, module: Any, real: Any) -> None:
        self._recorder, self._name, self._module, self._real = recorder, name, module, real

    def sow(self, collection: Any, name: str, value: Any, *args: Any, **kwargs: Any) -> bool:
        if name == WEIGHTS_NAME:
            self._recorder.record_module(self._name, value, self._module, KIND)
        if self._real is not None:
            return self._real.sow(collection, name, value, *args, **kwargs)
        return True


def _accepts_module(fn: Callable) -> bool:
    try:
        return "module" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _wanted(recorder: Any, name: str) -> bool:
    """Whether the recorder keeps ``name`` (as :meth:`Recorder.record` will number it)."""
    if recorder.wanted is None or recorder._iterations:  # a looped scan names it later
        return True
    count = recorder._seen.get(name, 0)
    return (f"{name}@{count + 1}" if count else name) in recorder.wanted


@contextlib.contextmanager
def capture_attention(module: Any, path: str, recorder: Any) -> Iterator[None]:
    """Record the attention weights of ``module``'s next call as ``<path>.attention_weights``.

    Applies to any module with an ``attention_fn`` taking ``module=`` (Flax's attention
    modules and their subclasses); a no-op for others, and when the recorder does not want the
    weights (then the module runs exactly as without a probe, e.g. on NNX's fused path).
    """
    fn = getattr(module, "attention_fn", None)
    name = f"{path}.{WEIGHTS_NAME}"
    if (
        recorder is None
        or not callable(fn)
        or getattr(fn, "_jaxvis_attention", False)
        or not _accepts_module(fn)
        or not _wanted(recorder, name)
    ):
        yield
        return

    own = module

    @functools.wraps(fn)  # same signature: Linen filters attention kwargs by it
    def attention_fn(*args: Any, module: Any = None, **kwargs: Any) -> Any:
        return fn(*args, module=_Sower(recorder, name, own, module), **kwargs)

    attention_fn._jaxvis_attention = True  # type: ignore[attr-defined]
    had = "attention_fn" in vars(module)
    previous = vars(module).get("attention_fn")
    object.__setattr__(module, "attention_fn", attention_fn)  # this instance, this call only
    try:
        yield
    finally:
        if had:
            object.__setattr__(module, "attention_fn", previous)
        else:
            object.__delattr__(module, "attention_fn")


def check_attention_tap(name: str, value: Any) -> None:
    """A ``ValueError`` unless ``value`` looks like attention weights ``(..., heads, T, T)``."""
    shape = tuple(getattr(value, "shape", ()))
    if len(shape) < 3 or shape[-1] != shape[-2]:
        raise ValueError(
            f"jv.tap({name!r}, ..., kind='attention') needs weights shaped (N, heads, T, T) "
            f"(queries x keys), got shape {shape}"
        )
