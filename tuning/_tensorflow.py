"""The only place that imports TensorFlow directly: GPU set-up for the TensorFlow backend."""

from __future__ import annotations


def prepare_gpus() -> list[str]:
    """Enable memory growth on every GPU, so several workers can share one; return their names."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised by an earlier search in this process
    return [gpu.name for gpu in gpus]
