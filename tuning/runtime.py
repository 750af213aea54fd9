"""The machine a search runs on: quiet logs, GPU memory growth, versions and device for the manifest."""

from __future__ import annotations

import contextlib
import gc
import importlib.abc
import importlib.util
import logging
import os
import platform
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from types import FrameType
from typing import Any, NoReturn


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
        with muted_stderr(), _optional_imports_skipped():
            import keras  # noqa: F401


# Imports that Keras makes at its own import only if the package is installed, for features tuning never uses,
# by the module making them (a prefix): TFLite's converter from JAX functions and a JAX-version shim for Keras'
# Orbax checkpoint callback (JAX, on TensorFlow: 0.5-1.4 s and ~95 MB at every search's start on 2 cores).
OPTIONAL_IMPORTS: dict[str, tuple[str, ...]] = {"jax": ("tensorflow.lite.python.util", "keras.src.callbacks.orbax_checkpoint")}
# ... and, in a `tuning` command's own process only (`skip_keras_extras`), Keras' scikit-learn wrappers and its
# image-gallery plot: 0.8-1.3 s and ~70 MB at the start of every `predict`, `export` and worker process, which
# draw no report (a search imports both later, for its report, when it needs them).
KERAS_EXTRAS: dict[str, tuple[str, ...]] = {"sklearn": ("keras.src.wrappers.",), "matplotlib": ("keras.src.visualization.",)}


def skip_keras_extras() -> None:
    """Leave out `KERAS_EXTRAS` when this process imports Keras: for the `tuning` executable, whose process
    is its own. Not for the Python API: in a user's session `keras.wrappers` would lack scikit-learn for good."""
    OPTIONAL_IMPORTS.update(KERAS_EXTRAS)


class _OptionalImportsSkipped(importlib.abc.MetaPathFinder):
    """Fails the `OPTIONAL_IMPORTS`, made from their modules alone, as if the package were not installed."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        importers = OPTIONAL_IMPORTS.get(name)
        if importers and str(_importer()).startswith(importers):
            raise ModuleNotFoundError(f"tuning skips this optional import of {name}", name=name)
        return None


def _importer() -> str | None:
    """The module whose code runs the import being resolved (the first frame outside the import machinery)."""
    frame: FrameType | None = sys._getframe(2)
    while frame is not None and str(frame.f_globals.get("__name__")).partition(".")[0] == "importlib":
        frame = frame.f_back
    return frame.f_globals.get("__name__") if frame is not None else None


@contextlib.contextmanager
def _optional_imports_skipped() -> Iterator[None]:
    """During Keras' import the `OPTIONAL_IMPORTS` fail as if their packages were absent, and the modules that
    tried them stay so for the process (TFLite's `experimental_from_jax` is unavailable in it, and in a
    `tuning` command `keras.wrappers`' scikit-learn estimators). Keras' JAX backend, which imports JAX before
    them, and any later import of the same packages work as usual."""
    finder = _OptionalImportsSkipped()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


@contextlib.contextmanager
def saving_without_tensorflow() -> Iterator[None]:
    """For a `model.save`: Keras' serializer asks whether TensorFlow is installed (to recognise its shape and
    dtype objects) and so imports it when it is, whatever the backend: ~4 s and ~470 MB at the end of a JAX
    or PyTorch search that never used TensorFlow. While TensorFlow is not imported no object can be one of
    its types, so Keras is told it is absent for the save (private API: `keras.src.utils.module_utils`, a
    test watches it) and asks again afterwards."""
    from keras.src.utils import module_utils

    lazy = getattr(module_utils, "tensorflow", None)
    if "tensorflow" in sys.modules or lazy is None or getattr(lazy, "_available", None) is not None:
        yield
        return
    lazy._available = False
    try:
        yield
    finally:
        lazy._available = None


@contextlib.contextmanager
def signals_handled(handler: Any, *signals: int) -> Iterator[None]:
    """`handler` for `signals` inside the block, the previous handlers back after it. Off the main thread, where
    Python refuses signal handlers, the block runs with the process's own."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, earlier in previous.items():
            signal.signal(sig, earlier)


