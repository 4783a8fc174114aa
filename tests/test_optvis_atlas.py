"""Activation atlas (``jv.optvis.atlas``) on the zoo's shapes model.

The neighbourhood figure is computed here with its own loop (majority class per cell from the
samples' cells and labels, k nearest occupied cells by grid distance) and compared with a
permutation baseline: the same majority classes shuffled over the same occupied cells.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.manifold import trustworthiness

import jaxvis as jv
from jaxvis.optvis._tsne import tsne

N_IMAGES = 500
K = 4


@pytest.fixture(scope="module")
def shapes():
    return jv.zoo.load("shapes_cnn"), jv.zoo.load_data("shapes_cnn")


@pytest.fixture(scope="module")
def layout_only(shapes):
    zoo, data = shapes
    x, y = data.x_test[:N_IMAGES], data.y_test[:N_IMAGES]
    return jv.optvis.atlas(zoo.probe, (x, y), "act5", grid=(8, 8), steps=0)


def _majority(atlas, labels, rows, cols):
    major = np.full((rows, cols), -1)
    for r in range(rows):
        for c in range(cols):
            imgs = atlas.sample_image[atlas.sample_cell == r * cols + c]
            if imgs.size:
                major[r, c] = np.bincount(labels[imgs], minlength=8).argmax()
    return major


def _agreement(major, k):
    cells = [
        (r, c) for r in range(major.shape[0]) for c in range(major.shape[1]) if major[r, c] >= 0
    ]
    hits = []
    for i, (r, c) in enumerate(cells):
        dist = [(max(abs(r - r2), abs(c - c2)), j) for j, (r2, c2) in enumerate(cells) if j != i]
        near = [j for _, j in sorted(dist)[:k]]
        hits += [major[cells[j]] == major[r, c] for j in near]
    return float(np.mean(hits))


def test_same_shape_kinds_land_in_neighbouring_cells(shapes, layout_only):
    _, data = shapes
    at = layout_only
    labels = data.y_test[:N_IMAGES]
    major = _majority(at, labels, 8, 8)
    np.testing.assert_array_equal(at.majority(), major)
    observed = _agreement(major, K)
    assert at.neighbour_agreement(K) == pytest.approx(observed)
    rng = np.random.default_rng(0)
    occupied = major >= 0
    baseline = []
    for _ in range(200):
        shuffled = major.copy()
        shuffled[occupied] = rng.permutation(major[occupied])
        baseline.append(_agreement(shuffled, K))
    baseline = np.asarray(baseline)
    print(
        f"same majority class among the {K} nearest occupied cells: {observed:.3f} "
        f"(permutation baseline {baseline.mean():.3f}, 99th percentile "
        f"{np.percentile(baseline, 99):.3f}, {occupied.sum()} occupied cells)"
    )
    assert observed > np.percentile(baseline, 99)
    assert observed > 2 * baseline.mean()


def test_cells_counts_and_samples_are_consistent(shapes, layout_only):
    _, data = shapes
    at = layout_only
    labels = data.y_test[:N_IMAGES]
    assert at.coords.shape == (N_IMAGES, 2) and at.coords.min() >= 0 and at.coords.max() <= 1
    cell = np.minimum((at.coords * 8).astype(int), 7)
    np.testing.assert_array_equal(at.sample_cell, cell[:, 0] * 8 + cell[:, 1])
    assert at.counts.sum() == N_IMAGES
    np.testing.assert_array_equal(at.counts.ravel(), np.bincount(at.sample_cell, minlength=64))
    r, c = np.argwhere(at.counts == at.counts.max())[0]
    members = at.samples(int(r), int(c))
    np.testing.assert_array_equal(members, np.flatnonzero(at.sample_cell == r * 8 + c))
    share = at.class_share(int(r), int(c))
    np.testing.assert_allclose(share, np.bincount(labels[members], minlength=8) / len(members))
    np.testing.assert_array_equal(at.labels, labels)
    assert at.cell_images is None and at.image().dtype == np.uint8  # the class map


def test_our_tsne_keeps_neighbourhoods():
    # three tight clusters in 10-D: scikit-learn's trustworthiness of the embedding (1 = every
    # embedded neighbour is a true neighbour) is high, and the clusters do not mix.
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 10)) * 5
    x = np.concatenate([c + rng.standard_normal((60, 10)) for c in centres])
    y = np.repeat(np.arange(3), 60)
    xy = tsne(x, perplexity=20)
    assert trustworthiness(x, xy, n_neighbors=5) > 0.9
    d = ((xy[:, None] - xy[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (y[d.argmin(1)] == y).mean() > 0.98


def test_rendered_cells_follow_their_directions_and_class_filter(shapes):
    zoo, data = shapes
    probe = zoo.probe
    x, y = data.x_test[:240], data.y_test[:240]
    at = jv.optvis.atlas(probe, (x, y), "act5", grid=4, classes=[0, 1], steps=48)
    assert set(np.unique(y[at.sample_image])) <= {0, 1}
    assert at.class_counts[..., 2:].sum() == 0
    m = len(at.cells)
    assert at.cell_images.shape == (m, 32, 32, 3)
    acts = np.asarray(probe.activations(at.render.inputs[:m], ["act5"])["act5"]).mean((1, 2))
    unit = at.directions / np.linalg.norm(at.directions, axis=1, keepdims=True)
    own = np.sum(acts * unit, axis=1)  # each rendered image on its own cell's direction
    data = np.asarray(probe.activations(x, ["act5"])["act5"]).mean((1, 2)) @ unit.T  # (240, m)
    # the render beats most real images on its cell's direction
    beaten = (data < own[None]).mean(0)
    print("fraction of the data set each cell image beats on its direction:", beaten.round(2))
    assert (beaten > 0.9).all()
    img = at.image(frame=True)
    assert img.dtype == np.uint8 and at._repr_png_().startswith(b"\x89PNG")
    for r, c in at.cells:
        assert at.image_of(int(r), int(c)) is not None


def test_spatial_samples_layout_and_stop(shapes):
    zoo, data = shapes
    probe, x = zoo.probe, data.x_test[:40]
    xy = np.random.default_rng(1).uniform(size=(120, 2))
    at = jv.optvis.atlas(probe, x, "act5", grid=3, samples=3, layout=xy, steps=0)
    np.testing.assert_array_equal(at.sample_image, np.repeat(np.arange(40), 3))
    scaled = (xy - xy.min(0)) / (xy.max(0) - xy.min(0))
    cell = np.minimum((scaled * 3).astype(int), 2)
    np.testing.assert_array_equal(at.sample_cell, cell[:, 0] * 3 + cell[:, 1])
    # min_count: cells with fewer samples are empty (no count, no samples, no render)
    sparse = jv.optvis.atlas(probe, x, "act5", grid=3, samples=3, layout=xy, steps=0, min_count=14)
    raw = np.bincount(cell[:, 0] * 3 + cell[:, 1], minlength=9)
    np.testing.assert_array_equal(sparse.counts.ravel(), np.where(raw >= 14, raw, 0))
    for flat in np.flatnonzero(raw < 14):
        assert sparse.samples(*divmod(int(flat), 3)).size == 0
    assert len(sparse.cells) == (raw >= 14).sum()
    # without labels the classes are the model's predictions
    np.testing.assert_array_equal(at.labels, np.asarray(probe(x)).argmax(-1))

    stages = []
    assert (
        jv.optvis.atlas(probe, x, "act5", callback=lambda p: stages.append(p.stage) or False)
        is None
    )
    assert stages == ["collect"]


def test_bad_input_is_named(shapes):
    zoo, data = shapes
    probe, x = zoo.probe, data.x_test[:20]
    with pytest.raises(ValueError, match="grid"):
        jv.optvis.atlas(probe, x, "act5", grid=(0, 3))
    with pytest.raises(ValueError, match="method"):
        jv.optvis.atlas(probe, x, "act5", method="pca")
    with pytest.raises(ValueError, match="samples"):
        jv.optvis.atlas(probe, x, "act5", samples="all")
    with pytest.raises(ValueError, match="layout must have shape"):
        jv.optvis.atlas(probe, x, "act5", layout=np.zeros((3, 2)), steps=0)
    with pytest.raises(ValueError, match="act9"):
        jv.optvis.atlas(probe, x, "act9")
    with pytest.raises(ValueError, match="labels must have shape"):
        jv.optvis.atlas(probe, x, "act5", labels=np.zeros(3, int))
    with pytest.raises(ValueError, match="classes must be"):
        jv.optvis.atlas(probe, x, "act5", classes=3)
    with pytest.raises(ValueError, match="no image of classes"):
        jv.optvis.atlas(probe, (x, np.zeros(20, int)), "act5", classes=[5], steps=0)
