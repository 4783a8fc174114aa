"""``jv.training``: record what a network sees and is while it learns, replay it later.

Compute only (no widgets): :class:`Recorder` is one call in your training loop;
:class:`Recording` is what it saw, saved and loaded as one ``.npz`` without pickle.
``jv.widgets.TrainingReplay(recording)`` replays it with a slider.

Example::

    import jaxvis as jv

    rec = jv.Recorder(x_probe, layers=["act1", "act3"], every=1, model=model)
    for step in range(101):
        ...                                   # your own training step
        rec.record(step, model, metrics={"loss": loss})
    rec.save("run.npz")
    recording = jv.Recording.load("run.npz")
"""

from jaxvis.training.recorder import Recorder
from jaxvis.training.recording import STATS, TB_PERCENTILES, Recording

__all__ = ["STATS", "TB_PERCENTILES", "Recorder", "Recording"]
