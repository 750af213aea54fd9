"""Look inside an exported Keras model: its penultimate features for many images (a 2-D PCA, or t-SNE,
saved per file) and the feature maps of chosen layers for one image. The tutorials' `--mode features` and
"peer inside the model" steps. Keras 3 only: every backend, `.keras` files (the other formats keep no layers).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError, RunError
from .predict import IMAGE_SUFFIXES, Predictor, collect_images, load_predictor, model_labels, read_image
from .wording import hinted

MAX_FILTERS = 64  # channels drawn per layer unless asked for more: 8 rows of 8, as the tutorials plot them
MANIFEST_SUFFIXES = {".csv", ".xlsx", ".xls"}


@dataclass(frozen=True)
class _Images:
    """The images to run, with what is known of each: a label (folders of classes, labelled manifests), a
    split (train/validation/test folders) and the manifest's own row (its columns go to the output)."""

    files: list[Path]
    labels: list[str] | None
    splits: list[str | None] | None
    rows: Any  # a pandas DataFrame of the manifest's rows, or None
    origin: str
    named: frozenset[Path] = frozenset()  # files named on the command line: they must be images
    group_column: str = "split"  # what `splits` holds: train/validation/test, or the folder each file came from
    manifests: tuple[Path, ...] = ()  # the manifest the paths came from (relative paths start at its folder)
    label_column: str | None = None  # the manifest column the labels came from


def _keras_model(predictor: Predictor, path: Path) -> Any:
    if predictor.model is None:
        raise RunError(
            f"{path}: looking inside a model needs its layers, which only a .keras file keeps; pass the model.keras that `tuning export` writes beside it"
        )
    return predictor.model


def _images(data: Sequence[str | Path], path_column: str, label_column: str | None, label_columns: Sequence[str] | None) -> _Images:
    """Files from a manifest, a folder of class sub-folders, or image files and folders of loose images."""
    from .images import list_folder

    paths = [Path(p) for p in data]
    for path in paths:
        if not path.exists():
            raise DataError(f"{path} does not exist; pass a folder of images (or of class sub-folders), a CSV/Excel manifest or image files")
    manifests = [path for path in paths if path.suffix.lower() in MANIFEST_SUFFIXES]
    if manifests and len(manifests) == len(paths):
        return _manifests(manifests, path_column, label_column, label_columns)
    if manifests:
        others = [path for path in paths if path not in manifests]
        raise DataError(
            f"{', '.join(map(str, manifests))} {'is a manifest' if len(manifests) == 1 else 'are manifests'} and {', '.join(map(str, others))} "
            f"{'is' if len(others) == 1 else 'are'} not; run `tuning features` once for each kind (or list the images in a manifest)"
        )
    if label_column or label_columns or path_column != "path":
        raise DataError(
            f"{', '.join(map(str, paths))}: --path-column, --label-column and --label-columns apply to a CSV/Excel manifest; folders are labelled by their class sub-folders"
        )
    if len(paths) == 1 and paths[0].is_dir() and _class_folders(paths[0]):
        listing = list_folder(paths[0])
        splits = listing.splits if any(listing.splits) else None
        return _Images(listing.files, listing.labels, splits, None, listing.origin)
    if len(paths) > 1 and all(path.is_dir() and _class_folders(path) for path in paths):
        # Several folders of classes (train/ and test/ named one by one): labelled, each row with its folder.
        listings = [list_folder(path) for path in paths]
        files = [file for listing in listings for file in listing.files]
        labels = [label for listing in listings for label in listing.labels]
        folders: list[str | None] = [str(path) for path, listing in zip(paths, listings) for _ in listing.files]
        return _Images(files, labels, folders, None, ", ".join(map(str, paths)), group_column="folder")
    labelled = [path for path in paths if path.is_dir() and _class_folders(path)]
    if labelled:  # their labels would be lost among unlabelled images: one kind per command
        loose = [path for path in paths if path not in labelled]
        raise DataError(
            f"{', '.join(map(str, labelled))} {'holds' if len(labelled) == 1 else 'hold'} class sub-folders (labelled images) while "
            f"{', '.join(map(str, loose))} {'is' if len(loose) == 1 else 'are'} loose images or files without labels; run `tuning features` "
            "once for each kind (or put the loose images in a class folder)"
        )
    found = collect_images(paths)
    named = frozenset(file for file, is_named in found if is_named)
    return _Images([file for file, _ in found], None, None, None, ", ".join(map(str, paths)), named)


