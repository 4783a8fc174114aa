"""The perturbation family against independent references: Captum's Occlusion and
FeatureAblation on the PyTorch twins of the zoo models (same weights, same segments), a numpy
loop over the same RISE masks, brute-force Shapley values for KernelSHAP; compile counts and
errors before compiling."""

from __future__ import annotations

import functools
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from test_attribution_helpers import images, small_probe

import jaxvis as jv
from jaxvis.attribution import trace_counts

A = jv.attribution
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


# --------------------------------------------------------------------------- references


def np_occlusion(score, x: np.ndarray, window, stride, baseline: float) -> np.ndarray:  # noqa: ANN001
    """Occlusion by hand: every window position (Captum's: ceil((H - h) / s) + 1 steps, the last
    cropped), ``score(x) - score(occluded)`` added to the window, divided by the coverage."""
    n, h, w, c = x.shape
    fx = score(x)
    total = np.zeros((n, h, w))
    count = np.zeros((h, w))
    for i in range(math.ceil((h - window[0]) / stride[0]) + 1):
        for j in range(math.ceil((w - window[1]) / stride[1]) + 1):
            mask = np.zeros((h, w))
            y0, x0 = i * stride[0], j * stride[1]
            mask[y0 : y0 + window[0], x0 : x0 + window[1]] = 1.0
            occluded = x * (1 - mask[..., None]) + baseline * mask[..., None]
            total += (fx - score(occluded.astype(np.float32)))[:, None, None] * mask
            count += mask
    return np.repeat((total / count)[..., None], c, -1)


def class_score(probe: jv.Probe, target) -> object:  # noqa: ANN001
    rows = np.arange(len(np.atleast_1d(target)))
    return lambda xx: np.asarray(probe(xx))[rows, target]


@functools.cache
def twin(name: str):  # noqa: ANN201
    from _torch_nets import INPUT_SHIFT, torch_twin

    zoo = jv.zoo.load(name)
    x = np.asarray(zoo.x_test[:2], np.float32)
    y = np.asarray(zoo.y_test[:2]).astype(np.int64)
    return zoo.probe, torch_twin(zoo.probe, INPUT_SHIFT.get(name, 0.0)), x, y


def nchw(x: np.ndarray):  # noqa: ANN201
    import torch

    return torch.tensor(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))


def nhwc(t) -> np.ndarray:  # noqa: ANN001
    return np.transpose(t.detach().numpy(), (0, 2, 3, 1))


# --------------------------------------------------------------------------- against Captum