def exit_without_final_collections(code: int) -> NoReturn:
    """Exit with `code`, leaving out Python's last garbage collections over the ~10^6 objects of TensorFlow's
    and Keras' modules (1.3-1.4 s on 2 cores, for a process that imported them); the operating system frees
    the memory anyway. Output is flushed and `atexit` handlers run; objects freed by reference counting are
    finalized as usual, but those held in reference cycles are not (tuning closes its files and writers
    before it returns, and depends on no finalizer)."""
    sys.stdout.flush()
    sys.stderr.flush()
    gc.freeze()
    sys.exit(code)


def backend() -> str:
    import keras

    return str(keras.backend.backend())


@dataclass(frozen=True)
class Accelerator:
    """What the backend will train on: `cpu` or `gpu`, how many, and the first GPU's compute capability."""

    kind: str = "cpu"
    count: int = 0
    compute_capability: tuple[int, int] | None = None
    names: tuple[str, ...] = ()
    compile_cache: str | None = None  # where compiled steps are kept for reuse (JAX), see `reuse_compiled_programs`

    def describe(self) -> str:
        if self.kind == "cpu":
            return "CPU"
        return f"{self.count} {self.kind.upper()} ({', '.join(self.names)})"


def precision_policy(setting: bool | str, accelerator: Accelerator) -> str:
    """The Keras dtype policy for `training.mixed_precision` on `accelerator`.

    `auto`: mixed precision on GPUs only (bfloat16 from compute capability 8.0, Ampere and later, which
    needs no loss scaling; float16 before, where Keras wraps the optimizer in a LossScaleOptimizer), float32
    on CPU, where neither is faster. `true` forces it (bfloat16 on CPU); `false` keeps float32.
    """
    if setting is False or (setting == "auto" and accelerator.kind != "gpu"):
        return "float32"
    if accelerator.kind == "gpu" and (accelerator.compute_capability or (0, 0)) < (8, 0):
        return "mixed_float16"
    return "mixed_bfloat16"


def jit_setting(setting: bool | str, accelerator: Accelerator, backend_name: str = "tensorflow") -> bool | str:
    """`training.jit_compile`: XLA where it pays. On TensorFlow XLA is optional (steps run as graphs either
    way), and on 2 CPU cores it made a small CNN's epochs 2.2x slower and its first epoch 5x
    (`bench/cpu_defaults.py`): `auto` means off there. On JAX it is how a step is compiled at all: without
    it Keras runs each step op by op (on 2 CPU cores 1.6x slower epochs, a 3.5x slower first epoch and 60%
    more memory), so, like GPUs and PyTorch, JAX gets Keras' own `auto` (on for JAX, off for PyTorch)."""
    if setting == "auto":
        return False if accelerator.kind == "cpu" and backend_name == "tensorflow" else "auto"
    return bool(setting)


STEPS_PER_EXECUTION = 32


def steps_per_execution(setting: int | str, backend_name: str, file: str | None = None, *, on_gpu: bool = False) -> int:
    """`training.steps_per_execution`: training steps run per call into the backend. On TensorFlow each call
    costs Python and `tf.data` work between steps; running 32 per call (a `tf.while_loop`) made the steady
    epochs of the benchmark's small CNNs 15-25% faster on 2 CPU cores, with the same first epoch
    (`bench/cpu_defaults.py`). JAX's Keras trainer runs the N steps one by one from Python but skips its
    per-call bookkeeping: no gain on CPU, where the step dominates, but 1.45x the images per second on an
    H100, where the host is the limit (`bench/gpu.sh steps`). PyTorch allows only 1."""
    if setting == "auto":
        return STEPS_PER_EXECUTION if backend_name == "tensorflow" or (backend_name == "jax" and on_gpu) else 1
    if backend_name == "torch" and int(setting) > 1:
        from .errors import Problem, SpecError

        message = f"{setting} needs the TensorFlow or JAX backend: Keras runs one step per call on PyTorch (KERAS_BACKEND=torch). Use auto or 1."
        raise SpecError([Problem("training.steps_per_execution", message, file)])
    return int(setting)


