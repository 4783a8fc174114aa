"""``jv.concepts``: what a layer represents, as directions found by factorising its activations.

Single channels are rarely the unit of meaning; directions found by NMF (Lucid's neuron
groups, CRAFT), Semi-NMF, PCA, ICA or a sparse autoencoder often are. This package streams a
layer's activations into an :class:`ActivationDataset` (spatial positions and ViT patch tokens
as samples, sharded over devices, reservoir-subsampled), fits :class:`Concepts` with
:func:`fit`, measures SAEs (:func:`sae_metrics`), and shows each concept the way the Deep
Visualization Toolbox shows a unit (:mod:`jaxvis.concepts.views`).

Example::

    import jaxvis as jv
    zoo = jv.zoo.load("shapes_cnn")
    ds = jv.concepts.activations(zoo.probe, zoo.x_train[:1000], "act5", max_samples=30_000)
    nmf = jv.concepts.fit(ds.samples + 1.0, 8, method="nmf")     # ELU >= -1: shift to >= 0
    sae = jv.concepts.fit(ds, 256, method="topk", k=8)
    jv.concepts.sae_metrics(sae, ds.samples)                      # R2, L0, dead, dense
    fv = jv.concepts.feature_vis(zoo.probe, sae, which=range(9))  # 9 concepts, one run
    top = jv.concepts.top_k(zoo.probe, zoo.x_train, sae, k=9)     # top-9 images per concept
    jv.concepts.heatmap(zoo.probe, sae, zoo.x_test[:4])           # (4, 8, 8, 256)
    jv.concepts.importance(zoo.probe, sae, zoo.x_test[:64], 3)    # gradient x code, (256,)
"""

from jaxvis.concepts import report, views
from jaxvis.concepts.acts import ActivationDataset, activations
from jaxvis.concepts.factor import METHODS, Concepts, fit
from jaxvis.concepts.sae import loss_recovered, sae_metrics, train_sae
from jaxvis.concepts.views import concept_probe, feature_vis, heatmap, importance, patches, top_k

__all__ = [
    "METHODS",
    "ActivationDataset",
    "Concepts",
    "activations",
    "concept_probe",
    "feature_vis",
    "fit",
    "heatmap",
    "importance",
    "loss_recovered",
    "sae_metrics",
    "patches",
    "report",
    "top_k",
    "train_sae",
    "views",
]
