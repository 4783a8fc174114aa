"""Dataset-centric views: which images (and which patches of them) excite a unit most.

The Deep Visualization Toolbox shows, beside each unit's synthetic image, the nine dataset
images and image patches that excite it most. :func:`top_k` streams any iterable of batches
through the model in one jitted, device-sharded step that keeps only a running top-k per
channel (memory stays flat however long the dataset is); :func:`receptive_field` computes
which input pixels a unit sees (the support of its input gradient, for any graph), and
:func:`patches` crops those windows out of the top images.

Example::

    import jaxvis as jv
    zoo = jv.zoo.load("mnist_cnn")
    res = jv.dataset.top_k(zoo.probe, zoo.x_train, "act3", k=9)   # every device JAX sees
    res.values[5], res.indices[5], res.positions[5]               # channel 5: (9,), (9,), (9, 2)
    crops = jv.dataset.patches(zoo.probe, zoo.x_train, res, channel=5)
    jv.dataset.receptive_field(zoo.probe, "act3")                 # 10x10 windows, stride 2
"""

from jaxvis.dataset.receptive import (
    METHODS,
    ReceptiveField,
    input_support,
    patch_boxes,
    patches,
    receptive_field,
)
from jaxvis.dataset.topk import REDUCTIONS, TopK, top_k

__all__ = [
    "METHODS",
    "REDUCTIONS",
    "ReceptiveField",
    "TopK",
    "input_support",
    "patch_boxes",
    "patches",
    "receptive_field",
    "top_k",
]
