"""Receptive fields from the layers' settings, and the input patches under a unit.

:func:`receptive_field` walks the probe's layers in call order up to the chosen one and
composes, for every layer that has them, its kernel (or pooling window) size, dilation, stride
and padding (as ``Probe.summary()`` reports them), with the standard recurrence
``size += (kernel - 1) * jump; start -= pad_low * jump; jump *= stride``. Layers that keep the
spatial size (activations, normalisation, dropout, containers, 1x1 dense layers) are identity.
``'SAME'`` padding is resolved as XLA does (``pad_low = total // 2``).

Assumptions, checked where they can be: the layers run one after another (a chain; the main
path of a residual block is followed, shortcuts are not), and every change of spatial size
happens in a layer with those settings. A size change anywhere else, e.g. a functional
``nn.max_pool`` call that is not a module, raises a ``ValueError`` saying where, rather than
guessing; wrapping the call in a module (``jv.zoo.MaxPool``) fixes it.

Example::

    zoo = jv.zoo.load("mnist_cnn")
    rf = receptive_field(zoo.probe, "conv3")
    rf.size, rf.stride, rf.start        # (10, 10), (2, 2), (-4, -4)
    rf.box(0, 0)                        # (0, 0, 6, 6): the window clipped to the image
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jaxvis.dataset.topk import TopK, _check_channel
from jaxvis.probe import Probe

__all__ = ["ReceptiveField", "patch_boxes", "patches", "receptive_field"]


@dataclass(frozen=True)
class ReceptiveField:
    """The input window of every unit of a spatial layer.

    Unit ``(i, j)`` sees input rows ``start[0] + i * stride[0]`` up to (excluding)
    ``start[0] + i * stride[0] + size[0]``, and likewise columns; ``start`` is negative where
    padding reaches over the image border.

    Attributes:
        layer: the layer's name; ``size``, ``stride``, ``start``: ``(rows, cols)`` pairs;
        input_shape: the image shape ``(H, W, C)``; layer_shape: the layer's ``(h, w, c)``.
    """

    layer: str
    size: tuple[int, int]
    stride: tuple[int, int]
    start: tuple[int, int]
    input_shape: tuple[int, ...]
    layer_shape: tuple[int, ...]

    def window(self, row: int, col: int) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` of unit ``(row, col)``'s window, not clipped."""
        top = self.start[0] + int(row) * self.stride[0]
        left = self.start[1] + int(col) * self.stride[1]
        return top, left, top + self.size[0], left + self.size[1]

    def box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """The window clipped to the image: ``image[top:bottom, left:right]`` is the patch."""
        top, left, bottom, right = self.window(row, col)
        h, w = self.input_shape[:2]
        return max(top, 0), max(left, 0), min(bottom, h), min(right, w)


def receptive_field(probe: Probe, layer: str) -> ReceptiveField:
    """The receptive field of the units of ``layer`` (a layer with ``(H, W, C)`` outputs).

    Raises ``ValueError`` for a layer without spatial axes (every unit sees the whole input),
    or when the spatial size changes outside a layer with kernel/window settings.

    Example::

        rf = receptive_field(jv.zoo.load("mnist_cnn").probe, "pool1")
        rf.size, rf.stride          # (6, 6), (2, 2)
    """
    if not isinstance(probe, Probe):
        raise TypeError(f"probe must be a jaxvis.Probe, got {type(probe).__name__}")
    target = probe.layer(layer)  # unknown names raise with suggestions
    if len(target.shape) != 3:
        raise ValueError(
            f"layer {layer!r} has outputs of shape {target.shape}, without spatial axes: "
            "each of its units sees the whole input"
        )
    rows = probe.summary()
    cur = tuple(probe.input_shape[:2])
    size, jump, start = [1, 1], [1, 1], [0, 0]
    for row in rows:
        shape = tuple(row["shape"])
        spatial = shape[:2] if len(shape) == 3 else None
        geometry = _geometry(row)
        if geometry is not None and spatial is not None:
            kernel, stride, dilation, padding = geometry
            k_eff = [(kernel[a] - 1) * dilation[a] + 1 for a in range(2)]
            pads = [_pad_low(padding, a, cur[a], k_eff[a], stride[a], row["name"]) for a in (0, 1)]
            out = (pads[0][1], pads[1][1])
            if out != spatial:
                raise ValueError(
                    f"cannot compute the receptive field of {layer!r}: layer {row['name']!r} "
                    f"({row['kind']}) would map {cur[0]}x{cur[1]} to {out[0]}x{out[1]} but "
                    f"outputs {spatial[0]}x{spatial[1]}: its input was resized by an operation "
                    "that is not a layer (e.g. a functional nn.max_pool); make that operation "
                    "a module (e.g. jv.zoo.MaxPool)"
                )
            for a in range(2):
                size[a] += (k_eff[a] - 1) * jump[a]
                start[a] -= pads[a][0] * jump[a]
                jump[a] *= stride[a]
            cur = spatial
        elif spatial is not None and spatial != cur:
            raise ValueError(
                f"cannot compute the receptive field of {layer!r}: layer {row['name']!r} "
                f"({row['kind']}) changes the spatial size from {cur[0]}x{cur[1]} to "
                f"{spatial[0]}x{spatial[1]} without kernel_size/window_shape settings"
            )
        if row["name"] == target.name:
            break
    return ReceptiveField(
        layer=target.name,
        size=(size[0], size[1]),
        stride=(jump[0], jump[1]),
        start=(start[0], start[1]),
        input_shape=tuple(probe.input_shape),
        layer_shape=tuple(target.shape),
    )


