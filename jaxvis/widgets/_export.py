"""Save a widget, as it looks now, to one standalone HTML file that needs no kernel.

ipywidgets' own embedding (``embed_minimal_html``) loads require.js and the widget manager
from public CDNs, so its page is blank offline. This writes the pictures themselves: images
and Output images as ``data:`` URLs, text and HTML as they are, controls as read-only
readouts, bqplot figures as SVG, and anywidget widgets by running their own ES module in the
page against a read-only model holding the widget's current state (binary traits as
``DataView``, as anywidget passes them). Nothing is fetched: the file works offline, in any
browser, and can be put on a web page.

Example::

    explorer = jv.widgets.LayerExplorer(demo.probe, demo.x_test[:10])
    explorer.save_html("explorer.html")  # or jv.widgets.save_html(explorer, "explorer.html")
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any

import anywidget
import bqplot as bq
import ipywidgets as W
import numpy as np

__all__ = ["StaticHTML", "html_page", "save_html"]

_LAYOUT_KEYS = (
    "width",
    "height",
    "min_width",
    "max_width",
    "margin",
    "padding",
    "border",
    "display",
    "flex_flow",
    "align_items",
    "justify_content",
    "grid_template_columns",
    "grid_gap",
    "overflow",
)
_PAGE_CSS = """
body { font: 13px/1.4 system-ui, sans-serif; margin: 16px; color: #222; }
.jv-static-readout { display: inline-flex; gap: 6px; margin: 2px 8px 2px 0; }
.jv-static-readout b { font-weight: 600; }
.jv-static-missing { color: #888; font-style: italic; }
.jv-static-footer { margin-top: 12px; color: #888; font-size: 11px; }
svg.jv-static-figure text { font: 10px sans-serif; fill: #444; }
"""
# The read-only model an anywidget ES module renders against (anywidget's model interface).
_ANYWIDGET_BOOT = """
const unpack = (v) => {
  if (v && typeof v === "object" && !Array.isArray(v)) {
    if ("__jv_b64__" in v) {
      const s = atob(v.__jv_b64__), b = new Uint8Array(s.length);
      for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i);
      return new DataView(b.buffer);
    }
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unpack(x)]));
  }
  return Array.isArray(v) ? v.map(unpack) : v;
};
for (const el of document.querySelectorAll("[data-jv-anywidget]")) {
  const spec = JSON.parse(document.getElementById(el.dataset.jvAnywidget).textContent);
  const state = unpack(spec.state), handlers = {};
  const model = {
    get: (k) => state[k],
    set: (k, v) => { state[k] = v; (handlers["change:" + k] || []).forEach((f) => f()); },
    on: (e, f) => { (handlers[e] = handlers[e] || []).push(f); },
    off: (e, f) => { handlers[e] = (handlers[e] || []).filter((g) => g !== f); },
    save_changes: () => {}, send: () => {}, widget_manager: {},
  };
  if (spec.css) {
    const style = document.createElement("style");
    style.textContent = spec.css;
    document.head.appendChild(style);
  }
  const url = URL.createObjectURL(new Blob([spec.esm], { type: "text/javascript" }));
  const mod = await import(url);
  const def = mod.default ?? mod;
  const widget = typeof def === "function" ? await def() : def;
  await widget.initialize?.({ model });
  await (widget.render ?? mod.render)({ model, el });
  el.dataset.jvRendered = "1";
}
document.body.dataset.jvReady = "1";
"""


class StaticHTML:
    """Mixin giving a widget :meth:`save_html`."""

    def save_html(self, path: str | os.PathLike[str], title: str | None = None) -> Path:
        """Write this widget, as it looks now, to a standalone HTML file (see the module)."""
        return save_html(self, path, title=title)


def save_html(widget: Any, path: str | os.PathLike[str], title: str | None = None) -> Path:
    """Write ``widget`` (any ipywidgets tree) as it looks now to a standalone HTML file.

    Example::

        jv.widgets.save_html(jv.widgets.FilterGrid(demo.probe, "conv1"), "filters.html")
    """
    if not isinstance(widget, W.Widget):
        raise TypeError(f"widget must be an ipywidgets widget, got {type(widget).__name__}")
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    out = Path(path)
    out.write_text(html_page(widget, title), encoding="utf-8")
    return out


def html_page(widget: Any, title: str | None = None) -> str:
    """The standalone HTML page :func:`save_html` writes, as text."""
    if not isinstance(widget, W.Widget):
        raise TypeError(f"widget must be an ipywidgets widget, got {type(widget).__name__}")
    page_title = html.escape(title or type(widget).__name__)
    scripts: list[str] = []
    body = _render(widget, scripts)
    boot = f'<script type="module">{_ANYWIDGET_BOOT}</script>' if scripts else ""
    ready = "" if scripts else '<script>document.body.dataset.jvReady = "1";</script>'
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{page_title}</title>"
        f"<style>{_PAGE_CSS}</style></head><body>{body}"
        f"<div class='jv-static-footer'>Saved by jaxvis: a snapshot, no kernel.</div>"
        f"{''.join(scripts)}{boot}{ready}</body></html>"
    )


def _attrs(widget: W.Widget, style: str = "") -> str:
    classes = " ".join(html.escape(c) for c in getattr(widget, "_dom_classes", ()))
    layout = getattr(widget, "layout", None)
    if layout is not None:
        for key in _LAYOUT_KEYS:
            value = getattr(layout, key, None)
            if value:
                style += f"{key.replace('_', '-')}:{html.escape(str(value))};"
    return f' class="{classes}" style="{style}"'


def _render(w: Any, scripts: list[str]) -> str:
    if isinstance(w, anywidget.AnyWidget):
        return _anywidget(w, scripts)
    if isinstance(w, bq.Figure):
        return _figure(w)
    if isinstance(w, W.Box):
        direction = "row" if isinstance(w, W.HBox) else "column"
        kids = "".join(_render(c, scripts) for c in w.children)
        titles = getattr(w, "titles", ()) if isinstance(w, W.Tab | W.Accordion) else ()
        if titles:
            kids = "".join(
                f"<section><h4>{html.escape(str(t or ''))}</h4>{_render(c, scripts)}</section>"
                for t, c in zip(titles, w.children, strict=False)
            )
        flex = f"display:flex;flex-direction:{direction};gap:4px;"
        return f"<div{_attrs(w, flex)}>{kids}</div>"
    if isinstance(w, W.Image):
        return _image(w)
    if isinstance(w, W.HTML | W.HTMLMath):
        return f"<div{_attrs(w)}>{w.value}</div>"
    if isinstance(w, W.Label):
        return f"<span{_attrs(w)}>{html.escape(str(w.value))}</span>"
    if isinstance(w, W.Output):
        return f"<div{_attrs(w)}>{''.join(_output(o) for o in w.outputs)}</div>"
    if isinstance(w, W.Button | W.ToggleButton):
        return f"<button disabled{_attrs(w)}>{html.escape(w.description)}</button>"
    if isinstance(w, W.ValueWidget | W.DOMWidget) and hasattr(w, "value"):
        return _readout(w)
    if isinstance(w, W.DOMWidget):
        return f"<span class='jv-static-missing'>({type(w).__name__})</span>"
    return ""


def _data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(bytes(data)).decode('ascii')}"


def _image(w: W.Image) -> str:
    size = "".join(
        f' {k}="{html.escape(str(v))}"' for k in ("width", "height") if (v := getattr(w, k))
    )
    src = _data_url(w.value, f"image/{w.format or 'png'}") if w.value else ""
    return f'<img src="{src}"{size}{_attrs(w)}>'


def _output(o: dict[str, Any]) -> str:
    kind = o.get("output_type")
    if kind == "stream":
        return f"<pre>{html.escape(o.get('text', ''))}</pre>"
    if kind == "error":
        return f"<pre>{html.escape(o.get('ename', ''))}: {html.escape(o.get('evalue', ''))}</pre>"
    data = o.get("data", {})
    if "image/png" in data:
        return f'<img src="data:image/png;base64,{data["image/png"]}">'
    if "text/html" in data:
        return "".join(data["text/html"])
    return f"<pre>{html.escape(''.join(data.get('text/plain', '')))}</pre>"


def _readout(w: Any) -> str:
    value = w.value
    if hasattr(w, "options") and hasattr(w, "label"):
        value = w.label  # a selection: the chosen option's text
    elif hasattr(w, "options") and hasattr(w, "labels"):
        value = w.labels
    text = ", ".join(map(str, value)) if isinstance(value, tuple | list) else str(value)
    desc = html.escape(getattr(w, "description", "") or "")
    return (
        f"<span{_attrs(w)}><span class='jv-static-readout'>{desc} <b>{html.escape(text)}</b>"
        "</span></span>"
    )


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes | bytearray | memoryview):
        return {"__jv_b64__": base64.b64encode(bytes(v)).decode("ascii")}
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _anywidget(w: anywidget.AnyWidget, scripts: list[str]) -> str:
    state = {k: _jsonable(v) for k, v in w.get_state().items() if not k.startswith("_")}
    spec = {"state": state, "esm": str(w._esm), "css": str(getattr(w, "_css", "") or "")}
    sid = f"jv-state-{len(scripts)}"
    # "</" cannot appear inside a <script>: JSON allows escaping the slash.
    payload = json.dumps(spec).replace("</", "<\\/")
    scripts.append(f'<script type="application/json" id="{sid}">{payload}</script>')
    return f'<div data-jv-anywidget="{sid}"{_attrs(w)}></div>'


def _figure(fig: bq.Figure) -> str:
    """A bqplot figure's Lines and Bars as an SVG (axes as the data's bounds)."""
    width, height, pad = 360, 200, 28
    series = []
    for mark in fig.marks:
        x = np.asarray(mark.x if mark.x is not None else [])
        y = np.asarray(mark.y if mark.y is not None else [])
        if y.dtype.kind not in "fiub":
            continue  # nothing numeric to draw
        x = np.arange(x.shape[-1], dtype=np.float64) if x.dtype.kind not in "fiu" else x
        x, y = x.astype(np.float64), y.astype(np.float64)  # ordinal x (class names): positions
        if y.ndim == 1:
            y = y[None]
        if x.size and y.size and x.shape[-1] == y.shape[-1]:
            series.append((mark, x, y))
    if not series:
        return f"<svg class='jv-static-figure' width='{width}' height='{height}'></svg>"
    xs = np.concatenate([s[1].ravel() for s in series])
    ys = np.concatenate([s[2].ravel() for s in series])
    ok = np.isfinite(ys)
    x0, x1 = float(np.nanmin(xs)), float(np.nanmax(xs))
    y0 = min(0.0, float(ys[ok].min())) if ok.any() else 0.0
    y1 = float(ys[ok].max()) if ok.any() else 1.0
    sx = (width - 2 * pad) / ((x1 - x0) or 1.0)
    sy = (height - 2 * pad) / ((y1 - y0) or 1.0)

    def px(xv: float, yv: float) -> tuple[float, float]:
        return pad + (xv - x0) * sx, height - pad - (yv - y0) * sy

    parts = []
    for mark, x, y in series:
        colors = list(getattr(mark, "colors", None) or ["#4c78a8"])
        for i, row in enumerate(y):
            color = html.escape(str(colors[i % len(colors)]))
            good = np.isfinite(row)
            if isinstance(mark, bq.Bars):
                bw = max(1.0, 0.8 * (width - 2 * pad) / max(1, len(x)))
                for xv, yv in zip(x[good], row[good], strict=True):
                    (cx, top), (_, base) = px(xv, yv), px(xv, y0)
                    parts.append(
                        f"<rect x='{cx - bw / 2:.1f}' y='{min(top, base):.1f}' "
                        f"width='{bw:.1f}' height='{abs(base - top):.1f}' fill='{color}'/>"
                    )
            else:
                pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in map(px, x[good], row[good]))
                parts.append(f"<polyline points='{pts}' fill='none' stroke='{color}'/>")
    labels = [a.label for a in fig.axes if getattr(a, "label", "")]
    caption = html.escape(" / ".join([fig.title, *labels]) if fig.title else " / ".join(labels))
    return (
        f"<svg class='jv-static-figure {' '.join(fig._dom_classes)}' width='{width}' "
        f"height='{height}'><rect x='{pad}' y='{pad}' width='{width - 2 * pad}' "
        f"height='{height - 2 * pad}' fill='none' stroke='#ccc'/>{''.join(parts)}"
        f"<text x='{pad}' y='{pad - 8}'>{caption}</text></svg>"
    )
