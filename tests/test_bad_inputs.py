"""Careless inputs to every public entry point and widget: a clear error, before compiling.

Each case asserts the exception type, that the message names the argument and the value
received (a regex), and that no XLA program was compiled before the error (jax's
``/jax/core/compile/backend_compile_duration`` monitoring events are counted). See
``docs/design.md``, "Failure rules".
"""

from __future__ import annotations

import json
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
import pytest
from flax import linen as nn

import jaxvis as jv
from jaxvis import _xla
from jaxvis import render as R
from jaxvis.optvis import objectives as O
from jaxvis.training import Recording

COMPILES = [0]


def _on_duration(event: str, duration: float, **kwargs: Any) -> None:
    if event == "/jax/core/compile/backend_compile_duration":
        COMPILES[0] += 1


jax.monitoring.register_event_duration_secs_listener(_on_duration)


class TinyLinen(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(3)(x.reshape(x.shape[0], -1))


@dataclass
class Ctx:
    zoo: Any
    probe: jv.Probe
    x: np.ndarray
    rec: Recording
    rec_path: Any
    tmp: Any
    linen: TinyLinen
    linen_vars: Any
    wrong_size: jv.Probe  # mnist_cnn told its input is 32x32 (built here: building compiles)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> Ctx:
    zoo = jv.zoo.load("mnist_cnn")
    probe = zoo.probe
    _ = probe.layers  # traced shapes only: nothing compiles
    _xla.compiler_options()  # the once-per-process check of jaxvis's XLA:CPU options
    # building an objective converts its index with jnp once per process (a tiny eager
    # program; noted for optvis): done here, so the cases count only their own call
    O.channel("conv3", 0)
    tmp = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    t, n = 3, 2
    rec = Recording(
        steps=np.arange(t, dtype=np.int64),
        images=rng.random((n, 8, 8, 1)).astype(np.float32),
        activations={"a": rng.normal(size=(t, n, 4, 4, 2)).astype(np.float16)},
        metrics={"loss": np.linspace(2.0, 1.0, t)},
        meta={},
    )
    rec_path = rec.save(tmp / "run.npz")
    linen = TinyLinen()
    with jax.ensure_compile_time_eval():
        variables = jax.eval_shape(linen.init, jax.random.key(0), np.zeros((1, 4, 4, 1)))
    variables = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), variables)
    wrong_size = jv.Probe(jv.zoo.build("mnist_cnn", 0), input_shape=(32, 32, 1))
    return Ctx(zoo, probe, zoo.x_test[:4], rec, rec_path, tmp, linen, variables, wrong_size)


def _bad_header(c: Ctx) -> Any:
    path = c.tmp / "bad_header.npz"
    np.savez(path, header=np.frombuffer(b"{not json", np.uint8), steps=np.arange(2))
    return Recording.load(path)


def _corrupt_member(c: Ctx) -> Any:
    path = c.tmp / "corrupt.npz"
    with zipfile.ZipFile(c.rec_path) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "act_0.npy":
                data = data[:40]  # truncated array
            dst.writestr(item, data)
    return Recording.load(path)


def _wrong_format(c: Ctx) -> Any:
    path = c.tmp / "other.npz"
    head = json.dumps({"format": "something.else"}).encode()
    np.savez(path, header=np.frombuffer(head, np.uint8))
    return Recording.load(path)


def _render_wrong_size(c: Ctx) -> Any:
    return jv.optvis.render(c.wrong_size, O.channel("conv3", 0), steps=2)


X255 = (
    r"x has values in \[\d+, \d+\], far outside the probe's input range \(0.0, 1.0\).*divide 0-255"
)

