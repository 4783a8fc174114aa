"""``ModelSummary``: the probe's layer table (Keras ``model.summary()`` style) as HTML."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from jaxvis._protocols import ProbeLike
from jaxvis.widgets._common import check_probe
from jaxvis.widgets._export import StaticHTML

__all__ = ["ModelSummary", "summary_html"]

_BASE_KEYS = ("name", "kind", "shape", "n_params", "total_params", "depth", "params")
_HIDDEN = ("in_features", "out_features", "feature_group_count", "use_bias")


def _settings_text(row: dict[str, Any]) -> str:
    parts = list(row.get("params", ()))  # the "(other)" row: parameters of no layer
    if "in_features" in row and "out_features" in row:
        parts.append(f"{row['in_features']}→{row['out_features']}")
    elif "features" in row:
        parts.append(f"features={row['features']}")
    for key, value in row.items():
        if key in _BASE_KEYS or key in _HIDDEN or key == "features":
            continue
        if key == "kernel_dilation" and value in (1, (1, 1)):
            continue  # the default: read by jv.dataset.receptive_field, not worth showing
        if isinstance(value, tuple):
            value = "×".join(map(str, value))
        parts.append(f"{key}={value}")
    if row.get("feature_group_count", 1) not in (1, None):
        parts.append(f"groups={row['feature_group_count']}")
    if row.get("use_bias") is False:
        parts.append("no bias")
    return ", ".join(parts)


def summary_html(probe: ProbeLike) -> str:
    """An HTML ``<table>`` of ``probe.summary()``: layer, kind, output shape, params, settings.

    Layers are indented by nesting depth; each counts its own parameters, so the column sums to
    the total in the last row (``probe.n_params``).
    """
    rows = probe.summary()
    cell = "padding:2px 10px;text-align:left;border-bottom:1px solid #ddd"
    num = cell.replace("text-align:left", "text-align:right")
    head = "".join(
        f"<th style='{num if h == 'params' else cell}'>{h}</th>"
        for h in ("#", "layer", "kind", "output shape", "params", "settings")
    )
    body = [
        f"<tr style='color:#666'><td style='{cell}'></td><td style='{cell}'>input</td>"
        f"<td style='{cell}'></td><td style='{cell}'>{_shape(probe.input_shape)}</td>"
        f"<td style='{num}'></td><td style='{cell}'>range {probe.input_range}</td></tr>"
    ]
    n_layers = len(probe.layers)  # a last "(other)" row holds parameters of no layer
    for i, row in enumerate(rows):
        indent = f"padding-left:{10 + 16 * int(row.get('depth', 0))}px"
        body.append(
            "<tr>"
            f"<td style='{cell};color:#999'>{'' if i >= n_layers else i}</td>"
            f"<td style='{cell};{indent}'><code>{html.escape(str(row['name']))}</code></td>"
            f"<td style='{cell}'>{html.escape(str(row['kind']))}</td>"
            f"<td style='{cell}'>{_shape(row['shape'])}</td>"
            f"<td style='{num}'>{int(row['n_params']):,}</td>"
            f"<td style='{cell};color:#555'>{html.escape(_settings_text(row))}</td>"
            "</tr>"
        )
    total = sum(int(r["n_params"]) for r in rows)
    body.append(
        f"<tr style='font-weight:bold'><td style='{cell}'></td><td style='{cell}'>total</td>"
        f"<td style='{cell}'>{n_layers} layers</td><td style='{cell}'></td>"
        f"<td style='{num}'>{total:,}</td><td style='{cell}'></td></tr>"
    )
    classes = ""
    if probe.class_names:
        names = ", ".join(map(str, probe.class_names))
        classes = f"<div style='color:#555;margin-top:4px'>classes: {html.escape(names)}</div>"
    return (
        "<table class='jv-summary-table' style='border-collapse:collapse;font-size:13px'>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{classes}"
    )


def _shape(shape: Any) -> str:
    return "×".join(map(str, shape)) if shape else "—"


class ModelSummary(StaticHTML, W.HTML):
    """The layers of a probed model as a table: name, kind, output shape, parameters, settings.

    ``rows`` holds ``probe.summary()`` (rows indented by nesting depth, each with its own
    parameters, so none is counted twice); ``total_params`` the model's parameter count.

    Example::

        jv.widgets.ModelSummary(jv.zoo.load("mnist_cnn").probe)
    """

    def __init__(self, probe: ProbeLike) -> None:
        self.probe = check_probe(probe)
        self.rows: list[dict[str, Any]] = self.probe.summary()
        self.total_params = self.probe.n_params
        super().__init__(value=summary_html(self.probe))
        self.add_class("jv-model-summary")
