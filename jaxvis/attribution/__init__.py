"""Attribution: which input pixels a model's decision rests on, and whether to trust it.

Captum-style functions over a ``jv.Probe``; each returns an :class:`Attribution`.

Example::

    import jaxvis as jv
    res = jv.attribution.integrated_gradients(probe, x, target=3, steps=50)
    res.values, res.delta
"""

from jaxvis.attribution._core import trace_counts
from jaxvis.attribution.attention import (
    HEAD_FUSIONS,
    attention_layers,
    attention_map,
    attention_rollout,
    gradient_rollout,
)
from jaxvis.attribution.baselines import blur, make_baselines
from jaxvis.attribution.faithfulness import (
    deletion,
    infidelity,
    insertion,
    mufidelity,
    pixel_flipping,
    road,
    sensitivity_max,
)
from jaxvis.attribution.gradcam import grad_cam
from jaxvis.attribution.gradients import guided_backprop, input_x_gradient, saliency, smoothgrad
from jaxvis.attribution.integrated import integrated_gradients, interior_gradients
from jaxvis.attribution.metrics import (
    complexity,
    mask_mass,
    pointing_game,
    relevance_rank,
    sparseness,
    spearman,
    ssim,
)
from jaxvis.attribution.quadrature import METHODS, nodes
from jaxvis.attribution.registry import FAMILIES, Method, attribute, get_method, methods, register
from jaxvis.attribution.report import report
from jaxvis.attribution.result import Attribution
from jaxvis.attribution.sanity import localisation, randomisation_test, randomise

__all__ = [
    "sparseness",
    "sensitivity_max",
    "road",
    "report",
    "relevance_rank",
    "pointing_game",
    "pixel_flipping",
    "mufidelity",
    "mask_mass",
    "insertion",
    "infidelity",
    "deletion",
    "complexity",
    "FAMILIES",
    "HEAD_FUSIONS",
    "METHODS",
    "Attribution",
    "Method",
    "attribute",
    "attention_layers",
    "attention_map",
    "attention_rollout",
    "blur",
    "grad_cam",
    "gradient_rollout",
    "guided_backprop",
    "input_x_gradient",
    "localisation",
    "integrated_gradients",
    "interior_gradients",
    "get_method",
    "make_baselines",
    "methods",
    "nodes",
    "randomisation_test",
    "randomise",
    "register",
    "saliency",
    "smoothgrad",
    "spearman",
    "ssim",
    "trace_counts",
]