#: (id, call, exception type, regex naming the argument and the value received)
CASES: list[tuple[str, Callable[[Ctx], Any], type[Exception], str]] = [
    # --- jv.Probe
    (
        "probe-class",
        lambda c: jv.Probe(TinyLinen, c.linen_vars),
        TypeError,
        "got the class TinyLinen",
    ),
    (
        "probe-params-only",
        lambda c: jv.Probe(c.linen, c.linen_vars["params"]),
        ValueError,
        r"variables\['params'\].*'Dense_0'",
    ),
    (
        "probe-empty-vars",
        lambda c: jv.Probe(c.linen, {}),
        ValueError,
        r"variables is empty \(\{\}\)",
    ),
    ("probe-no-vars", lambda c: jv.Probe(c.linen), TypeError, "needs its variables"),
    ("probe-not-model", lambda c: jv.Probe(42), TypeError, "model must be .* got int"),
    (
        "probe-input-shape-2d",
        lambda c: jv.Probe(c.zoo.model, input_shape=(28, 28)),
        ValueError,
        r"input_shape must be \(H, W, C\).*\(28, 28\)",
    ),
    (
        "probe-input-shape-channels",
        lambda c: jv.Probe(c.zoo.model, input_shape=(28, 28, 3)).layers,
        ValueError,
        r"MnistCNN failed on an input of shape \(28, 28, 3\).*input_shape",
    ),
    (
        "probe-first-batch-size",
        lambda c: jv.Probe(c.zoo.model)(np.zeros((1, 32, 32, 1), np.float32)),
        ValueError,
        r"MnistCNN failed on an input of shape \(32, 32, 1\)",
    ),
    (
        "probe-range-order",
        lambda c: jv.Probe(c.zoo.model, input_range=(1, 0)),
        ValueError,
        r"input_range must have lo < hi.*low=\[1.0\]",
    ),
    (
        "probe-range-str",
        lambda c: jv.Probe(c.zoo.model, input_range="0-1"),
        TypeError,
        r"input_range must be a pair.*'0-1'",
    ),
    (
        "probe-mean-only",
        lambda c: jv.Probe(c.zoo.model, mean=0.5),
        TypeError,
        "mean and std go together.*mean=0.5",
    ),
    (
        "probe-std-zero",
        lambda c: jv.Probe(c.zoo.model, mean=0.5, std=0.0),
        ValueError,
        r"std must be > 0.*0.0",
    ),
    (
        "probe-channels-last",
        lambda c: jv.Probe(c.zoo.model, channels_last=True),
        TypeError,
        "channels_last is for Equinox.*MnistCNN",
    ),
    (
        "probe-x-int",
        lambda c: c.probe(np.zeros((1, 28, 28, 1), np.uint8)),
        TypeError,
        "x must be a float array.*uint8",
    ),
    (
        "probe-x-3d",
        lambda c: c.probe(np.zeros((28, 28, 1), np.float32)),
        ValueError,
        r"x must have 4 axes.*\(28, 28, 1\).*x\[None\]",
    ),
    (
        "probe-x-empty",
        lambda c: c.probe(np.zeros((0, 28, 28, 1), np.float32)),
        ValueError,
        r"x is an empty batch.*\(0, 28, 28, 1\)",
    ),
    (
        "probe-x-channels",
        lambda c: c.probe(np.zeros((1, 28, 28, 3), np.float32)),
        ValueError,
        r"x has the wrong channel count.*\(1, 28, 28, 3\)",
    ),
    (
        "probe-x-nan",
        lambda c: c.probe(np.full((1, 28, 28, 1), np.nan, np.float32)),
        ValueError,
        "x contains NaN or inf",
    ),
    (
        "probe-x-255",
        lambda c: c.probe(np.full((1, 28, 28, 1), 200.0, np.float32)),
        ValueError,
        X255,
    ),
    ("probe-x-list", lambda c: c.probe([[0.0]]), TypeError, "x must be a numpy or jax array.*list"),
    (
        "probe-layer-typo",
        lambda c: c.probe.activations(c.x, ["conv33"]),
        ValueError,
        "unknown layer 'conv33'.*conv3",
    ),
    (
        "probe-layer-int",
        lambda c: c.probe.activations(c.x, [3]),
        TypeError,
        "layers must be layer names.*3",
    ),
    # --- optvis
    (
        "optvis-steps-0",
        lambda c: jv.optvis.render(c.probe, O.channel("conv3", 0), steps=0),
        ValueError,
        "steps.*0",
    ),
    (
        "optvis-layer-typo",
        lambda c: jv.optvis.render(c.probe, O.channel("conv33", 0), steps=2),
        ValueError,
        "conv33",
    ),
    (
        "optvis-channel-range",
        lambda c: jv.optvis.render(c.probe, O.channel("conv3", 99), steps=2),
        ValueError,
        "99",
    ),
    (
        "optvis-param-name",
        lambda c: jv.optvis.render(c.probe, O.channel("conv3", 0), steps=2, param="pixels"),
        ValueError,
        "param.*'pixels'",
    ),
    (
        "optvis-loop",
        lambda c: jv.optvis.render(c.probe, O.channel("conv3", 0), steps=2, loop="fast"),
        ValueError,
        "loop.*'fast'",
    ),
    (
        "optvis-logit-range",
        lambda c: jv.optvis.render(c.probe, O.logit(10), steps=2),
        ValueError,
        "10",
    ),
    ("optvis-wrong-size", _render_wrong_size, ValueError, r"\(32, 32, 1\)"),
    # --- attribution
    (
        "attr-x-255",
        lambda c: jv.attribution.saliency(c.probe, np.full((1, 28, 28, 1), 255.0, np.float32)),
        ValueError,
        X255,
    ),
    (
        "attr-target-range",
        lambda c: jv.attribution.saliency(c.probe, c.x, target=10),
        ValueError,
        "target class 10 is out of range",
    ),
    (
        "attr-target-str",
        lambda c: jv.attribution.saliency(c.probe, c.x, target="cat"),
        TypeError,
        "target must be a class index.*'cat'",
    ),
    (
        "attr-ig-steps",
        lambda c: jv.attribution.integrated_gradients(c.probe, c.x, target=0, steps=0),
        ValueError,
        "steps.*0",
    ),
    (
        "attr-ig-method",
        lambda c: jv.attribution.integrated_gradients(c.probe, c.x, target=0, method="simpson"),
        ValueError,
        "method.*'simpson'",
    ),
    (
        "attr-sg-samples",
        lambda c: jv.attribution.smoothgrad(c.probe, c.x, target=0, samples=-1),
        ValueError,
        "samples.*-1",
    ),
    (
        "attr-batch-size",
        lambda c: jv.attribution.saliency(c.probe, c.x, target=0, batch_size=0),
        ValueError,
        "batch_size.*0",
    ),
    (
        "attr-gradcam-layer",
        lambda c: jv.attribution.grad_cam(c.probe, c.x, target=0, layer="conv33"),
        ValueError,
        "unknown layer 'conv33'",
    ),
    (
        "attr-params-empty",
        lambda c: jv.attribution.saliency(c.probe, c.x, target=0, params={}),
        ValueError,
        r"params.*\{\}",
    ),
    (
        "attr-alphas",
        lambda c: jv.attribution.interior_gradients(c.probe, c.x, target=0, alphas=(0.5, 2.0)),
        ValueError,
        "alphas.*2",
    ),
    (
        "attr-attribute-method",
        lambda c: jv.attribution.attribute(c.probe, c.x, method="salience"),
        ValueError,
        "'salience'",
    ),
    # --- dataset
    (
        "topk-not-probe",
        lambda c: jv.dataset.top_k(c.zoo, c.x, "conv3"),
        TypeError,
        "probe must be a jaxvis.Probe.*ZooModel.*probe",
    ),
    (
        "topk-k-0",
        lambda c: jv.dataset.top_k(c.probe, c.x, "conv3", k=0),
        ValueError,
        "k must be a positive integer; got 0",
    ),
    (
        "topk-k-float",
        lambda c: jv.dataset.top_k(c.probe, c.x, "conv3", k=2.5),
        TypeError,
        "k must be a positive integer; got 2.5",
    ),
    (
        "topk-k-huge-stream",
        lambda c: jv.dataset.top_k(c.probe, iter([c.x]), "conv3", k=10**8),
        ValueError,
        "k must be at most 4096.*k=100000000",
    ),
    (
        "topk-reduce",
        lambda c: jv.dataset.top_k(c.probe, c.x, "conv3", reduce="median"),
        ValueError,
        "reduce must be one of 'max', 'mean'; got 'median'",
    ),
    (
        "topk-layer-int",
        lambda c: jv.dataset.top_k(c.probe, c.x, 3),
        TypeError,
        "layer must be a layer name.*3",
    ),
    (
        "topk-batch-255",
        lambda c: jv.dataset.top_k(c.probe, [c.x * 255], "conv3"),
        ValueError,
        "batch 0 of batches has values",
    ),
    (
        "topk-batches-str",
        lambda c: jv.dataset.top_k(c.probe, "images", "conv3"),
        TypeError,
        "batches must be an iterable.*str",
    ),
    (
        "receptive-method",
        lambda c: jv.dataset.receptive_field(c.probe, "conv3", method="exact"),
        ValueError,
        "method.*'exact'",
    ),
    # --- concepts
    (
        "concepts-acts-crop",
        lambda c: jv.concepts.activations(c.probe, c.x, "conv3", crops=2, crop_size=1.5),
        ValueError,
        r"crop_size must be a number in \(0, 1\]; got 1.5",
    ),
    (
        "concepts-acts-batch",
        lambda c: jv.concepts.activations(c.probe, c.x, "conv3", batch_size=0),
        ValueError,
        "batch_size must be a positive integer; got 0",
    ),
    (
        "concepts-fit-method",
        lambda c: jv.concepts.fit(np.ones((10, 4), np.float32), 2, method="pca2"),
        ValueError,
        "method must be one of .*'pca2'",
    ),
    (
        "concepts-fit-n",
        lambda c: jv.concepts.fit(np.ones((10, 4), np.float32), 0),
        ValueError,
        "n_concepts must be a positive integer; got 0",
    ),
    (
        "concepts-sae-steps",
        lambda c: jv.concepts.train_sae(np.ones((10, 4), np.float32), 8, steps=0),
        ValueError,
        "steps must be a positive integer; got 0",
    ),
    # --- training
    (
        "recorder-images-int",
        lambda c: jv.Recorder(np.zeros((2, 8, 8, 1), np.int32)),
        TypeError,
        "probe_images must be a float array.*int32",
    ),
    (
        "recorder-images-3d",
        lambda c: jv.Recorder(np.zeros((8, 8, 1), np.float32)),
        ValueError,
        r"probe_images must have 4 axes.*\(8, 8, 1\)",
    ),
    (
        "recorder-every",
        lambda c: jv.Recorder(c.x, every=0),
        ValueError,
        "every must be an integer >= 1; got 0",
    ),
    (
        "recorder-bin-range",
        lambda c: jv.Recorder(c.x, bin_range=(1, -1)),
        ValueError,
        r"bin_range must be finite .*\(1, -1\)",
    ),
    (
        "recorder-margin",
        lambda c: jv.Recorder(c.x, margin=-1.0),
        ValueError,
        "margin must be a positive number; got -1.0",
    ),
    (
        "recorder-on-budget",
        lambda c: jv.Recorder(c.x, on_budget="drop"),
        ValueError,
        "on_budget must be one of .*'drop'",
    ),
    (
        "recorder-layer-typo",
        lambda c: jv.Recorder(c.x, layers=["conv33"], model=c.probe),
        ValueError,
        "unknown layer 'conv33'",
    ),
    (
        "recording-missing",
        lambda c: Recording.load(c.tmp / "nope.npz"),
        FileNotFoundError,
        "nope.npz",
    ),
    (
        "recording-bad-header",
        _bad_header,
        ValueError,
        "bad_header.npz has a header that is not JSON",
    ),
    (
        "recording-corrupt-member",
        _corrupt_member,
        ValueError,
        "corrupt.npz is a damaged jaxvis recording",
    ),
    (
        "recording-wrong-format",
        _wrong_format,
        ValueError,
        "other.npz is not a jaxvis recording.*'something.else'",
    ),
    (
        "recording-save-missing-dir",
        lambda c: c.rec.save(c.tmp / "no" / "such" / "run.npz"),
        FileNotFoundError,
        r"cannot write .*run.npz: its folder .*such does not exist",
    ),
    # --- zoo
    (
        "zoo-load-name",
        lambda c: jv.zoo.load("mnist"),
        ValueError,
        "unknown zoo model 'mnist'.*mnist_cnn",
    ),
    ("zoo-build-name", lambda c: jv.zoo.build("resnet"), ValueError, "unknown zoo model 'resnet'"),
    (
        "zoo-watch-epochs",
        lambda c: jv.zoo.train_with_recording("mnist_cnn", epochs=0),
        ValueError,
        "epochs must be a positive integer; got 0",
    ),
    (
        "zoo-watch-batch",
        lambda c: jv.zoo.train_with_recording("mnist_cnn", batch_size=1.5),
        TypeError,
        "batch_size must be a positive integer; got 1.5",
    ),
    # --- render
    (
        "render-alpha",
        lambda c: R.overlay(np.zeros((4, 4)), np.zeros((4, 4)), alpha=1.5),
        ValueError,
        r"alpha must be a number in \[0, 1\]; got 1.5",
    ),
    (
        "render-fps",
        lambda c: R.write_gif(np.zeros((2, 4, 4)), fps=0),
        ValueError,
        "fps must be a positive number; got 0",
    ),
    (
        "render-cmap",
        lambda c: R.colorize(np.zeros((2, 2)), cmap="jet2"),
        ValueError,
        "cmap must be one of .*'jet2'",
    ),
    (
        "render-gif-missing-dir",
        lambda c: R.write_gif(np.zeros((2, 4, 4)), c.tmp / "none" / "a.gif"),
        FileNotFoundError,
        r"cannot write .*a.gif",
    ),
    # --- widgets
    (
        "w-concepts-k-over-box",
        lambda c: jv.widgets.ConceptExplorer(c.probe, c.x, "conv3", n_concepts=5000),
        ValueError,
        r"n_concepts must be an integer in \[1, 4096\]; got 5000",
    ),
    (
        "w-concepts-max-samples",
        lambda c: jv.widgets.ConceptExplorer(c.probe, c.x, "conv3", max_samples=0),
        ValueError,
        "max_samples must be a positive integer; got 0",
    ),
    (
        "w-layer-explorer-normalize",
        lambda c: jv.widgets.LayerExplorer(c.probe, c.x, normalize="global"),
        ValueError,
        "normalize must be one of 'channel', 'layer'; got 'global'",
    ),
    (
        "w-layer-explorer-layers",
        lambda c: jv.widgets.LayerExplorer(c.probe, c.x, layers=["conv3", 7]),
        TypeError,
        r"layers must be a layer name \(str\); got 7",
    ),
    (
        "w-layer-explorer-probe",
        lambda c: jv.widgets.LayerExplorer(c.zoo, c.x),
        TypeError,
        "probe must be a jaxvis.Probe.*ZooModel.*probe",
    ),
    (
        "w-layer-explorer-255",
        lambda c: jv.widgets.LayerExplorer(c.probe, c.x * 255),
        ValueError,
        "images has values",
    ),
    (
        "w-layer-explorer-sort",
        lambda c: jv.widgets.LayerExplorer(c.probe, c.x, sort="random"),
        ValueError,
        "sort.*'random'",
    ),
    (
        "w-layer-explorer-labels",
        lambda c: jv.widgets.LayerExplorer(c.probe, c.x, labels=[1]),
        ValueError,
        r"labels must have one entry per image \(4\), got 1",
    ),
    (
        "w-summary-probe",
        lambda c: jv.widgets.ModelSummary("mnist_cnn"),
        TypeError,
        "probe must be a jaxvis.Probe.*str",
    ),
    ("w-filter-layer", lambda c: jv.widgets.FilterGrid(c.probe, "dense9"), ValueError, "dense9"),
    (
        "w-histograms-bins",
        lambda c: jv.widgets.WeightHistograms(c.probe, bins=0),
        ValueError,
        "bins must be a positive integer; got 0",
    ),
    (
        "w-histograms-source",
        lambda c: jv.widgets.WeightHistograms("weights"),
        TypeError,
        "must be a jaxvis.Probe.*str",
    ),
    (
        "w-unit-k",
        lambda c: jv.widgets.UnitExplorer(c.probe, c.x, k=0),
        ValueError,
        "k must be a positive integer; got 0",
    ),
    (
        "w-unit-channel",
        lambda c: jv.widgets.UnitExplorer(c.probe, c.x, layer="conv3", channel=99),
        ValueError,
        r"channel must be an integer in \[0, 7\]; got 99",
    ),
    (
        "w-unit-fv-steps",
        lambda c: jv.widgets.UnitExplorer(c.probe, c.x, fv_steps=-1),
        ValueError,
        "fv_steps must be an integer >= 0; got -1",
    ),
    (
        "w-concepts-method",
        lambda c: jv.widgets.ConceptExplorer(c.probe, c.x, "conv3", method="kmeans"),
        ValueError,
        "method must be one of .*'kmeans'",
    ),
    (
        "w-concepts-k",
        lambda c: jv.widgets.ConceptExplorer(c.probe, c.x, "conv3", k=0),
        ValueError,
        "k must be a positive integer; got 0",
    ),
    (
        "w-replay-tile",
        lambda c: jv.widgets.TrainingReplay(c.rec, tile_px=0),
        ValueError,
        "tile_px must be a positive integer; got 0",
    ),
    (
        "w-replay-range",
        lambda c: jv.widgets.TrainingReplay(c.rec, value_range=(1, 1)),
        ValueError,
        r"value_range must be finite .*\(1, 1\)",
    ),
    (
        "w-replay-recording",
        lambda c: jv.widgets.TrainingReplay(42),
        TypeError,
        "recording must be a jv.Recording.*int",
    ),
    (
        "w-replay-path",
        lambda c: jv.widgets.TrainingReplay(c.tmp / "missing.npz"),
        FileNotFoundError,
        "missing.npz",
    ),
    (
        "w-feature-vis-steps",
        lambda c: jv.widgets.FeatureVis(c.probe, steps=0),
        ValueError,
        "steps.*0",
    ),
    (
        "w-feature-vis-layer",
        lambda c: jv.widgets.FeatureVis(c.probe, layer="conv33"),
        ValueError,
        "conv33",
    ),
    (
        "w-attribution-method",
        lambda c: jv.widgets.AttributionExplorer(c.probe, c.x, method="salience"),
        ValueError,
        "'salience'",
    ),
    (
        "w-attribution-steps",
        lambda c: jv.widgets.AttributionExplorer(c.probe, c.x, steps=0),
        ValueError,
        "steps.*0",
    ),
    (
        "w-attention-probe",
        lambda c: jv.widgets.AttentionExplorer(c.probe, c.x),
        ValueError,
        "attention",
    ),
]


