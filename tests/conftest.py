"""Shared pytest setup: repo paths, an isolated Jupyter environment, browser skip rules."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # browser_harness, for benchmarks too

# Kernels started by the tests use this interpreter's environment (the .venv's python3
# kernelspec), never a user-wide kernelspec or IPython profile.
os.environ.setdefault("JUPYTER_PREFER_ENV_PATH", "1")
os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
# The test process runs as a user gets jaxvis: without the (opt-in) compilation store;
# tests/test_compile_cache.py switches it on where it is the subject.
os.environ.pop("JAXVIS_COMPILATION_CACHE", None)


@pytest.fixture(scope="session", autouse=True)
def _isolated_ipython(tmp_path_factory):
    """No user IPython startup files or history in test kernels."""
    old = os.environ.get("IPYTHONDIR")
    os.environ["IPYTHONDIR"] = str(tmp_path_factory.mktemp("ipython"))
    yield
    if old is None:
        os.environ.pop("IPYTHONDIR", None)
    else:
        os.environ["IPYTHONDIR"] = old


def pytest_collection_modifyitems(config, items):
    """Browser tests skip, with the reason, when Chromium can't run here and we are not root.

    As root (CI) a missing browser is a failure: `make test` installs Debian's chromium.
    """
    from browser_harness import browser_unavailable_reason

    reason = browser_unavailable_reason()
    if reason is None or os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason=f"browser tests skipped: {reason}")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module.

    One process runs hundreds of modules' programs; XLA:CPU (jaxlib 0.10) was seen to crash
    inside a compile after ~95% of the suite had run in one process. Each module's programs
    are its own, so releasing them between modules costs only recompiles of shared fixtures.
    """
    yield
    import gc

    import jax

    jax.clear_caches()
    gc.collect()
