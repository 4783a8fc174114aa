"""File helpers of the zoo: the user cache folder and atomic, pickle-free ``.npz`` writes."""

from __future__ import annotations

from jaxvis._files import atomic_savez
from jaxvis._paths import cache_dir

__all__ = ["atomic_savez", "cache_dir"]
