"""``import jaxvis`` turns on JAX's persistent compilation cache: a second process compiles
nothing (every program comes from the cache), and the switches to turn it off or keep a
user's own cache work. Each case runs in a fresh Python process, as the setting is read once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

# Runs the first call of each tool on a zoo model, prints the cache events it saw.
_FIRST_CALLS = textwrap.dedent(
    """
    import json, jax
    seen = {}
    jax.monitoring.register_event_listener(lambda e, **kw: seen.__setitem__(e, seen.get(e, 0) + 1))
    import jaxvis as jv
    zoo = jv.zoo.load("mnist_cnn")
    x = zoo.x_test[:2]
    zoo.probe.activations(x)
    jv.attribution.saliency(zoo.probe, x, 0)
    jv.attribution.integrated_gradients(zoo.probe, x, 0, steps=8)
    jv.optvis.render(zoo.probe, "conv3:1", steps=4, chunk=2)
    print(json.dumps({"dir": str(jv.compilation_cache_dir()),
                      "hits": seen.get("/jax/compilation_cache/cache_hits", 0),
                      "misses": seen.get("/jax/compilation_cache/cache_misses", 0)}))
    """
)


def _run(code: str, env: dict[str, str]) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "JAXVIS_COMP"))}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_loads_every_program_from_the_cache(tmp_path):
    env = {"JAXVIS_COMPILATION_CACHE": str(tmp_path / "cache")}
    first = _run(_FIRST_CALLS, env)
    assert first["dir"] == str(tmp_path / "cache")
    assert first["misses"] >= 4 and first["hits"] == 0
    assert any((tmp_path / "cache").iterdir())
    second = _run(_FIRST_CALLS, env)
    assert second["misses"] == 0
    assert second["hits"] == first["misses"]


_DIR = (
    "import jaxvis as jv; import json; print(json.dumps({'dir': str(jv.compilation_cache_dir())}))"
)


@pytest.mark.parametrize("off", ["0", "off", "false"])
def test_the_cache_can_be_turned_off(off):
    assert _run(_DIR, {"JAXVIS_COMPILATION_CACHE": off})["dir"] == "None"


def test_a_users_own_jax_cache_is_kept(tmp_path):
    mine = str(tmp_path / "mine")
    assert _run(_DIR, {"JAX_COMPILATION_CACHE_DIR": mine})["dir"] == mine


def test_the_default_folder_is_in_the_jaxvis_cache(tmp_path):
    found = _run(_DIR, {"JAXVIS_CACHE": str(tmp_path)})["dir"]
    assert found == str(tmp_path / "jax-compilation-cache")
