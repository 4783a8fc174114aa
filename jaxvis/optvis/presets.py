"""Named settings: Lucid's default and Yosinski et al.'s four published combinations.

A :class:`Preset` bundles a parameterisation, transforms, regularizers and a learning rate;
``jv.optvis.render(probe, obj, preset="yosinski3")`` uses them unless an argument overrides.

Example::

    PRESETS["lucid"].param.description     # 'fourier + decorrelated + sigmoid'
    sorted(PRESETS)                        # ['lucid', 'yosinski1', ..., 'yosinski4']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jaxvis.optvis.param import ImageParam, fourier, pixel
from jaxvis.optvis.regularizers import YOSINSKI, Regularizers

__all__ = ["PRESETS", "Preset", "get_preset"]


@dataclass(frozen=True)
class Preset:
    """Parameterisation, transforms (``"standard"`` = Lucid's, sized to the image, or None),
    regularizers and Adam learning rate of a named setting."""

    param: ImageParam
    transforms: Any
    regularizers: Regularizers
    lr: float
    description: str


PRESETS: dict[str, Preset] = {
    "lucid": Preset(
        fourier(),
        "standard",
        Regularizers(),
        0.05,
        "Lucid: Fourier 1/f image, colour decorrelation, sigmoid, standard transforms, Adam 0.05",
    ),
    **{
        name: Preset(
            pixel(squash="clip"),
            None,
            reg,
            0.05,
            f"Yosinski et al. 2015 setting {name[-1]}: decay {reg.decay:g}, blur "
            f"{reg.blur_sigma:g} every {reg.blur_every}, norm pct {reg.norm_pct:g}, "
            f"contribution pct {reg.contrib_pct:g}",
        )
        for name, reg in YOSINSKI.items()
    },
}


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (ValueError listing the names otherwise)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: expected one of {', '.join(PRESETS)}")
    return PRESETS[name]
