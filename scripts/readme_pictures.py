"""Regenerate the pictures of the README and the docs (docs/img/) from the zoo models.

Every picture is computed here, from the shipped weights, by the same calls a notebook makes:

* ``feature_vis.png``: what each of the shapes model's eight classes wants to see (Lucid's
  default: Fourier image, transforms), and ten MNIST classes below it;
* ``attribution.png``: integrated gradients (blurred baseline) over shapes test images;
* ``layer_grid.png``: one digit through ``mnist_cnn``, three layers' channels side by side;
* ``unit_view.png``: one unit as the Deep Visualization Toolbox shows it: its feature
  visualisation, then its top-9 test images' patches;
* ``training_replay.gif``: ``act3`` of one digit while ``mnist_cnn`` learns (skip: ``--no-gif``).

Example::

    python scripts/readme_pictures.py            # about a minute on two cores
    python scripts/readme_pictures.py --no-gif
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import jaxvis as jv
from jaxvis.optvis import objectives as obj

OUT = Path(__file__).resolve().parents[1] / "docs" / "img"


def _save(name: str, image: np.ndarray) -> None:
    path = OUT / name
    path.write_bytes(jv.render.png_bytes(image))
    print(f"{path.relative_to(OUT.parents[1])}: {image.shape[1]}x{image.shape[0]}")


def _pad_to(img: np.ndarray, width: int) -> np.ndarray:
    pad = width - img.shape[1]
    return np.pad(img, ((0, 0), (0, pad), (0, 0)), constant_values=255) if pad > 0 else img


def _stack(*images: np.ndarray, gap: int = 6) -> np.ndarray:
    width = max(i.shape[1] for i in images)
    rows = []
    for i in images:
        rows += [_pad_to(i, width), np.full((gap, width, 3), 255, np.uint8)]
    return np.concatenate(rows[:-1])


def _side(*images: np.ndarray, gap: int = 8) -> np.ndarray:
    height = max(i.shape[0] for i in images)
    cols = []
    for i in images:
        pad = np.pad(i, ((0, height - i.shape[0]), (0, 0), (0, 0)), constant_values=255)
        cols += [pad, np.full((height, gap, 3), 255, np.uint8)]
    return np.concatenate(cols[:-1], axis=1)


def feature_vis(shapes, mnist) -> None:
    colour = jv.optvis.render(shapes.probe, [obj.logit(k) for k in range(8)], steps=384)
    digits = jv.optvis.render(mnist.probe, [obj.logit(k) for k in range(10)], steps=256)
    top = jv.render.grid(colour.images, ncols=8, scale=3, spacing=4, normalize="none")
    bottom = jv.render.grid(digits.images, ncols=10, scale=3, spacing=4, normalize="none")
    _save("feature_vis.png", _stack(top, bottom, gap=10))


def attribution(shapes) -> None:
    x = shapes.x_test[:6]
    target = np.asarray(shapes.probe(x)).argmax(-1)
    ig = jv.attribution.integrated_gradients(shapes.probe, x, target, baseline="blur", steps=64)
    tiles = [jv.render.upscale(xi, 3) for xi in np.round(np.asarray(x) * 255).astype(np.uint8)]
    heat = np.asarray(ig.values).sum(-1)
    over = [
        jv.render.upscale(jv.render.overlay(xi, h, alpha=0.65), 3)
        for xi, h in zip(np.asarray(x), heat, strict=True)
    ]
    pairs = jv.render.grid(np.stack(tiles + over), ncols=6, spacing=4, normalize="none")
    _save("attribution.png", pairs)


def layer_grid(mnist) -> None:
    x = mnist.x_test[7:8]
    acts = mnist.probe.activations(x, layers=["act1", "act3", "act5"])
    grids = [
        jv.render.grid(np.asarray(acts[k][0]), cmap="rwb", normalize="symmetric", scale=s)
        for k, s in (("act1", 4), ("act3", 6), ("act5", 10))
    ]
    digit = jv.render.upscale(np.round(np.asarray(x[0]) * 255).astype(np.uint8), 6)
    _save("layer_grid.png", _side(np.repeat(digit, 3, -1), *grids))


def unit_view(shapes) -> None:
    layer, channel = "conv5", 11
    fv = jv.optvis.render(shapes.probe, f"{layer}:{channel}", steps=384)
    res = jv.dataset.top_k(shapes.probe, shapes.x_test, layer, k=9)
    crops = jv.dataset.patches(shapes.probe, shapes.x_test, res, channel=channel, fill=1.0)
    synth = jv.render.upscale(np.round(fv.images[0] * 255).astype(np.uint8), 5)
    patch_grid = jv.render.grid(crops, ncols=3, scale=None, spacing=3, normalize="none")
    s = max(1, synth.shape[0] // patch_grid.shape[0])
    _save("unit_view.png", _side(synth, jv.render.upscale(patch_grid, s)))


def training_gif() -> None:
    _, rec = jv.zoo.train_with_recording("mnist_cnn", epochs=1, every=2, log=None)
    frames = rec.activations["act3"][:, 0].astype(np.float32)  # (T, 14, 14, 8)
    lim = float(np.abs(frames).max()) or 1.0
    # One scale for the whole run, so a channel brightening over time shows as it is.
    tiles = [
        jv.render.grid(f / lim / 2 + 0.5, cmap="rwb", normalize="none", scale=5) for f in frames
    ]
    path = OUT / "training_replay.gif"
    jv.render.write_gif(tiles, path, fps=8)
    print(f"{path.relative_to(OUT.parents[1])}: {len(tiles)} frames")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-gif", action="store_true", help="skip the training replay GIF")
    ap.add_argument(
        "--only", nargs="*", help="some of: feature_vis attribution layer_grid unit_view"
    )
    args = ap.parse_args()
    todo = set(args.only or ["feature_vis", "attribution", "layer_grid", "unit_view"])
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    mnist, shapes = jv.zoo.load("mnist_cnn"), jv.zoo.load("shapes_cnn")
    if "feature_vis" in todo:
        feature_vis(shapes, mnist)
    if "attribution" in todo:
        attribution(shapes)
    if "layer_grid" in todo:
        layer_grid(mnist)
    if "unit_view" in todo:
        unit_view(shapes)
    if not args.no_gif:
        training_gif()
    print(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
