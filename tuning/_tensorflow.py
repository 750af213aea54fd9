"""The only place that imports TensorFlow directly: GPU set-up and the data pipelines for the TensorFlow backend."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np


def prepare_gpus() -> tuple[list[str], tuple[int, int] | None]:
    """Enable memory growth on every GPU, so several workers can share one; their names and the first's capability."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised by an earlier search in this process
    capability = None
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        capability = tuple(details["compute_capability"]) if details.get("compute_capability") else None
    return [gpu.name for gpu in gpus], capability  # type: ignore[return-value]


@contextlib.contextmanager
def instantiated_functions_kept() -> Iterator[None]:
    """Within it, clearing TensorFlow's cache of instantiated functions does nothing: Keras' `clear_session`
    clears it, and the models a search keeps (`model_pool`) would optimise their graphs again."""
    from tensorflow.python.eager import context

    eager = context.context()
    eager.clear_kernel_cache = lambda: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        del eager.clear_kernel_cache


def forget_custom_gradients() -> int:
    """Drop the `CustomGradient-N` entries that earlier trials' traces left in TensorFlow's gradient registry.

    Each trace of a Keras training step registers one through `tf.custom_gradient` and TensorFlow never
    removes it; the entry pins the whole traced graph, so a long search grew by about 8 MB per trial
    (bench/memory.py). After `clear_session()` those graphs are dead. Private API: a test watches it.
    """
    try:
        from tensorflow.python.framework import ops

        registry = ops._gradient_registry._registry
    except (ImportError, AttributeError):
        return 0
    stale = [name for name in registry if name.startswith("CustomGradient-")]
    for name in stale:
        del registry[name]
    return len(stale)


def held_out_batches(x: Any, y: Any, batch_size: int) -> Any:
    """A `tf.data` pipeline of (images, labels) batches, in order: built once and evaluated after every epoch
    of every trial. Given arrays, Keras builds and traces a new pipeline in each `fit` (~85 ms per trial on 2
    cores)."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).prefetch(1).with_options(_without_autotuning())


def training_batches(x: Any, y: Any, batch_size: int) -> tuple[Any, Callable[[np.ndarray], None]]:
    """A `tf.data` pipeline of (images, labels) batches in the row order last given to the function returned
    beside it (call it before each epoch; until then, the rows in order), with tf.data's autotuning off.

    The order sits in a variable that each batch gathers its rows' positions from, so an epoch's batches
    depend on the order given for that epoch alone, not on how many epochs this pipeline already served: a
    resumed trial then sees the batches the uninterrupted one did (`batches.fit_data`). Given arrays, Keras
    builds a pipeline with autotuning on, and ending an autotuned iterator (each new epoch does) stalled the
    next epoch's first step by ~1.1 s in about 4 epochs of 10 on 2 cores: a 1.3 s epoch took 2.5 s
    (`bench/README.md`, "tf.data's autotuning"). Ordering row positions, not images, keeps no second copy of
    the data."""
    import tensorflow as tf

    images, labels = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
    size = len(y)
    with tf.device("/CPU:0"):  # where tf.data runs, on a machine with GPUs too
        order = tf.Variable(tf.range(size, dtype=tf.int32), trainable=False)

    def batch(step: Any) -> tuple[Any, Any]:
        start = tf.cast(step, tf.int32) * batch_size
        rows = tf.gather(order, tf.range(start, tf.minimum(start + batch_size, size)))  # reads these rows only
        return tf.gather(images, rows), tf.gather(labels, rows)

    def reorder(rows: np.ndarray) -> None:
        order.assign(rows.astype(np.int32))

    steps = -(-size // batch_size)
    return tf.data.Dataset.range(steps).map(batch).prefetch(1).with_options(_without_autotuning()), reorder


def as_tensors(*arrays: Any) -> tuple[Any, ...]:
    """Arrays as TensorFlow tensors (a copy each)."""
    import tensorflow as tf

    return tuple(tf.convert_to_tensor(a) for a in arrays)


def _without_autotuning() -> Any:
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return options
