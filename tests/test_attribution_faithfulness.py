"""Faithfulness metrics against numpy loops written here and against Captum on a PyTorch twin."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from test_attribution_helpers import images, small_probe

import jaxvis as jv
from jaxvis.attribution import faithfulness as F
from jaxvis.attribution import metrics as M
from jaxvis.attribution._core import trace_counts

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

RNG = np.random.default_rng(3)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _score(probe, img: np.ndarray, t: int, probability: bool) -> float:  # noqa: ANN001
    out = np.asarray(probe(img[None].astype(np.float32)), np.float64)[0]
    return float((_softmax(out) if probability else out)[t])


def _ranked_pixels(amap: np.ndarray) -> list[tuple[int, int]]:
    """Pixels from the largest map value down; ties: row-major order first."""
    h, w = amap.shape
    values = [(-float(amap[i, j]), i * w + j) for i in range(h) for j in range(w)]
    return [divmod(k, w) for _, k in sorted(values)]


def _setup(n: int = 3):  # noqa: ANN202
    probe = small_probe()
    x = images(n)
    a = RNG.normal(size=x.shape).astype(np.float32)
    a[0, :2, :2] = 1.0  # ties, broken in row-major order
    y = np.array([0, 1, 2][:n], np.int32)
    return probe, x, a, y


def test_deletion_and_insertion_equal_a_numpy_loop() -> None:
    probe, x, a, y = _setup()
    steps, base = 5, 0.25
    start = RNG.uniform(size=x.shape).astype(np.float32)
    d = F.deletion(probe, x, a, y, steps=steps, baseline=base)
    ins = F.insertion(probe, x, a, y, steps=steps, start=start)
    h, w = x.shape[1:3]
    for n in range(len(x)):
        order = _ranked_pixels(a[n].astype(np.float64).sum(-1))
        for s in range(steps + 1):
            k = int(round(s * h * w / steps))
            gone, back = x[n].copy(), start[n].copy()
            for i, j in order[:k]:
                gone[i, j] = base
                back[i, j] = x[n, i, j]
            assert d.scores[s, n] == pytest.approx(_score(probe, gone, y[n], True), abs=1e-6)
            assert ins.scores[s, n] == pytest.approx(_score(probe, back, y[n], True), abs=1e-6)
        frac = np.array([round(s * h * w / steps) for s in range(steps + 1)]) / (h * w)
        auc = sum(
            (frac[s + 1] - frac[s]) * (d.scores[s, n] + d.scores[s + 1, n]) / 2
            for s in range(steps)
        )
        assert d.auc[n] == pytest.approx(auc)
    np.testing.assert_allclose(d.fractions[[0, -1]], [0.0, 1.0])


def test_pixel_flipping_uses_logits_and_steps_of_pixels() -> None:
    probe, x, a, y = _setup(2)
    pf = F.pixel_flipping(probe, x, a, y, pixels_per_step=10, baseline=0.0)
    assert pf.scores.shape == (8, 2)  # 0, 10, ..., 60, 64
    order = _ranked_pixels(a[1].astype(np.float64).sum(-1))
    img = x[1].copy()
    for i, j in order[:30]:
        img[i, j] = 0.0
    assert pf.scores[3, 1] == pytest.approx(_score(probe, img, y[1], False), abs=1e-5)


def _impute_dense(img: np.ndarray, removed: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Each removed pixel = weighted mean of its in-image neighbours (sides 1/6, corners
    1/12), a dense linear system solved with numpy, then the noise added there."""
    h, w, _ = img.shape
    cells = [(i, j) for i in range(h) for j in range(w) if removed[i, j]]
    where = {p: k for k, p in enumerate(cells)}
    mat = np.zeros((len(cells), len(cells)))
    rhs = np.zeros((len(cells), img.shape[2]))
    for k, (i, j) in enumerate(cells):
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                if (di, dj) == (0, 0) or not (0 <= i + di < h and 0 <= j + dj < w):
                    continue
                wt = 1 / 6 if di == 0 or dj == 0 else 1 / 12
                mat[k, k] += wt
                q = (i + di, j + dj)
                if q in where:
                    mat[k, where[q]] -= wt
                else:
                    rhs[k] += wt * img[q]
    out = img.astype(np.float64).copy()
    sol = np.linalg.solve(mat, rhs)
    for k, (i, j) in enumerate(cells):
        out[i, j] = sol[k] + noise[i, j]
    return out


