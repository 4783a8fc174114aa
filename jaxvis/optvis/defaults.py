"""Settings chosen from the model in front of ``render``: what ``preset="auto"`` (the default)
gives.

Lucid's settings (1/f Fourier image, colour decorrelation, sigmoid, jitter 8 px) were tuned for
an ImageNet InceptionV1 at 128-224 pixels. Measured on the zoo's 28- and 32-pixel models at 256
steps (``benchmarks/optvis_defaults.py``), they leave up to 7 of 8 channels of a layer below
the data set's best image: the 1/f spectrum makes the high-contrast, high-frequency patterns
that small early layers respond to expensive, and they stay out of reach in 256 steps. A
plain pixel image (clipped to ``[0, 1]``) reaches them, and with the transforms scaled to the
image it beat every data set image for every channel of both models. So:

* **parameterisation**: inputs under :data:`FOURIER_MIN_SIDE` pixels get ``pixel()``
  (clipped); larger ones Lucid's ``fourier()``, decorrelated when the input has 3 channels,
  where the 1/f prior is what keeps deep networks' images from high-frequency noise;
* **transforms**: :func:`jaxvis.optvis.transforms.scaled`: jitter ``side / 16`` then
  ``side / 32`` pixels, zoom 0.9-1.1 and rotation 10 degrees (Lucid's 8 and 4 pixels at 128);
* **learning rate**: 0.05 (Adam); **steps**: 256 under :data:`FOURIER_MIN_SIDE`, else 512
  (Lucid's), more for very wide layers would not change the picture;
* **redirected ReLU** for the first :data:`REDIRECT_STEPS` steps (only where the model has
  ReLUs): channels that are dead at the random start still get a gradient.

Example::

    settings = auto(probe)            # a Preset
    settings.description              # 'auto for (28, 28, 1): pixel + clip, ...'
"""

from __future__ import annotations

from typing import Any

from jaxvis.optvis.param import fourier, pixel
from jaxvis.optvis.presets import Preset
from jaxvis.optvis.regularizers import Regularizers
from jaxvis.optvis.transforms import scaled

__all__ = ["FOURIER_MIN_SIDE", "REDIRECT_STEPS", "auto", "auto_steps"]

#: input side (pixels) from which the Fourier parameterisation is the default
FOURIER_MIN_SIDE = 64
#: steps with Lucid's redirected ReLU gradient at the start of a run (models with ReLUs)
REDIRECT_STEPS = 16


def auto(probe: Any) -> Preset:
    """The settings ``preset="auto"`` uses for ``probe`` (from its input shape)."""
    h, w, c = (int(s) for s in probe.input_shape)
    side = max(h, w)
    param = pixel() if side < FOURIER_MIN_SIDE else fourier(decorrelate=c == 3)
    tf = scaled((h, w))
    return Preset(
        param,
        tf,
        Regularizers(),
        0.05,
        f"auto for {(h, w, c)}: {param.description}, jitter {tf.jitter1} then {tf.jitter2} px, "
        f"zoom {tf.factors[0]:g}-{tf.factors[1]:g}, rotate {tf.degrees:g} deg, Adam 0.05, "
        f"{auto_steps(probe)} steps",
    )


def auto_steps(probe: Any) -> int:
    """Default number of steps for ``probe``: 256 for small inputs, 512 (Lucid's) from
    :data:`FOURIER_MIN_SIDE` pixels."""
    return 256 if max(probe.input_shape[:2]) < FOURIER_MIN_SIDE else 512
