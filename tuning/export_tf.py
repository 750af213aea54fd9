"""TensorFlow-only export: a SavedModel for serving and TFLite files, each checked once after writing.

On another Keras backend they are written by a TensorFlow child process from the model's `.keras` file
(`python -m tuning.export_tf`): JAX's SavedModel route cannot convert its random layers' seed state to
TFLite, and PyTorch's has no SavedModel at all.
"""

from __future__ import annotations

import functools
import json
import sys
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
    from .runtime import muted_stderr

    runner = _tflite_runner(str(path), Path(path).stat().st_mtime_ns)
    with muted_stderr():  # an XNNPACK banner on the first run
        outputs = [next(iter(runner(images=images[i : i + 1]).values())) for i in range(len(images))]
    return np.concatenate(outputs, axis=0)


def savedmodel_predict(path: Path, images: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    loaded = _savedmodel(str(path), (Path(path) / "saved_model.pb").stat().st_mtime_ns)
    return np.asarray(loaded.serve(tf.constant(images)))


# Loaded once per file (and version of it), not per batch: `evaluate` predicts a folder in batches.
@functools.lru_cache(maxsize=4)
def _tflite_runner(path: str, mtime_ns: int) -> Any:
    import tensorflow as tf

    from .runtime import muted_stderr

    with muted_stderr():  # a deprecation notice on load
        return tf.lite.Interpreter(model_path=path).get_signature_runner("serve")


@functools.lru_cache(maxsize=4)
def _savedmodel(path: str, mtime_ns: int) -> Any:
    import tensorflow as tf

    return tf.saved_model.load(path)


def convert(keras_file: str, out: str, shape: list[int], dtype: str, formats: list[str], quantize: bool) -> dict[str, str]:
    """The TensorFlow formats of a saved `.keras` model, written by the same exporters as in a TensorFlow process."""
    import keras

    from .export import EXPORTERS

    model = keras.saving.load_model(keras_file, safe_mode=True)
    paths: dict[str, Path] = {}
    for name in formats:
        paths.update(EXPORTERS[name](model, Path(out), tuple(shape), dtype, quantize))
    return {name: str(path) for name, path in paths.items()}


if __name__ == "__main__":  # run by `export` with KERAS_BACKEND=tensorflow: one JSON line in, one out
    from .runtime import quiet_logs

    quiet_logs()
    print(json.dumps(convert(**json.loads(sys.argv[1]))))
