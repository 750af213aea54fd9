"""Data sources: each turns the spec's `data` section into a `RawData`, registered under its `data.source` name.

A new kind of source is one function under `@register(name)`; the spec's `data.source` choices and this registry
are checked against each other by a test. Built in: numpy arrays passed from Python, scikit-learn's digits, an
`.npz` file, a folder of class sub-folders, manifest files, and Keras' MNIST, Fashion-MNIST and CIFAR sets (from
local files, or downloaded through `keras.datasets`). Images stay raw; checking and splitting them is
`data.load_data`'s. Numpy only: no TensorFlow on this path.
"""

from __future__ import annotations

import gzip
import pickle
import tarfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .domains import repeated
from .errors import DataError

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


Loader = Callable[[Any, Path], RawData]
LOADERS: dict[str, Loader] = {}


def register(name: str) -> Callable[[Loader], Loader]:
    def add(loader: Loader) -> Loader:
        LOADERS[name] = loader
        return loader

    return add


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


def resolve(path: str | None, base_dir: Path, field_name: str) -> Path:
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
    path = resolve(data_spec.path, base_dir, "data.path")
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


def npz_header(path: Path) -> tuple[tuple[int, int, int], int]:
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

    return _from_images(load_images(list_folder(resolve(data_spec.path, base_dir, "data.path")), data_spec), data_spec)


@register("manifest")
def _manifest(data_spec: Any, base_dir: Path) -> RawData:
    from .images import load_images
    from .manifests import read_manifests

    path = resolve(data_spec.path, base_dir, "data.path")
    return _from_images(load_images(read_manifests(path, test_manifest(data_spec, base_dir), data_spec), data_spec), data_spec)


def test_manifest(data_spec: Any, base_dir: Path) -> Path | None:
    return resolve(data_spec.test_path, base_dir, "data.test_path") if data_spec.test_path else None


def image_origin(data_spec: Any) -> str:
    return f"{data_spec.source} {data_spec.path}" + (f" + {data_spec.test_path}" if data_spec.test_path else "")


def _from_images(loaded: dict[str, Any], data_spec: Any) -> RawData:
    """Split decoded images by their folder or manifest split (train, validation, test) if they have one."""
    x, y, splits = loaded["x"], loaded["y"], np.array([s or "train" for s in loaded["splits"]])
    origin = image_origin(data_spec)

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
        folder = resolve(data_spec.path, base_dir, "data.path")
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
        root = resolve(data_spec.path, base_dir, "data.path")
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
