"""Data sources: each turns the spec's `data` section into numpy arrays, loaded once per search.

Images stay raw (uint8 where the source is uint8): rescaling and resizing are layers inside the model,
so the saved model takes the same images the user has. Splits are stratified and seeded; the test set is
held out for the final evaluation only. Numpy only: no TensorFlow on this path.
"""

from __future__ import annotations

import gzip
import pickle
import tarfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .domains import repeated
from .errors import DataError
from .wording import counted, hinted

DIGIT_NAMES = tuple(str(i) for i in range(10))
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# Input shape and class count of the built-in sources, known without loading anything.
BUILTIN_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "digits": ((8, 8, 1), 10),
    "mnist": ((28, 28, 1), 10),
    "fashion_mnist": ((28, 28, 1), 10),
    "cifar10": ((32, 32, 3), 10),
    "cifar100": ((32, 32, 3), 100),
}
# Their class names, where they are fixed (CIFAR read from files takes the names in its meta file).
BUILTIN_NAMES: dict[str, tuple[str, ...]] = {"digits": DIGIT_NAMES, "mnist": DIGIT_NAMES, "fashion_mnist": FASHION_NAMES, "cifar10": CIFAR10_NAMES}


class LazyImages:
    """Rows of the memory-mapped image cache, read only when a batch needs them (data larger than memory).

    Indexing with a slice or an index array gives another `LazyImages`; an integer gives one image;
    `numpy.asarray` reads the rows into memory.
    """

    def __init__(self, base: np.ndarray, index: np.ndarray | None = None):
        self.base = base
        self.index = np.arange(len(base)) if index is None else np.asarray(index, dtype=np.int64)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.base.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype

    @property
    def ndim(self) -> int:
        return self.base.ndim

    @property
    def nbytes(self) -> int:
        return int(len(self.index) * self.base[:1].nbytes)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, np.integer)):
            return np.asarray(self.base[self.index[key]])
        return LazyImages(self.base, self.index[key])

    def rows(self, positions: np.ndarray) -> np.ndarray:
        """The images at `positions`, read in file order (fast on a memory map), returned in the order asked."""
        wanted = self.index[positions]
        order = np.argsort(wanted, kind="stable")
        out = np.empty((len(wanted), *self.base.shape[1:]), dtype=self.base.dtype)
        out[order] = self.base[wanted[order]]
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self.rows(np.arange(len(self.index)))
        return array if dtype is None else array.astype(dtype)


def concat(a: Any, b: Any) -> Any:
    """Concatenate image sets, keeping two views of one cache lazy."""
    if isinstance(a, LazyImages) and isinstance(b, LazyImages) and a.base is b.base:
        return LazyImages(a.base, np.concatenate([a.index, b.index]))
    return np.concatenate([np.asarray(a), np.asarray(b)])


