"""Argument checks and small display helpers shared by the jaxvis widgets (no maths here)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import ipywidgets as W
import numpy as np

from jaxvis import _checks, render
from jaxvis._checks import check_probe
from jaxvis._protocols import ProbeLike

__all__ = [
    "check_images",
    "check_labels",
    "check_probe",
    "empty_message",
    "fmt",
    "image_png",
    "input_slider",
    "layer_title",
    "probe_conv_layers",
]


def check_images(images: Any, probe: ProbeLike, name: str = "images") -> np.ndarray:
    """``images`` as a float32 numpy ``(N, H, W, C)`` array (see ``jaxvis._checks``)."""
    return np.asarray(_checks.check_images(probe, images, name))


def check_labels(labels: Any, n: int, name: str = "labels") -> list[Any] | None:
    """``None`` or a list of ``n`` labels (ints or strings)."""
    if labels is None:
        return None
    if isinstance(labels, str) or not hasattr(labels, "__len__"):
        raise TypeError(f"{name} must be a sequence with one label per image, got {labels!r}")
    out = [v.item() if hasattr(v, "item") else v for v in np.asarray(labels).ravel()]
    if len(out) != n:
        raise ValueError(f"{name} must have one entry per image ({n}), got {len(out)}")
    return out


def input_slider(n: int, css_class: str, width: str) -> W.IntSlider:
    """The "input" slider over ``n`` dataset images (updates on release), classed ``css_class``.

    Example::

        self.image_slider = input_slider(len(self.dataset), "jv-ue-image", "340px")
    """
    slider = W.IntSlider(
        value=0,
        min=0,
        max=n - 1,
        description="input",
        continuous_update=False,
        layout=W.Layout(width=width),
    )
    slider.add_class(css_class)
    return slider


def empty_message(title: str, detail: str = "") -> str:
    """HTML shown in place of a widget's view when there is nothing to show (no layers...).

    Example::

        W.HTML(empty_message("This probe has no layers to show.", "Mark them with jv.tap."))
    """
    return (
        "<div class='jv-empty' style='padding:6px 8px;background:#f4f4f4;border-radius:3px'>"
        f"<b>{html.escape(title)}</b> {html.escape(detail)}</div>"
    )


def fmt(value: float) -> str:
    """A short, fixed-width-ish number for labels: ``0.83``, ``-12.4``, ``1.2e-05``."""
    v = float(value)
    if v == 0:
        return "0"
    if 1e-2 <= abs(v) < 1e4:
        return f"{v:.3g}" if abs(v) >= 100 else f"{v:.2f}"
    return f"{v:.2g}"


def image_png(x: np.ndarray, input_range: Any, size: int = 196) -> bytes:
    """PNG of one input image ``(H, W, C)`` mapped from the probe's input range (one pair or
    one per channel), upscaled."""
    x01 = render.from_range(x, input_range, "input_range")
    if x01.shape[-1] == 1:
        rgb = render.colorize(x01[..., 0], "gray")
    elif x01.shape[-1] == 3:
        rgb = render.to_uint8(x01)
    else:  # show the first channel of a multi-channel input
        rgb = render.colorize(x01[..., 0], "gray")
    factor = max(1, size // max(x.shape[0], x.shape[1]))
    return render.png_bytes(render.upscale(rgb, factor))


def layer_title(name: str, kind: str, shape: Sequence[int]) -> str:
    """``"conv1 · Conv · 28×28×4"``."""
    return f"{name} · {kind} · {'×'.join(map(str, shape))}"


def probe_conv_layers(probe: ProbeLike) -> dict[str, np.ndarray]:
    """``{layer: kernel}`` of the probe's layers with a 4-axis ``(kh, kw, in, out)`` kernel."""
    out = {}
    for name, params in probe.weights().items():
        kernel = params.get("kernel")
        if kernel is not None and np.ndim(kernel) == 4:
            out[name] = np.asarray(kernel)
    return out


def class_name(probe: ProbeLike, k: int) -> str:
    """The probe's name for class ``k``, or the index as text."""
    names = probe.class_names
    return names[k] if names is not None and k < len(names) else str(k)


def set_class_options(dropdown: Any, probe: ProbeLike, x: Any) -> tuple[np.ndarray, np.ndarray]:
    """Fill ``dropdown`` with the classes of ``probe(x)[0]``, likeliest first, and select the
    top one; returns ``(probabilities, order)``. The caller guards its observers."""
    import jax

    probs = np.asarray(jax.nn.softmax(probe(x), axis=-1))[0]
    order = np.argsort(-probs)
    dropdown.options = [(f"{class_name(probe, int(k))}  (p={probs[k]:.2f})", int(k)) for k in order]
    dropdown.value = int(order[0])
    return probs, order
