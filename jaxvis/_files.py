"""Atomic file writes: a crash mid-write never leaves a half-written file behind.

Every file jaxvis writes for a user (GIFs, recordings, cached data, weights) goes through
:func:`atomic_write`: the content goes to a temp file beside the target, is flushed to disk,
and only then renamed over the target.

Example::

    atomic_write("/tmp/a.bin", lambda f: f.write(b"hello"))
    atomic_savez("/tmp/a.npz", {"x": np.arange(3)})
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

import numpy as np

__all__ = ["atomic_savez", "atomic_write"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(f)`` on a temp file beside ``path``, then rename it over ``path``.

    If ``write`` raises, the temp file is removed and any previous file at ``path`` is intact.
    """
    target = Path(os.fspath(path))
    if not target.parent.is_dir():
        raise FileNotFoundError(
            f"cannot write {target}: its folder {target.parent} does not exist (create it first)"
        )
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_savez(
    path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray], compress: bool = False
) -> Path:
    """Write ``arrays`` to the ``.npz`` file ``path`` atomically, creating its folder.

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
    save = np.savez_compressed if compress else np.savez
    return atomic_write(path, lambda f: save(f, **clean))