def _params(cases: list) -> list:
    return [pytest.param(*case[1:], id=case[0]) for case in cases]


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 60
    assert len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("call, exc, message", _params(CASES))
def test_bad_input_is_refused_before_compiling(ctx: Ctx, call, exc, message) -> None:
    before = COMPILES[0]
    with pytest.raises(exc, match=message):
        call(ctx)
    assert COMPILES[0] == before, f"{COMPILES[0] - before} program(s) compiled before the error"


def test_unit_explorer_show_refuses_what_its_slider_would_clamp(ctx: Ctx) -> None:
    """The constructor refuses channel 99 of conv3; ``show`` must too (not clamp to 7)."""
    w = jv.widgets.UnitExplorer.__new__(jv.widgets.UnitExplorer)
    w.probe = ctx.probe
    w.layers = [ctx.probe.layer("conv3")]
    w.layer_select = type("Select", (), {"value": "conv3"})()
    with pytest.raises(ValueError, match=r"channel must be an integer in \[0, 7\]; got 99"):
        w.show(channel=99)
    with pytest.raises(ValueError, match="layer must be one of 'conv3'; got 'conv9'"):
        w.show(layer="conv9")


def test_deprecated_widget_name_warns_and_still_works() -> None:
    with pytest.warns(DeprecationWarning, match="AttributionExplorer"):
        cls = jv.widgets.Attribution
    assert cls is jv.widgets.AttributionExplorer
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert jv.widgets.AttributionExplorer is cls  # the new name does not warn
