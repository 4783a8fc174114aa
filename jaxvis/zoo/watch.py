"""``jv.zoo.train_with_recording``: "watch a neural network learn to see", reproduced.

Trains a fresh zoo model from scratch with the zoo's own recipe (Adam, cosine decay, the
same augmentation) and a :class:`jaxvis.Recorder` in the loop: one fixed test image per class
is the probe, and after every ``every``-th training step the recorder keeps the probe images'
activations in every activation layer (``tanh`` for ``mnist_cnn``, shown with the red-white-blue
colormap from -1 to +1), the weight histograms and the metrics (training-batch loss and
accuracy every step, test accuracy at the end of each epoch).

Example::

    model, recording = jv.zoo.train_with_recording("mnist_cnn", epochs=3, batch_size=64)
    jv.widgets.TrainingReplay(recording)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxvis._checks import check_positive_int
from jaxvis.training import Recorder, Recording
from jaxvis.zoo.load import build, load_data
from jaxvis.zoo.train import CONFIGS, accuracy, augment, cross_entropy, make_optimizer

__all__ = ["probe_examples", "train_with_recording"]

#: The activation layers recorded by default, and their value range (for the colormap).
DEFAULT_LAYERS: dict[str, tuple[list[str], tuple[float, float] | None]] = {
    "mnist_cnn": ([f"act{i}" for i in range(1, 7)], (-1.0, 1.0)),
    "shapes_cnn": (["act1", "act2", "act3", "act4", "act5"], None),
}


def probe_examples(x: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The first image of each class in ``(x, y)``: ``(images (K, H, W, C), labels (K,))``."""
    idx = [int(np.flatnonzero(y == k)[0]) for k in range(n_classes) if np.any(y == k)]
    return x[idx], y[idx]


def _make_step(graphdef: Any, tx: optax.GradientTransformation) -> Callable:
    def loss_fn(params: Any, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        logits = nnx.merge(graphdef, params)(x)
        return cross_entropy(logits, y), jnp.mean(jnp.argmax(logits, -1) == y)

    @jax.jit
    def step(params: Any, opt_state: Any, x: jax.Array, y: jax.Array) -> tuple[Any, ...]:
        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, acc

    return step


def train_with_recording(
    name: str = "mnist_cnn",
    epochs: int = 3,
    batch_size: int = 64,
    every: int = 1,
    *,
    seed: int = 0,
    learning_rate: float | None = None,
    layers: Sequence[str] | None = None,
    max_steps: int | None = None,
    budget_bytes: int | None = None,
    log: Callable[[str], None] | None = print,
) -> tuple[nnx.Module, Recording]:
    """Train zoo model ``name`` from scratch while recording it; ``(model, recording)``.

    Args:
        name: ``"mnist_cnn"`` (the seed's experiment) or ``"shapes_cnn"``.
        epochs: passes over the training set (4,000 digits: 62 steps per epoch at 64).
        batch_size: images per step.
        every: record every ``every``-th step (step 0 is the untrained model; the last step
            is always recorded).
        seed: initialisation, batch order and augmentation.
        learning_rate: Adam's peak rate (default: the zoo's recipe).
        layers: layers to record (default: the activation layers, ``act1``..``act6``).
        max_steps: stop after this many steps (quick runs).
        budget_bytes: passed to the :class:`~jaxvis.Recorder` (refuse a larger run).
        log: called with one line per epoch; None for silence.

    Example::

        model, rec = train_with_recording("mnist_cnn", epochs=1, max_steps=20, log=None)
        rec.activations["act1"].shape       # (21, 10, 28, 28, 4)
    """
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    every = check_positive_int(every, "every")
    if max_steps is not None:
        max_steps = check_positive_int(max_steps, "max_steps")
    data = load_data(name)
    config = replace(CONFIGS[name], epochs=epochs, batch_size=batch_size, seed=seed)
    if learning_rate is not None:
        config = replace(config, learning_rate=float(learning_rate))
    n = len(data.x_train)
    steps_per_epoch = n // batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size must be at most the {n} training images, got {batch_size}")
    total = steps_per_epoch * epochs
    if max_steps is not None:
        total = min(total, max_steps)
    default_layers, value_range = DEFAULT_LAYERS[name]
    probe_x, probe_y = probe_examples(data.x_test, data.y_test, len(data.class_names))

    model = build(name, nnx.Rngs(seed))
    recorder = Recorder(
        probe_x,
        layers=list(layers) if layers is not None else default_layers,
        every=every,
        model=model,
        labels=probe_y,
        value_range=value_range if layers is None else None,
        budget_bytes=budget_bytes,
        total_steps=total,
        meta={"zoo_model": name, "epochs": epochs, "batch_size": batch_size, "seed": seed},
    )
    tx = make_optimizer(config, total)
    graphdef, params = nnx.split(model)
    opt_state = tx.init(params)
    train_step = _make_step(graphdef, tx)
    rng = np.random.default_rng(seed)
    recorder.record(0, params)
    step, start = 0, time.perf_counter()
    for epoch in range(epochs):
        order = rng.permutation(n)
        losses = []
        for b in range(steps_per_epoch):
            if step >= total:
                break
            idx = order[b * batch_size : (b + 1) * batch_size]
            xb = augment(data.x_train[idx], rng, config.shift, config.flip, config.dihedral)
            params, opt_state, loss, acc = train_step(params, opt_state, xb, data.y_train[idx])
            step += 1
            metrics = {"loss": loss, "accuracy": acc}
            end_of_epoch = b == steps_per_epoch - 1 or step == total
            if end_of_epoch:
                nnx.update(model, params)
                metrics["test_accuracy"] = accuracy(model, data.x_test, data.y_test)
            recorder.record(step, params, metrics=metrics, force=end_of_epoch)
            losses.append(loss)
        if log is not None and losses:
            log(
                f"epoch {epoch + 1}/{epochs}  step {step}  loss "
                f"{float(np.mean([float(v) for v in losses])):.4f}  test acc "
                f"{metrics.get('test_accuracy', float('nan')):.4f}  "
                f"{time.perf_counter() - start:5.1f} s"
            )
        if step >= total:
            break
    nnx.update(model, params)
    return model, recorder.recording()
