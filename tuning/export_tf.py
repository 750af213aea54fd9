"""TensorFlow-only export: a SavedModel for serving and TFLite files, each checked once after writing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def write_savedmodel(model: Any, path: Path, input_shape: tuple[int, ...], dtype: str) -> Path:
    """A SavedModel whose `serve` signature takes raw images (original size and dtype) -> probabilities."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve",
        fn=lambda images: model(keras.ops.cast(images, "float32"), training=False),
        input_signature=[tf.TensorSpec((None, *input_shape), tf.as_dtype(dtype), name="images")],
    )
    archive.write_out(str(path), verbose=False)
    return path


def write_tflite(savedmodel: Path, path: Path, *, quantize: bool = False) -> Path:
    """Convert the SavedModel (float32, or dynamic-range quantized) and run the interpreter once."""
    import tensorflow as tf

    from .runtime import muted_stderr

    converter = tf.lite.TFLiteConverter.from_saved_model(str(savedmodel), signature_keys=["serve"])
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    with muted_stderr():  # the converter logs its MLIR passes to stderr
        path.write_bytes(converter.convert())
    return path


def tflite_predict(path: Path, images: np.ndarray) -> np.ndarray:
    """Probabilities from a TFLite file, one image at a time (the interpreter's fixed batch of 1)."""
    import tensorflow as tf

    from .runtime import muted_stderr

    with muted_stderr():  # a deprecation notice on load and an XNNPACK banner on the first run
        interpreter = tf.lite.Interpreter(model_path=str(path))
        runner = interpreter.get_signature_runner("serve")
        outputs = [next(iter(runner(images=images[i : i + 1]).values())) for i in range(len(images))]
    return np.concatenate(outputs, axis=0)


def savedmodel_predict(path: Path, images: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    return np.asarray(loaded.serve(tf.constant(images)))
