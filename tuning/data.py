"""The data of a search: the spec's source loaded once, checked, split and described.

`load_data` reads the source (`sources`), keeps the classes asked for and splits off the held-out sets
(`splits`), checking the images once for the whole search; `describe` gives the input shape and class count
without loading the images (for `validate`). Images stay raw (uint8 where the source is uint8): rescaling and
resizing are layers inside the model, so the saved model takes the same images the user has. The test set is
held out for the final evaluation only. Numpy only: no TensorFlow on this path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .lazy_images import LazyImages
from .sources import BUILTIN_NAMES, BUILTIN_SHAPES, LOADERS, arrays_needed, from_arrays, image_origin, npz_header, resolve, test_manifest
from .splits import at_most, check_classes, enough_to_split, keep_classes, stratified_split, stratified_subset
from .wording import counted


@dataclass(frozen=True)
class Dataset:
    """Split, validated arrays for one search (NHWC images, integer labels)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    origin: str
    value_max: float
    skipped: tuple[dict[str, str], ...] = field(default=())

    @property
    def streamed(self) -> bool:
        """True when the images stay in the on-disk cache and are read batch by batch."""
        return isinstance(self.x_train, LazyImages)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "classes": list(self.class_names),
            "image_shape": list(self.input_shape),
            "dtype": str(self.x_train.dtype),
            "value_max": self.value_max,
            "train": int(len(self.y_train)),
            "validation": int(len(self.y_val)),
            "test": int(len(self.y_test)),
            "in_memory": not self.streamed,
            "skipped_files": len(self.skipped),
            "skipped": list(self.skipped[:100]),
        }

    def class_weights(self) -> dict[int, float]:
        """`balanced` weights: n / (classes * count), so every class weighs the same in the loss."""
        counts = np.bincount(self.y_train, minlength=self.num_classes)
        return {i: float(len(self.y_train) / (self.num_classes * c)) for i, c in enumerate(counts) if c}


def data_text(summary: dict[str, Any]) -> str:
    """One line for people: where the images came from, classes, shape and split sizes (from `Dataset.summary`)."""
    shape = "x".join(map(str, summary.get("image_shape", [])))
    return (
        f"{summary.get('origin', '')}: {len(summary.get('classes', []))} classes, images {shape} {summary.get('dtype', '')}; "
        f"train {summary.get('train')}, validation {summary.get('validation')}, test {summary.get('test')}"
    )


def skipped_text(summary: dict[str, Any], examples: int = 3, where: str = "the first 100 paths in run.json, data.skipped") -> str | None:
    """The unreadable files a source skipped, the first few by name, or None: a skipped file must not go unseen."""
    count = int(summary.get("skipped_files") or 0)
    if not count:
        return None
    shown = summary.get("skipped", [])[:examples]
    short = _short_names([s["file"] for s in shown])
    named = "; ".join(f"{short[s['file']]}: {s['reason'].replace(s['file'], short[s['file']])}" for s in shown)
    more = f"; {count - examples} more" if count > examples else ""
    return f"{counted(count, 'unreadable file')} skipped ({named}{more}; {where})"


def _short_names(files: Sequence[str]) -> dict[str, str]:
    """`Cat/666.jpg` for each file: the fewest trailing parts (two at least, a class folder and a name) that tell it
    from the others listed, so `train/c0/bad.png` and `test/c0/bad.png` are not both `c0/bad.png`."""
    parts = {file: Path(file).parts for file in files}
    short = {}
    for file, own in parts.items():
        depth = min(2, len(own))
        while depth < len(own) and any(other[-depth:] == own[-depth:] for f, other in parts.items() if f != file):
            depth += 1
        short[file] = str(Path(*own[-depth:]))
    return short