def compile_options(spec: Any, accelerator: Accelerator) -> dict[str, Any]:
    """How every trial's model is compiled, from the spec's `training` section and the machine."""
    name = backend()
    return {
        "jit_compile": jit_setting(spec.training.jit_compile, accelerator, name),
        "steps_per_execution": steps_per_execution(spec.training.steps_per_execution, name, spec.file, on_gpu=accelerator.kind == "gpu"),
    }


@contextlib.contextmanager
def long_lived_objects_frozen() -> Iterator[None]:
    """Move every object that exists now (TensorFlow's and Keras' modules, the data: ~480,000 objects) out of
    the garbage collector's sight for the trials that follow. Each trial's `clear_session` runs a full
    collection; with them frozen it takes ~0.02 s instead of ~0.45 s on 2 cores. Unfrozen afterwards."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def seed_trial(seed: int) -> None:
    """`keras.utils.set_random_seed(seed)` less TensorFlow's global seed. Setting that clears TensorFlow's
    caches of instantiated functions, so each trial's first epoch optimised its training and evaluation graphs
    again: +0.3-0.5 s per trial on 2 cores, about a fifth of a search's trial loop (bench/README.md, "The
    first epoch of every trial"). Keras 3 draws every random number of a model (initializers, dropout,
    augmentation) from its own seeds, which this sets as `set_random_seed` does, and tuning draws the training
    data's order from the seed explicitly (`batches.epoch_order`): TensorFlow's global seed drives none of them."""
    import random

    import numpy as np
    from keras.src.backend.common import global_state
    from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR
    from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED

    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(GLOBAL_SEED_GENERATOR, None)  # recreated from the seed when next drawn
    random.seed(seed)
    np.random.seed(seed)
    if backend() == "torch":
        import torch

        torch.manual_seed(seed)


def seed_epoch(seed: int, epoch: int) -> None:
    """Seed the global generators that Keras draws an epoch's randomness from, from a trial's seed and the
    epoch's index (0-based) alone, so that a resumed epoch draws what it would have drawn in one uninterrupted
    run. On PyTorch, dropout without a seed of its own (Keras' fast path) and the order of arrays in memory
    (torch's sampler) come from torch's generator; on JAX that order comes from numpy's (Keras' array adapter
    calls `np.random.permutation` as the epoch's first batch is read). TensorFlow's order is our own
    (`batches.epoch_order`)."""
    import numpy as np

    state = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
    if backend() == "torch":
        import torch

        torch.manual_seed(state)
    elif backend() == "jax":
        np.random.seed(state)


def random_state(model: Any) -> list[list[int]]:
    """The state of a model's random number generators (dropout, augmentation: each layer's seed generator),
    which Keras keeps in variables that are not weights, so `save_weights` leaves them out."""
    import keras

    weights = {id(w) for w in model.weights}
    return [keras.ops.convert_to_numpy(v).tolist() for v in model.variables if id(v) not in weights]


def restore_random_state(model: Any, state: list[list[int]] | None) -> None:
    """Set what `random_state` read (a resume point written before it was saved has none: left as built)."""
    import numpy as np

    weights = {id(w) for w in model.weights}
    variables = [v for v in model.variables if id(v) not in weights]
    if state is None or len(state) != len(variables):
        return
    for variable, value in zip(variables, state):
        variable.assign(np.asarray(value, dtype=variable.dtype))


def clear_session(keep_instantiated: bool = False) -> None:
    """Free the previous trial's models and graphs (on TensorFlow, also what `clear_session` leaves behind).
    `keep_instantiated` keeps TensorFlow's cache of instantiated functions, which Keras' `clear_session`
    empties: pooled models (`model_pool`) would otherwise optimise their graphs again at their next use."""
    import keras

    policy = keras.config.dtype_policy()
    if keep_instantiated and backend() == "tensorflow":
        from ._tensorflow import instantiated_functions_kept

        with instantiated_functions_kept():
            keras.backend.clear_session()
    else:
        keras.backend.clear_session()
    keras.config.set_dtype_policy(policy)  # clear_session resets Keras' global state, the dtype policy included
    if backend() == "tensorflow":
        from ._tensorflow import forget_custom_gradients

        forget_custom_gradients()


def prepare_devices() -> Accelerator:
    """Configure accelerators the way the backends' guides prescribe (memory growth); say what there is."""
    name = backend()
    if name == "tensorflow":
        from ._tensorflow import prepare_gpus

        gpus, capability = prepare_gpus()
        return Accelerator("gpu", len(gpus), capability, tuple(gpus)) if gpus else Accelerator()
    if name == "jax":
        import jax

        cache = reuse_compiled_programs()
        devices = [d for d in jax.devices() if d.platform == "gpu"]
        if not devices:
            return Accelerator(compile_cache=cache)
        capability = getattr(devices[0], "compute_capability", None)
        major_minor = tuple(int(p) for p in str(capability).split(".")[:2]) if capability else None
        return Accelerator("gpu", len(devices), major_minor, tuple(str(d.device_kind) for d in devices), cache)  # type: ignore[arg-type]
    if name == "torch":
        import torch

        if not torch.cuda.is_available():
            return Accelerator()
        count = torch.cuda.device_count()
        return Accelerator("gpu", count, tuple(torch.cuda.get_device_capability(0)), tuple(torch.cuda.get_device_name(i) for i in range(count)))  # type: ignore[arg-type]
    return Accelerator()


COMPILE_CACHE_BYTES = 2**30


def reuse_compiled_programs() -> str | None:
    """On JAX, keep compiled training and evaluation steps on disk and reuse them across trials and runs.

    XLA compiles each trial's steps again, about 2.6 s per trial on an H200 against 0.1-0.9 s epochs, most
    of a GPU search's time. A Hyperband promotion retrains the same model, and trials that differ only in
    values held in variables (learning rate, momentum, weight decay) compile to the same program: JAX's
    persistent cache, keyed by the program, serves them (measured on 2 CPU cores, a 2-block CNN's first epoch
    in a new run: 3.3 s with a cold cache, 1.9 s with a warm one, 1.4-1.5 s later). Folder:
    `TUNING_COMPILE_CACHE` (`off` to disable), else `~/.cache/tuning/jax`, at most 1 GiB (least recently used
    entries go; JAX needs `filelock` for that, a dependency of ours). A cache folder the user set for JAX is
    kept as it is.
    """
    import jax

    configured = getattr(jax.config, "values", {}).get("jax_compilation_cache_dir")
    if configured:
        return str(configured)
    setting = os.environ.get("TUNING_COMPILE_CACHE", "")
    if setting.lower() == "off":
        return None
    folder = setting or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "tuning", "jax")
    jax.config.update("jax_compilation_cache_dir", folder)
    options: dict[str, float] = {}
    if importlib.util.find_spec("filelock") is not None:  # JAX needs it to evict; without it a size cap breaks the cache
        options["jax_compilation_cache_max_size"] = COMPILE_CACHE_BYTES
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        options["jax_persistent_cache_min_compile_time_secs"] = 0.2  # the steps, not every small helper
    for option, value in options.items():
        with contextlib.suppress(AttributeError, KeyError, ValueError):  # options a JAX version lacks
            jax.config.update(option, value)
    return folder


@contextlib.contextmanager
def dtype_policy(policy: str) -> Iterator[None]:
    """Keras' global dtype policy for the duration of a search, restored afterwards."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


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
