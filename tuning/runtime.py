"""The machine a search runs on: quiet logs, GPU memory growth, versions and device for the manifest."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
import warnings
from collections.abc import Iterator
from importlib import metadata


@contextlib.contextmanager
def muted_stderr() -> Iterator[None]:
    """Silence the process's stderr (C++ logging included) for a block; Python exceptions still propagate."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            saved = os.dup(2)
        except OSError:  # no real stderr (some notebook kernels): nothing to mute
            yield
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            sys.stderr.flush()
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def quiet_logs() -> None:
    """Import Keras (and its backend) without TensorFlow's C++ start-up chatter on stderr.

    TensorFlow prints CUDA probing lines before its logging is initialised, so `TF_CPP_MIN_LOG_LEVEL`
    alone does not silence them; the process's stderr is muted for the import only.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # e.g. retracing notices while analysing the best model
    if "keras" not in sys.modules:
        with muted_stderr():
            import keras  # noqa: F401


def backend() -> str:
    import keras

    return str(keras.backend.backend())


def clear_session() -> None:
    """Free the previous trial's models and graphs (on TensorFlow, also what `clear_session` leaves behind)."""
    import keras

    keras.backend.clear_session()
    if backend() == "tensorflow":
        from ._tensorflow import forget_custom_gradients

        forget_custom_gradients()


def prepare_devices() -> str:
    """Configure accelerators the way the backends' guides prescribe; return the device in words."""
    name = backend()
    if name == "tensorflow":
        from ._tensorflow import prepare_gpus

        gpus = prepare_gpus()
        return f"{len(gpus)} GPU ({', '.join(gpus)})" if gpus else "CPU"
    if name == "jax":
        import jax

        devices = jax.devices()
        return ", ".join(sorted({d.platform.upper() for d in devices}))
    if name == "torch":
        import torch

        return f"GPU ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "CPU"
    return "unknown"


def versions() -> dict[str, str]:
    """Versions recorded in `run.json`, read from package metadata (no heavy imports)."""
    out = {"python": platform.python_version()}
    for package in ("tuning", "tensorflow", "keras", "keras-tuner", "tensorboard", "numpy", "jax", "torch"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            if package == "tensorflow":
                try:
                    out[package] = metadata.version("tensorflow-cpu")
                except metadata.PackageNotFoundError:
                    pass
    return out