def _run_in_chunks(probe: Any, images: _Images, predictor: Predictor, chunk: int = 256) -> tuple[list[int], np.ndarray, np.ndarray, list[dict[str, str]]]:
    """Features and probabilities of every readable image, read and run `chunk` at a time (a folder of tens of
    thousands of photos never sits in memory decoded); the indices kept, and the files skipped with why."""
    kept: list[int] = []
    skipped: list[dict[str, str]] = []
    vectors: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    pixels: list[np.ndarray] = []

    def flush() -> None:
        if pixels:
            features, probabilities = probe.predict(np.stack(pixels).astype("float32"), batch_size=chunk, verbose=0)
            vectors.append(np.asarray(features, dtype=np.float32).reshape(len(pixels), -1))
            probs.append(np.asarray(probabilities, dtype=np.float32))
            pixels.clear()

    for index, file in enumerate(images.files):
        try:
            pixels.append(read_image(file, predictor.input_shape, predictor.dtype, predictor.value_max))
            kept.append(index)
        except DataError as exc:
            if file in images.named:
                raise  # named on the command line: as `predict`, a file that is not an image is an error
            skipped.append({"file": str(file), "reason": str(exc).removeprefix(f"{file}: ")})
        if len(pixels) == chunk:
            flush()
    flush()
    if not images.files:
        raise DataError(f"{images.origin}: no images listed (an empty manifest or folder)")
    if not kept:
        from .images import unreadable_examples

        raise DataError(f"{images.origin}: none of the {len(skipped)} files could be read as images ({unreadable_examples(skipped, images.manifests)})")
    return kept, np.concatenate(vectors), np.concatenate(probs), skipped


def _class_folders(folder: Path) -> bool:
    """Sub-folders and no images of its own: a folder of classes (or of train/ and test/ folders)."""
    entries = list(folder.iterdir())
    return any(p.is_dir() for p in entries) and not any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in entries)


def _manifests(paths: list[Path], path_column: str, label_column: str | None, label_columns: Sequence[str] | None) -> _Images:
    """One manifest, or several read as one table (a train and a test sheet), each row with the manifest it came from.
    Without --label-column(s), a `label` column filled in every manifest's every row labels the images, as
    `evaluate` takes it; one with blank cells (a test sheet to be labelled) leaves them unlabelled."""
    import pandas as pd

    from .manifests import read_table

    if label_column and label_columns:
        raise DataError(f"{', '.join(map(str, paths))}: give --label-column (one column of class names) or --label-columns (one-hot columns), not both")
    frames = [read_table(path) for path in paths]
    if not label_column and not label_columns and all(_filled(frame, "label") for frame in frames):
        label_column = "label"
    parts = [_manifest(path, frame, path_column, label_column, label_columns) for path, frame in zip(paths, frames)]
    if len(parts) == 1:
        return parts[0]
    labelled = [part.labels for part in parts if part.labels is not None]  # all or none: the same columns name them
    return _Images(
        [file for part in parts for file in part.files],
        [label for labels in labelled for label in labels] if labelled else None,
        [part.origin for part in parts for _ in part.files],
        pd.concat([part.rows for part in parts], ignore_index=True),
        ", ".join(map(str, paths)),
        group_column="manifest",
        manifests=tuple(paths),
        label_column=label_column,
    )


def _filled(frame: Any, column: str) -> bool:
    from .manifests import blank_rows

    return column in frame.columns and not len(blank_rows(frame, column))


def _manifest(path: Path, frame: Any, path_column: str, label_column: str | None, label_columns: Sequence[str] | None) -> _Images:
    from .manifests import manifest_paths, read_labelled_manifest

    labels = None
    if label_column or label_columns:
        listing = read_labelled_manifest(path, path_column, label_column, label_columns, frame)
        files, labels = listing.files, listing.labels
    else:
        if path_column not in frame.columns:
            raise DataError(
                f"{path}: no column {path_column!r}; the manifest has {', '.join(map(repr, frame.columns))} (name the image paths with --path-column)"
            )
        files = manifest_paths(path, frame, path_column)
    return _Images(files, labels, None, frame, str(path), manifests=(path,), label_column=label_column)


