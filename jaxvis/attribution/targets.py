"""Target types: what score an attribution explains, besides a class index or a callable.

Every method takes ``target=`` as one of

* an ``int`` class (or one per example), ``None`` for the predicted class, or a callable from
  the output batch to one score per example;
* :class:`Channel` -- the mean of one channel of a layer;
* :class:`Unit` -- one channel at one position of a layer;
* :class:`Direction` -- the mean over positions of ``activation . vector`` at a layer;
* :class:`Region` -- on a spatial output ``(N, H', W', classes)`` (segmentation), the sum of
  one class's logit over a mask or a box.

The numbers in a target (class, channel, position, vector, mask, box) enter the compiled
programs as traced arguments: changing them for the same shapes compiles nothing new.

Example::

    import jaxvis as jv
    T = jv.attribution
    T.saliency(probe, x, T.Unit("conv3", 5, (4, 7)))
    T.occlusion(probe, x, T.Direction("act5", v))               # v: (C,) or (N, C)
    T.integrated_gradients(seg_probe, x, T.Region(2, box=(0, 0, 8, 8)))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Channel", "Direction", "Region", "Unit"]


@dataclass(frozen=True)
class Channel:
    """The mean of ``channel`` (int, or one per example) of ``layer``'s activation."""

    layer: str
    channel: Any


@dataclass(frozen=True)
class Unit:
    """``layer``'s ``channel`` at ``position``: ``(y, x)`` on a feature map, ``(t,)`` on tokens,
    ``()`` on a flat layer; one position, or an ``(N, k)`` array of one per example."""

    layer: str
    channel: Any
    position: Any = ()


@dataclass(frozen=True)
class Direction:
    """``mean over positions of activation . vector`` at ``layer``; ``vector`` is ``(C,)`` or
    ``(N, C)`` (one per example), ``C`` the layer's channels."""

    layer: str
    vector: Any


@dataclass(frozen=True)
class Region:
    """On a spatial output ``(N, H', W', K)``: the sum of class ``label``'s logit over
    ``mask`` (``(H', W')`` or ``(N, H', W')``, bool or float weights) or over ``box``
    ``(y0, x0, y1, x1)`` (ends excluded, as in slices); neither: the whole output."""

    label: Any
    mask: Any = None
    box: Any = None