@dataclass(frozen=True)
class RawData:
    """What a source yields before splitting: train arrays, optional test arrays, class names."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    class_names: tuple[str, ...]
    origin: str
    value_max: float | None = None  # brightest possible pixel, when the source knows it (digits: 16)
    x_val: np.ndarray | None = None  # a validation set of the source's own (folder `validation/`, manifest split)
    y_val: np.ndarray | None = None
    skipped: tuple[dict[str, str], ...] = ()


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


Loader = Callable[[Any, Path], RawData]
LOADERS: dict[str, Loader] = {}


def register(name: str) -> Callable[[Loader], Loader]:
    def add(loader: Loader) -> Loader:
        LOADERS[name] = loader
        return loader

    return add


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

        path = _resolve(data_spec.path, base_dir, "data.path")
        listing = list_folder(path) if data_spec.source == "folder" else read_manifests(path, _test_manifest(data_spec, base_dir), data_spec)
        if not listing.files:
            raise DataError(f"{listing.origin}: no image files found")
        size = data_spec.image_size or [1, 1]
        shape, classes = (size[0], size[1], MODES[data_spec.color_mode][1]), len(listing.class_names)
        names, origin = listing.class_names, _image_origin(data_spec)
    else:
        shape, classes = _npz_header(_resolve(data_spec.path, base_dir, "data.path"))
    if data_spec.classes:
        if names is not None:
            _check_classes(data_spec.classes, names, origin)
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
    _enough_to_split(y_train, raw, data_spec)
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
    train, held = _at_most(data_spec.max_train_samples, train, held, y_train, y_val, rng)
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


def _enough_to_split(y_train: np.ndarray, raw: RawData, data_spec: Any) -> None:
    """Every class needs an image for each set held out of its training images (validation, test) and one to
    train on; said before splitting, by the class's name and its count as the user sees it."""
    splits = [
        (part, fraction)
        for part, fraction, given in (("test", data_spec.test_split, raw.x_test), ("validate", data_spec.validation_split, raw.x_val))
        if given is None
    ]
    needed = next(n for n in range(1, 10_000) if _left_to_train(n, [fraction for _, fraction in splits]) >= 1)
    counts = np.bincount(y_train, minlength=len(raw.class_names))
    few = [f"{raw.class_names[i]!r} ({counted(int(n), 'image')})" for i, n in enumerate(counts) if 0 < n < needed]
    if few:
        held = " and ".join(f"to {part} on" for part, _ in splits)
        shares = " and ".join(f"{'test_split' if part == 'test' else 'validation_split'} {fraction}" for part, fraction in splits)
        raise DataError(
            f"{raw.origin}: too few images in class{'es' if len(few) > 1 else ''} {', '.join(few)}: each class needs at least {needed}, "
            f"some held out {held} ({shares} of every class, at least one image each) and one to train on. Add images, or give the "
            "held-out images separately (a test/ or validation/ folder, data.test_path)"
        )


def _left_to_train(images: int, fractions: Sequence[float]) -> int:
    """A class's training images after `stratified_split` held out each fraction in turn (0 if a split refuses)."""
    for fraction in fractions:
        if images < 2:
            return 0
        images -= min(images - 1, max(1, int(round(images * fraction))))
    return images


def _same_shape(x: Any, x_train: Any, origin: str, part: str) -> None:
    if x.shape[1:] != x_train.shape[1:]:
        raise DataError(f"{origin}: {part} images are {x.shape[1:]} but training images are {x_train.shape[1:]}; all sets must have one image shape")


