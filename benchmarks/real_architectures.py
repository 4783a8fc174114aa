"""Model x tool at 224x224: does every jaxvis tool run on the models people study, and how long
does its first call (compiles) and its second call (compiled) take?

Models (random weights, the test fixtures of ``tests/fixtures`` at full size): the Flax-example
Linen ResNet-50 (functional ``nn.max_pool``, BatchNorm), the vision_transformer-style Linen
ViT-S/16, the jimm-style NNX ViT-S/16 (12 blocks stacked with ``nnx.vmap``, run by
``nnx.scan``, left in training mode), a ConvNeXt-T in NNX and the Equinox CNN at 224x224.
Tools: layer discovery, activations of every layer, saliency, integrated gradients (16 steps),
SmoothGrad (8 samples), Grad-CAM, attention rollout (ViTs), feature visualisation (16 steps),
top-k over 16 images, a receptive field, and each widget's construction plus one update.

    .venv/bin/python benchmarks/real_architectures.py            # all models (4-9 min)
    .venv/bin/python benchmarks/real_architectures.py --quick    # Equinox CNN + Linen ViT-S/16
    .venv/bin/python benchmarks/real_architectures.py --models resnet50 --tools saliency,ig16
    .venv/bin/python benchmarks/real_architectures.py --cache    # first calls from the disk cache

Prints a markdown table (pass/fail, seconds of the first / second call) and the machine load
(``os.getloadavg()``) before and after; failures are listed under the table. A model whose
tools have used up ``--budget`` seconds skips the rest (shown as "skipped"), so a loaded
machine still finishes in bounded time (``--budget inf`` runs everything). Batch 1 everywhere
(top-k: 16 images; the UnitExplorer's feature visualisation: 4 steps per unit).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# First calls compile from scratch: jaxvis's persistent compilation cache is off unless --cache
# (then a first call in a second run loads its programs from disk). Set before jaxvis is imported.
if "--cache" not in sys.argv:
    os.environ["JAXVIS_COMPILATION_CACHE"] = "0"

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

import jaxvis as jv  # noqa: E402

VIT = dict(patch_size=16, hidden_size=384, num_layers=12, num_heads=6, mlp_dim=1536)


def build(name: str) -> Any:
    """The fixture at 224x224 and the layer its unit tools use."""
    from fixtures import (
        make_eqx_cnn,
        make_linen_resnet,
        make_linen_vit,
        make_nnx_convnext,
        make_nnx_vit,
    )

    if name == "resnet50":
        f = make_linen_resnet(
            224, stage_sizes=(3, 4, 6, 3), block="bottleneck", num_filters=64,
            num_classes=1000, stat_batches=2, stat_batch_size=2,
        )  # fmt: skip
        return f, "BottleneckResNetBlock_7"  # stage 3 (28x28x512)
    if name == "vit_s16":
        return make_linen_vit(224, num_classes=1000, **VIT), "Transformer.encoderblock_5"
    if name == "nnx_vit_s16":
        return make_nnx_vit(224, num_classes=1000, **VIT), "encoder.blocks.5"
    if name == "convnext_t":
        f = make_nnx_convnext(224, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), num_classes=1000)
        return f, "stages.2"
    if name == "eqx_cnn":
        return make_eqx_cnn(224), "conv2"
    raise ValueError(f"unknown model {name!r}")


MODELS = ("resnet50", "vit_s16", "nnx_vit_s16", "convnext_t", "eqx_cnn")
QUICK = ("eqx_cnn", "vit_s16")
LABELS = {
    "resnet50": "Linen ResNet-50",
    "vit_s16": "Linen ViT-S/16",
    "nnx_vit_s16": "NNX ViT-S/16 (scan)",
    "convnext_t": "NNX ConvNeXt-T",
    "eqx_cnn": "Equinox CNN",
}


class Context:
    """One model under test: the fixture, its probe, inputs, the unit layer."""

    def __init__(self, name: str) -> None:
        t0 = time.perf_counter()
        self.name = name
        self.fixture, self.layer = build(name)
        self.build_s = time.perf_counter() - t0
        self.x = self.fixture.sample(1, seed=1)
        self.x2 = self.fixture.sample(2, seed=2)
        self.data = self.fixture.sample(16, seed=3)
        self.probe: jv.Probe | None = None
        self.vit = "vit" in name

    def new_probe(self) -> jv.Probe:
        return jv.Probe(self.fixture.model, **self.fixture.probe_kwargs)


def _done(value: Any) -> Any:
    """Wait for every array in ``value`` (JAX dispatches asynchronously)."""
    for leaf in jax.tree_util.tree_leaves(value):
        if isinstance(leaf, jax.Array):
            leaf.block_until_ready()
    return value


# ---------------------------------------------------------------------- tools


def t_layers(c: Context) -> None:
    probe = c.new_probe()
    assert len(probe.layers) > 0
    if c.probe is None:
        c.probe = probe


def t_activations(c: Context) -> None:
    acts = _done(c.probe.activations(c.x))
    assert len(acts) == len(c.probe.layers)


def t_saliency(c: Context) -> None:
    _done(jv.attribution.saliency(c.probe, c.x, 1).values)


def t_ig16(c: Context) -> None:
    res = jv.attribution.integrated_gradients(c.probe, c.x, 1, steps=16)
    _done(res.values)
    assert np.isfinite(np.asarray(res.delta)).all()


def t_smoothgrad8(c: Context) -> None:
    _done(jv.attribution.smoothgrad(c.probe, c.x, 1, samples=8).values)


def t_grad_cam(c: Context) -> None:
    res = jv.attribution.grad_cam(c.probe, c.x, 1)
    assert float(np.asarray(res.values).max()) > 0, "Grad-CAM map is zero"


def t_rollout(c: Context) -> None:
    _done(jv.attribution.attention_rollout(c.probe, c.x).values)


def t_fv16(c: Context) -> None:
    res = jv.optvis.render(c.probe, jv.optvis.objectives.channel(c.layer, 0), steps=16)
    assert np.isfinite(res.images).all()


def t_top_k16(c: Context) -> None:
    res = jv.dataset.top_k(c.probe, c.data, c.layer, k=4, batch_size=8, progress=False)
    assert res.n_images == 16


def t_receptive_field(c: Context) -> None:
    # a new probe each call: receptive fields are cached per probe
    rf = jv.dataset.receptive_field(c.new_probe() if c.probe is None else c.probe, c.layer)
    rf.box(0, 0)


def w_layer_explorer(c: Context) -> None:
    ex = jv.widgets.LayerExplorer(c.probe, c.x2)
    before = ex.grids.pngs
    ex.slider.value = 1
    assert not ex.error.error, ex.error.error
    assert ex.grids.pngs != before


def w_feature_vis(c: Context) -> None:
    fv = jv.widgets.FeatureVis(c.probe, layer=c.layer, steps=8, out_dir="/tmp")
    fv.run(wait=True)
    assert not fv.error.error and fv.result is not None, fv.error.error


def w_attribution(c: Context) -> None:
    w = jv.widgets.AttributionExplorer(c.probe, c.x2, method="saliency")
    first = w.overlay_png
    w.target.value = next(v for _, v in w.target.options if v != w.target.value)
    assert not w.errors.error, w.errors.error
    assert w.overlay_png != first


def w_unit_explorer(c: Context) -> None:
    ue = jv.widgets.UnitExplorer(c.probe, c.data, layer=c.layer, k=4, fv_steps=4, batch_size=8)
    ue.channel_slider.value = 1
    assert not ue.error.error, ue.error.error


def w_model_summary(c: Context) -> None:
    s = jv.widgets.ModelSummary(c.probe)
    assert s.total_params == c.fixture.n_params, (
        f"total {s.total_params:,} != {c.fixture.n_params:,} parameters"
    )


def w_weight_histograms(c: Context) -> None:
    wh = jv.widgets.WeightHistograms(c.probe)
    wh.layer_select.value = list(wh.weights)[-1]
    assert not wh.error.error, wh.error.error


def w_filter_grid(c: Context) -> None:
    fg = jv.widgets.FilterGrid(c.probe)
    fg.select(1, 0)
    assert not fg.error.error, fg.error.error


def w_attention_explorer(c: Context) -> None:
    w = jv.widgets.AttentionExplorer(c.probe, c.x2)
    first = w.overlay_png
    w.head.value = 1
    assert not w.errors.error, w.errors.error
    assert w.overlay_png != first


TOOLS: dict[str, tuple[str, Callable[[Context], None], bool]] = {
    # key: (row label, function, ViTs only); cheap first, so that a tight --budget cuts the
    # long gradient loops, not the widgets
    "layers": ("layers (discovery)", t_layers, False),
    "activations": ("activations, all layers", t_activations, False),
    "saliency": ("saliency", t_saliency, False),
    "grad_cam": ("Grad-CAM", t_grad_cam, False),
    "rollout": ("attention rollout", t_rollout, True),
    "top_k16": ("top-k over 16 images", t_top_k16, False),
    "receptive_field": ("receptive field", t_receptive_field, False),
    "ModelSummary": ("ModelSummary", w_model_summary, False),
    "WeightHistograms": ("WeightHistograms + 1 update", w_weight_histograms, False),
    "FilterGrid": ("FilterGrid + 1 update", w_filter_grid, False),
    "LayerExplorer": ("LayerExplorer + 1 update", w_layer_explorer, False),
    "Attribution": ("Attribution + 1 update", w_attribution, False),
    "AttentionExplorer": ("AttentionExplorer + 1 update", w_attention_explorer, True),
    "FeatureVis": ("FeatureVis + run 8 steps", w_feature_vis, False),
    "UnitExplorer": ("UnitExplorer + 1 update", w_unit_explorer, False),
    "smoothgrad8": ("SmoothGrad, 8 samples", t_smoothgrad8, False),
    "ig16": ("integrated gradients, 16 steps", t_ig16, False),
    "fv16": ("feature vis., 16 steps", t_fv16, False),
}


def _one_call(fn: Callable[[Context], None], c: Context) -> tuple[float, str | None]:
    t0 = time.perf_counter()
    try:
        fn(c)
    except Exception as exc:  # noqa: BLE001 - reported in the table
        last = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(last.filename).name}:{last.lineno}"
        return time.perf_counter() - t0, f"{type(exc).__name__}: {exc} ({where})"
    return time.perf_counter() - t0, None


def run_model(name: str, tools: list[str], budget: float) -> tuple[Context, dict[str, Any]]:
    c = Context(name)
    print(f"  {LABELS[name]}: built in {c.build_s:.1f} s", file=sys.stderr, flush=True)
    results: dict[str, Any] = {}
    spent = 0.0
    if "layers" not in tools:  # every other tool needs the probe
        c.probe = c.new_probe()
    for key in tools:
        label, fn, vit_only = TOOLS[key]
        if vit_only and not c.vit:
            results[key] = ("n/a",)
            continue
        if c.probe is None and key != "layers":
            results[key] = ("fail", None, None, "no probe (layer discovery failed)")
            continue
        if spent > budget:
            results[key] = ("skipped",)
            continue
        first, err = _one_call(fn, c)
        second = None
        if err is None:
            second, err = _one_call(fn, c)
        spent += first + (second or 0.0)
        results[key] = ("fail" if err else "ok", first, second, err)
        shown = f"{first:.2f} / {second:.2f} s" if err is None else f"FAIL {err[:100]}"
        print(f"    {label:<32} {shown}", file=sys.stderr, flush=True)
    return c, results


def cell(result: tuple) -> str:
    if result[0] in ("n/a", "skipped"):
        return result[0]
    status, first, second, _ = result
    if status == "ok":
        return f"✓ {first:.2f} / {second:.2f}"
    return f"✗ ({first:.1f})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    ap.add_argument("--models", default=None, help=f"comma-separated, of {', '.join(MODELS)}")
    ap.add_argument("--tools", default=None, help="comma-separated tool keys (default: all)")
    ap.add_argument("--cache", action="store_true",
                    help="keep jaxvis's compilation cache on (first calls may load)")  # fmt: skip
    ap.add_argument("--budget", type=float, default=90.0,
                    help="seconds of tool time per model before the rest is skipped")  # fmt: skip
    args = ap.parse_args(argv)
    models = list(QUICK if args.quick else MODELS)
    if args.models:
        models = [m.strip() for m in args.models.split(",")]
    unknown = [m for m in models if m not in MODELS]
    tools = list(TOOLS) if not args.tools else [t.strip() for t in args.tools.split(",")]
    unknown += [t for t in tools if t not in TOOLS]
    if unknown:
        ap.error(f"unknown models/tools: {unknown}; models {MODELS}, tools {list(TOOLS)}")
    if "layers" in tools:
        tools.remove("layers")
        tools.insert(0, "layers")

    load0 = os.getloadavg()
    t_start = time.perf_counter()
    print(f"jaxvis real architectures at 224x224: {', '.join(models)}", file=sys.stderr)
    table: dict[str, dict[str, Any]] = {}
    built: dict[str, Context] = {}
    for name in models:
        built[name], table[name] = run_model(name, tools, args.budget)
    total = time.perf_counter() - t_start
    load1 = os.getloadavg()

    print("\n### Model × tool at 224×224 (batch 1; seconds: first call / second call)\n")
    print(f"| tool | {' | '.join(LABELS[m] for m in models)} |")
    print(f"|---|{'---|' * len(models)}")
    params = " | ".join(f"{built[m].fixture.n_params / 1e6:.1f} M" for m in models)
    print(f"| parameters | {params} |")
    print(f"| build (random weights) | {' | '.join(f'{built[m].build_s:.1f}' for m in models)} |")
    for key in tools:
        print(f"| {TOOLS[key][0]} | {' | '.join(cell(table[m][key]) for m in models)} |")
    failures = [(m, key, r[3]) for m in models for key, r in table[m].items() if r[0] == "fail"]
    n_ok = sum(r[0] == "ok" for m in models for r in table[m].values())
    n_run = sum(r[0] in ("ok", "fail") for m in models for r in table[m].values())
    print(f"\n{n_ok} of {n_run} model × tool runs passed.")
    if failures:
        print("\nFailures:\n")
        for m, key, err in failures:
            print(f"- {LABELS[m]} · {TOOLS[key][0]}: {err[:300]}")
    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"jax {jax.__version__} on {jax.default_backend()}; load average (1, 5, 15 min) "
        f"{load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} at the start, "
        f"{load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} at the end; {total:.0f} s in all; "
        f"jaxvis's compilation cache {jv.compilation_cache_dir() or 'off'}."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