def extract_features(
    model: str | Path,
    data: str | Path | Sequence[str | Path],
    *,
    out: str | Path | None = None,
    path_column: str = "path",
    label_column: str | None = None,
    label_columns: Sequence[str] | None = None,
    tsne: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Penultimate-layer features of every image, projected to 2-D, saved per file.

    `data` is a folder of class sub-folders (labels from the folder names), CSV/Excel manifests (their
    columns are kept, several as one table with a `manifest` column; labels from `label_column` or one-hot
    `label_columns` when given, else from a `label` column filled in every row), or image files and folders of loose images. Writes to `out` (default: `features/` beside the model) `features.csv` (each
    image with its label, predicted class, probability and PCA position, `tsne_1`/`tsne_2` with `tsne`; also
    `features.xlsx` for an Excel manifest), `features.npy` (the full feature vectors, rows as in the CSV) and
    `pca.png` (and `tsne.png`), coloured by label, else by predicted class. Unreadable files are skipped
    and listed, as in a search.

    Example:
        >>> extract_features("reports/pets/export/0007/model.keras", "PetImages/")["explained_variance"]
    """
    import pandas as pd

    from . import plots

    model_path = Path(model)
    predictor = load_predictor(model_path)  # imports Keras quietly, before anything else imports it
    import keras

    from .evaluation import pca_2d

    network = _keras_model(predictor, model_path)
    images = _images([data] if isinstance(data, (str, Path)) else list(data), path_column, label_column, label_columns)
    # `tuning`'s models end in a Dense layer named "probabilities"; any other model, in its last layer.
    head = "probabilities" if any(layer.name == "probabilities" for layer in network.layers) else network.layers[-1].name
    probe = keras.Model(network.inputs, [network.get_layer(head).input, network.outputs[0]])
    kept, vectors, probs, skipped = _run_in_chunks(probe, images, predictor)
    coords, share = pca_2d(vectors.astype(np.float64))
    names = predictor.class_names
    if images.labels is not None:
        images = dataclasses.replace(images, labels=model_labels(images.labels, names))
    predicted = probs.argmax(axis=1)

    table = images.rows.iloc[kept].reset_index(drop=True) if images.rows is not None else pd.DataFrame({"image": [str(images.files[i]) for i in kept]})
    if images.labels is not None:
        # The labels used (for colours and accuracy); a manifest's own "label" column, if it is another, is kept as it is.
        used = "label" if "label" not in table.columns or images.label_column == "label" else "true_label"
        table[used] = [images.labels[i] for i in kept]
    if images.splits is not None:
        table[images.group_column] = [images.splits[i] for i in kept]
    table["predicted"] = [names[i] for i in predicted]
    table["probability"] = probs[np.arange(len(kept)), predicted]
    table["pca_1"], table["pca_2"] = coords[:, 0], coords[:, 1]
    if images.labels is not None:
        colour_by = [images.labels[i] for i in kept]
        legend_title = "label"
    else:
        colour_by, legend_title = list(table["predicted"]), "predicted class"
    groups = [name for name in names if name in set(colour_by)] + sorted(set(colour_by) - set(names))
    group_of = np.array([groups.index(value) for value in colour_by])
    if tsne and len(kept) < 3:
        raise DataError(f"{images.origin}: t-SNE needs at least 3 images; {len(kept)} could be read")
    title = f"Penultimate-layer features of {len(kept)} images (PCA; colour: {legend_title})"
    outputs: dict[str, Any] = {"features.csv": table, "features.npy": vectors, "pca.png": plots.feature_scatter(coords, group_of, groups, share, title=title)}
    if tsne:
        from sklearn.manifold import TSNE

        embedded = TSNE(n_components=2, perplexity=min(30.0, (len(kept) - 1) / 3), random_state=seed, init="pca").fit_transform(vectors)
        table["tsne_1"], table["tsne_2"] = embedded[:, 0], embedded[:, 1]
        outputs["tsne.png"] = plots.feature_scatter(embedded, group_of, groups, None, title=title.replace("PCA", "t-SNE"))
    if images.rows is not None and any(path.suffix.lower() in (".xlsx", ".xls") for path in images.manifests):
        outputs["features.xlsx"] = table
    destination = Path(out) if out is not None else model_path.parent / "features"
    written = _write(destination, outputs)
    result: dict[str, Any] = {
        "model": str(model_path),
        "data": images.origin,
        "images": len(kept),
        "dimensions": int(vectors.shape[1]),
        "layer": f"the input of {head}",
        "explained_variance": share,
        "files": [str(p) for p in written],
        "skipped": skipped,
    }
    if images.labels is not None:
        labels, guesses = np.array([images.labels[i] for i in kept]), np.array(table["predicted"])
        known = np.isin(labels, names)  # images of other classes than the model's cannot be right
        result["accuracy"] = float(np.mean(labels[known] == guesses[known])) if known.any() else None
        result["labelled_images"] = int(known.sum())
        result["other_labels"] = {str(label): int((labels == label).sum()) for label in sorted(set(labels[~known]))}
    return result


FEATURE_FILES = ("features.csv", "features.npy", "pca.png", "tsne.png", "features.xlsx")


def _write(destination: Path, outputs: dict[str, Any]) -> list[Path]:
    """Each output into `destination`; an earlier run's file that this one does not write (its t-SNE plot,
    say) is removed, so the folder never mixes two runs."""
    try:
        destination.mkdir(parents=True, exist_ok=True)
        for name in FEATURE_FILES:
            path, content = destination / name, outputs.get(name)
            if content is None:
                path.unlink(missing_ok=True)
            elif name.endswith(".png"):
                path.write_bytes(content)
            elif name.endswith(".npy"):
                np.save(path, content)
            elif name.endswith(".csv"):
                content.to_csv(path, index=False)
            else:
                content.to_excel(path, index=False)
    except OSError as exc:
        raise RunError(f"cannot write {exc.filename or destination} ({exc.strerror}); pass --out a folder you can write to") from None
    return [destination / name for name in FEATURE_FILES if name in outputs]


def feature_maps(
    model: str | Path,
    image: str | Path,
    *,
    layers: Sequence[str] | None = None,
    filters: int = MAX_FILTERS,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """The outputs of chosen layers (default: every convolution, after its activation) for one image, one
    panel per filter.

    Writes `out` (default: `feature_maps_<image name>.png` beside the model) and, beside it, the raw maps as
    `.npz` (one array per layer, height x width x filters). A layer is named as `model.summary()` names it;
    an unknown name is refused with the names there are.

    Example:
        >>> feature_maps("reports/digits/export/0018/model.keras", "my_digit.png", layers=["block1_conv1"])
    """
    from . import plots

    if filters < 1:
        raise DataError(f"filters: expected a positive number of filters to draw per layer. Received: {filters}")
    model_path, image_path = Path(model), Path(image)
    if not image_path.exists():
        raise DataError(f"{image_path} does not exist; pass one image file")
    if not image_path.is_file():
        raise DataError(f"{image_path}: not an image file; feature maps are drawn for one image at a time")
    destination = Path(out) if out is not None else model_path.parent / f"feature_maps_{image_path.stem}.png"
    if destination.suffix.lower() != ".png":
        raise DataError(f"--out {destination}: feature maps are written as PNG; name a .png file (the maps' values go beside it as .npz)")
    predictor = load_predictor(model_path)  # imports Keras quietly
    import keras

    network = _keras_model(predictor, model_path)
    pixels = read_image(image_path, predictor.input_shape, predictor.dtype, predictor.value_max)
    spatial = [
        layer
        for layer in network.layers
        if len(layer.output.shape) == 4 and not isinstance(layer, keras.layers.InputLayer) and not layer.name.startswith("augment_")
    ]
    if layers:
        by_name = {layer.name: layer for layer in network.layers}
        unknown = [name for name in layers if name not in by_name]
        if unknown:
            raise DataError(
                f"layer {', '.join(hinted(name, [layer.name for layer in spatial]) for name in unknown)}: not in {model_path}; "
                f"its layers with feature maps are {', '.join(layer.name for layer in spatial)}"
            )
        chosen = [by_name[name] for name in layers]
        flat = [layer.name for layer in chosen if len(layer.output.shape) != 4]
        if flat:
            raise DataError(
                f"layer {', '.join(map(repr, flat))}: its output is not a feature map (height x width x filters); choose among {', '.join(layer.name for layer in spatial)}"
            )
    else:
        # Each convolution as the next layer sees it: after its activation (`tuning` puts batch norm and the
        # activation in layers of their own, named after the convolution), as a Conv2D(activation=...) shows it.
        chosen = []
        for conv in (layer for layer in spatial if isinstance(layer, keras.layers.Conv2D)):
            activated = [layer for layer in spatial if layer.name.startswith(f"{conv.name}_") and isinstance(layer, keras.layers.Activation)]
            chosen.append(activated[0] if activated else conv)
        if not chosen:
            raise DataError(f"{model_path}: has no convolution layer (a dense-only model); its layers are {', '.join(layer.name for layer in network.layers)}")
    probe = keras.Model(network.inputs, [layer.output for layer in chosen])
    outputs = probe.predict(pixels[None].astype("float32"), verbose=0)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    maps = {layer.name: np.asarray(output, dtype=np.float32)[0] for layer, output in zip(chosen, outputs)}
    picture = plots.layer_maps(pixels, {name: m[..., :filters] for name, m in maps.items()})
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(picture)
        np.savez_compressed(destination.with_suffix(".npz"), **maps)
    except OSError as exc:
        raise RunError(f"cannot write {exc.filename or destination} ({exc.strerror}); pass --out a .png path you can write to") from None
    return {
        "model": str(model_path),
        "image": str(image_path),
        "layers": {name: list(m.shape) for name, m in maps.items()},
        "files": [str(destination), str(destination.with_suffix(".npz"))],
    }