def _at_most(
    max_train: int | None, train: np.ndarray, held: np.ndarray, y_train: np.ndarray, y_val: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`data.max_train_samples` training images (stratified), and the validation images cut in the same proportion.

    The cap is on the images the model trains on, as its name says: 300 gives 300, with 75 validation images
    beside them at the default 0.2 split (it once capped both together: 240 and 60).
    """
    if not max_train or max_train >= len(train):
        return train, held
    fraction = max_train / len(train)
    train = train[stratified_subset(y_train[train], max_train, rng)]
    validation = max(1, round(len(held) * fraction))
    if validation < len(held):
        held = held[stratified_subset(y_val[held], validation, rng)]
    return train, held


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


def keep_classes(raw: RawData, names: list[str]) -> RawData:
    """Only the classes named, relabelled 0..k-1 in the order given (e.g. three CIFAR-10 classes)."""
    from dataclasses import replace

    _check_classes(names, raw.class_names, raw.origin)
    index = {name: i for i, name in enumerate(raw.class_names)}
    mapping = np.full(len(raw.class_names), -1, dtype=np.int64)
    for new, name in enumerate(names):
        mapping[index[name]] = new

    def subset(x: np.ndarray | None, y: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
        if x is None or y is None:
            return x, y
        y = np.asarray(y).reshape(-1) if np.asarray(y).ndim == 1 or np.asarray(y).shape[-1] == 1 else np.argmax(y, axis=1)
        chosen = np.flatnonzero(mapping[y.astype(np.int64)] >= 0)
        return (x if isinstance(x, LazyImages) else np.asarray(x))[chosen], mapping[y.astype(np.int64)][chosen]

    x_train, y_train = subset(raw.x_train, raw.y_train)
    assert x_train is not None and y_train is not None
    x_test, y_test = subset(raw.x_test, raw.y_test)
    x_val, y_val = subset(raw.x_val, raw.y_val)
    return replace(raw, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, x_val=x_val, y_val=y_val, class_names=tuple(names))


def _check_classes(chosen: Sequence[str], known: Sequence[str], origin: str) -> None:
    """`data.classes` must name classes the data has; a near miss gets a suggestion."""
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise DataError(f"data.classes: {', '.join(hinted(n, known) for n in unknown)} not among the classes of {origin}: {', '.join(known)}")


def stratified_split(y: np.ndarray, fraction: float, rng: np.random.Generator, origin: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out): `fraction` of every class held out, at least one image per class."""
    kept, held = [], []
    for label in np.unique(y):
        index = rng.permutation(np.flatnonzero(y == label))
        if len(index) < 2:
            raise DataError(f"{origin}: class {int(label)} has {len(index)} image; every class needs at least 2 to be split into training and held-out sets")
        n_held = min(len(index) - 1, max(1, int(round(len(index) * fraction))))
        held.append(index[:n_held])
        kept.append(index[n_held:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def stratified_subset(y: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """`size` indices keeping the class proportions of `y` (at least one per class).

    Each class's share is rounded, then the total is brought to exactly `size` by the largest rounding
    differences (rounding alone gave 121 of 120).
    """
    labels, counts = np.unique(y, return_counts=True)
    wanted = counts * (size / len(y))
    take = np.maximum(1, np.round(wanted)).astype(np.int64)
    while (excess := int(take.sum()) - size) != 0:
        over = take - wanted  # how far each class's count is above its exact share
        if excess > 0:
            movable = np.flatnonzero(take > 1)
            if not len(movable):
                break  # fewer images asked for than classes: one of each
            take[movable[np.argmax(over[movable])]] -= 1
        else:
            movable = np.flatnonzero(take < counts)
            take[movable[np.argmin(over[movable])]] += 1
    picked = [rng.permutation(np.flatnonzero(y == label))[:n] for label, n in zip(labels, take)]
    return np.sort(np.concatenate(picked))


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


# The data settings that apply to arrays passed from Python; the others say how to read files.
ARRAY_SETTINGS = ("validation_split", "test_split", "image_size", "classes", "class_weight", "max_train_samples", "max_test_samples")


def arrays_needed(spec_file: str | None = None) -> DataError:
    """The refusal of a spec whose `data.source` is `arrays` when no arrays were passed, worded once for every
    command and function that reads data (`validate`, `train`, `search`, `plan`, `estimate`)."""
    where = spec_file or "the spec"
    call = repr(str(spec_file)) if spec_file else "spec"
    sources = ", ".join(name for name in LOADERS if name != "arrays")
    return DataError(
        f"{where}: data.source is `arrays`: this spec trains on numpy arrays passed from Python, which no file holds (`tuning export` "
        f"writes it into the best_config.yaml of a run searched on arrays, so that the file cannot be trained on other images by "
        f"mistake). From Python, pass the same arrays: tuning.train({call}, data=(x_train, y_train, ...)) (or with x_test, y_test too; "
        f"tuning.search, tuning.plan and tuning.estimate take data= as well); or replace the data section with a source that reads "
        f"images ({sources}; see the README's spec reference)"
    )


def from_arrays(arrays: Sequence[np.ndarray], class_names: Sequence[str] | None = None, origin: str = "arrays") -> RawData:
    """Arrays `(x_train, y_train)` or `(x_train, y_train, x_test, y_test)` as a source."""
    if len(arrays) not in (2, 4):
        raise DataError(f"{origin}: expected (x_train, y_train) or (x_train, y_train, x_test, y_test); received {len(arrays)} arrays")
    labels = [np.asarray(a) for a in arrays[1::2]]
    for part, y in zip(("train", "test"), labels):
        if y.ndim > 2 or (y.ndim == 2 and y.shape[1] == 0):
            raise DataError(f"{origin}: y_{part} has shape {y.shape}; expected (N,) class indices or (N, classes) one-hot rows")
    flat = [np.argmax(y, 1) if y.ndim == 2 and y.shape[1] > 1 else y.reshape(-1) for y in labels]
    if not flat[0].size:
        raise DataError(f"{origin}: y_train is empty; expected one label per training image")
    if class_names is None:
        numeric = [y for y in flat if y.size and np.issubdtype(y.dtype, np.number) and np.all(np.isfinite(y))]
        if not numeric:
            raise DataError(f"{origin}: y_train has dtype {flat[0].dtype}; expected integer class indices (or give class_names)")
        class_names = [str(i) for i in range(_class_count(numeric, origin))]
    twice = repeated([str(name) for name in class_names])
    if twice:
        raise DataError(
            f"{origin}: class_names lists {', '.join(map(repr, twice))} twice; each class needs its own name (the names are in label order: "
            "the name of label i is class_names[i])"
        )
    if len(class_names) < 2:
        raise DataError(
            f"{origin}: {'only one class (' + repr(class_names[0]) + ')' if class_names else 'no class names'}; classification needs at least 2 classes"
        )
    x_test, y_test = (arrays[2], arrays[3]) if len(arrays) == 4 else (None, None)
    return RawData(np.asarray(arrays[0]), np.asarray(arrays[1]), x_test, y_test, tuple(class_names), origin)


def _class_count(labels: Sequence[np.ndarray], origin: str) -> int:
    """Classes implied by integer labels 0..K-1, checked before anything is sized by K (a label of 1e300 must not
    become a list of 1e300 class names)."""
    top = max(float(np.max(y)) for y in labels)
    images = sum(y.size for y in labels)
    if top + 1 > images:
        raise DataError(f"{origin}: labels run up to {top:g} but there are only {images} labels; expected class indices 0..K-1 with every class present")
    return int(top) + 1


def _resolve(path: str | None, base_dir: Path, field_name: str) -> Path:
    if not path:
        raise DataError(f"{field_name}: this source needs a path")
    resolved = Path(path).expanduser()
    resolved = resolved if resolved.is_absolute() else base_dir / resolved
    if not resolved.exists():
        raise DataError(f"{field_name}: {resolved} does not exist")
    return resolved


@register("arrays")
def _arrays(data_spec: Any, base_dir: Path) -> RawData:
    # The arrays come as `data=`, which `load_data` takes before any loader: reaching this means none were passed.
    raise arrays_needed()


@register("digits")
def _digits(data_spec: Any, base_dir: Path) -> RawData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return RawData(digits.images.astype(np.uint8), digits.target, None, None, DIGIT_NAMES, "scikit-learn digits (8x8, values 0-16)", 16.0)


@register("npz")
def _npz(data_spec: Any, base_dir: Path) -> RawData:
    path = _resolve(data_spec.path, base_dir, "data.path")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except ValueError as exc:
        if "Object arrays" in str(exc):
            raise _object_array(path) from None
        raise DataError(f"{path}: not a readable .npz file ({exc}); save one with numpy.savez(path, x_train=..., y_train=...)") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc}); save one with numpy.savez(path, x_train=..., y_train=...)") from None
    missing = [k for k in ("x_train", "y_train") if k not in arrays]
    if missing:
        raise DataError(
            f"{path}: missing {', '.join(missing)}; found {', '.join(sorted(arrays)) or 'no arrays'}. Expected x_train, y_train and optionally x_test, y_test, class_names"
        )
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: has only one of x_test and y_test; give both or neither")
    names = [str(n) for n in arrays["class_names"]] if "class_names" in arrays else None
    ordered = [arrays[k] for k in ("x_train", "y_train", "x_test", "y_test") if k in arrays]
    return from_arrays(ordered, names, origin=str(path))


def _object_array(path: Path) -> DataError:
    return DataError(
        f"{path}: holds an array of Python objects (images of different sizes?); resize the images to one size and "
        f"save one numeric array of shape (N, H, W) or (N, H, W, C). Object arrays are never loaded: unpickling can run code"
    )


def _npz_header(path: Path) -> tuple[tuple[int, int, int], int]:
    """Image shape and class count of an .npz file, reading only the array headers and the labels."""
    try:
        with zipfile.ZipFile(path) as archive:
            found = sorted(name.removesuffix(".npy") for name in archive.namelist())
        missing = [k for k in ("x_train", "y_train") if k not in found]
        if missing:
            raise DataError(
                f"{path}: missing {', '.join(missing)}; found {', '.join(found) or 'no arrays'}. Expected x_train, y_train and optionally x_test, y_test, class_names"
            )
        with zipfile.ZipFile(path) as archive, archive.open("x_train.npy") as handle:
            fmt = np.lib.format
            version = fmt.read_magic(handle)
            shape, _, dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(handle)
        if dtype.hasobject:
            raise _object_array(path)
        with np.load(path, allow_pickle=False) as npz:
            y = np.asarray(npz["y_train"])
            names = npz["class_names"] if "class_names" in npz.files else None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read x_train and y_train ({exc})") from None
    if names is None and (not y.size or not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y))):
        raise DataError(f"{path}: y_train has {y.size} labels of dtype {y.dtype}; expected integer class indices, one per image")
    twice = repeated([str(name) for name in np.asarray(names).reshape(-1).tolist()]) if names is not None else []
    if twice:
        raise DataError(f"{path}: class_names lists {', '.join(map(repr, twice))} twice; each class needs its own name")
    classes = len(names) if names is not None else (y.shape[1] if y.ndim == 2 and y.shape[1] > 1 else _class_count([y], str(path)))
    if len(shape) not in (3, 4):
        raise DataError(f"{path}: x_train has shape {shape}; expected (N, H, W) or (N, H, W, C)")
    return (int(shape[1]), int(shape[2]), int(shape[3]) if len(shape) == 4 else 1), int(classes)


