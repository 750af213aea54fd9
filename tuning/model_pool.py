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


@dataclasses.dataclass
class _Pooled:
    model: keras.Model
    optimizer_start: list[np.ndarray]  # the optimizer's variables before any step (Adam's moments at zero, ...)
    params: int


class ModelPool:
    """Compiled models by network, least recently used first out; at most `max_models` and `max_params`."""

    def __init__(self, max_models: int = MAX_MODELS, max_params: int = MAX_PARAMS):
        self.max_models, self.max_params = max_models, max_params
        self._pooled: OrderedDict[str, _Pooled] = OrderedDict()
        self._start: dict[int, list[np.ndarray]] = {}  # id(model) -> optimizer_start, for models out of the pool
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._pooled)

    def __contains__(self, key: str) -> bool:
        return key in self._pooled

    def take(self, key: str, fresh: keras.Model, learning_rate: float) -> keras.Model | None:
        """The pooled model for `key` (removed from the pool while a trial trains it), set to `fresh`'s values
        and a never-trained optimizer at `learning_rate`; None if there is none."""
        pooled = self._pooled.pop(key, None)
        if pooled is None:
            self.misses += 1
            return None
        model = pooled.model
        targets, sources = model.variables, fresh.variables
        if len(targets) != len(sources) or any(tuple(a.shape) != tuple(b.shape) for a, b in zip(targets, sources)):
            self.misses += 1  # not the same network after all: never train on mismatched values
            return None
        for target, source in zip(targets, sources):  # weights, batch-norm statistics, dropout seed states
            target.assign(source)
        for variable, start in zip(model.optimizer.variables, pooled.optimizer_start):
            variable.assign(start)
        model.optimizer.learning_rate = learning_rate
        self._start[id(model)] = pooled.optimizer_start
        self.hits += 1
        return model

    def remember_start(self, model: keras.Model) -> None:
        """Record a newly built model's untrained optimizer state (call before its first step)."""
        self._start[id(model)] = [np.array(keras.ops.convert_to_numpy(v)) for v in model.optimizer.variables]

    def give(self, key: str, model: keras.Model) -> None:
        """Return a model after a trial that ended normally; evict the least recently used beyond the limits."""
        start = self._start.pop(id(model), None)
        params = int(model.count_params())
        if start is None or params > self.max_params:
            return
        self._pooled.pop(key, None)
        self._pooled[key] = _Pooled(model, start, params)
        while len(self._pooled) > self.max_models or sum(p.params for p in self._pooled.values()) > self.max_params:
            self._pooled.popitem(last=False)

    def discard(self, model: keras.Model | None) -> None:
        """Forget a model whose trial failed (its state is not trusted, and it may be what ran out of memory)."""
        if model is not None:
            self._start.pop(id(model), None)

    def clear(self) -> None:
        self._pooled.clear()
        self._start.clear()
