"""Feeding Keras: the training data in a new order every epoch, drawn from the seed and the epoch's index alone.

On TensorFlow, arrays in memory go to `fit` as a `tf.data` pipeline; images streamed from the cache, on every
backend, as a `Batches` sequence, which reads each batch's rows from the memory-mapped cache in file order
(sequential reads) and prefetches in threads while the model trains (`keras.utils.PyDataset`). On JAX and
PyTorch, arrays in memory go to `fit` as they are.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from .lazy_images import LazyImages


def epoch_order(size: int, seed: int, epoch: int) -> np.ndarray:
    """The training rows' order in epoch `epoch` (0-based) of a trial seeded `seed`: a permutation drawn from
    the two alone, so epoch k of a trial resumed at epoch k, or of a Hyperband promotion starting there, has
    the order it would have had in one uninterrupted run, whatever came before.

    Example:
        >>> epoch_order(5, seed=3, epoch=1).tolist() == epoch_order(5, seed=3, epoch=1).tolist()
        True
    """
    return np.random.default_rng([seed, epoch]).permutation(size)


class Batches(keras.utils.PyDataset):
    """`(images, labels)` batches of a `LazyImages` set, in the order last given to `reorder` (default: the rows
    in order); a shorter last batch, like `fit` on arrays. Read ahead in two threads."""

    def __init__(self, x: LazyImages, y: np.ndarray | None, batch_size: int):
        super().__init__(workers=2, use_multiprocessing=False, max_queue_size=4)
        self.x, self.y, self.batch_size = x, y, int(batch_size)
        self.order = np.arange(len(x))

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index: int) -> Any:
        positions = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        images = self.x.rows(positions)
        return images if self.y is None else (images, self.y[positions])

    def reorder(self, order: np.ndarray) -> None:
        self.order = order


class _Reorder(keras.callbacks.Callback):
    """Gives the training data its order for each epoch before Keras reads a batch of it: Keras calls the
    callbacks' `on_epoch_begin`, with the epoch's index, before it starts the epoch's iterator."""

    def __init__(self, size: int, seed: int, reorder: Callable[[np.ndarray], None]):
        super().__init__()
        self.size, self.seed, self.reorder = size, seed, reorder

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.reorder(epoch_order(self.size, self.seed, epoch))


def fit_data(x: Any, y: np.ndarray, batch_size: int, *, seed: int = 0, callbacks: Sequence[keras.callbacks.Callback] = ()) -> dict[str, Any]:
    """Keyword arguments of `model.fit` for the training data, `callbacks` among them: each epoch's order is
    `epoch_order(len(y), seed, epoch)`, set by a callback at the epoch's start, for arrays on TensorFlow (a
    `tf.data` pipeline without autotuning, see `_tensorflow.training_batches`) and streamed images everywhere
    (`Batches`). On JAX and PyTorch, arrays go in as they are and Keras shuffles them, from a global generator
    that `callbacks.SeedEachEpoch` seeds from (trial seed, epoch) at each epoch's start: the same on resume."""
    data: Any
    reorder: Callable[[np.ndarray], None]
    if isinstance(x, LazyImages):
        data = Batches(x, y, batch_size)
        reorder = data.reorder
    elif keras.backend.backend() == "tensorflow":
        from ._tensorflow import training_batches

        data, reorder = training_batches(x, y, batch_size)
    else:  # Keras shuffles arrays itself: a `Batches` sequence of them made JAX's epochs 2-3x longer on 2 cores
        return {"x": x, "y": y, "batch_size": batch_size, "callbacks": list(callbacks)}
    return {"x": data, "shuffle": False, "callbacks": [_Reorder(len(y), seed, reorder), *callbacks]}


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
