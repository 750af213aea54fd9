"""Feeding Keras: arrays in memory go to `fit` as they are; images streamed from the cache go batch by batch.

A `Batches` sequence reads each batch's rows from the memory-mapped cache in file order (sequential
reads), reshuffles every epoch with its own seed, and prefetches in threads while the model trains.
Keras 3 only (`keras.utils.PyDataset`), so it works on every backend.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from .data import LazyImages


class Batches(keras.utils.PyDataset):
    """`(images, labels)` batches of a `LazyImages` set; a shorter last batch, like `fit` on arrays."""

    def __init__(self, x: LazyImages, y: np.ndarray | None, batch_size: int, *, shuffle: bool = False, seed: int = 0):
        super().__init__(workers=2, use_multiprocessing=False, max_queue_size=4)
        self.x, self.y, self.batch_size, self.shuffle = x, y, int(batch_size), shuffle
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(x)) if shuffle else np.arange(len(x))

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index: int) -> Any:
        positions = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        images = self.x.rows(positions)
        return images if self.y is None else (images, self.y[positions])

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.order = self.rng.permutation(len(self.x))


def fit_data(x: Any, y: np.ndarray, batch_size: int, *, seed: int = 0) -> dict[str, Any]:
    """Keyword arguments of `model.fit` for training data held in memory or streamed, reshuffled every
    epoch from `seed`. On TensorFlow, arrays go in as a `tf.data` pipeline without autotuning (see
    `_tensorflow.training_batches`); on JAX and PyTorch as arrays, which Keras batches itself."""
    if isinstance(x, LazyImages):
        return {"x": Batches(x, y, batch_size, shuffle=True, seed=seed)}
    if keras.backend.backend() == "tensorflow":
        from ._tensorflow import training_batches

        return {"x": training_batches(x, y, batch_size, seed), "shuffle": False}
    return {"x": x, "y": y, "batch_size": batch_size}


def training_arrays(x: Any, y: np.ndarray) -> tuple[Any, Any]:
    """The training data as `fit_data` takes it, for a caller that trains on it many times to convert once: on
    TensorFlow, tensors, which each trial's pipeline would otherwise copy the arrays into (0.03-0.5 s per
    trial for CIFAR-10's 150 MB, mostly page faults on the fresh copy); elsewhere, the data unchanged."""
    if isinstance(x, LazyImages) or keras.backend.backend() != "tensorflow":
        return x, y
    from ._tensorflow import as_tensors

    return as_tensors(x, y)  # type: ignore[return-value]


def validation_data(x: Any, y: np.ndarray, batch_size: int = 256) -> dict[str, Any]:
    """Keyword arguments of `model.fit` for the held-out data. In batches of `batch_size`, whatever the
    trial's batch size (inference needs no small batches); on TensorFlow, arrays go in as one `tf.data`
    pipeline, which a caller evaluating it after many trials builds once (`SpecTuner` does)."""
    if isinstance(x, LazyImages):
        return {"validation_data": Batches(x, y, batch_size)}
    if keras.backend.backend() == "tensorflow":
        from ._tensorflow import held_out_batches

        return {"validation_data": held_out_batches(x, y, batch_size)}
    return {"validation_data": (x, y), "validation_batch_size": batch_size}


def evaluate(model: keras.Model, x: Any, y: np.ndarray, batch_size: int = 256) -> dict[str, float]:
    if isinstance(x, LazyImages):
        result = model.evaluate(Batches(x, y, batch_size), verbose=0, return_dict=True)
    else:
        result = model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
    return {k: float(v) for k, v in result.items()}


def predict(model: keras.Model, x: Any, batch_size: int = 256) -> np.ndarray:
    if isinstance(x, LazyImages):
        return np.asarray(model.predict(Batches(x, None, batch_size), verbose=0))
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
