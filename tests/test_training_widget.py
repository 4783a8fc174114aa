"""TrainingReplay, headless: frames, curves, histograms and exports of a synthetic recording.

The recording is built by hand (no training), so every expected pixel and bar is known.
"""

from __future__ import annotations

import io

import ipywidgets as W
import numpy as np
import pytest
from PIL import Image

from jaxvis import render
from jaxvis.training import Recording
from jaxvis.widgets import TrainingReplay

T, N = 5, 3


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def make_recording(weights: bool = True, value_range=(-1.0, 1.0)) -> Recording:
    rng = np.random.default_rng(0)
    t = np.arange(T, dtype=np.float32)[:, None, None, None, None]
    big = np.tanh(rng.normal(size=(1, N, 8, 8, 2)) * (t + 1)).astype(np.float16)
    small = np.tanh(rng.normal(size=(1, N, 4, 4, 3)) - 0.2 * t).astype(np.float16)
    edges = np.linspace(-1, 1, 9, dtype=np.float32)
    hists, stats = {}, {}
    if weights:
        w = [rng.normal(0, 0.1 + 0.1 * k, 50) for k in range(T)]
        hists["c1.kernel"] = np.stack(
            [np.histogram(np.clip(x, -1, 1), edges)[0] for x in w]
        ).astype(np.int32)
        hists["c1.bias"] = np.tile(np.array([0, 0, 0, 0, 4, 0, 0, 0], np.int32), (T, 1))
        stats["c1.kernel"] = np.array(
            [[x.mean(), x.std(), np.linalg.norm(x), x.min(), x.max()] for x in w], np.float32
        )
        stats["c1.bias"] = np.zeros((T, 5), np.float32)
    loss = np.linspace(2.3, 0.4, T)
    loss[0] = np.nan
    test_acc = np.full(T, np.nan)
    test_acc[-1] = 0.9
    return Recording(
        steps=np.arange(0, 2 * T, 2, dtype=np.int64),
        images=rng.random((N, 8, 8, 1)).astype(np.float32),
        activations={"big": np.broadcast_to(big, (T, N, 8, 8, 2)).copy(), "small": small},
        metrics={"loss": loss, "accuracy": np.linspace(0.1, 0.8, T), "test_accuracy": test_acc},
        histograms=hists,
        bin_edges={k: edges for k in hists},
        stats=stats,
        labels=np.arange(N),
        meta={"value_range": list(value_range) if value_range else None},
    )


@pytest.fixture()
def rec() -> Recording:
    return make_recording()


def test_frames_show_the_recorded_activations(rec):
    replay = TrainingReplay(rec, tile_px=8)
    assert "jv-training-replay" in replay._dom_classes
    for i in (0, 3):
        replay.slider.value = i
        for name, (h, c) in {"big": (8, 2), "small": (4, 3)}.items():
            frame = decode(replay.images[name].value)
            s = 8 // h  # tiles are 8 px: 4x4 maps are doubled
            col0 = 8 + 4  # the input column (8 px) and a 4 px gap
            for row in range(N):
                for ch in range(c):
                    y0, x0 = row * (8 + 1), col0 + ch * (h * s + 1)
                    tile = frame[y0 : y0 + h * s, x0 : x0 + h * s]
                    value = rec.activations[name][i, row, :, :, ch].astype(np.float32)
                    expected = render.colorize((value + 1) / 2, "rwb")  # -1..1 -> blue..red
                    expected = expected.repeat(s, 0).repeat(s, 1)
                    np.testing.assert_array_equal(tile, expected)
            # the input image leads each row, in grey
            first = frame[:8, :8, 0].astype(int)
            want = np.rint(rec.images[0, :, :, 0] * 255).astype(int)
            assert np.abs(first - want).max() <= 1


def test_moving_the_slider_swaps_precomputed_pngs_and_moves_markers(rec):
    replay = TrainingReplay(rec)
    assert [len(v) for v in replay.pngs.values()] == [T, T]
    replay.slider.value = 4
    assert replay.images["small"].value == replay.pngs["small"][4]
    assert replay.images["small"].value != replay.pngs["small"][0]
    assert replay.step == 8
    assert all(list(m.x) == [8, 8] for m in replay.markers)
    assert len(replay.markers) == 2  # a loss figure and an accuracy figure
    assert "step 8" in replay.readout.value and "test_accuracy 0.90" in replay.readout.value
    replay.slider.value = 0
    assert "loss" not in replay.readout.value  # NaN at step 0 is left out


def test_play_is_linked_to_the_slider(rec):
    replay = TrainingReplay(rec, interval=80)
    assert isinstance(replay.play, W.Play) and replay.play.interval == 80
    assert type(replay.link).__name__ == "Link"  # a front-end link: Play runs in the browser
    assert replay.link.source == (replay.play, "value")
    assert replay.link.target == (replay.slider, "value")
    assert replay.play.max == replay.slider.max == T - 1


