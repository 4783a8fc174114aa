"""File helpers of the zoo: the user cache folder and atomic, pickle-free ``.npz`` writes."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from jaxvis._paths import cache_dir

__all__ = ["atomic_savez", "cache_dir"]


def atomic_savez(
    path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray], compress: bool = False
) -> Path:
    """Write ``arrays`` to the ``.npz`` file ``path`` atomically (temp file, then rename).

    Only plain numeric/boolean/unicode arrays are written, so the file loads with
    ``np.load(path, allow_pickle=False)``. ``compress`` zips the arrays (smaller, slower to
    read; noisy images barely shrink). Example::

        atomic_savez("/tmp/a.npz", {"x": np.arange(3)})
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {}
    for key, value in arrays.items():
        array = np.asarray(value)
        if array.dtype == object:
            raise TypeError(f"array {key!r} has dtype object, which would need pickle")
        clean[key] = array
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            (np.savez_compressed if compress else np.savez)(f, **clean)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