def describe(
    data_spec: Any,
    base_dir: Path,
    arrays: Sequence[np.ndarray] | None = None,
    class_names: Sequence[str] | None = None,
    *,
    spec_file: str | None = None,
) -> tuple[tuple[int, int, int], int]:
    """Input shape the model sees (after `image_size`) and class count, cheaply (for `validate`); `arrays`
    replace the spec's source, as in `load_data`. `spec_file` names the spec in the refusal of `source: arrays`
    without arrays (`arrays_needed`)."""
    names: Sequence[str] | None = None  # the class names, where they are known without loading the images
    origin = str(data_spec.source)
    if arrays is None and data_spec.source == "arrays":
        raise arrays_needed(spec_file)
    if arrays is not None:
        raw = from_arrays(arrays, class_names)
        shape, names, origin = _image_shape(raw.x_train.shape, raw.origin, "train"), raw.class_names, raw.origin
        classes = len(names)
    elif data_spec.source in BUILTIN_SHAPES:
        shape, classes = BUILTIN_SHAPES[data_spec.source]
        names = BUILTIN_NAMES.get(data_spec.source) if not (data_spec.source.startswith("cifar") and data_spec.path) else None
    elif data_spec.source in ("folder", "manifest"):
        from .images import MODES, list_folder
        from .manifests import read_manifests

        path = resolve(data_spec.path, base_dir, "data.path")
        listing = list_folder(path) if data_spec.source == "folder" else read_manifests(path, test_manifest(data_spec, base_dir), data_spec)
        if not listing.files:
            raise DataError(f"{listing.origin}: no image files found")
        size = data_spec.image_size or [1, 1]
        shape, classes = (size[0], size[1], MODES[data_spec.color_mode][1]), len(listing.class_names)
        names, origin = listing.class_names, image_origin(data_spec)
    else:
        shape, classes = npz_header(resolve(data_spec.path, base_dir, "data.path"))
    if data_spec.classes:
        if names is not None:
            check_classes(data_spec.classes, names, origin)
        classes = len(data_spec.classes)
    if classes < 2:
        raise DataError(f"data.path: {data_spec.path} holds only one class; {_one_class}")
    if data_spec.image_size:
        shape = (data_spec.image_size[0], data_spec.image_size[1], shape[2])
    return shape, classes


_one_class = "classification needs at least 2 classes: one sub-folder (or label) per class"


