"""jaxvis's store of its own compiled programs: ``import jaxvis`` changes no ``jax.config``
value; the user's ``jax.jit`` programs never land in the store, jaxvis's do; a second process
compiles nothing for the calls it made before; the store is bounded; parameters enter
jaxvis's programs as arguments. Cases that read the environment run in fresh processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvis as jv
from jaxvis import _compile_cache, _xla

# Counts compiles, and jaxvis's store hits/misses; ``report(**extra)`` prints them as JSON.
_PRELUDE = textwrap.dedent(
    """
    import json, os, jax
    seen = {"compiles": 0}
    def on_duration(event, secs, **kw):
        if event == "/jax/core/compile/backend_compile_duration":
            seen["compiles"] += 1
    jax.monitoring.register_event_duration_secs_listener(on_duration)
    jax.monitoring.register_event_listener(lambda e, **kw: seen.__setitem__(e, seen.get(e, 0) + 1))
    def entries(folder):
        return sorted(p.name for p in __import__("pathlib").Path(folder).rglob("*") if p.is_file())
    def report(**extra):
        print(json.dumps({**extra, "compiles": seen["compiles"],
                          "hits": seen.get("/jaxvis/compilation_cache/hits", 0),
                          "misses": seen.get("/jaxvis/compilation_cache/misses", 0)}))
    """
)


def _run(code: str, env: dict[str, str]) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "JAXVIS_"))}
    out = subprocess.run(
        [sys.executable, "-c", _PRELUDE + textwrap.dedent(code)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


_CONFIG = """
    import importlib, pkgutil
    def snapshot():
        return {  # the current value where the option is readable, and the stored one
            name: (repr(getattr(jax.config, name, None)), repr(value))
            for name, value in jax.config.values.items()
        }
    before = snapshot()
    import jaxvis
    after_import = snapshot()
    for mod in pkgutil.walk_packages(jaxvis.__path__, "jaxvis."):
        importlib.import_module(mod.name)
    after_all = snapshot()
    changed = sorted(k for k in before if before[k] != after_import[k] or before[k] != after_all[k])
    report(changed=changed, n=len(before))
"""


def test_importing_jaxvis_changes_no_jax_config_value(tmp_path):
    found = _run(_CONFIG, {"JAXVIS_CACHE": str(tmp_path)})
    assert found["n"] > 100 and found["changed"] == []
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # and writes nothing


def test_importing_every_jaxvis_module_compiles_nothing(tmp_path):
    assert _run(_CONFIG, {"JAXVIS_CACHE": str(tmp_path)})["compiles"] == 0


_USER_JIT = """
    import jaxvis as jv
    folder = jv.compilation_cache_dir()
    zoo = jv.zoo.load("mnist_cnn")
    x = zoo.x_test[:2]
    zoo.probe.activations(x)                                  # a jaxvis call
    after_jaxvis = entries(folder)
    params = zoo.probe.params
    predict = jax.jit(lambda x: zoo.probe.apply(params, x)[0])   # weights baked in
    for n in (1, 2, 3):
        predict(zoo.x_test[:n]).block_until_ready()
    report(after_jaxvis=after_jaxvis, after_user=entries(folder),
           jax_dir=jax.config.jax_compilation_cache_dir, folder=str(folder),
           theirs=entries(os.environ.get("JAX_COMPILATION_CACHE_DIR", "/nonexistent")))
"""


def test_a_users_jit_adds_nothing_to_the_store_and_a_jaxvis_call_does(tmp_path):
    store = tmp_path / "store"
    found = _run(_USER_JIT, {"JAXVIS_COMPILATION_CACHE": str(store)})
    assert found["folder"] == str(store)
    assert found["after_jaxvis"] and found["misses"] == len(found["after_jaxvis"])
    assert found["after_user"] == found["after_jaxvis"]
    assert found["jax_dir"] is None  # JAX's own cache stays off


def test_a_users_own_jax_cache_is_kept_for_their_programs(tmp_path):
    mine, store = tmp_path / "mine", tmp_path / "store"
    env = {
        "JAX_COMPILATION_CACHE_DIR": str(mine),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAXVIS_COMPILATION_CACHE": str(store),
    }
    found = _run(_USER_JIT, env)
    assert found["jax_dir"] == str(mine)
    assert found["after_user"] == found["after_jaxvis"]  # their programs stay out of ours
    assert len(found["theirs"]) >= 3  # and go to their cache, as they asked


_FIRST_CALLS = """
    import jaxvis as jv
    zoo = jv.zoo.load("mnist_cnn")
    x = zoo.x_test[:2]
    zoo.probe.activations(x)
    jv.attribution.saliency(zoo.probe, x, 0)
    core = seen["compiles"]                # every compile so far, from the start
    jv.attribution.integrated_gradients(zoo.probe, x, 0, steps=8)
    jv.optvis.render(zoo.probe, "conv3:1", steps=4, chunk=2)
    report(core=core, entries=len(entries(jv.compilation_cache_dir())))
