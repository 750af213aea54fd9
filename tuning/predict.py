"""Predict with an exported model: any format, images of any size and channel count."""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError, RunError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass
class Predictor:
    """A loaded model of any exported format, with what it expects and the names of its outputs."""

    predict: Any
    input_shape: tuple[int, int, int]
    dtype: str
    value_max: float
    class_names: list[str]
    model: Any = None  # the Keras model, for a .keras file: what looking inside it needs


def load_predictor(path: str | Path) -> Predictor:
    """Load `model.keras`, a SavedModel folder or a `.tflite` file (class names from model_card.json beside it)."""
    from .runtime import quiet_logs

    quiet_logs()
    path = Path(path)
    if not path.exists():
        raise RunError(f"{path} does not exist; pass model.keras, a SavedModel folder or model.tflite written by `tuning export`")
    card_path = (path if path.is_dir() else path.parent) / "model_card.json"
    if not card_path.exists() and path.is_dir():
        card_path = path.parent / "model_card.json"
    card = _read_card(card_path) if card_path.exists() else None
    if card is None and path.suffix == ".keras" and (path.parent / "run.json").exists():
        card = _card_from_run(path.parent / "run.json")  # a run's own best_model.keras: its classes are in run.json
    if path.suffix == ".keras":
        import zipfile

        import keras

        if path.is_file() and not zipfile.is_zipfile(path):
            raise RunError(f"{path}: not a Keras model file (a .keras file is a zip archive; this one is damaged or something else renamed)")
        try:
            model = keras.saving.load_model(path, safe_mode=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
            raise RunError(f"{path}: not a loadable Keras model ({type(exc).__name__}: {exc})") from None
        shape = tuple(int(d) for d in model.input_shape[1:])

        def keras_predict(images: np.ndarray) -> np.ndarray:
            return np.asarray(model.predict(images.astype("float32"), verbose=0))

        fn = keras_predict
        classes = int(model.output_shape[-1])
    elif (path.is_dir() and (path / "saved_model.pb").exists()) or path.suffix == ".tflite":
        from . import export_tf

        if card is None:
            kind = "SavedModel" if path.is_dir() else "TFLite model"
            raise RunError(f"{path}: a {kind} needs the model_card.json written beside it by `tuning export` (input shape, dtype, classes)")
        shape, classes = tuple(card["input"]["shape"]), len(card["class_names"])
        fn = functools.partial(export_tf.savedmodel_predict if path.is_dir() else export_tf.tflite_predict, path)
    else:
        raise RunError(f"{path}: unknown model format; expected model.keras, a SavedModel folder (with saved_model.pb) or a .tflite file")
    if card is None:
        # Without a card a model that trained on 0-16 digits gets 0-255 pixels and saturates: say what is assumed.
        print(
            f"warning: no model_card.json beside {path}: assuming images of 0-255 (uint8) and classes named by their index "
            f"(0-{classes - 1}); keep the model_card.json that `tuning export` writes beside the model to use its value range and class names",
            file=sys.stderr,
        )
    elif len(card["class_names"]) != classes:
        raise RunError(f"{card_path}: class_names has {len(card['class_names'])} names, but {path} outputs {classes} classes; is it this model's card?")
    names = card["class_names"] if card else [str(i) for i in range(classes)]
    dtype = card["input"]["dtype"] if card else "uint8"
    value_max = float(card["input"].get("value_max", 255.0)) if card else 255.0
    return Predictor(fn, shape, dtype, value_max, names, model if path.suffix == ".keras" else None)  # type: ignore[arg-type]


def model_labels(labels: Sequence[str], class_names: Sequence[str]) -> list[str]:
    """Labels (folder names, manifest cells) as the model's class names where they are written otherwise:
    a class with a '/' in its name (Fashion-MNIST's `T-shirt/top`) cannot be a folder, so `T-shirt_top`,
    `T-shirt-top` or `T-shirt top` stands for it; and a whole number is one class however it is written
    (`2` and `2.0`: a model trained before whole-number labels were named as integers has class `2.0`)."""
    from .manifests import whole_number_name

    aliases = {name.replace("/", sep): name for name in class_names if "/" in name for sep in ("_", "-", " ")}
    numbers = {whole_number_name(name): name for name in class_names}
    known = set(class_names)
    return [label if label in known else aliases.get(label, numbers.get(whole_number_name(label), label)) for label in labels]


def _read_card(path: Path) -> dict[str, Any]:
    """The model card `tuning export` wrote, checked for what predicting needs (a damaged one would mislabel silently)."""
    try:
        card = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RunError(
            f"{path}: not a readable model card ({type(exc).__name__}: {exc}); it should be the JSON `tuning export` writes beside the model "
            "(class_names, input shape, dtype and value range): export the model again, or remove the file to predict with class indices on 0-255 images"
        ) from None
    entry = card.get("input") if isinstance(card, dict) else None
    problems = []
    if not isinstance(card, dict) or not isinstance(card.get("class_names"), list) or not all(isinstance(n, str) for n in card["class_names"]):
        problems.append("class_names: expected a list of class names")
    if not isinstance(entry, dict):
        problems.append("input: expected {shape, dtype, value_max}")
    else:
        shape = entry.get("shape")
        if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
            problems.append(f"input.shape: expected [height, width, channels]. Received: {shape!r}")
        if not isinstance(entry.get("dtype"), str):
            problems.append(f"input.dtype: expected a dtype name such as 'uint8'. Received: {entry.get('dtype')!r}")
        value_max = entry.get("value_max", 255.0)
        if isinstance(value_max, bool) or not isinstance(value_max, (int, float)) or not value_max > 0:
            problems.append(f"input.value_max: expected a positive number. Received: {value_max!r}")
    if problems:
        raise RunError(f"{path}: not a usable model card ({'; '.join(problems)}); export the model again with `tuning export`")
    return card


def _card_from_run(manifest: Path) -> dict[str, Any] | None:
    """What a model card would say of a run's best model (class names, input), from the run's `run.json`."""
    try:
        data = json.loads(manifest.read_text()).get("data") or {}
    except (OSError, ValueError):
        return None  # a damaged run.json: the model's own output size still gives class indices
    if not data.get("classes") or not data.get("image_shape"):
        return None
    return {
        "class_names": list(data["classes"]),
        "input": {"shape": data["image_shape"], "dtype": data.get("dtype", "uint8"), "value_max": data.get("value_max", 255.0)},
    }


def read_image(path: Path, shape: tuple[int, int, int], dtype: str = "uint8", value_max: float = 255.0) -> np.ndarray:
    """Decode any common image, apply EXIF rotation, convert to the model's channels and resize to its input."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    from .images import eight_bit

    height, width, channels = shape
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: a folder, not an image file")
    try:
        with Image.open(path) as image:
            image = eight_bit(ImageOps.exif_transpose(image))  # 16-bit grayscale scaled, not clipped to 0 or 255
            image = image.convert({1: "L", 3: "RGB", 4: "RGBA"}[channels])
            image = image.resize((width, height), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {exc}); expected PNG, JPEG, BMP, GIF or WebP") from None
    if array.ndim == 2:
        array = array[..., None]
    if dtype == "uint8" and value_max == 255.0:
        return array
    # An image file holds 0-255; the model was trained on its data's own range (0-16 for digits): map one to the other.
    scaled = array.astype(np.float32) / 255.0 * value_max
    return np.round(scaled).astype(dtype) if np.issubdtype(np.dtype(dtype), np.integer) else scaled.astype(dtype)


def collect_images(paths: Sequence[str | Path]) -> list[tuple[Path, bool]]:
    """Files as given, and the image files inside folders (sorted); each with whether it was named itself."""
    files: list[tuple[Path, bool]] = []
    for item in map(Path, paths):
        if item.is_dir():
            files.extend(sorted((p, False) for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        elif item.exists():
            files.append((item, True))
        else:
            raise DataError(f"{item} does not exist")
    if not files:
        raise DataError(f"no image files in {', '.join(map(str, paths))} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def predict(model: str | Path, images: Sequence[str | Path], *, top: int = 3) -> list[dict[str, Any]]:
    """Top-`top` classes with probabilities for each image file (folders are searched for images).

    A file named in `images` must be a readable image; an unreadable one found in a folder (a corrupt
    download, as the search skips too) gets `error` instead of `top`, and the others are still predicted.

    Example:
        >>> predict("reports/digits/export/0018/model.keras", ["my_digit.png"], top=3)
    """
    if top < 1:
        raise DataError(f"top: expected a positive number of classes to show per image. Received: {top}")
    predictor = load_predictor(model)
    results: list[dict[str, Any]] = []
    pixels: list[np.ndarray] = []
    for file, named in collect_images(images):
        results.append({"image": str(file)})
        try:
            pixels.append(read_image(file, predictor.input_shape, predictor.dtype, predictor.value_max))
        except DataError as exc:
            if named:
                raise
            results[-1]["error"] = str(exc).removeprefix(f"{file}: ")
    if not pixels:
        raise DataError(f"none of the {len(results)} image files could be read (e.g. {results[0]['image']}: {results[0]['error']})")
    probs = iter(predictor.predict(np.stack(pixels)))
    for result in results:
        if "error" not in result:
            row = next(probs)
            result["top"] = [{"class": predictor.class_names[i], "index": int(i), "probability": float(row[i])} for i in np.argsort(-row)[:top]]
    return results


def evaluate(
    model: str | Path,
    data: str | Path,
    *,
    path_column: str = "path",
    label_column: str | None = None,
    label_columns: Sequence[str] | None = None,
    mistakes: int = 10,
) -> dict[str, Any]:
    """Accuracy, loss, per-class metrics and confusion matrix of an exported model on labelled images.

    `data` is a folder of class sub-folders (named as the model's classes) or a CSV/Excel manifest with a path
    column and a label column (or one-hot columns): the tutorials' inference on a new test sheet. Unreadable
    files are skipped and listed, as in a search; images of classes the model does not know (it was trained on
    a subset) are left out and counted in `ignored`.

    Example:
        >>> evaluate("reports/pets/export/0007/model.keras", "new_photos/")["accuracy"]
    """
    from .images import list_folder
    from .manifests import read_labelled_manifest

    data = Path(data)
    if not data.exists():
        raise DataError(f"{data} does not exist; pass a folder of class sub-folders or a CSV/Excel manifest")
    if data.is_dir():
        listing = list_folder(data)
        if "test" in listing.splits:  # train/ and test/ folders: the model is judged on the held-out ones only
            chosen = [i for i, split in enumerate(listing.splits) if split == "test"]
            files, labels = [listing.files[i] for i in chosen], [listing.labels[i] for i in chosen]
            listing = dataclasses.replace(listing, files=files, labels=labels, splits=["test"] * len(chosen), origin=f"{data / 'test'}")
    else:
        from .manifests import read_table

        frame = read_table(data)
        if not label_column and not label_columns and "label" in frame.columns:
            label_column = "label"  # as `path` is the default path column
        if bool(label_column) == bool(label_columns):
            which = "not both" if label_column else f"neither is given, and it has no `label` column (its columns: {', '.join(map(str, frame.columns))})"
            raise DataError(f"{data}: a manifest needs --label-column (one column of class names) or --label-columns (one-hot columns); {which}")
        listing = read_labelled_manifest(data, path_column, label_column, label_columns, frame)
    if not listing.files:
        raise DataError(f"{listing.origin}: no image files found")
    predictor = load_predictor(model)
    listing = dataclasses.replace(listing, labels=model_labels(listing.labels, predictor.class_names))
    index = {name: i for i, name in enumerate(predictor.class_names)}
    ignored = {label: listing.labels.count(label) for label in sorted(set(listing.labels) - set(index))}
    if len(ignored) == len(set(listing.labels)):
        raise DataError(
            f"{listing.origin}: none of its labels ({', '.join(ignored)}) is a class of this model ({', '.join(predictor.class_names)}); "
            "evaluate on images of its classes (name the folders, or the labels, as it does)"
        )
    kept: list[tuple[Path, int]] = []
    pixels: list[np.ndarray] = []
    skipped: list[dict[str, str]] = []
    for file, label in zip(listing.files, listing.labels):
        if label in ignored:
            continue  # another class than the model's (it was trained on a subset): counted in `ignored`
        try:
            pixels.append(read_image(file, predictor.input_shape, predictor.dtype, predictor.value_max))
            kept.append((file, index[label]))
        except DataError as exc:
            skipped.append({"file": str(file), "reason": str(exc).removeprefix(f"{file}: ")})
    if not kept:
        from .images import unreadable_examples

        raise DataError(f"{listing.origin}: none of the {len(skipped)} files could be read as images ({unreadable_examples(skipped, listing.manifests)})")
    probs = np.concatenate([predictor.predict(np.stack(pixels[i : i + 256])) for i in range(0, len(pixels), 256)])
    y = np.array([label for _, label in kept])
    predicted = probs.argmax(axis=1)
    confusion = np.zeros((len(index), len(index)), dtype=np.int64)
    np.add.at(confusion, (y, predicted), 1)
    from .evaluation import per_class_metrics

    wrong = np.flatnonzero(predicted != y)
    wrong = wrong[np.argsort(-probs[wrong, predicted[wrong]])][:mistakes]
    return {
        "model": str(model),
        "data": listing.origin,
        "images": len(kept),
        "class_names": list(predictor.class_names),
        "accuracy": float((predicted == y).mean()),
        "loss": float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)).mean()),
        "per_class": per_class_metrics(confusion),
        "confusion_matrix": confusion.tolist(),
        "mistakes": [
            {
                "image": str(kept[i][0]),
                "true": predictor.class_names[y[i]],
                "predicted": predictor.class_names[predicted[i]],
                "probability": float(probs[i, predicted[i]]),
            }
            for i in wrong
        ],
        "skipped": skipped,
        "ignored": ignored,
    }