def network_shape(image_size: Sequence[int] | None, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The shape the convolutions see: the images' own, or `data.image_size` for arrays the model resizes."""
    return (int(image_size[0]), int(image_size[1]), input_shape[2]) if image_size else input_shape


def load_data(data_spec: Any, base_dir: Path, seed: int, arrays: Sequence[np.ndarray] | None = None, class_names: Sequence[str] | None = None) -> Dataset:
    """Load, check and split the data once for a whole search; `arrays` replace the spec's source."""
    raw = from_arrays(arrays, class_names) if arrays is not None else LOADERS[data_spec.source](data_spec, base_dir)
    if data_spec.classes:
        raw = keep_classes(raw, list(data_spec.classes))
    if len(raw.class_names) < 2:
        raise DataError(f"{raw.origin}: only one class ({', '.join(map(repr, raw.class_names))}); {_one_class}")
    rng = np.random.default_rng(seed)
    x_train, y_train = _standardize(raw.x_train, raw.y_train, raw.origin, "train", raw.class_names)
    enough_to_split(y_train, raw, data_spec)
    if raw.x_test is not None and raw.y_test is not None:
        x_test, y_test = _standardize(raw.x_test, raw.y_test, raw.origin, "test", raw.class_names)
        _same_shape(x_test, x_train, raw.origin, "test")
    else:
        keep, held = stratified_split(y_train, data_spec.test_split, rng, raw.origin)
        x_train, y_train, x_test, y_test = x_train[keep], y_train[keep], x_train[held], y_train[held]
    if data_spec.max_test_samples and data_spec.max_test_samples < len(y_test):
        keep = stratified_subset(y_test, data_spec.max_test_samples, rng)
        x_test, y_test = x_test[keep], y_test[keep]
    if raw.x_val is not None and raw.y_val is not None:
        x_val, y_val = _standardize(raw.x_val, raw.y_val, raw.origin, "validation", raw.class_names)
        _same_shape(x_val, x_train, raw.origin, "validation")
        train, held = np.arange(len(y_train)), np.arange(len(y_val))
    else:  # the validation images are held out of the training images
        x_val, y_val = x_train, y_train
        train, held = stratified_split(y_train, data_spec.validation_split, rng, raw.origin)
    train, held = at_most(data_spec.max_train_samples, train, held, y_train, y_val, rng)
    present = np.unique(y_train[train])
    if len(present) < len(raw.class_names):
        missing = sorted(set(range(len(raw.class_names))) - set(present.tolist()))
        raise DataError(
            f"{raw.origin}: classes {[raw.class_names[i] for i in missing]} have no training images after the split; add images or raise data.max_train_samples"
        )
    x_train, y_train, x_val, y_val = x_train[train], y_train[train], x_val[held], y_val[held]
    value_max = raw.value_max or (255.0 if x_train.dtype == np.uint8 else (1.0 if np.max(x_train) <= 1.0 else 255.0))
    if isinstance(x_train, LazyImages) and not _stream(data_spec, x_train.nbytes + x_val.nbytes + x_test.nbytes):
        x_train, x_val, x_test = np.asarray(x_train), np.asarray(x_val), np.asarray(x_test)
    return Dataset(x_train, y_train, x_val, y_val, x_test, y_test, raw.class_names, raw.origin, value_max, tuple(raw.skipped))


def _same_shape(x: Any, x_train: Any, origin: str, part: str) -> None:
    if x.shape[1:] != x_train.shape[1:]:
        raise DataError(f"{origin}: {part} images are {x.shape[1:]} but training images are {x_train.shape[1:]}; all sets must have one image shape")


def _stream(data_spec: Any, nbytes: int) -> bool:
    """Read batches from the cache (instead of loading it) when asked, or when it would fill half the free memory."""
    setting = getattr(data_spec, "in_memory", "auto")
    if setting != "auto":
        return not setting
    return nbytes > available_memory() / 2


def available_memory() -> int:
    """Bytes of memory available to new allocations (Linux `MemAvailable`; elsewhere, assume plenty)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2**62


def _standardize(x: np.ndarray, y: np.ndarray, origin: str, part: str, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    num_classes = len(class_names)
    x, y = (x if isinstance(x, LazyImages) else np.asarray(x)), np.asarray(y)
    _image_shape(x.shape, origin, part)
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"{origin}: x_{part} has dtype {x.dtype}; expected numbers (uint8 0-255 or floats)")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        raise DataError(f"{origin}: x_{part} contains NaN or infinite pixel values; every pixel must be a finite number")
    if y.ndim == 2 and y.shape[1] > 1:
        y = np.argmax(y, axis=1)
    y = y.reshape(-1)
    if len(y) != len(x):
        raise DataError(f"{origin}: x_{part} has {len(x)} images but y_{part} has {len(y)} labels; they must match one to one")
    if len(y) == 0:
        raise DataError(f"{origin}: the {part} set is empty")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.equal(np.mod(y, 1), 0)):
            y = y.astype(np.int64)
        else:
            raise DataError(f"{origin}: y_{part} has dtype {y.dtype}; expected integer class indices 0..{num_classes - 1}")
    if y.min() < 0 or y.max() >= num_classes:
        raise DataError(f"{origin}: y_{part} has labels from {int(y.min())} to {int(y.max())}; expected 0..{num_classes - 1} ({num_classes} classes)")
    empty = sorted(set(range(num_classes)) - set(np.unique(y).tolist()))
    if part == "train" and empty:
        names = ", ".join(repr(class_names[i]) for i in empty)
        raise DataError(
            f"{origin}: no training images of {names} (class index {', '.join(map(str, empty))}); every class needs some, "
            "so a class found only among the test images cannot be learned: add training images or leave the class out (data.classes)"
        )
    if x.dtype != np.uint8:
        x = np.asarray(x).astype(np.float32)
    return x, y.astype(np.int64)


def _image_shape(shape: tuple[int, ...], origin: str, part: str) -> tuple[int, int, int]:
    """One image's (height, width, channels) in an array of images, (N, H, W) or (N, H, W, C)."""
    if len(shape) == 3:
        shape = (*shape, 1)
    if len(shape) != 4 or shape[-1] not in (1, 3, 4):
        raise DataError(f"{origin}: x_{part} has shape {shape}; expected (N, H, W) or (N, H, W, C) with C = 1, 3 or 4")
    return int(shape[1]), int(shape[2]), int(shape[3])