def patch_boxes(probe: Probe, result: TopK, channel: int) -> np.ndarray:
    """``(k, 4)`` int boxes ``(top, left, bottom, right)`` of ``channel``'s top-k patches.

    Clipped at the image borders; for a layer without spatial axes, the whole image.

    Example::

        boxes = patch_boxes(probe, res, 3)     # image res.indices[3, j], rows top:bottom ...
    """
    if not isinstance(result, TopK):
        raise TypeError(f"result must be a jv.dataset.TopK, got {type(result).__name__}")
    c = _check_channel(channel, result.n_channels)
    h, w = probe.input_shape[:2]
    if result.positions is None:
        return np.tile(np.array([0, 0, h, w], np.int64), (result.k, 1))
    rf = receptive_field(probe, result.layer)
    return np.array([rf.box(r, q) for r, q in result.positions[c]], np.int64).reshape(-1, 4)


def patches(
    probe: Probe,
    images: Any,
    result: TopK,
    channel: int,
    *,
    fill: float | np.ndarray | None = None,
) -> list[np.ndarray] | np.ndarray:
    """The input patches under ``channel``'s top-k units: what each unit actually saw.

    Args:
        probe: the probe ``result`` was computed with.
        images: the dataset ``result.indices`` point into (indexable, e.g. an array).
        result: what :func:`jaxvis.dataset.top_k` returned.
        channel: the channel.
        fill: None returns a list of the ``k`` crops, clipped at the image borders (so border
            patches are smaller); a number (or one per channel, e.g. ``probe.input_low``)
            returns one ``(k, size_h, size_w, C)`` array with the receptive field's part
            outside the image set to ``fill``.

    Example::

        crops = patches(probe, x, res, channel=3)                 # list of (h, w, C)
        tiles = patches(probe, x, res, channel=3, fill=0.0)       # (9, 10, 10, 1)
    """
    boxes = patch_boxes(probe, result, channel)
    c = _check_channel(channel, result.n_channels)
    if not hasattr(images, "__getitem__") or not hasattr(images, "__len__"):
        raise TypeError(f"images must be an indexable dataset (an array), got {type(images)}")
    if len(images) < result.n_images:
        raise ValueError(
            f"images has {len(images)} images but result was computed over {result.n_images}: "
            "pass the same dataset"
        )
    crops = []
    for idx, (top, left, bottom, right) in zip(result.indices[c], boxes, strict=True):
        crops.append(np.asarray(images[int(idx)])[top:bottom, left:right])
    if fill is None:
        return crops
    if result.positions is None:
        return np.stack(crops)
    rf = receptive_field(probe, result.layer)
    out = np.full((len(crops), *rf.size, crops[0].shape[-1]), fill, np.float32)
    for j, (crop, (r, q)) in enumerate(zip(crops, result.positions[c], strict=True)):
        top, left, _, _ = rf.window(r, q)
        dy, dx = max(0, -top), max(0, -left)
        out[j, dy : dy + crop.shape[0], dx : dx + crop.shape[1]] = crop
    return out


# ---------------------------------------------------------------- layer settings


def _geometry(row: dict[str, Any]) -> tuple[tuple[int, int], ...] | None:
    """``(kernel, stride, dilation, padding)`` of a conv or pooling layer, else None."""
    if "kernel_size" in row:
        kernel = _pair(row["kernel_size"], "kernel_size", row)
    elif "window_shape" in row:
        kernel = _pair(row["window_shape"], "window_shape", row)
    else:
        return None
    stride = _pair(row.get("strides", 1), "strides", row)
    dilation = _pair(row.get("kernel_dilation", 1), "kernel_dilation", row)
    return kernel, stride, dilation, row.get("padding", "VALID")


def _pair(value: Any, what: str, row: dict[str, Any]) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    values = tuple(int(v) for v in value)
    if len(values) == 1:
        return (values[0], values[0])
    if len(values) != 2:
        raise ValueError(
            f"layer {row['name']!r} has {what}={value!r}: receptive fields need 2-D settings"
        )
    return values  # type: ignore[return-value]


def _pad_low(
    padding: Any, axis: int, n_in: int, k_eff: int, stride: int, name: str
) -> tuple[int, int]:
    """``(pad_low, output size)`` along ``axis``, as XLA computes them."""
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return 0, max(0, (n_in - k_eff) // stride + 1)
        if mode == "SAME":
            out = -(-n_in // stride)
            total = max((out - 1) * stride + k_eff - n_in, 0)
            return total // 2, out
        raise ValueError(
            f"layer {name!r}: padding {padding!r} is not supported for receptive fields"
        )
    if isinstance(padding, int):
        lo = hi = padding
    else:
        pads: Sequence[Any] = tuple(padding)
        pad = pads[axis] if len(pads) > 1 else pads[0]
        lo, hi = (pad, pad) if isinstance(pad, int) else (int(pad[0]), int(pad[1]))
    return lo, (n_in + lo + hi - k_eff) // stride + 1
