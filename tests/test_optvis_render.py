"""The render loop on the zoo models: the issue's "Must show" list.

Kept affordable on 2 CPU cores: every test shares compiled steps where it can (same shapes and
structure), and whole layers run as one vectorised batch.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import jaxvis as jv
from jaxvis.optvis import objectives as O


def _zoo(name: str):
    try:
        return jv.zoo.load(name)
    except FileNotFoundError as exc:  # weights not trained yet in this checkout
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def mnist():
    return _zoo("mnist_cnn")


class CompileCounter:
    """Counts XLA backend compilations while active (jax's monitoring events)."""

    def __init__(self) -> None:
        self.count = 0

    def _listener(self, event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            self.count += 1

    def __enter__(self) -> CompileCounter:
        jax.monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc) -> None:
        from jax._src import monitoring

        monitoring.unregister_event_duration_listener(self._listener)


@pytest.mark.parametrize("param", ["pixel", "fourier"])
def test_logit_images_are_classified_as_their_class(mnist, param):
    # 512 steps is Lucid's default; at 256 one class of ten can still be climbing.
    res = jv.optvis.render(mnist.probe, O.logit(range(10)), steps=512, param=param, seed=0)
    assert res.images.shape == (10, 28, 28, 1)
    assert res.images.min() >= 0 and res.images.max() <= 1
    assert res.history.shape == (512, 10)
    assert (res.history[-16:].mean(0) > res.history[:16].mean(0)).all()  # it climbed
    probs = np.asarray(jax.nn.softmax(mnist.probe(res.inputs)))
    assert (probs.argmax(1) == np.arange(10)).all()
    assert (np.diag(probs) > 0.9).all(), np.diag(probs).round(3)


def _conv_channels_beat_data(zoo) -> dict[str, float]:
    probe = zoo.probe
    convs = [layer for layer in probe.layers if layer.kind == "Conv"]
    assert convs
    data = np.concatenate([zoo.x_train, zoo.x_test])
    best: dict[str, np.ndarray] = {}
    for i in range(0, len(data), 500):
        acts = probe.activations(data[i : i + 500], [layer.name for layer in convs])
        for name, a in acts.items():
            m = np.asarray(a).mean(axis=(1, 2)).max(axis=0)
            best[name] = np.maximum(best.get(name, -np.inf), m)
    objs = [O.channel(layer.name, c) for layer in convs for c in range(layer.shape[-1])]
    res = jv.optvis.render(probe, objs, steps=128, param="pixel", transforms=None)
    fractions, start = {}, 0
    for layer in convs:
        c = layer.shape[-1]
        fractions[layer.name] = float((res.values[start : start + c] > best[layer.name]).mean())
        start += c
    return fractions


@pytest.mark.parametrize("name", ["mnist_cnn", "shapes_cnn"])
def test_visualisation_beats_every_dataset_image(name):
    fractions = _conv_channels_beat_data(_zoo(name))
    assert min(fractions.values()) >= 0.9, fractions


def test_same_seed_same_image_bit_for_bit(mnist):
    run = lambda seed: jv.optvis.render(  # noqa: E731
        mnist.probe, O.logit(range(10)), steps=20, param="pixel", seed=seed
    )
    a, b, c = run(3), run(3), run(4)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.history, b.history)
    assert not np.array_equal(a.images, c.images)


def test_changing_values_does_not_compile_again(mnist):
    probe = mnist.probe
    reg = jv.optvis.Regularizers(l2=0.1, tv=0.1, decay=0.01, blur_sigma=0.5, blur_every=4)

    def run(c, k, **kw):
        obj = O.channel("conv5", c) + 0.5 * O.logit(k)
        kw.setdefault("regularizers", reg)
        return jv.optvis.render(probe, obj, steps=3, param="pixel", chunk=3, **kw)

    run(0, 0)  # compiles once for this shape and structure
    with CompileCounter() as counter:
        run(5, 3)
        run(7, 9, lr=0.2, seed=11)
        run(
            2,
            1,
            regularizers=jv.optvis.Regularizers(
                l1=0.3, norm_pct=30, contrib_pct=20, blur_sigma=1.0, blur_every=2
            ),
        )
        run(2, 1, regularizers=jv.optvis.Regularizers())
    assert counter.count == 0


def test_callback_progress_stop_and_snapshots(mnist):
    seen = []

    def callback(progress):
        seen.append((progress.step, progress.images.shape, progress.values.shape))
        return progress.step < 8  # False -> stop

    res = jv.optvis.render(
        mnist.probe,
        "conv5:*",
        steps=40,
        chunk=4,
        param="pixel",
        callback=callback,
        snapshot_every=4,
    )
    assert seen == [(4, (16, 28, 28, 1), (16,)), (8, (16, 28, 28, 1), (16,))]
    assert res.stopped and res.steps == 8 and res.history.shape == (8, 16)
    assert res.snapshots.shape == (2, 16, 28, 28, 1) and res.snapshot_steps == [4, 8]
    np.testing.assert_array_equal(res.snapshots[-1], res.images)


def test_yosinski_presets_run(mnist):
    for name in ("yosinski1", "yosinski2", "yosinski3", "yosinski4"):
        res = jv.optvis.render(mnist.probe, O.logit([3, 5]), steps=8, preset=name)
        assert res.images.shape == (2, 28, 28, 1) and np.isfinite(res.images).all()
    res4 = jv.optvis.render(mnist.probe, O.logit([3, 5]), steps=8, preset="yosinski4")
    grey = (np.abs(res4.images - 0.5) < 1e-6).mean()
    assert grey > 0.8  # 90th-percentile contribution clipping leaves most pixels grey


def test_bad_arguments_raise_before_compiling(mnist):
    probe = mnist.probe
    with pytest.raises(ValueError, match="steps must be > 0"):
        jv.optvis.render(probe, "conv5:1", steps=0)
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        jv.optvis.render(probe, "conv9:1")
    with pytest.raises(ValueError, match="channel 16 is out of range"):
        jv.optvis.render(probe, "conv5:16")
    with pytest.raises(ValueError, match="lr must be"):
        jv.optvis.render(probe, "conv5:1", lr=-1.0)
    with pytest.raises(ValueError, match="act on pixels"):
        jv.optvis.render(
            probe, "conv5:1", param="fourier", regularizers=jv.optvis.Regularizers(decay=0.1)
        )
    with pytest.raises(TypeError, match="probe must be a jaxvis.Probe"):
        jv.optvis.render(object(), "conv5:1")
    with pytest.raises(ValueError, match="preset"):
        jv.optvis.render(probe, "conv5:1", preset="nope")
