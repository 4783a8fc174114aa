"""Feature visualisation: what input does a unit respond to most?

Activation maximisation in the style of Lucid and Yosinski et al. 2015, built from small pure
pieces: objectives (``objectives``), image parameterisations (``param``), random differentiable
transforms (``transforms``), regularizers (``regularizers``), named presets (``presets``) and
the jitted optimisation loop (``render``). ``render``'s default settings are chosen from the
model (:mod:`~jaxvis.optvis.defaults`); ``param="maco"`` is MaCo (Fel et al. 2023) and
:func:`accentuate` feature accentuation (Hamblin et al. 2024). See
``docs/feature-visualisation.md``.

Example::

    import jaxvis as jv
    from jaxvis.optvis import objectives as obj
    probe = jv.zoo.load("mnist_cnn").probe
    res = jv.optvis.render(probe, obj.channel("conv5", 3) - 0.5 * obj.channel("conv5", 7))
    res = jv.optvis.render(probe, "conv5:*", steps=128)     # all channels, one batch
"""

from jaxvis.optvis import defaults, objectives, param, presets, regularizers, transforms
from jaxvis.optvis.atlas import Atlas, atlas
from jaxvis.optvis.engine import Progress, RenderResult, accentuate, render
from jaxvis.optvis.inversion import InversionResult, invert
from jaxvis.optvis.objectives import Objective, as_objective
from jaxvis.optvis.param import ImageParam, fourier, maco, magnitude_from, pixel
from jaxvis.optvis.presets import PRESETS, Preset
from jaxvis.optvis.regularizers import YOSINSKI, Regularizers

__all__ = [
    "Atlas",
    "InversionResult",
    "PRESETS",
    "YOSINSKI",
    "ImageParam",
    "Objective",
    "Preset",
    "Progress",
    "Regularizers",
    "RenderResult",
    "accentuate",
    "as_objective",
    "atlas",
    "defaults",
    "fourier",
    "invert",
    "maco",
    "magnitude_from",
    "objectives",
    "param",
    "pixel",
    "presets",
    "regularizers",
    "render",
    "transforms",
]
