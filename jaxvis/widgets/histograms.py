"""``WeightHistograms``: the distribution of each parameter array, optionally against another set.

Typical use: the same model before and after training, drawn over each other on shared bins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import bqplot as bq
import ipywidgets as W
import numpy as np

from jaxvis._checks import check_positive_int
from jaxvis._trees import weight_arrays
from jaxvis.probe import Probe
from jaxvis.widgets._common import empty_message, fmt
from jaxvis.widgets._errors import ErrorBox
from jaxvis.widgets._export import StaticHTML

__all__ = ["WeightHistograms", "collect_weights"]

COLORS = ("#4c78a8", "#f58518")


def collect_weights(source: Any, name: str = "params_or_probe") -> dict[str, np.ndarray]:
    """``{"layer.param": array}`` of the float parameter arrays of a Probe, an NNX module or a
    pytree of parameters (NNX State, Linen variables, a dict of arrays), in their order."""
    if isinstance(source, Probe):
        return _kernels_first(
            {
                f"{layer}.{key}": np.asarray(arr)
                for layer, params in source.weights().items()
                for key, arr in params.items()
                if np.issubdtype(np.asarray(arr).dtype, np.floating)
            }
        )
    try:
        from flax import nnx

        if isinstance(source, nnx.Module):
            source = nnx.state(source, nnx.Param)
    except ImportError:  # pragma: no cover - flax is a dependency
        pass
    if source is None or isinstance(source, str | bytes | int | float):
        raise TypeError(
            f"{name} must be a jaxvis.Probe, an nnx.Module or a pytree of parameter arrays, "
            f"got {type(source).__name__}"
        )
    out = {key: np.asarray(leaf) for key, leaf in weight_arrays(source).items()}
    if not out:
        raise ValueError(f"{name} holds no floating-point parameter arrays")
    if all(k.startswith("params.") for k in out):  # Linen variables {"params": {...}}
        out = {k[len("params.") :]: v for k, v in out.items()}
    return _kernels_first(out)


def _kernels_first(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keep the layers' order, but list each layer's kernel before its bias."""
    order: dict[str, int] = {}
    for key in arrays:
        order.setdefault(key.rpartition(".")[0], len(order))

    def rank(key: str) -> tuple[int, int]:
        prefix, _, last = key.rpartition(".")
        return order[prefix], 0 if last == "kernel" else 1

    return {key: arrays[key] for key in sorted(arrays, key=rank)}


