"""``jv.widgets``: JupyterLab widgets (ipywidgets, bqplot, one anywidget) over probes.

Widgets hold no maths: they call the probe and ``jv.render`` and put the results on screen.
Every widget has a stable CSS class (``jv-...``), shows errors from its callbacks in place
(``.jv-error``) and keeps working.

* :class:`LayerExplorer` (``jv-layer-explorer``): slide through images, see every layer.
* :class:`ChannelGrid` (``jv-channel-grid``): a clickable, hoverable grid of tiles;
  :class:`LayerGrids` (``jv-layer-grids``) holds one per layer, updated in one message.
* :class:`ModelSummary` (``jv-model-summary``): the layer table.
* :class:`FilterGrid` (``jv-filter-grid``): the kernels of a conv layer.
* :class:`WeightHistograms` (``jv-weight-histograms``): weight distributions, before/after.
* :class:`FeatureVis`: feature visualisation; :class:`AttributionExplorer`: attribution maps
  (``Attribution``, its old name, still works for one release with a ``DeprecationWarning``).
* :class:`ActivationAtlas` (``jv-activation-atlas``): an activation atlas to zoom and click
  (also the "atlas" tab of a FeatureVis given a data set).
* :class:`AttentionExplorer` (``jv-attention``): a ViT's attention per block, head and
  clicked query patch, attention rollout and gradient rollout.
* :class:`UnitExplorer` (``jv-unit-explorer``): one unit's synthetic image, top-9 images
  and patches, and activation, as in the Deep Visualization Toolbox.
* :class:`TrainingReplay` (``jv-training-replay``): replay a ``jv.Recording`` with a step
  slider and Play: activations, metric curves, weight histograms and distributions.

Every widget also saves itself, as it looks now, to a standalone HTML file that needs no
kernel: ``widget.save_html(path)`` (:func:`save_html`).

Example::

    import jaxvis as jv

    zoo = jv.zoo.load("mnist_cnn")
    jv.widgets.LayerExplorer(zoo.probe, zoo.x_test[:100], labels=zoo.y_test[:100])
"""

from jaxvis._deprecation import deprecated_names
from jaxvis.widgets._errors import ErrorBox
from jaxvis.widgets._export import save_html
from jaxvis.widgets.atlas import ActivationAtlas
from jaxvis.widgets.attention import AttentionExplorer
from jaxvis.widgets.attribution import AttributionExplorer
from jaxvis.widgets.channel_grid import ChannelGrid, GridSpec, LayerGrids
from jaxvis.widgets.concepts import ConceptExplorer
from jaxvis.widgets.feature_vis import FeatureVis
from jaxvis.widgets.filters import FilterGrid
from jaxvis.widgets.histograms import WeightHistograms
from jaxvis.widgets.layer_explorer import LayerExplorer
from jaxvis.widgets.summary import ModelSummary
from jaxvis.widgets.training_replay import TrainingReplay
from jaxvis.widgets.unit_explorer import UnitExplorer

__all__ = [
    "ActivationAtlas",
    "AttentionExplorer",
    "AttributionExplorer",
    "ChannelGrid",
    "ConceptExplorer",
    "ErrorBox",
    "FeatureVis",
    "FilterGrid",
    "GridSpec",
    "LayerExplorer",
    "LayerGrids",
    "ModelSummary",
    "TrainingReplay",
    "UnitExplorer",
    "WeightHistograms",
    "save_html",
]

#: Old names, kept for one release (``DeprecationWarning`` on use; listed in CHANGELOG.md).
__getattr__ = deprecated_names(
    __name__, {"Attribution": ("AttributionExplorer", lambda: AttributionExplorer)}
)
