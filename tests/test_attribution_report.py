"""jv.attribution.report on shapes_cnn (ground-truth masks) and the widget's "which can I trust?"
tab."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from test_attribution_helpers import images, small_probe

import jaxvis as jv
from jaxvis.attribution.report import METRICS, report
from jaxvis.widgets.attribution import AttributionExplorer as Attribution


@pytest.fixture(scope="module")
def shapes():  # noqa: ANN201
    zoo, data = jv.zoo.load("shapes_cnn"), jv.zoo.load_data("shapes_cnn")
    return zoo.probe, data.x_test[:4], data.y_test[:4].astype(np.int32), data.masks_test[:4]


def _every_method(probe) -> list[str]:  # noqa: ANN001
    vit = bool(jv.attribution.attention_layers(probe))
    return [
        name
        for name, m in jv.attribution.methods().items()
        if (m.family != "attention" or vit) and name != "interior_gradients"
    ]


@pytest.fixture(scope="module")
def full(shapes):  # noqa: ANN001, ANN201
    probe, x, y, masks = shapes
    return report(probe, x, y, methods=_every_method(probe), masks=masks)


def test_report_on_shapes_cnn_is_finite_for_every_method_and_metric(full, shapes) -> None:  # noqa: ANN001
    probe = shapes[0]
    assert full.methods == _every_method(probe)
    assert full.metrics == list(METRICS)  # masks given: localisation included
    assert full.errors == {}
    for row in full.table:
        assert np.isfinite([row["mean"], row["low"], row["high"]]).all(), row
        assert row["n"] == 4 and row["low"] <= row["mean"] <= row["high"]
    for method in full.methods:
        assert full.maps[method].shape == (4, 32, 32)
        d = full.curves[method]["deletion"]
        assert d.scores.shape == (33, 4) and d.fractions[-1] == 1.0


def test_intervals_and_best_marks_match_an_independent_computation(full) -> None:  # noqa: ANN001
    html = full._repr_html_()
    for metric in full.metrics:
        means = {m: full.values[m][metric].mean() for m in full.methods}
        pick = max if METRICS[metric].better == "higher" else min
        best = pick(means, key=means.__getitem__)
        rows = {r["method"]: r for r in full.table if r["metric"] == metric}
        assert [m for m, r in rows.items() if r["best"]] == [best]
        v = full.values[best][metric]
        low, high = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
        if np.std(v) > 0:
            assert rows[best]["low"] == pytest.approx(low)
            assert rows[best]["high"] == pytest.approx(high)
    assert html.count("class='jv-best'") == len(full.metrics)
    text = str(full)
    assert all(m in text for m in full.methods) and "t-interval" in text


def test_a_failing_method_is_reported_not_raised(shapes) -> None:  # noqa: ANN001
    probe, x, y, _ = shapes
    rep = report(probe, x[:2], y[:2], methods=["saliency", "attention_map"], metrics=["deletion"])
    assert ("attention_map", "") in rep.errors
    assert np.isnan(rep.values["attention_map"]["deletion"]).all()
    assert np.isfinite(rep.values["saliency"]["deletion"]).all()
    assert rep.best("deletion") == "saliency"


def test_progress_and_stop(shapes) -> None:  # noqa: ANN001
    probe, x, y, _ = shapes
    seen: list[tuple[int, int, str]] = []

    def progress(done: int, total: int, label: str) -> bool:
        seen.append((done, total, label))
        return done < 2

    rep = report(probe, x[:2], y[:2], methods=["saliency", "grad_cam"],
                 metrics=["sparseness", "complexity"], progress=progress)  # fmt: skip
    assert rep.stopped and seen[0] == (0, 6, "saliency") and len(seen) == 3
    assert "sparseness" in rep.values["saliency"] and "complexity" not in rep.values["saliency"]


def test_bad_arguments() -> None:
    probe, x = small_probe(), images(2)
    with pytest.raises(ValueError, match="metric must be one of"):
        report(probe, x, 0, metrics=["auc"])
    with pytest.raises(ValueError, match="needs masks"):
        report(probe, x, 0, metrics=["mask_mass"])
    with pytest.raises(ValueError, match="method must be one of"):
        report(probe, x, 0, methods=["lime"])
    with pytest.raises(ValueError, match="masks must be bool"):
        report(probe, x, 0, masks=np.ones((2, 8, 8)))
    with pytest.raises(TypeError, match="not a callable"):
        report(probe, x, lambda out: out[:, 0])


# ---------------------------------------------------------------------------- the widget tab


@pytest.fixture(scope="module")
def widget() -> Attribution:
    masks = np.zeros((4, 8, 8), bool)
    masks[:, 2:6, 2:6] = True
    return Attribution(small_probe(seed=5), images(4, seed=3), masks=masks, steps=8)


def _run(widget: Attribution) -> None:
    widget.trust_run.click()
    if widget.trust_thread is not None:
        widget.trust_thread.join(timeout=300)


def test_trust_tab_runs_the_report_and_draws_bars_and_curves(widget: Attribution) -> None:
    assert widget.tabs.get_title(2) == "which can I trust?"
    widget.trust_methods.value = ("saliency", "grad_cam")
    widget.trust_metrics.value = ("deletion", "insertion", "mask_mass", "randomisation")
    widget.trust_count.value = 3
    _run(widget)
    assert widget.errors.error == ""
    rep = widget.report_result
    assert rep is not None and rep.methods == ["saliency", "grad_cam"] and not rep.stopped
    assert widget.trust_progress.value == widget.trust_progress.max == 2 * 5
    widget.trust_metric.value = "mask_mass"
    rows = [r for r in rep.table if r["metric"] == "mask_mass"]
    assert list(widget.trust_bars.x) == ["saliency", "grad_cam"]
    np.testing.assert_allclose(widget.trust_bars.y, [r["mean"] for r in rows])
    np.testing.assert_allclose(np.asarray(widget.trust_ci.y), [[r["low"], r["high"]] for r in rows])
    np.testing.assert_allclose(
        widget.trust_lines.y[1], rep.curves["grad_cam"]["deletion"].scores.mean(1)
    )
    assert list(widget.trust_lines.labels) == ["saliency", "grad_cam"]
    assert "name" in widget.trust_lines.tooltip.fields  # hover: method, x, y
    assert len(widget.trust_maps.children) == 2
    assert "jv-report" in widget.trust_table.value


def test_trust_tab_compiles_nothing_new_for_another_target_metric_or_method(
    widget: Attribution,
) -> None:
    widget.trust_methods.value = ("saliency", "grad_cam")
    widget.trust_metrics.value = ("deletion", "insertion", "mask_mass", "randomisation")
    widget.trust_count.value = 3
    _run(widget)
    before = jv.attribution.trace_counts()
    other = [v for _, v in widget.target.options if v != widget.target.value][0]
    widget.target.value = other
    widget.trust_methods.value = ("grad_cam",)
    _run(widget)
    widget.trust_metric.value = "deletion"
    widget.trust_curve.value = "insertion"
    assert widget.errors.error == ""
    assert jv.attribution.trace_counts() == before
    assert widget.report_result.values["grad_cam"]["deletion"].shape == (3,)


def test_trust_tab_shows_errors_in_place_and_stops(widget: Attribution) -> None:
    widget.trust_metrics.value = ()
    widget.trust_run.click()
    assert "at least one metric" in widget.errors.error and "jv-error" in widget.errors.value
    widget.trust_metrics.value = ("sparseness", "complexity")
    widget.trust_methods.value = ("saliency", "grad_cam")
    original = widget._progress

    def stop_after_first(done: int, total: int, label: str) -> bool:
        widget.trust_stop.click()
        return original(done, total, label)

    widget._progress = stop_after_first  # type: ignore[method-assign]
    try:
        _run(widget)
    finally:
        widget._progress = original  # type: ignore[method-assign]
    assert widget.errors.error == "" and widget.report_result.stopped
    assert "stopped" in widget.trust_status.value
    assert not widget.trust_run.disabled and widget.trust_stop.disabled