@register("folder")
def _folder(data_spec: Any, base_dir: Path) -> RawData:
    from .images import list_folder, load_images

    return _from_images(load_images(list_folder(_resolve(data_spec.path, base_dir, "data.path")), data_spec), data_spec)


@register("manifest")
def _manifest(data_spec: Any, base_dir: Path) -> RawData:
    from .images import load_images
    from .manifests import read_manifests

    path = _resolve(data_spec.path, base_dir, "data.path")
    return _from_images(load_images(read_manifests(path, _test_manifest(data_spec, base_dir), data_spec), data_spec), data_spec)


def _test_manifest(data_spec: Any, base_dir: Path) -> Path | None:
    return _resolve(data_spec.test_path, base_dir, "data.test_path") if data_spec.test_path else None


def _image_origin(data_spec: Any) -> str:
    return f"{data_spec.source} {data_spec.path}" + (f" + {data_spec.test_path}" if data_spec.test_path else "")


def _from_images(loaded: dict[str, Any], data_spec: Any) -> RawData:
    """Split decoded images by their folder or manifest split (train, validation, test) if they have one."""
    x, y, splits = loaded["x"], loaded["y"], np.array([s or "train" for s in loaded["splits"]])
    origin = _image_origin(data_spec)

    def part(name: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        chosen = np.flatnonzero(splits == name)
        return (x[chosen], y[chosen]) if len(chosen) else (None, None)

    x_train, y_train = part("train")
    if x_train is None or y_train is None:
        raise DataError(f"{origin}: no training images (every image is in the validation or test split)")
    x_test, y_test = part("test")
    x_val, y_val = part("validation")
    return RawData(x_train, y_train, x_test, y_test, tuple(loaded["class_names"]), origin, 255.0, x_val, y_val, tuple(loaded["skipped"]))


# --- Keras' built-in data sets: from a local folder (no network) or through keras.datasets ------------


def _keras_download(name: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    import keras

    try:
        return getattr(keras.datasets, name).load_data()
    except Exception as exc:  # noqa: BLE001 - any download failure gets the same advice
        raise DataError(
            f"data.source {name}: could not download it through keras.datasets ({type(exc).__name__}: {exc}). "
            f"Without network, set data.path to a folder holding the files Keras downloads "
            f"(for fashion_mnist, `apt-get install dataset-fashion-mnist` puts them in /usr/share/datasets/fashion-mnist)"
        ) from None


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:  # type: ignore[operator]
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise DataError(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.exists():
            return candidate
    return None


def _mnist_like(name: str, class_names: tuple[str, ...]) -> Loader:
    def load(data_spec: Any, base_dir: Path) -> RawData:
        if not data_spec.path:
            (x, y), (xt, yt) = _keras_download(name)
            return RawData(x, y, xt, yt, class_names, f"keras.datasets.{name}")
        folder = _resolve(data_spec.path, base_dir, "data.path")
        if folder.is_file() and folder.suffix == ".npz" or (folder / "mnist.npz").exists():
            npz = folder if folder.is_file() else folder / "mnist.npz"
            with np.load(npz, allow_pickle=False) as f:
                return RawData(f["x_train"], f["y_train"], f["x_test"], f["y_test"], class_names, str(npz))
        stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
        files = [_find(folder, stem) for stem in stems]
        if any(f is None for f in files):
            missing = [s for s, f in zip(stems, files) if f is None]
            raise DataError(
                f"data.path: {folder} lacks {', '.join(missing)} (.gz or uncompressed); expected the four IDX files Keras downloads for {name}, or mnist.npz"
            )
        x, y, xt, yt = (_read_idx(f) for f in files)  # type: ignore[arg-type]
        return RawData(x, y, xt, yt, class_names, str(folder))

    return load


register("mnist")(_mnist_like("mnist", DIGIT_NAMES))
register("fashion_mnist")(_mnist_like("fashion_mnist", FASHION_NAMES))


def _cifar(name: str, train_files: list[str], test_file: str, label_key: bytes, meta: tuple[str, bytes]) -> Loader:
    def load(data_spec: Any, base_dir: Path) -> RawData:
        if not data_spec.path:
            (x, y), (xt, yt) = _keras_download(name)
            names = CIFAR10_NAMES if name == "cifar10" else tuple(str(i) for i in range(100))
            return RawData(x, y, xt, yt, names, f"keras.datasets.{name}")
        root = _resolve(data_spec.path, base_dir, "data.path")
        read = _pickle_reader(root)
        batches = [read(f) for f in train_files]
        test = read(test_file)
        try:
            names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in read(meta[0])[meta[1]])
        except DataError:
            names = CIFAR10_NAMES if name == "cifar10" else tuple(str(i) for i in range(100))

        def images(batch: dict[bytes, Any]) -> np.ndarray:
            return np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)

        x = np.concatenate([images(b) for b in batches])
        y = np.concatenate([np.asarray(b[label_key]) for b in batches])
        return RawData(x, y, images(test), np.asarray(test[label_key]), names, str(root))

    return load


def _pickle_reader(root: Path) -> Callable[[str], dict[bytes, Any]]:
    """Read CIFAR's pickled batches from a folder, its usual sub-folder, or the downloaded .tar.gz."""
    if root.is_file() and tarfile.is_tarfile(root):
        archive = tarfile.open(root)
        members = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}

        def from_tar(name: str) -> dict[bytes, Any]:
            if name not in members:
                raise DataError(f"data.path: {root} has no member {name}")
            handle = archive.extractfile(members[name])
            assert handle is not None  # members holds regular files only
            return pickle.load(handle, encoding="bytes")  # noqa: S301 - the user's own CIFAR files

        return from_tar
    folders = [root, *[p for p in root.iterdir() if p.is_dir()]] if root.is_dir() else [root]

    def from_folder(name: str) -> dict[bytes, Any]:
        for folder in folders:
            if (folder / name).exists():
                with open(folder / name, "rb") as handle:
                    return pickle.load(handle, encoding="bytes")  # noqa: S301 - the user's own CIFAR files
        raise DataError(f"data.path: no file {name} in {root} or its sub-folders; expected the extracted CIFAR python batches")

    return from_folder


register("cifar10")(_cifar("cifar10", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", b"labels", ("batches.meta", b"label_names")))
register("cifar100")(_cifar("cifar100", ["train"], "test", b"fine_labels", ("meta", b"fine_label_names")))