class WeightHistograms(StaticHTML, W.VBox):
    """Histograms of a model's weights, one parameter array at a time (dropdown).

    Args:
        params_or_probe: a :class:`jaxvis.Probe`, an ``nnx.Module`` or a pytree of parameters.
        compare_to: optional second set of the same kind and structure (e.g. the untrained
            model), drawn over the first on the same bins.
        bins: number of bins, shared by both sets within each array.
        names: legend names of the two sets.
        layer: the array to show first (``"conv1.kernel"``; default: the first).

    A probe without weights (e.g. a plain function with no parameters) gets a message in place.

    Example::

        before = jv.Probe(jv.zoo.build("mnist_cnn", 0), input_shape=(28, 28, 1))
        jv.widgets.WeightHistograms(zoo.probe, compare_to=before, names=("trained", "init"))
    """

    def __init__(
        self,
        params_or_probe: Any,
        compare_to: Any = None,
        *,
        bins: int = 40,
        names: Sequence[str] = ("weights", "compare_to"),
        layer: str | None = None,
    ) -> None:
        self.weights = collect_weights(params_or_probe, "params_or_probe")
        self.compare: dict[str, np.ndarray] | None = None
        if compare_to is not None:
            if isinstance(compare_to, Probe) != isinstance(params_or_probe, Probe):
                raise TypeError(
                    "compare_to must be the same kind as params_or_probe (both Probes or both "
                    f"parameter pytrees), got {type(compare_to).__name__} and "
                    f"{type(params_or_probe).__name__}"
                )
            self.compare = collect_weights(compare_to, "compare_to")
            missing = sorted(set(self.weights) ^ set(self.compare))
            if missing:
                raise ValueError(
                    "compare_to must have the same parameter arrays as params_or_probe; "
                    f"differing: {', '.join(missing[:8])}"
                )
            for key, arr in self.weights.items():
                if arr.shape != self.compare[key].shape:
                    raise ValueError(
                        f"compare_to[{key!r}] has shape {self.compare[key].shape}, "
                        f"expected {arr.shape}"
                    )
        bins = check_positive_int(bins, "bins")
        if isinstance(names, str) or len(names) != 2:
            raise ValueError(f"names must be two legend names, got {names!r}")
        if layer is not None and layer not in self.weights:
            raise ValueError(f"layer must be one of {list(self.weights)}, got {layer!r}")
        self.bins = int(bins)
        self.names = (str(names[0]), str(names[1]))

        self.error = ErrorBox()
        self.layer_select = W.Dropdown(
            options=[(f"{k} · {'×'.join(map(str, v.shape))}", k) for k, v in self.weights.items()],
            value=layer or next(iter(self.weights), None),
            description="weights",
            disabled=not self.weights,
            layout=W.Layout(width="340px"),
        )
        self.layer_select.add_class("jv-weight-layer-select")
        xs, ys = bq.LinearScale(), bq.LinearScale(min=0.0)
        self.bars = [
            bq.Bars(
                x=[0.0],
                y=[0.0],
                scales={"x": xs, "y": ys},
                colors=[COLORS[k]],
                opacities=[0.55],
                padding=0.0,
                labels=[self.names[k]],
                visible=k == 0 or self.compare is not None,
            )
            for k in range(2)
        ]
        self.figure = bq.Figure(
            marks=self.bars,
            axes=[
                bq.Axis(scale=xs, label="weight value", tick_format=".2~g"),
                bq.Axis(scale=ys, side="left", label="count", tick_format=",~g"),
            ],
            fig_margin={"top": 20, "bottom": 45, "left": 60, "right": 15},
            layout=W.Layout(width="480px", height="300px"),
        )
        self.figure.add_class("jv-weight-histogram")
        self.stats = W.HTML()
        self.stats.add_class("jv-weight-stats")
        super().__init__([self.layer_select, self.error, self.figure, self.stats])
        self.add_class("jv-weight-histograms")
        self.layer_select.observe(self.error.guard(self._on_layer), "value")
        if self.weights:
            self.error.guard(self._on_layer)(None)
        else:
            self.figure.layout.display = "none"
            self.stats.value = empty_message(
                "No weights to show.", "The probe's layers own no floating-point parameters."
            )

    @property
    def layer(self) -> str:
        """The parameter array on screen."""
        return str(self.layer_select.value)

    def histogram(self, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``(bin edges, counts, compare counts or None)`` of array ``key`` on shared bins."""
        a = self.weights[key].ravel()
        b = None if self.compare is None else self.compare[key].ravel()
        both = a if b is None else np.concatenate([a, b])
        edges = np.histogram_bin_edges(both, bins=self.bins)
        counts = np.histogram(a, edges)[0]
        other = None if b is None else np.histogram(b, edges)[0]
        return edges, counts, other

    def _on_layer(self, change: Any) -> None:
        key = self.layer
        edges, counts, other = self.histogram(key)
        centers = 0.5 * (edges[:-1] + edges[1:])
        with self.bars[0].hold_sync():
            self.bars[0].x, self.bars[0].y = centers, counts
        if other is not None:
            with self.bars[1].hold_sync():
                self.bars[1].x, self.bars[1].y = centers, other
        rows = [(self.names[0], self.weights[key])]
        if self.compare is not None:
            rows.append((self.names[1], self.compare[key]))
        self.stats.value = "<br>".join(
            f"<span style='color:{COLORS[k]}'>■</span> {name}: n={arr.size:,} · mean "
            f"{fmt(arr.mean())} · std {fmt(arr.std())} · range [{fmt(arr.min())}, {fmt(arr.max())}]"
            for k, (name, arr) in enumerate(rows)
        )