"""


def test_a_second_process_compiles_nothing(tmp_path):
    env = {"JAXVIS_COMPILATION_CACHE": str(tmp_path / "store")}
    first = _run(_FIRST_CALLS, env)
    assert first["core"] >= 3 and first["misses"] >= 6 and first["hits"] == 0
    assert first["entries"] == first["misses"]
    second = _run(_FIRST_CALLS, env)
    assert second["core"] == 0  # probe, activations and saliency: nothing compiled at all
    assert second["misses"] == 0 and second["hits"] == first["misses"]  # all jaxvis programs


@pytest.mark.parametrize("off", ["0", "off", "false"])
def test_the_store_can_be_turned_off(tmp_path, off):
    code = """
        import jaxvis as jv
        zoo = jv.zoo.load("mnist_cnn")
        zoo.probe.activations(zoo.x_test[:2])
        report(dir=str(jv.compilation_cache_dir()))
    """
    found = _run(code, {"JAXVIS_COMPILATION_CACHE": off, "JAXVIS_CACHE": str(tmp_path)})
    assert found["dir"] == "None" and found["misses"] == 0
    assert not (tmp_path / "compiled").exists()


def test_the_store_is_off_unless_asked_for(tmp_path):
    code = """
        import jaxvis as jv
        zoo = jv.zoo.load("mnist_cnn")
        zoo.probe.activations(zoo.x_test[:2])
        report(dir=str(jv.compilation_cache_dir()))
    """
    found = _run(code, {"JAXVIS_CACHE": str(tmp_path)})
    assert found["dir"] == "None" and found["misses"] == 0 and found["hits"] == 0
    assert not (tmp_path / "compiled").exists()


def test_the_default_folder_and_a_tiny_bound(tmp_path):
    env = {"JAXVIS_COMPILATION_CACHE": "1", "JAXVIS_CACHE_MAX_BYTES": "60000"}
    found = _run(_FIRST_CALLS, {"JAXVIS_CACHE": str(tmp_path), **env})
    store = _compile_cache.Store(tmp_path / "compiled", 60000)
    assert 0 < found["entries"] < found["misses"]  # written, then evicted down to the bound
    assert 0 < store.size() <= 60000


# ------------------------------------------------------------------ in this process


@pytest.fixture
def restore_store():
    saved = dict(_compile_cache._state)
    yield
    _compile_cache._state.clear()
    _compile_cache._state.update(saved)


def test_enable_and_disable_at_run_time(tmp_path, restore_store):
    assert jv.enable_compilation_cache(tmp_path / "a", max_bytes=2**20) == tmp_path / "a"
    assert jv.compilation_cache_dir() == tmp_path / "a"
    _xla.compiler_options()  # its check, stored too, comes first
    before = len(list((tmp_path / "a").glob("*.xla")))
    square = _xla.jit(lambda v: v * v + 1.0)
    np.testing.assert_allclose(np.asarray(square(np.arange(3.0, dtype=np.float32))), [1, 2, 5])
    assert len(list((tmp_path / "a").glob("*.xla"))) == before + 1
    jv.disable_compilation_cache()
    assert jv.compilation_cache_dir() is None
    square(np.arange(4.0, dtype=np.float32))  # compiled, not stored
    assert len(list((tmp_path / "a").glob("*.xla"))) == before + 1
    with pytest.raises(ValueError, match="max_bytes"):
        jv.enable_compilation_cache(tmp_path, max_bytes=0)


def test_a_corrupt_entry_is_compiled_again_and_replaced(tmp_path, restore_store):
    jv.enable_compilation_cache(tmp_path)
    x = np.ones(5, np.float32)
    _xla.compiler_options()  # its check, stored too, comes first
    known = set(tmp_path.glob("*.xla"))
    assert float(_xla.jit(lambda v: jnp.sum(v**3))(x)) == 5.0
    (entry,) = set(tmp_path.glob("*.xla")) - known
    entry.write_bytes(b"not an executable")
    assert float(_xla.jit(lambda v: jnp.sum(v**3))(x)) == 5.0  # a new function: read from disk
    assert entry.read_bytes() != b"not an executable"


def test_programs_differing_only_in_an_unused_argument_are_stored_apart(tmp_path, restore_store):
    # jit drops unused arguments from the program text: the key must still tell their shapes
    jv.enable_compilation_cache(tmp_path)
    x = np.ones(3, np.float32)
    for n in (5, 9):
        fresh = _xla.jit(lambda v, unused: v * 2.0)  # a new function each time: read from disk
        np.testing.assert_allclose(np.asarray(fresh(x, np.zeros(n, np.float32))), 2 * x)


def test_a_stored_program_that_cannot_run_is_compiled_afresh(tmp_path, restore_store, monkeypatch):
    # XLA:CPU sometimes loads a stored executable that then fails to run ("NOT_FOUND: Function
    # ... not found"): the call compiles the program afresh, answers, and drops the entry
    jv.enable_compilation_cache(tmp_path)
    x = np.ones(4, np.float32)
    _xla.jit(lambda v: jnp.sum(v**5))(x)  # stored
    entries = set(tmp_path.glob("*.xla"))

    class Unrunnable:
        def __call__(self, *args, **kwargs):
            raise jax.errors.JaxRuntimeError("NOT_FOUND: Function wrapped_broadcast not found")

    loader = _compile_cache.serialize_executable
    monkeypatch.setattr(loader, "deserialize_and_load", lambda *a, **k: Unrunnable())
    again = _xla.jit(lambda v: jnp.sum(v**5))  # a new function: its program comes from disk
    assert float(again(x)) == 4.0
    assert set(tmp_path.glob("*.xla")) < entries  # the entry that could not run is gone
    # a program compiled here, or another runtime error, is not the store's to handle
    assert not _compile_cache.discard_loaded(object(), RuntimeError("NOT_FOUND"))
    assert not _compile_cache.discard_loaded(Unrunnable(), RuntimeError("INTERNAL"))


def test_an_unwritable_folder_warns_and_runs_on(tmp_path, restore_store):
    (tmp_path / "file").write_text("not a folder")
    jv.enable_compilation_cache(tmp_path / "file" / "store")
    with pytest.warns(UserWarning, match="could not store"):
        assert float(_xla.jit(lambda v: jnp.sum(v) + 0.5)(np.ones(3, np.float32))) == 3.5


def test_the_store_evicts_the_least_recently_used_entries(tmp_path):
    store = _compile_cache.Store(tmp_path, max_bytes=2500)
    data = {k: np.random.default_rng(i).bytes(1000) for i, k in enumerate("abc")}
    for t, key in enumerate("ab"):  # incompressible, ~1 kB on disk each
        store.put(key, data[key])
        os.utime(tmp_path / f"{key}.xla", ns=(t * 10**9, t * 10**9))
    assert store.get("a") == data["a"]  # a is now the most recently used
    store.put("c", data["c"])
    assert store.get("b") is None and store.get("a") == data["a"] and store.get("c") == data["c"]
    assert store.size() <= 2500
    store.put("big", np.random.default_rng(9).bytes(5000))  # larger than the bound: not kept
    assert store.get("big") is None and store.get("c") == data["c"]


# ------------------------------------------------------------------ parameters as arguments

_CONSTANT = re.compile(r"stablehlo\.constant .*?: tensor<([0-9x]*?)x?[a-z]+[0-9]*>")


def _largest_constant(text: str) -> int:
    sizes = [
        int(np.prod([int(d) for d in dims.split("x") if d])) for dims in _CONSTANT.findall(text)
    ]
    return max(sizes, default=0)


def test_the_constant_finder_sees_baked_weights():
    w = jnp.ones((64, 64))
    assert _largest_constant(jax.jit(lambda x: x @ w).lower(jnp.ones((1, 64))).as_text()) == 4096
    assert _largest_constant(jax.jit(lambda x, w: x @ w).lower(jnp.ones((1, 64)), w).as_text()) < 2


def _batchnorm_probe() -> jv.Probe:
    from flax import linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            x = nn.relu(nn.BatchNorm(use_running_average=True)(nn.Conv(48, (3, 3))(x)))
            return nn.Dense(10)(x.mean(axis=(1, 2)))

    net = Net()
    variables = net.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    return jv.Probe(net, variables, input_shape=(16, 16, 3))


@pytest.mark.parametrize("model", ["mnist_cnn", "linen_batchnorm"])
def test_parameters_enter_jaxvis_programs_as_arguments(model, monkeypatch, restore_store):
    texts: list[str] = []
    real = _xla.compile_cached

    def capture(lowered, *args):
        texts.append(lowered.as_text())
        return real(lowered, *args)

    monkeypatch.setattr(_xla, "compile_cached", capture)
    jv.disable_compilation_cache()
    if model == "mnist_cnn":
        probe = jv.zoo.load(model).probe
        x = jv.zoo.load(model).x_test[:3]  # a batch size no other test compiles for
    else:
        probe = _batchnorm_probe()
        x = np.random.default_rng(0).uniform(0, 1, (3, 16, 16, 3)).astype(np.float32)
    layer = probe.layers[0].name
    probe.activations(x)
    jv.attribution.saliency(probe, x, 1)
    jv.attribution.integrated_gradients(probe, x, 1, steps=4)
    jv.optvis.render(probe, f"{layer}:0", steps=2, chunk=2, n=3)
    assert len(texts) >= 5
    assert max(map(_largest_constant, texts)) <= 1000
