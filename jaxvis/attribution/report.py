"""Which explanation can I trust? A table of methods x metrics, with confidence intervals.

:func:`report` runs every chosen registered method on a batch, scores each map with the chosen
faithfulness, robustness, localisation and sanity metrics, and gives the mean and a 95%
Student-t confidence interval over the images. Methods come from the registry
(``jv.attribution.methods()``), so a newly registered method is one more row.

Example::

    zoo, data = jv.zoo.load("shapes_cnn"), jv.zoo.load_data("shapes_cnn")
    rep = jv.attribution.report(zoo.probe, data.x_test[:16], data.y_test[:16],
                                masks=data.masks_test[:16])
    rep                      # an HTML table in a notebook, best value per metric in bold
    print(rep)               # the same as text
    rep.table[0]             # {'method': 'saliency', 'metric': 'deletion', 'mean': ...}
    rep.curves["saliency"]["deletion"].scores      # (steps + 1, N)
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jaxvis._protocols import ProbeLike
from jaxvis.attribution import _checks
from jaxvis.attribution import faithfulness as F
from jaxvis.attribution import metrics as M
from jaxvis.attribution.metrics import spearman, to_map
from jaxvis.attribution.registry import get_method
from jaxvis.attribution.registry import methods as registered
from jaxvis.attribution.result import Attribution
from jaxvis.attribution.sanity import method_fn, randomise

__all__ = ["DEFAULT_METHODS", "METRICS", "Metric", "Report", "report"]

#: Methods the report runs by default, those of them that are registered (fast ones).
DEFAULT_METHODS = (
    "saliency",
    "input_x_gradient",
    "integrated_gradients",
    "smoothgrad",
    "guided_backprop",
    "grad_cam",
    "grad_cam_plus_plus",
    "layer_cam",
    "occlusion",
    "deeplift",
)

#: Options the report passes to a method unless ``options`` says otherwise (kept fast).
FAST_OPTIONS: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"steps": 16},
    "smoothgrad": {"samples": 16},
}


@dataclass
class Context:
    """What a metric sees: the batch, the targets, one method's result and settings."""

    probe: ProbeLike
    x: np.ndarray
    target: np.ndarray
    method: str
    options: dict[str, Any]
    result: Attribution
    masks: np.ndarray | None
    seed: int
    curves: dict[str, Any]


@dataclass(frozen=True)
class Metric:
    """A report metric: ``fn(ctx) -> (N,)`` scores; ``better`` is ``"higher"`` or ``"lower"``."""

    name: str
    label: str
    better: str
    fn: Callable[[Context], np.ndarray]
    needs_masks: bool = False
    summary: str = ""


def _deletion(ctx: Context) -> np.ndarray:
    curve = F.deletion(ctx.probe, ctx.x, ctx.result, ctx.target)
    ctx.curves["deletion"] = curve
    return curve.auc


def _insertion(ctx: Context) -> np.ndarray:
    curve = F.insertion(ctx.probe, ctx.x, ctx.result, ctx.target)
    ctx.curves["insertion"] = curve
    return curve.auc


def _road(ctx: Context) -> np.ndarray:
    return F.road(ctx.probe, ctx.x, ctx.result, ctx.target, fractions=(0.1, 0.3, 0.5, 0.7)).gap


def _mufidelity(ctx: Context) -> np.ndarray:
    return F.mufidelity(ctx.probe, ctx.x, ctx.result, ctx.target, seed=ctx.seed)


def _infidelity(ctx: Context) -> np.ndarray:
    return F.infidelity(ctx.probe, ctx.x, ctx.result, ctx.target, normalize=True, seed=ctx.seed)


def _sensitivity(ctx: Context) -> np.ndarray:
    return F.sensitivity_max(
        ctx.probe,
        ctx.x,
        ctx.target,
        method=method_fn(ctx.method),
        options=ctx.options,
        samples=4,
        seed=ctx.seed,
        values=ctx.result,
    )


