"""Models kept between trials, so a trial whose network was seen before does not build and trace it again.

A new Keras model costs about a second before its first step on 2 CPU cores, mostly TensorFlow tracing
its train and validation steps (on JAX: compiling them), as much as a whole 1-epoch Hyperband trial. Yet
trials often share a network: a promotion always continues its parent's, and a space whose structural
choices are few (filters and depth, with the learning rate tuned) repeats networks after a handful of
trials. A trial whose network (every setting but the learning rate and batch size) is in the pool takes
that model with its traced steps and gets the values a model of its own would start from: those of a
throwaway model built with the trial's seed (cheap: no optimizer, no trace), and the optimizer state of a
never-trained model. Its training is then the same as on a model of its own (a test compares histories).
"""

from __future__ import annotations

import dataclasses
import json
import weakref
from collections import OrderedDict

import keras
import numpy as np

from .space import TrialConfig

MAX_MODELS = 8
MAX_PARAMS = 20_000_000  # weights of every pooled model together (with Adam's two moments, ~240 MB in float32)


def network_key(config: TrialConfig) -> str:
    """What a traced training step depends on: everything but the values held in variables at run time (the
    learning rate) or not in the graph (the batch size: Keras traces batches of any size once)."""
    settings = dataclasses.asdict(config)
    del settings["learning_rate"], settings["batch_size"]
    return json.dumps(settings, sort_keys=True, default=str)


class ModelPool:
    """Compiled models by network, least recently used first out; at most `max_models` and `max_params`.
    Only models returned with `give` (after a trial that ended normally) are pooled."""

    def __init__(self, max_models: int = MAX_MODELS, max_params: int = MAX_PARAMS):
        self.max_models, self.max_params = max_models, max_params
        self._pooled: OrderedDict[str, keras.Model] = OrderedDict()
        # Each model's optimizer variables before any step (Adam's moments at zero, ...), for as long as it lives.
        self._start: weakref.WeakKeyDictionary[keras.Model, list[np.ndarray]] = weakref.WeakKeyDictionary()

    def __contains__(self, key: str) -> bool:
        return key in self._pooled

    def take(self, key: str, fresh: keras.Model, learning_rate: float) -> keras.Model | None:
        """The pooled model for `key` (out of the pool while a trial trains it), set to `fresh`'s values and a
        never-trained optimizer at `learning_rate`; None if there is none."""
        model = self._pooled.pop(key, None)
        if model is None:
            return None
        targets, sources = model.variables, fresh.variables
        if len(targets) != len(sources) or any(tuple(a.shape) != tuple(b.shape) for a, b in zip(targets, sources)):
            return None  # not the same network after all: never train on mismatched values
        for target, source in zip(targets, sources):  # weights, batch-norm statistics, dropout seed states
            target.assign(source)
        for variable, start in zip(model.optimizer.variables, self._start[model]):
            variable.assign(start)
        model.optimizer.learning_rate = learning_rate
        return model

    def remember_start(self, model: keras.Model) -> None:
        """Record a newly built model's untrained optimizer state (call before its first step)."""
        self._start[model] = [np.array(keras.ops.convert_to_numpy(v)) for v in model.optimizer.variables]

    def give(self, key: str, model: keras.Model) -> None:
        """Return a model after a trial that ended normally; evict the least recently used beyond the limits."""
        if model not in self._start or model.count_params() > self.max_params:
            return
        self._pooled.pop(key, None)
        self._pooled[key] = model
        while len(self._pooled) > self.max_models or sum(m.count_params() for m in self._pooled.values()) > self.max_params:
            self._pooled.popitem(last=False)

    def clear(self) -> None:
        self._pooled.clear()