def test_road_equals_a_numpy_loop_with_dense_imputation() -> None:
    probe, x, a, y = _setup()
    fractions, noise, seed = (0.25, 0.5), 0.05, 4
    r = F.road(probe, x, a, y, fractions=fractions, noise=noise, seed=seed)
    n, h, w, c = x.shape
    eps = noise * np.random.default_rng(seed).standard_normal((len(fractions), n, h, w, c))
    for i in range(n):
        order = _ranked_pixels(a[i].astype(np.float64).sum(-1))
        for f, p in enumerate(fractions):
            k = int(round(p * h * w))
            morf = np.zeros((h, w), bool)
            lerf = np.zeros((h, w), bool)
            for q in order[:k]:
                morf[q] = True
            for q in order[h * w - k :]:
                lerf[q] = True
            want_m = _score(probe, _impute_dense(x[i], morf, eps[f, i]), y[i], True)
            want_l = _score(probe, _impute_dense(x[i], lerf, eps[f, i]), y[i], True)
            assert r.morf[f, i] == pytest.approx(want_m, abs=1e-5)
            assert r.lerf[f, i] == pytest.approx(want_l, abs=1e-5)
    np.testing.assert_allclose(r.gap, (r.lerf - r.morf).mean(0))


def test_imputation_is_the_neighbour_mean_without_noise() -> None:
    img = RNG.uniform(size=(6, 7, 2))
    removed = np.zeros((6, 7), bool)
    removed[2:4, 3:5] = True
    removed[0, 0] = True  # a corner: three neighbours
    out = F.noisy_linear_impute(img, removed, np.zeros_like(img))
    np.testing.assert_allclose(out, _impute_dense(img, removed, np.zeros_like(img)), atol=1e-6)


def test_mufidelity_equals_a_numpy_loop_with_the_same_subsets() -> None:
    probe, x, a, y = _setup()
    masks = RNG.uniform(size=(12, 8, 8)) < 0.3
    got = F.mufidelity(probe, x, a, y, masks=masks, baseline=0.5)
    for n in range(len(x)):
        full = _score(probe, x[n], y[n], False)
        sums, drops = [], []
        for mk in masks:
            img = x[n].copy()
            img[mk] = 0.5
            drops.append(full - _score(probe, img, y[n], False))
            sums.append(float(a[n][mk].astype(np.float64).sum()))
        assert got[n] == pytest.approx(np.corrcoef(sums, drops)[0, 1], abs=1e-5)


def test_mufidelity_default_subsets_are_grid_cells() -> None:
    cells = F._subsets(8, 8, samples=5, subset=0.25, grid=4, seed=0)
    assert cells.shape == (5, 8, 8)
    assert (cells.reshape(5, 4, 2, 4, 2).all(axis=(2, 4)) == cells[:, ::2, ::2]).all()
    assert (cells[:, ::2, ::2].sum((1, 2)) == 4).all()  # a quarter of the 16 cells


def test_kernels_compile_once_for_new_values_targets_and_noise() -> None:
    probe, x, a, y = _setup()
    F.deletion(probe, x, a, y, steps=4)
    F.infidelity(probe, x, a, y, samples=3)
    before = trace_counts()["faithfulness"]
    F.deletion(probe, x, -a, (y + 1) % 3, steps=4, baseline="white")
    F.insertion(probe, x, a * 2, y, steps=4)  # the same program as deletion
    F.infidelity(probe, x, a, (y + 2) % 3, samples=3, seed=9, std=0.1)
    assert trace_counts()["faithfulness"] == before


def test_bad_inputs_are_named_before_compiling() -> None:
    probe, x, a, y = _setup()
    with pytest.raises(ValueError, match="steps must be at most"):
        F.deletion(probe, x, a, y, steps=65)
    with pytest.raises(ValueError, match="attributions must have shape"):
        F.deletion(probe, x, a[:, :4], y)
    with pytest.raises(ValueError, match="output must be one of"):
        F.insertion(probe, x, a, y, output="softmax")
    with pytest.raises(ValueError, match="noise must have shape"):
        F.infidelity(probe, x, a, y, noise=np.zeros((3, 2, 8, 8)))
    with pytest.raises(ValueError, match="fractions"):
        F.road(probe, x, a, y, fractions=(0.5, 1.0))
    with pytest.raises(ValueError, match="masks must be bool"):
        F.mufidelity(probe, x, a, y, masks=np.ones((4, 8, 8)))
    with pytest.raises(ValueError, match="target class 7"):
        F.deletion(probe, x, a, 7)
    with pytest.raises(ValueError, match="method must be one of"):
        F.sensitivity_max(probe, x, y, method="nope")


# ---------------------------------------------------------------------------- Captum