def _randomisation(ctx: Context) -> np.ndarray:
    """|Spearman| between the map and the map of the model with every layer re-drawn."""
    layers = [lay.name for lay in ctx.probe.layers if lay.n_params > 0]
    params = randomise(ctx.probe, layers, ctx.seed)
    fn = method_fn(ctx.method)
    shuffled = fn(ctx.probe, ctx.x, ctx.target, params=params, **ctx.options)
    a, b = to_map(ctx.result.values, True), to_map(np.asarray(shuffled.values), True)
    return np.abs([spearman(u, v) for u, v in zip(a, b, strict=True)])


#: The report's metrics by name, in column order.
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "deletion", "deletion AUC", "lower", _deletion, summary="probability as top pixels go"
        ),
        Metric(
            "insertion",
            "insertion AUC",
            "higher",
            _insertion,
            summary="probability as top pixels return",
        ),
        Metric("mufidelity", "MuFidelity", "higher", _mufidelity, summary="corr(subset sum, drop)"),
        Metric("road", "ROAD LeRF-MoRF", "higher", _road, summary="imputed removal, gap of orders"),
        Metric("infidelity", "infidelity", "lower", _infidelity, summary="Captum's, normalised"),
        Metric("sensitivity_max", "max-sensitivity", "lower", _sensitivity, summary="Captum's"),
        Metric("mask_mass", "mask mass", "higher", lambda c: M.mask_mass(c.result, c.masks), True),
        Metric(
            "pointing_game",
            "pointing game",
            "higher",
            lambda c: M.pointing_game(c.result, c.masks),
            True,
        ),
        Metric("sparseness", "sparseness (Gini)", "higher", lambda c: M.sparseness(c.result)),
        Metric("complexity", "complexity (entropy)", "lower", lambda c: M.complexity(c.result)),
        Metric(
            "randomisation",
            "|Spearman| after randomising",
            "lower",
            _randomisation,
            summary="Adebayo et al.",
        ),
    )
}


