"""Do ``render``'s settings truly maximise? The fraction of channels, per conv layer, whose
image beats every image of the model's data set on the channel objective (issue 17's table).

For each model (``mnist_cnn`` and ``shapes_cnn`` on their train + test images, and the tests'
ReLU net with random weights on the shapes test images) and each setting (``lucid``: Lucid's
preset; ``auto``: the default chosen from the model), every channel of every conv layer is
rendered in one vectorised batch at ``--steps`` (256), and its final objective (no
transforms) is compared with the data set maximum (``render(..., dataset=...)``).

    .venv/bin/python benchmarks/optvis_defaults.py                  # the full table
    .venv/bin/python benchmarks/optvis_defaults.py --quick          # mnist_cnn, 64 steps
    .venv/bin/python benchmarks/optvis_defaults.py --settings auto --models shapes_cnn
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np  # noqa: E402
from _fv_models import conv_layers, model  # noqa: E402

import jaxvis as jv  # noqa: E402
from jaxvis.optvis import objectives as O  # noqa: E402

MODELS = ("mnist_cnn", "shapes_cnn", "relu_net")


def row(name: str, setting: str, steps: int) -> str:
    probe, data = model(name)
    convs = conv_layers(probe)
    units = [(layer.name, c) for layer in convs for c in range(layer.shape[-1])]
    t = time.perf_counter()
    res = jv.optvis.render(
        probe, [O.channel(lay, c) for lay, c in units], steps=steps, preset=setting, dataset=data
    )
    cells = []
    for layer in convs:
        won = [b for (lay, _), b in zip(units, res.beats_dataset, strict=True) if lay == layer.name]
        cells.append(f"{layer.name} {sum(won)}/{len(won)}")
    return f"| {setting} | {name} | " + " | ".join(cells) + f" | {time.perf_counter() - t:.0f} s |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--settings", nargs="+", default=["lucid", "auto"])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.models, args.steps = ["mnist_cnn"], 64
    print(f"{args.steps} steps; cell: channels beating every data set image / channels")
    for name in args.models:
        for setting in args.settings:
            print(row(name, setting, args.steps), flush=True)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