@pytest.fixture(scope="module")
def twin():  # noqa: ANN201
    torch = pytest.importorskip("torch")
    from _torch_nets import INPUT_SHIFT, torch_twin

    zoo = jv.zoo.load("shapes_cnn")
    net = torch_twin(zoo.probe, INPUT_SHIFT["shapes_cnn"]).eval()
    x = jv.zoo.load_data("shapes_cnn").x_test[:3]
    with torch.no_grad():
        out = net(torch.tensor(x.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(out, np.asarray(zoo.probe(x)), atol=1e-4)
    return zoo.probe, net, x


def _nchw(a: np.ndarray):  # noqa: ANN202
    import torch

    return torch.tensor(np.ascontiguousarray(np.moveaxis(a, -1, -3)))


@pytest.mark.parametrize("normalize", [False, True])
def test_infidelity_equals_captum(twin, normalize: bool) -> None:  # noqa: ANN001
    from captum.metrics import infidelity

    probe, net, x = twin
    y = np.array([0, 3, 5], np.int32)
    a = RNG.normal(size=x.shape).astype(np.float32) * 0.1
    noise = (0.05 * RNG.standard_normal((3, 4, *x.shape[1:]))).astype(np.float32)
    flat = _nchw(noise.reshape(12, *x.shape[1:]))

    def perturb(inputs):  # noqa: ANN001, ANN202 - Captum repeats each input 4 times in a row
        return flat, inputs - flat

    want = infidelity(
        net, perturb, _nchw(x), _nchw(a), target=_nchw(x).new_tensor(y).long(),
        n_perturb_samples=4, normalize=normalize,
    ).numpy()  # fmt: skip
    got = F.infidelity(probe, x, a, y, noise=noise, normalize=normalize)
    np.testing.assert_allclose(got, want, rtol=2e-3)


def test_sensitivity_max_equals_captum(twin) -> None:  # noqa: ANN001
    from captum.attr import Saliency
    from captum.metrics import sensitivity_max

    probe, net, x = twin
    y = np.array([1, 2, 6], np.int32)
    noise = RNG.uniform(-0.05, 0.05, (3, 5, *x.shape[1:])).astype(np.float32)
    flat = _nchw(noise.reshape(15, *x.shape[1:]))

    def perturb(inputs, radius):  # noqa: ANN001, ANN202
        return inputs + flat

    want = sensitivity_max(
        Saliency(net).attribute, _nchw(x), perturb_func=perturb, n_perturb_samples=5,
        target=_nchw(x).new_tensor(y).long(),
    ).numpy()  # fmt: skip
    got = F.sensitivity_max(probe, x, y, method="saliency", noise=noise)
    np.testing.assert_allclose(got, want, rtol=1e-3)


# ---------------------------------------------------------------------------- map scores


def test_localisation_on_hand_made_maps() -> None:
    masks = np.zeros((3, 4, 4), bool)
    masks[:, 1:3, 1:3] = True
    maps = np.zeros((3, 4, 4, 1))
    maps[0, 1, 1] = 3.0  # peak inside; all positive mass inside
    maps[0, 0, 0] = -5.0  # negative mass does not count
    maps[1, 0, 0] = 2.0  # peak outside, next to the mask's corner
    maps[1, 2, 2] = 1.0
    maps[2] = 1.0  # flat: mass = area, the first pixel (outside) is the argmax
    np.testing.assert_allclose(M.mask_mass(maps, masks), [1.0, 1 / 3, 0.25])
    np.testing.assert_array_equal(M.pointing_game(maps, masks), [1, 0, 0])
    np.testing.assert_array_equal(M.pointing_game(maps, masks, tolerance=2), [1, 1, 1])
    # top-4 pixels (mask area 4), ties in row-major order: map 0 (1, 1) then (0, 1..3);
    # map 1 (0, 0), (2, 2), (0, 1), (0, 2); map 2 the first row
    np.testing.assert_allclose(M.relevance_rank(maps, masks), [0.25, 0.25, 0.0])
    with pytest.raises(ValueError, match="masks must be bool"):
        M.mask_mass(maps, masks[:2])
    with pytest.raises(ValueError, match="tolerance"):
        M.pointing_game(maps, masks, tolerance=-1)


def test_sparseness_and_complexity_closed_forms() -> None:
    n = 16
    one_hot = np.zeros((1, 4, 4, 1))
    one_hot[0, 2, 1] = -2.0
    flat = np.ones((1, 4, 4, 1))
    ramp = np.arange(n, dtype=np.float64).reshape(1, 4, 4, 1)
    assert M.sparseness(one_hot)[0] == pytest.approx(1 - 1 / n)
    assert M.sparseness(flat)[0] == pytest.approx(0.0, abs=1e-7)
    # Gini of 0..n-1: (n + 1) / (3 n) - ... closed form via the mean absolute difference
    v = ramp.ravel()
    gini = np.abs(v[:, None] - v[None]).sum() / (2 * n * n * v.mean())
    assert M.sparseness(ramp)[0] == pytest.approx(gini, rel=1e-6)
    assert M.complexity(flat)[0] == pytest.approx(np.log(n), rel=1e-6)
    assert M.complexity(one_hot)[0] == pytest.approx(0.0, abs=1e-7)