def _interval(v: np.ndarray, level: float) -> tuple[float, float, float, int]:
    """Mean and Student-t interval of the finite values (both ends the mean when n < 2)."""
    from scipy.stats import t as student

    v = np.asarray(v, np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(v.mean())
    if n < 2:
        return mean, mean, mean, n
    half = float(student.ppf(0.5 + level / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half, n


@dataclass
class Report:
    """The report: per method and metric, per-image scores and their summary.

    Attributes:
        methods, metrics: the names, in row / column order.
        values: ``values[method][metric]`` -> ``(N,)`` per-image scores (NaN where it failed).
        curves: ``curves[method]["deletion" | "insertion"]`` -> :class:`~jaxvis.attribution.
            faithfulness.Curve`.
        maps: ``maps[method]`` -> ``(N, H, W)`` signed channel-summed maps.
        errors: ``errors[(method, metric)]`` -> message (metric ``""``: the method failed).
        level: the confidence level of the intervals.
        stopped: True when ``progress`` asked to stop before the end.
    """

    methods: list[str]
    metrics: list[str]
    values: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    curves: dict[str, dict[str, Any]] = field(default_factory=dict)
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    errors: dict[tuple[str, str], str] = field(default_factory=dict)
    level: float = 0.95
    stopped: bool = False

    @property
    def table(self) -> list[dict[str, Any]]:
        """One row per (method, metric): mean, CI ends ``low``/``high``, ``n`` images,
        ``better`` direction and ``best`` (True on the best method of that metric)."""
        rows = []
        for method in self.methods:
            for metric in self.metrics:
                v = self.values.get(method, {}).get(metric)
                mean, low, high, n = _interval(v if v is not None else [], self.level)
                rows.append(
                    {
                        "method": method,
                        "metric": metric,
                        "mean": mean,
                        "low": low,
                        "high": high,
                        "n": n,
                        "better": METRICS[metric].better,
                    }
                )
        for metric in self.metrics:
            best = self.best(metric)
            for row in rows:
                if row["metric"] == metric:
                    row["best"] = row["method"] == best
        return rows

    def best(self, metric: str) -> str | None:
        """The method with the best mean on ``metric`` (None when none has a value)."""
        means = {
            m: _interval(self.values[m][metric], self.level)[0]
            for m in self.methods
            if metric in self.values.get(m, {})
        }
        means = {m: v for m, v in means.items() if np.isfinite(v)}
        if not means:
            return None
        pick = max if METRICS[metric].better == "higher" else min
        return pick(means, key=means.__getitem__)

    def _cells(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {(r["method"], r["metric"]): r for r in self.table}

    def __str__(self) -> str:
        cells = self._cells()
        head = ["method"] + [
            f"{m} ({'↑' if METRICS[m].better == 'higher' else '↓'})" for m in self.metrics
        ]
        lines = [head]
        for method in self.methods:
            row = [method]
            for metric in self.metrics:
                c = cells[(method, metric)]
                mark = "*" if c["best"] else " "
                row.append(_fmt(c) + mark)
            lines.append(row)
        widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
        text = "\n".join(
            "  ".join(s.ljust(w) for s, w in zip(r, widths, strict=True)) for r in lines
        )
        note = f"\nmean ± half-width of the {100 * self.level:.0f}% t-interval over images; * best"
        if self.errors:
            note += "\n" + "\n".join(f"{k[0]} {k[1]}: {v}" for k, v in self.errors.items())
        return text + note

    def _repr_html_(self) -> str:
        cells = self._cells()
        th = "".join(
            f"<th title='{html.escape(METRICS[m].summary)}'>{html.escape(METRICS[m].label)} "
            f"{'↑' if METRICS[m].better == 'higher' else '↓'}</th>"
            for m in self.metrics
        )
        body = []
        for method in self.methods:
            tds = []
            for metric in self.metrics:
                c = cells[(method, metric)]
                err = self.errors.get((method, metric)) or self.errors.get((method, ""))
                text = html.escape(_fmt(c))
                if c["best"]:
                    text = f"<b class='jv-best'>{text}</b>"
                title = f" title='{html.escape(err)}'" if err else ""
                tds.append(f"<td{title}>{text}</td>")
            body.append(f"<tr><th>{html.escape(method)}</th>{''.join(tds)}</tr>")
        return (
            "<table class='jv-report'><thead><tr><th>method</th>"
            f"{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            f"<p>mean ± half-width of the {100 * self.level:.0f}% t-interval over the images; "
            "best per metric in bold</p>"
        )


def _fmt(c: dict[str, Any]) -> str:
    if not np.isfinite(c["mean"]):
        return "—"
    return f"{c['mean']:.3g} ± {(c['high'] - c['low']) / 2:.2g}"


def _choose_methods(methods: Any) -> list[str]:
    if methods is None:
        return [m for m in DEFAULT_METHODS if m in registered()]
    if methods == "all":
        return list(registered())
    if isinstance(methods, str):
        methods = [methods]
    names = list(methods)
    for name in names:
        method_fn(name)  # raises with the registered names
    return names


def _choose_metrics(metrics: Any, masks: Any) -> list[str]:
    if metrics is None:
        return [m for m, spec in METRICS.items() if masks is not None or not spec.needs_masks]
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    for name in names:
        if name not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {name!r}")
        if METRICS[name].needs_masks and masks is None:
            raise ValueError(f"metric {name!r} needs masks=(N, H, W) bool object masks")
    return names


def report(
    probe: ProbeLike,
    x: Any,
    targets: Any = None,
    methods: Sequence[str] | str | None = None,
    metrics: Sequence[str] | str | None = None,
    masks: Any = None,
    *,
    options: dict[str, dict[str, Any]] | None = None,
    level: float = 0.95,
    seed: int = 0,
    progress: Callable[[int, int, str], bool | None] | None = None,
) -> Report:
    """Score registered attribution methods with faithfulness and sanity metrics.

    Args:
        probe, x: the model and a batch ``(N, H, W, C)``.
        targets: a class per image (or one for all); None: the predicted classes.
        methods: registered names, ``"all"``, or None for :data:`DEFAULT_METHODS` (those
            registered).
        metrics: names in :data:`METRICS`; None: all of them (those needing ``masks`` only
            when ``masks`` is given).
        masks: ``(N, H, W)`` bool object masks, for the localisation metrics.
        options: per method keyword options, e.g. ``{"integrated_gradients": {"steps": 32}}``
            (default :data:`FAST_OPTIONS`).
        level: confidence level of the Student-t intervals over the images.
        progress: ``progress(done, total, label)`` before each step; return False to stop.

    A failing method or metric (e.g. an attention method on a CNN) leaves NaN and its message
    in ``errors``; the rest of the table is filled.

    Example::

        rep = report(probe, x, y, methods=["saliency", "grad_cam"], metrics=["deletion"])
    """
    if callable(targets) and not hasattr(targets, "shape"):
        raise TypeError("targets must be class indices for the report, not a callable")
    x = np.asarray(_checks.check_images(probe, x))
    names, cols = _choose_methods(methods), _choose_metrics(metrics, masks)
    if masks is not None:
        masks = np.asarray(masks)
        if masks.dtype != bool or masks.shape != x.shape[:3]:
            raise ValueError(
                f"masks must be bool with shape {x.shape[:3]} (N, H, W), got "
                f"{masks.dtype} {masks.shape}"
            )
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    target = np.asarray(_checks.resolve_target(probe, x, targets).index)
    options = options or {}
    for key in options:
        if key not in names:
            raise ValueError(f"options names a method not in the report: {key!r}")
    out = Report(names, cols, level=level)
    total, done = len(names) * (len(cols) + 1), 0

    def step(label: str) -> bool:
        nonlocal done
        keep = progress is None or progress(done, total, label) is not False
        done += 1
        return keep

    nan = np.full(len(x), np.nan)
    for name in names:
        opts = {**FAST_OPTIONS.get(name, {}), **options.get(name, {})}
        out.values[name] = {}
        out.curves[name] = {}
        if not step(f"{name}"):
            out.stopped = True
            break
        try:
            res = method_fn(name)(probe, x, target, **opts)
            out.maps[name] = _map_of(res, x)
        except (ValueError, TypeError, NotImplementedError) as err:
            out.errors[(name, "")] = f"{type(err).__name__}: {err}"
            out.values[name] = {m: nan for m in cols}
            done += len(cols)
            continue
        ctx = Context(probe, x, target, name, opts, res, masks, seed, out.curves[name])
        for metric in cols:
            if not step(f"{name}: {metric}"):
                out.stopped = True
                break
            try:
                out.values[name][metric] = np.asarray(METRICS[metric].fn(ctx), np.float64)
            except (ValueError, TypeError, NotImplementedError) as err:
                out.errors[(name, metric)] = f"{type(err).__name__}: {err}"
                out.values[name][metric] = nan
        if out.stopped:
            break
    if progress is not None and not out.stopped:
        progress(total, total, "done")
    return out


def _map_of(res: Any, x: np.ndarray) -> np.ndarray:
    v = np.asarray(res.values)
    if v.ndim != 4 or v.shape[:3] != x.shape[:3]:
        raise ValueError(
            f"the method's values have shape {v.shape}, not one map per image {x.shape[:3]}"
        )
    return to_map(v)


def method_label(name: str) -> str:
    """The registry's label of ``name`` (the name itself for ``"gradient"``)."""
    try:
        return get_method(name).label
    except ValueError:
        return name