@pytest.mark.parametrize(
    ("name", "window", "stride", "baseline"),
    [("mnist_cnn", 6, 4, 0.1), ("shapes_cnn", (8, 5), (3, 5), 0.0)],
)
def test_occlusion_equals_captum(name: str, window, stride, baseline: float) -> None:  # noqa: ANN001
    import torch
    from captum.attr import Occlusion

    probe, net, x, y = twin(name)
    res = A.occlusion(probe, x, y, window=window, stride=stride, baseline=baseline)
    c = x.shape[-1]
    win = (window, window) if isinstance(window, int) else window
    step = (stride, stride) if isinstance(stride, int) else stride
    ref = Occlusion(net).attribute(
        nchw(x),
        sliding_window_shapes=(c, *win),
        strides=(1, *step),
        baselines=baseline,
        target=torch.tensor(y),
        perturbations_per_eval=64,
    )
    np.testing.assert_allclose(res.values, nhwc(ref), rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(res.score, np.asarray(probe(x))[[0, 1], y], rtol=1e-5, atol=1e-5)


def test_feature_ablation_equals_captum_on_slic_segments() -> None:
    import torch
    from captum.attr import FeatureAblation

    probe, net, x, y = twin("mnist_cnn")
    res = A.feature_ablation(probe, x, y, segments="slic", n_segments=20, baseline=0.2)
    labels = res.extra["segments"]
    assert labels.shape == (2, 28, 28) and labels.max() >= 10  # SLIC made many segments
    mask = torch.tensor(labels[:, None]).long()
    ref = FeatureAblation(net).attribute(
        nchw(x), baselines=0.2, target=torch.tensor(y), feature_mask=mask, perturbations_per_eval=64
    )
    np.testing.assert_allclose(res.values, nhwc(ref), rtol=1e-4, atol=2e-5)


# --------------------------------------------------------------------------- numpy references


def test_occlusion_equals_a_numpy_loop_and_ignores_batch_size() -> None:
    probe, x = small_probe(), images(3)
    target = np.array([0, 2, 1])
    want = np_occlusion(class_score(probe, target), x, (3, 4), (2, 3), -0.5)
    got = A.occlusion(probe, x, target, window=(3, 4), stride=(2, 3), baseline=-0.5)
    np.testing.assert_allclose(got.values, want, rtol=1e-4, atol=1e-6)
    small = A.occlusion(probe, x, target, window=(3, 4), stride=(2, 3), baseline=-0.5, batch_size=5)
    np.testing.assert_allclose(small.values, got.values, rtol=1e-5, atol=1e-7)


def test_rise_equals_a_numpy_loop_over_the_same_masks() -> None:
    probe, x = small_probe(), images(2)
    masks = A.rise_masks((8, 8), masks=40, cells=3, probability=0.4, seed=5)
    assert masks.shape == (40, 8, 8) and masks.min() >= 0.0 and masks.max() <= 1.0
    assert 0.25 < masks.mean() < 0.55  # keep probability 0.4, smoothed
    score = class_score(probe, np.array([1, 2]))
    want = sum(score(x * m[..., None])[:, None, None] * m for m in masks) / (40 * 0.4)
    got = A.rise(probe, x, [1, 2], masks=masks, probability=0.4)
    np.testing.assert_allclose(got.values, np.repeat(want[..., None], 2, -1), rtol=1e-4, atol=1e-6)
    drawn = A.rise(probe, x, [1, 2], masks=40, cells=3, probability=0.4, seed=5)
    np.testing.assert_allclose(drawn.values, got.values, rtol=1e-5, atol=1e-6)
    ones = A.rise(probe, x, [1, 2], masks=3, cells=2, probability=1.0)  # every cell kept
    np.testing.assert_allclose(
        ones.values[..., 0], np.broadcast_to(score(x)[:, None, None], (2, 8, 8)), rtol=1e-5
    )


def exact_shapley(probe: jv.Probe, x: np.ndarray, labels: np.ndarray, target, baseline: float):  # noqa: ANN001, ANN201
    """Shapley values by definition: all coalitions S, weights |S|! (K - |S| - 1)! / K!."""
    k = int(labels.max()) + 1
    score = class_score(probe, target)
    value = {}
    for bits in itertools.product((0, 1), repeat=k):
        keep = np.asarray(bits, np.float32)[labels][..., None]  # (N, H, W, 1)
        value[bits] = score((x * keep + baseline * (1 - keep)).astype(np.float32))
    phi = np.zeros((x.shape[0], k))
    for i in range(k):
        for bits in value:
            if bits[i]:
                continue
            s = sum(bits)
            with_i = bits[:i] + (1,) + bits[i + 1 :]
            weight = math.factorial(s) * math.factorial(k - s - 1) / math.factorial(k)
            phi[:, i] += weight * (value[with_i] - value[bits])
    return phi


def test_kernel_shap_with_every_coalition_gives_exact_shapley_values() -> None:
    probe, x = small_probe(), images(2)
    labels = np.repeat(np.repeat(np.arange(6).reshape(2, 3), 4, 0), [3, 3, 2], 1)  # 8 x 8
    want = exact_shapley(probe, x, labels, np.array([2, 0]), 0.3)
    every = np.array(list(itertools.product((0, 1), repeat=6)))
    res = A.kernel_shap(probe, x, [2, 0], segments=labels, samples=every, baseline=0.3)
    np.testing.assert_allclose(res.extra["shapley"], want, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(
        res.values[..., 0],
        np.take_along_axis(want, np.broadcast_to(labels, (2, 8, 8)).reshape(2, -1), 1).reshape(
            2, 8, 8
        ),
        rtol=1e-3,
        atol=1e-5,
    )
    # drawn from the Shapley kernel: close to the exact values, and efficiency holds exactly
    drawn = A.kernel_shap(probe, x, [2, 0], segments=labels, samples=3000, baseline=0.3, seed=1)
    phi = np.asarray(drawn.extra["shapley"])
    np.testing.assert_allclose(phi.sum(1), drawn.score - drawn.baseline_score, rtol=1e-4, atol=1e-5)
    assert np.abs(phi - want).max() < 0.1 * np.abs(want).max()


def test_shapley_kernel_closed_form() -> None:
    np.testing.assert_allclose(A.shapley_kernel(4, [1, 2, 3]), [3 / 12, 3 / 24, 3 / 12])


def test_grid_and_array_segments() -> None:
    probe, x = small_probe(), images(2)
    labels = A.segment(probe, x, "grid", n_segments=4)
    np.testing.assert_array_equal(labels[0], np.repeat(np.repeat([[0, 1], [2, 3]], 4, 0), 4, 1))
    odd = A.segment(probe, x, np.where(np.arange(64).reshape(8, 8) < 20, 7, 3))
    assert set(np.unique(odd)) == {0, 1}  # relabelled contiguously


# --------------------------------------------------------------------------- compiles and errors


def test_changing_values_compiles_nothing_new() -> None:
    probe, x = small_probe(), images(2)
    grid = A.segment(probe, x, "grid", n_segments=4)

    def run(t: int, b: float, seed: int, window: int, labels: np.ndarray) -> None:
        A.occlusion(probe, x, t, window=window, stride=window, baseline=b)
        A.rise(probe, x, t, masks=16, cells=2, probability=0.3 + 0.1 * t, seed=seed)
        A.feature_ablation(probe, x, t, segments=labels, baseline=b)
        A.kernel_shap(probe, x, t, segments=labels, samples=20, seed=seed, baseline=b)

    run(0, 0.0, 0, 4, grid)
    before = trace_counts()
    run(1, 0.5, 3, 4, 3 - grid)
    run(2, -1.0, 9, 4, np.roll(grid, 1, axis=2))
    assert trace_counts() == before


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        (A.occlusion, {"window": 9}, r"window \(9, 9\) is larger than the image \(8, 8\)"),
        (A.occlusion, {"window": (2, 9)}, "larger than the image"),
        (A.occlusion, {"stride": 0}, "stride must be a positive integer"),
        (A.occlusion, {"window": 2, "stride": 3}, "stride .* is larger than the window"),
        (A.occlusion, {"baseline": [0.0, 1.0]}, "one baseline"),
        (A.rise, {"masks": 0}, "masks must be a positive integer"),
        (A.rise, {"masks": np.zeros((0, 8, 8))}, "empty"),
        (A.rise, {"masks": np.zeros((3, 7, 8))}, r"\(M, 8, 8\)"),
        (A.rise, {"probability": 0.0}, r"probability must be in \(0, 1\]"),
        (A.rise, {"probability": 1.5}, r"probability must be in \(0, 1\]"),
        (A.rise, {"cells": 9}, "more cells"),
        (A.feature_ablation, {"segments": "quickshift"}, "segments must be one of slic, grid"),
        (A.feature_ablation, {"segments": np.zeros((7, 8), int)}, "segments array must have shape"),
        (A.feature_ablation, {"segments": np.zeros((8, 8))}, "int labels"),
        (A.kernel_shap, {"segments": "grid", "n_segments": 4, "samples": 0}, "samples must be"),
        (
            A.kernel_shap,
            {"segments": "grid", "n_segments": 4, "samples": np.ones((3, 5))},
            r"\(M, 4\)",
        ),
        (A.kernel_shap, {"segments": np.zeros((8, 8), int)}, "at least 2 segments"),
        (A.kernel_shap, {"segments": "grid", "n_segments": 100}, "more cells than"),
    ],
)
def test_bad_options_raise_before_compiling(method, options: dict, message: str) -> None:  # noqa: ANN001
    probe, x = small_probe(), images(2)
    before = trace_counts()
    with pytest.raises((ValueError, TypeError), match=message):
        method(probe, x, 0, **options)
    assert trace_counts() == before


def test_registered_in_the_perturbation_family() -> None:
    names = set(A.methods(family="perturbation"))
    assert {"occlusion", "rise", "feature_ablation", "kernel_shap"} <= names


def test_one_program_serves_batches_of_any_size() -> None:
    probe, x = small_probe(), images(3)
    labels = A.segment(probe, x, "grid", n_segments=4)
    calls = {
        "occlusion": lambda xx, lab: A.occlusion(probe, xx, 1, window=4, batch_size=4),
        "rise": lambda xx, lab: A.rise(probe, xx, 1, masks=6, cells=2, batch_size=4),
        "feature_ablation": lambda xx, lab: A.feature_ablation(
            probe, xx, 1, segments=lab, batch_size=4
        ),
        "kernel_shap": lambda xx, lab: A.kernel_shap(
            probe, xx, 1, segments=lab, samples=10, batch_size=4
        ),
    }
    for name, call in calls.items():
        two = call(x[:2], labels[:2]).values
        three = call(x, labels).values
        np.testing.assert_allclose(three[:2], two, rtol=1e-4, atol=1e-6, err_msg=name)
