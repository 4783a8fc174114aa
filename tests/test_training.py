"""jv.training: the Recorder against direct forward passes and numpy, files, budgets, errors."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx
from flax.training import train_state

import jaxvis as jv
from jaxvis.training import STATS, Recorder, Recording
from jaxvis.zoo.train import make_train_step

LAYERS = ["act1", "conv3", "act6"]
N_STEPS = 4


@pytest.fixture(scope="module")
def data():
    return jv.zoo.load_data("mnist_cnn")


@pytest.fixture(scope="module")
def run(data):
    """Train mnist_cnn for N_STEPS real steps, recording every step two ways (the NNX State
    from the train step, and the module itself) and keeping a copy of the parameters."""
    model = jv.zoo.build("mnist_cnn", 0)
    graphdef, params = nnx.split(model)
    tx = optax.adam(3e-3)
    step_fn = make_train_step(graphdef, tx)
    opt_state = tx.init(params)
    probe_x = data.x_test[:6]
    by_state = Recorder(probe_x, layers=LAYERS, model=model, labels=data.y_test[:6])
    by_module = Recorder(probe_x, layers=LAYERS)
    snapshots = [jax.tree.map(np.asarray, params)]
    by_state.record(0, params)
    by_module.record(0, model)
    for step in range(1, N_STEPS + 1):
        xb = data.x_train[(step - 1) * 32 : step * 32]
        yb = data.y_train[(step - 1) * 32 : step * 32]
        params, opt_state, loss = step_fn(params, opt_state, xb, yb)
        by_state.record(step, params, metrics={"loss": loss, "lr": 3e-3})
        nnx.update(model, params)
        by_module.record(step, model, metrics={"loss": loss})
        snapshots.append(jax.tree.map(np.asarray, params))
    return {
        "graphdef": graphdef,
        "snapshots": snapshots,
        "state": by_state.recording(),
        "module": by_module.recording(),
        "recorder": by_state,
        "x": probe_x,
    }


def direct_probe(run, t: int) -> jv.Probe:
    """A fresh probe of the model with the parameters after step ``t``: an independent path."""
    model = nnx.merge(run["graphdef"], jax.tree.map(jnp.asarray, run["snapshots"][t]))
    return jv.Probe(model, input_shape=(28, 28, 1))


@pytest.mark.parametrize("how", ["state", "module"])
def test_stored_activations_are_the_model_at_that_step(run, how):
    rec: Recording = run[how]
    assert rec.steps.tolist() == list(range(N_STEPS + 1))
    for t in range(N_STEPS + 1):
        ref = direct_probe(run, t).activations(run["x"], layers=LAYERS)
        for layer in LAYERS:
            got = rec.activations[layer][t]
            assert got.dtype == np.float16
            assert got.shape == (6, *np.asarray(ref[layer]).shape[1:])
            np.testing.assert_allclose(got.astype(np.float32), ref[layer], rtol=2e-3, atol=2e-3)
    # training moved the activations: step 1's model does not match step N's recording
    later = direct_probe(run, 1).activations(run["x"], layers=["act6"])["act6"]
    assert np.abs(rec.activations["act6"][N_STEPS].astype(np.float32) - later).max() > 1e-2


def test_histograms_sum_to_parameter_counts_and_match_numpy(run):
    rec: Recording = run["state"]
    probe = direct_probe(run, 0)
    by_layer: dict[str, int] = {}
    for key, counts in rec.histograms.items():
        layer = key.rpartition(".")[0]
        by_layer[layer] = by_layer.get(layer, 0) + int(counts[0].sum())
        edges = rec.bin_edges[key]
        assert counts.shape == (N_STEPS + 1, len(edges) - 1)
        for t in (0, N_STEPS):
            w = np.asarray(direct_probe(run, t).weights()[layer][key.rpartition(".")[2]])
            assert counts[t].sum() == w.size
            clipped = np.clip(w.ravel(), edges[0], edges[-1])
            np.testing.assert_array_equal(counts[t], np.histogram(clipped, edges)[0])
    for layer in by_layer:
        assert by_layer[layer] == probe.layer(layer).n_params


def test_statistics_match_numpy(run):
    rec: Recording = run["state"]
    w = np.asarray(direct_probe(run, N_STEPS).weights()["dense1"]["kernel"], np.float64)
    expected = [w.mean(), w.std(), np.sqrt((w**2).sum()), w.min(), w.max()]
    np.testing.assert_allclose(rec.stats["dense1.kernel"][N_STEPS], expected, rtol=1e-4)
    assert list(STATS) == ["mean", "std", "norm", "min", "max"]
    np.testing.assert_allclose(rec.stat("dense1.kernel", "norm")[N_STEPS], expected[2], rtol=1e-4)


def test_percentiles_are_within_a_bin_of_numpy(run):
    rec: Recording = run["state"]
    qs = (0.0, 15.87, 50.0, 84.13, 100.0)
    got = rec.percentiles("conv3.kernel", qs)
    edges = rec.bin_edges["conv3.kernel"]
    width = float(edges[1] - edges[0])
    for t in (0, N_STEPS):
        w = np.asarray(direct_probe(run, t).weights()["conv3"]["kernel"]).ravel()
        np.testing.assert_allclose(got[t], np.percentile(w, qs), atol=width)
        assert got[t][0] == pytest.approx(w.min()) and got[t][-1] == pytest.approx(w.max())


def test_metrics_recorded_with_nan_where_missing(run):
    rec: Recording = run["state"]
    assert np.isnan(rec.metrics["loss"][0])
    assert np.all(np.isfinite(rec.metrics["loss"][1:]))
    assert rec.metrics["lr"][1:].tolist() == [3e-3] * N_STEPS
    np.testing.assert_array_equal(rec.metrics["loss"], run["module"].metrics["loss"])


def test_bins_are_fixed_and_outliers_land_in_the_edge_bins(data):
    model = jv.zoo.build("mnist_cnn", 1)
    rec = Recorder(data.x_test[:2], layers=[], model=model, bin_range=(-0.01, 0.01), bins=4)
    rec.record(0, model)
    out = rec.recording()
    w = np.asarray(nnx.state(model, nnx.Param)["conv1"]["kernel"].get_value()).ravel()
    counts = out.histograms["conv1.kernel"][0]
    np.testing.assert_allclose(out.bin_edges["conv1.kernel"], [-0.01, -0.005, 0, 0.005, 0.01])
    assert counts.sum() == w.size
    assert counts[0] == np.sum(w < -0.005) and counts[-1] == np.sum(w >= 0.005)
    assert out.activations == {}


def test_default_bins_cover_the_first_step_with_margin(run):
    rec: Recording = run["state"]
    w0 = np.asarray(run["snapshots"][0]["conv1"]["kernel"].get_value())
    edges = rec.bin_edges["conv1.kernel"]
    np.testing.assert_allclose(edges[-1], 3.0 * np.abs(w0).max(), rtol=1e-6)
    # an all-zero bias borrows its layer's range, so its bins are not empty intervals
    np.testing.assert_allclose(rec.bin_edges["conv1.bias"], edges)


def test_save_load_round_trip_is_exact(run, tmp_path):
    rec: Recording = run["state"]
    path = rec.save(tmp_path / "run.npz")
    back = Recording.load(path)
    np.testing.assert_array_equal(back.steps, rec.steps)
    np.testing.assert_array_equal(back.images, rec.images)
    np.testing.assert_array_equal(back.labels, rec.labels)
    for name in ("activations", "metrics", "histograms", "bin_edges", "stats"):
        a, b = getattr(rec, name), getattr(back, name)
        assert list(a) == list(b), name
        for key in a:
            assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, (name, key)
            np.testing.assert_array_equal(a[key], b[key])
    assert back.meta == rec.meta
    with np.load(path, allow_pickle=False) as z:  # nothing in the file needs pickle
        assert all(z[k].dtype != object for k in z.files)


def test_crash_mid_save_leaves_the_previous_file(run, tmp_path, monkeypatch):
    from jaxvis.training import recording as recording_module

    path = tmp_path / "run.npz"
    run["module"].save(path)
    before = path.read_bytes()

    def broken(f, arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(recording_module, "_write_npz", broken)
    with pytest.raises(OSError, match="disk full"):
        run["state"].save(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["run.npz"]  # no temp file left behind
    assert len(Recording.load(path)) == N_STEPS + 1


def test_estimate_matches_saved_size(run, tmp_path):
    recorder: Recorder = run["recorder"]
    size = recorder.save(tmp_path / "a.npz").stat().st_size
    estimate = recorder.estimate_bytes(N_STEPS, n_metrics=2)
    assert abs(estimate - size) <= 0.10 * size, (estimate, size)
    assert recorder.recording().nbytes <= size


def test_estimate_matches_saved_size_for_a_long_run(data, tmp_path):
    model = jv.zoo.build("mnist_cnn", 0)
    rec = Recorder(data.x_test[:3], layers=["act2", "act5"], every=3, model=model)
    for step in range(31):
        rec.record(step, model, metrics={"loss": float(step)})
    size = rec.save(tmp_path / "b.npz").stat().st_size
    assert len(rec.recording()) == 11
    estimate = rec.estimate_bytes(30, n_metrics=1)
    assert abs(estimate - size) <= 0.10 * size, (estimate, size)


def test_budget_refused_up_front(data):
    model = jv.zoo.build("mnist_cnn", 0)
    small = Recorder(data.x_test[:10], model=model)
    need = small.estimate_bytes(1000)
    with pytest.raises(ValueError, match="budget_bytes") as info:
        Recorder(data.x_test[:10], model=model, budget_bytes=need // 2, total_steps=1000)
    assert "every=" in str(info.value)
    ok = Recorder(data.x_test[:10], model=model, budget_bytes=need, total_steps=1000)
    assert ok.every == 1


def test_budget_downsamples_up_front(data):
    model = jv.zoo.build("mnist_cnn", 0)
    need = Recorder(data.x_test[:10], model=model).estimate_bytes(1000)
    rec = Recorder(
        data.x_test[:10],
        model=model,
        budget_bytes=need // 3,
        total_steps=1000,
        on_budget="downsample",
    )
    assert rec.every == 4
    assert (
        rec.estimate_bytes(1000)
        <= need // 3
        < Recorder(data.x_test[:10], model=model, every=2).estimate_bytes(1000)
    )


def test_budget_refused_while_recording_keeps_what_was_recorded(data):
    model = jv.zoo.build("mnist_cnn", 0)
    probe_x = data.x_test[:2]
    budget = Recorder(probe_x, layers=["act1"], model=model).estimate_bytes(5)
    rec = Recorder(probe_x, layers=["act1"], model=model, budget_bytes=budget)
    for step in range(6):
        rec.record(step, model)
    with pytest.raises(ValueError, match="budget_bytes"):
        rec.record(6, model)
    assert len(rec.recording()) == 6


def test_budget_downsamples_while_recording(data, tmp_path):
    model = jv.zoo.build("mnist_cnn", 0)
    probe_x = data.x_test[:2]
    budget = Recorder(probe_x, layers=["act1"], model=model).estimate_bytes(9)
    rec = Recorder(
        probe_x, layers=["act1"], model=model, budget_bytes=budget, on_budget="downsample"
    )
    for step in range(40):
        rec.record(step, model)
    out = rec.recording()
    # 10 records fit: at step 10 every becomes 2 (0, 2, ..., 8 kept), at step 20 it becomes 4
    assert rec.every == 4
    assert out.steps.tolist() == list(range(0, 40, 4))
    assert rec.save(tmp_path / "c.npz").stat().st_size <= budget


def test_every_and_force(data):
    model = jv.zoo.build("mnist_cnn", 0)
    rec = Recorder(data.x_test[:1], layers=["act6"], every=5, weights=False, model=model)
    kept = [rec.record(step, model) for step in range(12)]
    assert kept == [s % 5 == 0 for s in range(12)]
    assert rec.record(13, model, force=True)
    out = rec.recording()
    assert out.steps.tolist() == [0, 5, 10, 13]
    assert out.histograms == {} and out.stats == {}


class LinenCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.tanh(nn.Conv(3, (3, 3), name="conv")(x))
        return nn.Dense(2, name="head")(x.reshape(x.shape[0], -1))


def test_linen_train_state_without_model(data):
    module = LinenCNN()
    x = np.asarray(data.x_train[:8, :8, :8], np.float32)
    y = np.asarray(data.y_train[:8] % 2)
    variables = module.init(jax.random.key(0), x[:1])
    state = train_state.TrainState.create(
        apply_fn=module.apply, params=variables["params"], tx=optax.sgd(0.5)
    )

    @jax.jit
    def step(state):
        def loss_fn(p):
            logits = state.apply_fn({"params": p}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        return state.apply_gradients(grads=jax.grad(loss_fn)(state.params))

    rec = Recorder(x[:3], layers=["conv"])
    rec.record(0, state)
    state = step(step(state))
    rec.record(2, state)
    out = rec.recording()
    assert out.meta["model_kind"] == "linen"
    ref = jv.Probe(module, {"params": state.params}, input_shape=(8, 8, 1))
    got = out.activations["conv"][1].astype(np.float32)
    np.testing.assert_allclose(got, ref.activations(x[:3], ["conv"])["conv"], atol=2e-3)
    assert out.histograms["conv.kernel"][1].sum() == 27 and "head.bias" in out.histograms


def test_bad_inputs_name_the_argument(data, run):
    model = jv.zoo.build("mnist_cnn", 0)
    x = data.x_test[:2]
    with pytest.raises(TypeError, match="probe_images"):
        Recorder((x * 255).astype(np.uint8), model=model)
    with pytest.raises(ValueError, match="probe_images"):
        Recorder(x[0], model=model)
    with pytest.raises(ValueError, match="probe_images"):
        Recorder(x[:0], model=model)
    with pytest.raises(ValueError, match="probe_images"):
        Recorder(np.full_like(x, np.nan), model=model)
    with pytest.raises(ValueError, match="probe_images"):  # wrong image shape for the model
        Recorder(np.zeros((2, 32, 32, 3), np.float32), model=model)
    with pytest.raises(ValueError, match="every"):
        Recorder(x, every=0, model=model)
    with pytest.raises(TypeError, match="every"):
        Recorder(x, every=1.5, model=model)
    with pytest.raises(ValueError, match="did you mean 'act3'"):
        Recorder(x, layers=["act33"], model=model)
    with pytest.raises(ValueError, match="on_budget"):
        Recorder(x, on_budget="ignore", model=model)
    with pytest.raises(ValueError, match="bin_range"):
        Recorder(x, bin_range=(1.0, -1.0), model=model)
    with pytest.raises(ValueError, match="labels"):
        Recorder(x, labels=[1, 2, 3], model=model)
    with pytest.raises(TypeError, match="model_or_params"):
        Recorder(x).record(0, nnx.state(model))  # a State needs model=...
    with pytest.raises(ValueError, match="record"):
        Recorder(x).estimate_bytes(10)  # the model is not known yet
    rec = Recorder(x, layers=["act1"], model=model)
    with pytest.raises(TypeError, match="metrics"):
        rec.record(0, model, metrics=[1.0])
    with pytest.raises(TypeError, match="step"):
        rec.record("0", model)
    with pytest.raises(TypeError, match="model_or_params"):
        rec.record(0, "not a model")
    rec.record(3, model)
    with pytest.raises(ValueError, match="step must increase"):
        rec.record(3, model)
    with pytest.raises(ValueError, match="step 7 was not recorded"):
        run["state"].index(7)
    with pytest.raises(ValueError, match="unknown parameter array"):
        run["state"].percentiles("conv9.kernel")


def test_load_refuses_other_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        Recording.load(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable jaxvis recording"):
        Recording.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a jaxvis recording"):
        Recording.load(tmp_path / "other.npz")


def test_top_level_names():
    assert jv.Recorder is Recorder and jv.Recording is Recording


def test_train_with_recording_reproduces_the_seed_setup():
    model, rec = jv.zoo.train_with_recording("mnist_cnn", epochs=1, max_steps=3, log=None)
    assert rec.steps.tolist() == [0, 1, 2, 3]
    assert rec.labels.tolist() == list(range(10))  # one fixed probe image per digit
    assert rec.layers == tuple(f"act{i}" for i in range(1, 7))
    assert rec.meta["value_range"] == [-1.0, 1.0]
    assert set(rec.meta["layer_kinds"].values()) == {"Activation"}
    assert rec.activations["act1"].shape == (4, 10, 28, 28, 4)
    assert np.abs(rec.activations["act6"].astype(np.float32)).max() <= 1.0  # tanh
    assert np.isfinite(rec.metrics["loss"][1:]).all() and np.isnan(rec.metrics["loss"][0])
    assert np.isfinite(rec.metrics["test_accuracy"][-1])  # the run ended an "epoch"
    ref = jv.Probe(model, input_shape=(28, 28, 1)).activations(rec.images, ["act6"])["act6"]
    np.testing.assert_allclose(rec.activations["act6"][-1].astype(np.float32), ref, atol=2e-3)
    with pytest.raises(ValueError, match="epochs"):
        jv.zoo.train_with_recording("mnist_cnn", epochs=0)
    with pytest.raises(ValueError, match="unknown zoo model"):
        jv.zoo.train_with_recording("mnist")
