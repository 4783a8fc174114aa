"""Factor report: AUROC against scikit-learn, the shapes factors against the generator's own
colours, and on shapes_cnn's act5 an SAE's concepts match the known factors better than the
raw channels (best unit's AUROC per factor, averaged)."""

from __future__ import annotations

import numpy as np
import pytest

import jaxvis as jv
from jaxvis.concepts import activations, fit
from jaxvis.concepts.report import (
    auroc,
    factor_auroc,
    format_table,
    image_scores,
    shapes_factors,
)


def test_auroc_equals_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.uniform(size=300) < 0.3
    s = np.round(rng.normal(size=(300, 4)) + y[:, None] * [0, 0.5, 1, -1], 1)  # many ties
    np.testing.assert_allclose(auroc(s, y), [roc_auc_score(y, s[:, j]) for j in range(4)])
    assert np.all(auroc(s, np.zeros(300, bool)) == 0.5)
    with pytest.raises(ValueError, match="positive must have shape"):
        auroc(s, y[:10])


def test_shapes_factors_read_the_colours_back():
    from jaxvis.zoo.data_shapes import make_shapes

    x, y, m = make_shapes(60, seed=3)
    f = shapes_factors(x, y, m)
    assert len(f) == 8 + 3 + 3
    np.testing.assert_array_equal(f["shape=star"], y == 5)
    for name in ("colour", "background"):
        total = sum(f[f"{name}={c}"].astype(int) for c in ("red", "green", "blue"))
        np.testing.assert_array_equal(total, 1)  # exactly one dominant channel per image
    i = int(np.argmax(f["colour=red"]))
    inside = x[i][m[i]].mean(0)
    assert inside[0] == inside.max()


def test_sae_concepts_match_factors_better_than_raw_channels():
    zoo = jv.zoo.load("shapes_cnn")
    ds = activations(zoo.probe, zoo.x_train[:1000], "act5", max_samples=20_000, progress=False)
    sae = fit(ds, 256, method="jumprelu", l0_coeff=6e-3, steps=800, batch_size=512, progress=False)
    factors = shapes_factors(zoo.x_test, zoo.y_test, zoo.masks_test)
    raw = factor_auroc(image_scores(zoo.probe, zoo.x_test, "act5"), factors)
    ours = factor_auroc(image_scores(zoo.probe, zoo.x_test, "act5", sae), factors)
    print("\n" + format_table({"channels": raw, "sae256": ours}))
    mean_raw = np.mean([v[1] for v in raw.values()])
    mean_sae = np.mean([v[1] for v in ours.values()])
    assert mean_sae > mean_raw
    assert all(ours[f"shape={s}"][1] > 0.6 for s in zoo.class_names)
    assert all(v[1] > 0.55 for v in ours.values())
