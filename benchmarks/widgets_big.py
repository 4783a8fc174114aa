"""What the widgets cost on a ResNet-50 and a ViT-S/16 at 224x224 (random weights).

Prints, per model: Python-side time per Layer Explorer image-slider move (compute / render /
total, median of ``--moves``), PNG bytes sent and grids rendered per move, for the code in
this checkout and, with ``--before DIR`` (a checkout of the old code, e.g. ``git worktree add
/tmp/old main``), for that code in the same run; then bytes per update of FeatureVis,
Attribution and UnitExplorer, and the peak RSS of each widget, one subprocess per widget
(``resource.getrusage``), against a process that only builds the probe and runs one forward
pass. Timings on a loaded 2-core machine are noisy; bytes and RSS are not.

    .venv/bin/python benchmarks/widgets_big.py [--models resnet50,vit_s16] [--moves 5]
        [--before /tmp/old]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZE = 224
#: The layers the Layer Explorer is put on: the first (most pixels), a wide late one.
EXPLORER_LAYERS = {
    "resnet50": ("bn1", "layer4_2"),
    "vit_s16": ("embedding", "Transformer.encoderblock_11"),
}
WIDGETS = ("probe_only", "LayerExplorer", "FeatureVis", "Attribution", "UnitExplorer")


def build(model: str) -> tuple[Any, np.ndarray]:
    """The probe (random weights) and four random images in its input range."""
    import jaxvis as jv

    module = jv.zoo.resnet50() if model == "resnet50" else jv.zoo.vit_s16()
    variables = jv.zoo.init_variables(module, seed=0, input_shape=(SIZE, SIZE, 3))
    probe = jv.Probe(module, variables, input_shape=(SIZE, SIZE, 3), input_range=(-3.0, 3.0))
    images = np.random.default_rng(0).normal(size=(4, SIZE, SIZE, 3)).clip(-3, 3)
    return probe, images.astype(np.float32)


def explorer_moves(model: str, moves: int) -> dict[str, Any]:
    """Layer Explorer slider moves on each of :data:`EXPLORER_LAYERS` (old or new code)."""
    import jaxvis as jv

    probe, images = build(model)
    t0 = time.perf_counter()
    ex = jv.widgets.LayerExplorer(probe, images)
    out: dict[str, Any] = {"build_s": time.perf_counter() - t0, "cases": {}}
    new = hasattr(ex, "grid")  # the paged explorer; the old one draws every layer
    for layer in EXPLORER_LAYERS[model] if new else ("all layers",):
        if new:
            ex.select(layer, 0)
        rows = []
        for _ in range(moves):
            ex.slider.value = (ex.slider.value + 1) % len(images)
            timing = dict(ex.last_timing)
            if not new:
                sent = sum(len(p) for p in ex.grids.pngs)
                sent += len(ex.input_image.value) + len(ex.enlarged.value)
                timing |= {"bytes": float(sent), "grids": float(len(ex.grids.pngs))}
            rows.append(timing)
            assert not ex.error.error, ex.error.error
        out["cases"][layer] = {
            key: float(np.median([r[key] for r in rows]))
            for key in ("compute", "render", "total", "bytes", "grids")
        }
    return out


def widget_run(model: str, widget: str) -> dict[str, Any]:
    """Build ``widget`` on ``model`` and drive one or two updates; bytes sent and peak RSS."""
    import jaxvis as jv

    probe, images = build(model)
    sent: dict[str, float] = {}
    notes = ""
    t0 = time.perf_counter()
    if widget == "probe_only":
        np.asarray(probe(images[:1]))
    elif widget == "LayerExplorer":
        ex = jv.widgets.LayerExplorer(probe, images)
        for i in (1, 2, 3):
            ex.slider.value = i
        sent["per move"] = ex.last_timing["bytes"]
    elif widget == "FeatureVis":
        layer = EXPLORER_LAYERS[model][1]
        fv = jv.widgets.FeatureVis(probe, layer=layer, channel=70, steps=8, preview_every=4)
        fv.run(wait=True)
        assert not fv.error.error, fv.error.error
        sent["per preview"] = float(len(fv.preview.value))
        fv.whole_layer.value = True
        notes = f"whole layer optimises {len(fv.grid_channels())} channels at once"
    elif widget == "Attribution":
        at = jv.widgets.AttributionExplorer(probe, images, method="saliency")
        at.index.value = 1
        assert not at.errors.error, at.errors.error
        sent["per image"] = float(len(at.view.value) + len(at.heat.value))
    elif widget == "UnitExplorer":
        layer = EXPLORER_LAYERS[model][1]
        ue = jv.widgets.UnitExplorer(probe, images, layer=layer, fv_steps=0, batch_size=4)
        ue.channel_slider.value = 5
        assert not ue.error.error, ue.error.error
        sent["per channel"] = float(
            sum(len(w.value) for w in (ue.top_image, ue.patch_image, ue.act_image))
        )
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB -> MB on Linux
    return {"seconds": seconds, "peak_rss_mb": rss, "bytes": sent, "notes": notes}


def subprocess_json(args: list[str], pythonpath: Path) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    done = subprocess.run(
        [sys.executable, __file__, *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet50,vit_s16")
    ap.add_argument("--moves", type=int, default=5)
    ap.add_argument("--before", type=Path, help="a checkout of the old code to compare with")
    ap.add_argument("--rss-models", default="resnet50", help="models to measure RSS on")
    ap.add_argument("--_explorer", help=argparse.SUPPRESS)
    ap.add_argument("--_widget", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._explorer:
        print(json.dumps(explorer_moves(args._explorer, args.moves)))
        return 0
    if args._widget:
        print(json.dumps(widget_run(*args._widget)))
        return 0

    t0 = time.perf_counter()
    models = args.models.split(",")
    print(f"Layer Explorer, Python side per image-slider move (median of {args.moves}), 224x224")
    print(f"{'':46}{'compute':>9}{'render':>9}{'total':>9}{'kB sent':>10}{'grids':>7}")
    for model in models:
        runs = [("now", ROOT)] + ([("before", args.before)] if args.before else [])
        for label, path in runs:
            res = subprocess_json(["--_explorer", model, "--moves", str(args.moves)], path)
            if "error" in res:
                print(f"{model} {label}: {res['error']}")
                continue
            for case, r in res["cases"].items():
                name = f"{model} {label}: {case}"
                print(
                    f"{name:46}{r['compute']:8.0f} {r['render']:8.0f} {r['total']:8.0f} "
                    f"{r['bytes'] / 1e3:9.1f} {r['grids']:6.0f}"
                )
    print()
    print("per widget: bytes per update and peak RSS (one subprocess each)")
    for model in args.rss_models.split(","):
        base = None
        for widget in WIDGETS:
            res = subprocess_json(["--_widget", model, widget], ROOT)
            if "error" in res:
                print(f"{model} {widget}: {res['error']}")
                continue
            base = res["peak_rss_mb"] if widget == "probe_only" else base
            extra = "" if base is None else f" (+{res['peak_rss_mb'] - base:.0f} MB over probe)"
            sent = ", ".join(f"{k} {v / 1e3:.1f} kB" for k, v in res["bytes"].items())
            notes = f"; {res['notes']}" if res["notes"] else ""
            print(
                f"{model} {widget:14} peak RSS {res['peak_rss_mb']:6.0f} MB{extra}; "
                f"{sent or '-'}; {res['seconds']:.1f} s{notes}"
            )
    print(f"(whole benchmark {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
