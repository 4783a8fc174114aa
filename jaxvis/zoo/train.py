"""Train the zoo models and write their shipped weights.

Reproduce the shipped files (each run takes about a minute or two on 2 CPU cores)::

    python -m jaxvis.zoo.train mnist_cnn
    python -m jaxvis.zoo.train shapes_cnn --out /tmp/shapes_cnn.npz

Training is plain optax Adam with a cosine learning-rate decay and a jitted, pure train step
over ``nnx.split`` parameters (a Python loop over steps: inside ``lax.scan`` XLA on the CPU
runs the convolutions' input gradients much slower). Seeds fix the initialisation, the batch
order and the augmentation, so a rerun on the same machine gives the same weights.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx

from jaxvis.zoo.data import ZooData
from jaxvis.zoo.evaluate import accuracy, predict
from jaxvis.zoo.load import NAMES, build, load_data, weights_path
from jaxvis.zoo.weights import save_weights

__all__ = [
    "CONFIGS",
    "TrainConfig",
    "accuracy",
    "fit",
    "main",
    "make_train_step",
    "predict",
    "train",
]


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run.

    Attributes:
        epochs: passes over the training set.
        batch_size: images per step.
        learning_rate: Adam's peak learning rate (cosine-decayed to 5% of it).
        weight_decay: decoupled weight decay (AdamW); 0 for plain Adam.
        seed: seeds the initialisation, the batch order and the augmentation.
        shift: random translation of training images by up to ``shift`` pixels.
        flip: random horizontal flips of training images.
        dihedral: random flips and quarter turns (for classes that these preserve).
        recolour: random permutations of the colour channels and colour inversions.
    """

    epochs: int
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 0.0
    seed: int = 0
    shift: int = 0
    flip: bool = False
    dihedral: bool = False
    recolour: bool = False


