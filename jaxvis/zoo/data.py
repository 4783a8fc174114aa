"""The container of a zoo data set: train/test splits, labels, class names and masks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ZooData"]


@dataclass(frozen=True, eq=False)
class ZooData:
    """A demo data set, split into train and test, images NHWC float32 in ``[0, 1]``.

    Attributes:
        name: the zoo model the data belongs to (``"mnist_cnn"``, ``"shapes_cnn"``).
        class_names: one name per class; labels index into it.
        x_train, x_test: images ``(N, H, W, C)`` float32 in ``[0, 1]``.
        y_train, y_test: integer labels ``(N,)`` int32.
        masks_train, masks_test: boolean ground-truth masks ``(N, H, W)`` of the object in
            each image (True on the shape), or None when the data set has none (MNIST).

    Example::

        data = jv.zoo.load_data("shapes_cnn")
        data.x_test.shape, data.class_names[data.y_test[0]]
    """

    name: str
    class_names: tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    masks_train: np.ndarray | None = None
    masks_test: np.ndarray | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One image's shape ``(H, W, C)``."""
        h, w, c = self.x_train.shape[1:]
        return (int(h), int(w), int(c))

    @property
    def n_classes(self) -> int:
        return len(self.class_names)
