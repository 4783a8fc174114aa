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
from jaxvis.attribution.cams import grad_cam_plus_plus, layer_cam, score_cam
from jaxvis.attribution.deeplift import deeplift
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
from jaxvis.attribution.guided_paths import blur_ig, guided_ig
from jaxvis.attribution.integrated import integrated_gradients, interior_gradients
from jaxvis.attribution.lrp import COMPOSITES, RULES, lrp, lrp_rules
from jaxvis.attribution.metrics import (
    complexity,
    mask_mass,
    pointing_game,
    relevance_rank,
    sparseness,
    spearman,
    ssim,
)
from jaxvis.attribution.perturbation import (
    feature_ablation,
    kernel_shap,
    occlusion,
    rise,
    rise_masks,
    shapley_kernel,
)
from jaxvis.attribution.quadrature import METHODS, nodes
from jaxvis.attribution.registry import FAMILIES, Method, attribute, get_method, methods, register
from jaxvis.attribution.report import report
from jaxvis.attribution.result import Attribution
from jaxvis.attribution.sanity import localisation, randomisation_test, randomise
from jaxvis.attribution.segments import segment
from jaxvis.attribution.targets import Channel, Direction, Region, Unit
from jaxvis.attribution.xrai import xrai

__all__ = [
    "COMPOSITES",
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
    "Channel",
    "Direction",
    "Region",
    "Unit",
    "feature_ablation",
    "kernel_shap",
    "occlusion",
    "rise",
    "rise_masks",
    "segment",
    "shapley_kernel",
    "Method",
    "RULES",
    "attribute",
    "attention_layers",
    "attention_map",
    "attention_rollout",
    "blur",
    "blur_ig",
    "deeplift",
    "grad_cam",
    "grad_cam_plus_plus",
    "gradient_rollout",
    "guided_ig",
    "guided_backprop",
    "input_x_gradient",
    "layer_cam",
    "localisation",
    "lrp",
    "lrp_rules",
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
    "score_cam",
    "smoothgrad",
    "spearman",
    "ssim",
    "trace_counts",
    "xrai",
]