CONFIGS: dict[str, TrainConfig] = {
    "mnist_cnn": TrainConfig(epochs=30, batch_size=64, learning_rate=3e-3, shift=2),
    "shapes_cnn": TrainConfig(
        epochs=18, batch_size=64, learning_rate=5e-3, dihedral=True, recolour=True
    ),
}


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of integer ``labels``."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def make_optimizer(config: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """Adam (or AdamW) with a cosine decay of the learning rate over ``total_steps``."""
    schedule = optax.cosine_decay_schedule(config.learning_rate, max(total_steps, 1), alpha=0.05)
    if config.weight_decay:
        return optax.adamw(schedule, weight_decay=config.weight_decay)
    return optax.adam(schedule)


def make_train_step(
    graphdef: Any, tx: optax.GradientTransformation
) -> Callable[[Any, Any, jax.Array, jax.Array], tuple[Any, Any, jax.Array]]:
    """A jitted ``step(params, opt_state, x, y) -> (params, opt_state, loss)``.

    Example::

        graphdef, params = nnx.split(model)
        tx = optax.adam(1e-3)
        step = make_train_step(graphdef, tx)
        params, opt_state, loss = step(params, tx.init(params), x, y)
        nnx.update(model, params)
    """

    def loss_fn(params: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        return cross_entropy(nnx.merge(graphdef, params)(x), y)

    @jax.jit
    def step(params: Any, opt_state: Any, x: jax.Array, y: jax.Array) -> tuple[Any, Any, Any]:
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def augment(
    x: np.ndarray,
    rng: np.random.Generator,
    shift: int = 0,
    flip: bool = False,
    dihedral: bool = False,
    recolour: bool = False,
) -> np.ndarray:
    """Randomly transform a batch ``x`` (NHWC) for training; each image draws its own.

    ``shift``: translate by up to that many pixels (edge-padded); ``flip``: mirror left-right;
    ``dihedral``: mirror and turn by a multiple of 90 degrees (square images); ``recolour``:
    permute the colour channels and invert colours (``1 - x``) of half the images.
    """
    if shift:
        n, h, w, _ = x.shape
        padded = np.pad(x, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="edge")
        dy, dx = rng.integers(0, 2 * shift + 1, (2, n))
        rows = dy[:, None] + np.arange(h)[None, :]
        cols = dx[:, None] + np.arange(w)[None, :]
        x = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    if flip or dihedral:
        x = np.where(rng.random(len(x))[:, None, None, None] < 0.5, x[:, :, ::-1], x)
    if dihedral:
        turns = rng.integers(0, 4, len(x))
        x = np.stack([np.rot90(image, k) for image, k in zip(x, turns, strict=True)])
    if recolour:
        perms = np.argsort(rng.random((len(x), x.shape[-1])), axis=-1)
        x = np.take_along_axis(x, perms[:, None, None, :], axis=-1)
        x = np.where(rng.random(len(x))[:, None, None, None] < 0.5, 1.0 - x, x)
    return np.ascontiguousarray(x)


def fit(
    model: nnx.Module,
    data: ZooData,
    config: TrainConfig,
    log: Callable[[str], None] | None = print,
    max_steps: int | None = None,
) -> list[float]:
    """Train ``model`` in place on ``data.x_train``; returns the loss of every step.

    ``max_steps`` stops early (for smoke tests). Example::

        model = build("mnist_cnn", 0)
        losses = fit(model, load_data("mnist_cnn"), TrainConfig(epochs=1), max_steps=2)
    """
    rng = np.random.default_rng(config.seed)
    n = len(data.x_train)
    steps_per_epoch = n // config.batch_size
    total = steps_per_epoch * config.epochs
    if max_steps is not None:
        total = min(total, max_steps)
    tx = make_optimizer(config, total)
    graphdef, params = nnx.split(model)
    opt_state = tx.init(params)
    step = make_train_step(graphdef, tx)
    losses: list[float] = []
    start = time.perf_counter()
    done = 0
    for epoch in range(config.epochs):
        order = rng.permutation(n)
        epoch_losses = []
        for b in range(steps_per_epoch):
            if done >= total:
                break
            idx = order[b * config.batch_size : (b + 1) * config.batch_size]
            xb = augment(
                data.x_train[idx], rng, config.shift, config.flip, config.dihedral, config.recolour
            )
            params, opt_state, loss = step(params, opt_state, xb, data.y_train[idx])
            epoch_losses.append(loss)
            done += 1
        losses += [float(v) for v in epoch_losses]
        if log is not None and epoch_losses:
            nnx.update(model, params)
            mean = float(np.mean([float(v) for v in epoch_losses]))
            acc = accuracy(model, data.x_test, data.y_test)
            log(
                f"epoch {epoch + 1:3d}/{config.epochs}  loss {mean:.4f}  "
                f"test acc {acc:.4f}  {time.perf_counter() - start:6.1f} s"
            )
        if done >= total:
            break
    nnx.update(model, params)
    return losses


def train(
    name: str,
    config: TrainConfig | None = None,
    out: str | None = None,
    log: Callable[[str], None] | None = print,
) -> tuple[nnx.Module, dict[str, Any]]:
    """Train zoo model ``name`` from scratch; write its weights to ``out`` (None: don't write).

    Returns ``(model, meta)`` where ``meta`` holds the settings, the test accuracy and the
    training time. Example::

        model, meta = train("mnist_cnn", out=None)
        meta["test_accuracy"]
    """
    config = config or CONFIGS[name]
    data = load_data(name)
    model = build(name, nnx.Rngs(config.seed))
    start = time.perf_counter()
    losses = fit(model, data, config, log=log)
    seconds = time.perf_counter() - start
    meta = {
        "name": name,
        "config": asdict(config),
        "test_accuracy": accuracy(model, data.x_test, data.y_test),
        "train_accuracy": accuracy(model, data.x_train, data.y_train),
        "final_loss": losses[-1] if losses else None,
        "train_seconds": round(seconds, 1),
        "n_train": len(data.x_train),
        "n_test": len(data.x_test),
        "jax": jax.__version__,
    }
    if out is not None:
        save_weights(model, out, meta)
    return model, meta


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m jaxvis.zoo.train NAME [--out PATH] [--epochs N] [--seed S]``."""
    parser = argparse.ArgumentParser(
        prog="python -m jaxvis.zoo.train", description="Train a jaxvis zoo model."
    )
    parser.add_argument("name", choices=NAMES)
    parser.add_argument("--out", help="weights file to write (default: the shipped file)")
    parser.add_argument("--epochs", type=int, help="override the number of epochs")
    parser.add_argument("--seed", type=int, help="override the seed")
    parser.add_argument("--no-save", action="store_true", help="train and report only")
    args = parser.parse_args(argv)
    config = CONFIGS[args.name]
    if args.epochs is not None:
        config = replace(config, epochs=args.epochs)
    if args.seed is not None:
        config = replace(config, seed=args.seed)
    out = None if args.no_save else (args.out or str(weights_path(args.name)))
    print(f"training {args.name}: {config}", flush=True)
    _, meta = train(args.name, config, out=out, log=lambda s: print(s, flush=True))
    print(
        f"{args.name}: test accuracy {meta['test_accuracy']:.4f} "
        f"(train {meta['train_accuracy']:.4f}) in {meta['train_seconds']:.1f} s"
    )
    if out is not None:
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
