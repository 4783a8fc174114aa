"""``ProbeLike``: what the jaxvis tools need from a probe (see ``docs/design.md``, "Contracts").

:class:`jaxvis.Probe` is the one implementation; the protocol states the contract that
optvis, attribution, dataset, training, concepts and the widgets rely on, so a signature says
``probe: ProbeLike`` instead of ``Any``. It is ``runtime_checkable`` for ``isinstance`` checks
of the attributes' presence (not their types).

Example::

    def mean_activation(probe: ProbeLike, x, layer: str) -> float:
        _, acts = probe.apply(probe.params, probe.check_input(x), [layer])
        return float(acts[layer].mean())
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import jax
    import numpy as np

    from jaxvis.layout import LayerLayout
    from jaxvis.probe import Layer

__all__ = ["ProbeLike"]


@runtime_checkable
class ProbeLike(Protocol):
    """A model seen through a probe: its layers, its input contract and a pure apply.

    * ``params``: the pytree passed to :meth:`apply` as an argument (never a constant);
    * ``input_shape`` ``(H, W, C)`` (None until known), ``input_range`` ``(lo, hi)`` and
      ``input_low`` / ``input_high`` float32 ``(C,)`` or ``(1,)`` arrays;
    * ``check_input(x, name)``: the batch checked (dtype, rank, shape, finite, range) before
      anything compiles, or a TypeError/ValueError naming ``name``;
    * ``apply(params, x, layers, truncate)``: pure and traceable, ``(output, {layer: act})``;
    * ``layers`` / ``layer(name)`` / ``layout(name)``: layer shapes and how they are laid out.
    """

    input_shape: tuple[int, ...] | None
    input_range: tuple[Any, Any]
    input_low: np.ndarray
    input_high: np.ndarray
    class_names: tuple[str, ...] | None

    @property
    def kind(self) -> str: ...

    @property
    def params(self) -> Any: ...

    @property
    def layers(self) -> tuple[Layer, ...]: ...

    @property
    def layer_names(self) -> tuple[str, ...]: ...

    def layer(self, name: str) -> Layer: ...

    def layout(self, name: str) -> LayerLayout: ...

    def check_input(self, x: Any, name: str = "x") -> Any: ...

    def apply(
        self, params: Any, x: jax.Array, layers: Iterable[str] | None = None, truncate: bool = True
    ) -> tuple[Any, dict[str, jax.Array]]: ...

    def activations(
        self, x: Any, layers: Iterable[str] | str | None = None
    ) -> dict[str, jax.Array]: ...

    def __call__(self, x: Any) -> jax.Array: ...