def test_frames_render_on_first_view_when_not_prerendered(rec):
    eager = TrainingReplay(rec)
    lazy = TrainingReplay(rec, prerender=False)
    assert lazy.pngs["big"][1:] == [None] * (T - 1)  # only the first frame is on screen
    lazy.slider.value = 3
    assert lazy.images["big"].value == eager.pngs["big"][3] == lazy.pngs["big"][3]
    assert lazy.pngs["big"][2] is None


def test_curves_skip_missing_values(rec):
    replay = TrainingReplay(rec)
    lines = {
        mark.labels[0]: mark for fig in replay.curves.children for mark in fig.marks if mark.labels
    }
    np.testing.assert_array_equal(lines["loss"].x, rec.steps[1:])
    np.testing.assert_allclose(lines["loss"].y, rec.metrics["loss"][1:])
    np.testing.assert_array_equal(lines["test_accuracy"].x, [8])


def test_histogram_is_current_over_first_and_distribution_has_bands(rec):
    replay = TrainingReplay(rec)
    assert replay.weight_select.value == "c1.kernel"  # the first kernel
    first, current = replay.hist_bars
    np.testing.assert_array_equal(first.y, rec.histograms["c1.kernel"][0])
    replay.slider.value = 3
    np.testing.assert_array_equal(current.y, rec.histograms["c1.kernel"][3])
    np.testing.assert_array_equal(first.y, rec.histograms["c1.kernel"][0])
    np.testing.assert_allclose(first.x, np.linspace(-0.875, 0.875, 8))
    q = rec.percentiles("c1.kernel")
    bands = replay.dist_marks["bands"]
    np.testing.assert_allclose(np.asarray(bands[0].y), np.stack([q[:, 0], q[:, 8]]))
    np.testing.assert_allclose(replay.dist_marks["median"].y, q[:, 4])
    assert list(replay.dist_marks["marker"].x) == [6, 6]
    replay.weight_select.value = "c1.bias"
    np.testing.assert_array_equal(current.y, rec.histograms["c1.bias"][3])


def test_export_gif_and_png(rec, tmp_path):
    replay = TrainingReplay(rec, out_dir=tmp_path, prefix="run")
    path = replay.export_gif("big")
    assert path == tmp_path / "run_big.gif"
    gif = Image.open(path)
    assert gif.n_frames == T
    gif.seek(2)
    frame = np.asarray(gif.convert("RGB"))
    assert frame.shape == replay.render_frame(2, "big").shape
    assert np.abs(frame.astype(int) - replay.render_frame(2, "big")).mean() < 8  # palette
    replay.slider.value = 2
    png = replay.export_png()
    assert png == tmp_path / "run_step4.png"
    np.testing.assert_array_equal(decode(png.read_bytes()), replay.frame())
    assert "wrote" in replay.status.value


def test_export_error_is_shown_in_place_and_widget_keeps_working(rec, tmp_path):
    replay = TrainingReplay(rec, out_dir=tmp_path / "missing" / "dir")
    replay.png_button.click()
    assert replay.error.error and "No such file" in replay.error.error
    assert "jv-error" in replay.error.value
    replay.slider.value = 1
    assert replay.images["big"].value == replay.pngs["big"][1]
    replay.out_dir = tmp_path
    replay.gif_button.click()
    assert replay.error.error == ""
    assert (tmp_path / "training_big.gif").exists()


def test_symmetric_range_without_value_range_and_no_weights():
    rec = make_recording(weights=False, value_range=None)
    replay = TrainingReplay(rec, layers=["small"])
    m = float(np.abs(rec.activations["small"]).max())
    assert replay.value_ranges == {"small": (-m, m)}
    assert list(replay.images) == ["small"]
    assert replay.weight_select.layout.display == "none"
    replay.slider.value = 2  # no histograms: still updates
    assert replay.images["small"].value == replay.pngs["small"][2]


def test_loads_a_saved_recording(rec, tmp_path):
    path = rec.save(tmp_path / "r.npz")
    replay = TrainingReplay(str(path))
    assert replay.pngs["big"][3] == TrainingReplay(rec).pngs["big"][3]


def test_bad_arguments_name_themselves(rec):
    with pytest.raises(TypeError, match="recording"):
        TrainingReplay({"steps": [0]})
    with pytest.raises(ValueError, match="did you mean 'small'"):
        TrainingReplay(rec, layers=["smal"])
    with pytest.raises(ValueError, match="cmap"):
        TrainingReplay(rec, cmap="jet")
    with pytest.raises(ValueError, match="weights"):
        TrainingReplay(rec, weights="c9.kernel")
    with pytest.raises(ValueError, match="value_range"):
        TrainingReplay(rec, value_range=(1, -1))
    with pytest.raises(ValueError, match="tile_px"):
        TrainingReplay(rec, tile_px=0)
    empty = make_recording()
    empty.steps = empty.steps[:0]
    with pytest.raises(ValueError, match="no steps"):
        TrainingReplay(empty)
    replay = TrainingReplay(rec)
    with pytest.raises(ValueError, match="layer must be one of"):
        replay.export_gif("nope")
