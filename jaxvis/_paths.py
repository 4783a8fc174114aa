"""The user cache folder shared by jaxvis's caches (demo data, compiled programs)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """The folder for jaxvis's caches: ``$JAXVIS_CACHE``, else ``$XDG_CACHE_HOME/jaxvis``,
    else ``~/.cache/jaxvis``. Created on first write.

    Example::

        cache_dir()                   # PosixPath('/home/me/.cache/jaxvis')
    """
    explicit = os.environ.get("JAXVIS_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "jaxvis"
