"""Image files as a data source: a folder of class sub-folders, or a CSV/Excel manifest of paths and labels.

Every image is decoded once: the decoded, resized array is cached on disk (a memory-mapped `.npy` keyed by
the files' paths, sizes and modification times, the image size and the colour mode), shared by all trials
and by later runs. Unreadable files (corrupt, truncated, empty, not images) are skipped, counted and
listed, never a crash in the middle of a search.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MODES = {"rgb": ("RGB", 3), "grayscale": ("L", 1), "rgba": ("RGBA", 4)}
CACHE_VERSION = 2  # 2: JPEGs decoded with libjpeg's scaling (draft mode)
CHUNK = 512


@dataclass(frozen=True)
class Listing:
    """Image files with their class names and (optional) split names, before decoding."""

    files: list[Path]
    labels: list[str]
    splits: list[str | None]
    class_names: list[str]
    origin: str


def cache_root() -> Path:
    return Path(os.environ.get("TUNING_CACHE", Path.home() / ".cache" / "tuning")) / "images"


def decode(path: Path, size: tuple[int, int], mode: str) -> np.ndarray:
    """One image as uint8 HxWxC: first frame, EXIF orientation applied, converted to `mode`, resized."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image.seek(0)
        if image.format == "JPEG":  # let libjpeg scale down while decoding (2-8x less work for large photos)
            side = max(size)
            image.draft(image.mode if image.mode in ("L", "RGB") else None, (side, side))
        image.load()  # truncated files fail here, not later
        image = ImageOps.exif_transpose(image)
        if image.mode in ("P", "PA", "LA", "CMYK", "I", "I;16", "F", "1") and MODES[mode][0] == "RGB":
            image = image.convert("RGBA").convert("RGB") if image.mode in ("P", "PA", "LA") else image.convert("RGB")
        image = image.convert(MODES[mode][0]).resize((size[1], size[0]), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def list_folder(root: Path) -> Listing:
    """`root/<class>/*` or `root/{train,validation,test}/<class>/*`; class names sorted, as Keras does."""
    if not root.is_dir():
        raise DataError(f"data.path: {root} is not a folder of class sub-folders")
    split_dirs = [d for d in ("train", "validation", "test") if (root / d).is_dir()]
    parts = [(root / d, d) for d in split_dirs] if "train" in split_dirs else [(root, None)]
    files, labels, splits = [], [], []
    names: set[str] = set()
    for folder, split in parts:
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            names.add(class_dir.name)
            for file in sorted(p for p in class_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
                files.append(file)
                labels.append(class_dir.name)
                splits.append(split)
    if not names:
        raise DataError(f"data.path: {root} has no class sub-folders; expected {root}/<class>/<image> (or train/ and test/ folders holding class sub-folders)")
    return Listing(files, labels, splits, sorted(names), str(root))


def read_manifests(path: Path, test_path: Path | None, data_spec: Any) -> Listing:
    """The manifest, and with `test_path` a second one (same columns) whose rows are all test images."""
    listing = read_manifest(path, data_spec)
    if test_path is None:
        return listing
    test = read_manifest(test_path, data_spec)
    names = listing.class_names if data_spec.label_columns else sorted(set(listing.class_names) | set(test.class_names))
    return Listing(
        listing.files + test.files, listing.labels + test.labels, listing.splits + ["test"] * len(test.files), names, f"{listing.origin} + {test.origin}"
    )


def read_table(path: Path) -> Any:
    """A manifest's rows as a pandas DataFrame: Excel by its suffix, else CSV."""
    import pandas as pd

    try:
        return pd.read_excel(path) if path.suffix.lower() in (".xlsx", ".xls") else pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable manifest gets the same message
        raise DataError(f"{path}: cannot read the manifest ({type(exc).__name__}: {exc}); expected a CSV or .xlsx file") from None


def read_labelled_manifest(path: Path, path_column: str, label_column: str | None, label_columns: Sequence[str] | None, frame: Any = None) -> Listing:
    """A manifest named on the command line (`evaluate`, `features`), its columns given by flags."""
    from types import SimpleNamespace

    columns = SimpleNamespace(path_column=path_column, label_column=label_column, label_columns=list(label_columns or []) or None, split_column=None)
    return read_manifest(path, columns, CLI_COLUMNS_ADVICE, frame)


def manifest_paths(path: Path, frame: Any, column: str) -> list[Path]:
    """The image paths of a manifest's rows, relative ones from the manifest's folder; blank cells refused by row."""
    blank = np.flatnonzero(frame[column].isna().to_numpy() | (frame[column].astype(str).str.strip() == "").to_numpy())
    if len(blank):
        rows = ", ".join(str(int(i) + 2) for i in blank[:5]) + (f" and {len(blank) - 5} more" if len(blank) > 5 else "")
        raise DataError(
            f"{path}: column {column!r} is blank in {len(blank)} row{'s' if len(blank) > 1 else ''} ({rows}, counting the header as row 1); "
            "every row needs the path of its image: fill them in or remove those rows"
        )
    return [Path(p) if Path(str(p)).is_absolute() else path.parent / str(p) for p in frame[column]]


SPEC_COLUMNS_ADVICE = "set data.path_column, data.label_column or data.label_columns"
CLI_COLUMNS_ADVICE = "name them with --path-column and --label-column or --label-columns"


def read_manifest(path: Path, data_spec: Any, advice: str = SPEC_COLUMNS_ADVICE, frame: Any = None) -> Listing:
    """A CSV or Excel file: a path column, and a label column or one-hot label columns; optional split column.
    `advice` says how to name other columns where the manifest was given (a spec, or the command line);
    `frame` is its rows when the caller has read them already."""
    frame = read_table(path) if frame is None else frame
    columns = list(frame.columns)
    wanted = [
        data_spec.path_column,
        *(data_spec.label_columns or []),
        *([data_spec.label_column] if data_spec.label_column else []),
        *([data_spec.split_column] if data_spec.split_column else []),
    ]
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise DataError(f"{path}: no column {', '.join(map(repr, missing))}; the manifest has {', '.join(map(repr, columns))} ({advice})")
    if data_spec.label_columns:
        onehot = frame[data_spec.label_columns].to_numpy(dtype=float)
        bad = np.flatnonzero(onehot.sum(axis=1) != 1)
        if len(bad):
            raise DataError(
                f"{path}: row {int(bad[0]) + 2} has {onehot[bad[0]].sum():g} labels set among {data_spec.label_columns}; one-hot columns need exactly one 1 per row"
            )
        labels = [data_spec.label_columns[i] for i in onehot.argmax(axis=1)]
        names = list(data_spec.label_columns)
    else:
        column = frame[data_spec.label_column]
        blank = np.flatnonzero(column.isna().to_numpy() | (column.astype(str).str.strip() == "").to_numpy())
        if len(blank):
            rows = ", ".join(str(int(i) + 2) for i in blank[:5]) + (f" and {len(blank) - 5} more" if len(blank) > 5 else "")
            raise DataError(
                f"{path}: column {data_spec.label_column!r} is blank in {len(blank)} row{'s' if len(blank) > 1 else ''} ({rows}, counting the header as row 1); "
                "every image needs a label: fill them in or remove those rows"
            )
        labels = [str(v) for v in column]
        names = sorted(set(labels))
    files = manifest_paths(path, frame, data_spec.path_column)
    splits: list[str | None] = [str(s).strip().lower() for s in frame[data_spec.split_column]] if data_spec.split_column else [None] * len(files)
    unknown = sorted({s for s in splits if s not in (None, "train", "validation", "test")})
    if unknown:
        raise DataError(f"{path}: column {data_spec.split_column!r} has {unknown}; expected train, validation or test")
    return Listing(files, labels, splits, names, str(path))


def decode_all(listing: Listing, size: tuple[int, int], mode: str) -> tuple[np.ndarray, list[int], list[dict[str, str]]]:
    """Decoded images (memory-mapped from the cache), indices of the files kept, and the files skipped."""
    stamp = []
    for file in listing.files:
        try:
            stat = file.stat()
            stamp.append([str(file.resolve()), stat.st_size, stat.st_mtime_ns])
        except OSError:
            stamp.append([str(file), -1, -1])
    key = hashlib.sha256(json.dumps([CACHE_VERSION, list(size), mode, stamp]).encode()).hexdigest()[:24]
    folder = cache_root() / key
    if (folder / "meta.json").exists():
        meta = json.loads((folder / "meta.json").read_text())
        return np.load(folder / "x.npy", mmap_mode="r"), meta["kept"], meta["skipped"]
    staging = folder.with_name(folder.name + f".tmp{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    channels = MODES[mode][1]
    images = np.lib.format.open_memmap(staging / "x.npy", mode="w+", dtype=np.uint8, shape=(len(listing.files), size[0], size[1], channels))
    kept: list[int] = []
    skipped: list[dict[str, str]] = []

    def attempt(file: Path) -> np.ndarray | str:
        try:
            return decode(file, size, mode)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is skipped and listed
            return f"{type(exc).__name__}: {exc}".strip()

    with _DecodeProgress(len(listing.files)) as progress, ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for start in range(0, len(listing.files), CHUNK):  # Pillow releases the GIL while decoding: threads scale
            chunk = listing.files[start : start + CHUNK]
            for offset, result in enumerate(pool.map(attempt, chunk)):
                if isinstance(result, str):
                    skipped.append({"file": str(chunk[offset]), "reason": result})
                else:
                    images[len(kept)] = result
                    kept.append(start + offset)
            progress.advance(len(chunk))
    images.flush()
    del images
    if kept and len(kept) < len(listing.files):  # shrink to the images kept
        full = np.load(staging / "x.npy", mmap_mode="r")
        np.save(staging / "x_kept.npy", full[: len(kept)])
        del full
        os.replace(staging / "x_kept.npy", staging / "x.npy")
    (staging / "meta.json").write_text(json.dumps({"kept": kept, "skipped": skipped, "origin": listing.origin}))
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)
    return np.load(folder / "x.npy", mmap_mode="r"), kept, skipped


class _DecodeProgress:
    """A progress bar on a terminal for large decodes; one line before and after otherwise."""

    def __init__(self, total: int):
        self.total, self.start = total, 0.0
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> _DecodeProgress:
        self.start = time.perf_counter()
        label = f"decoding {self.total} images once (cache: {cache_root()})"
        if self.total >= 200 and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(label, total=self.total)
        elif self.total >= 200:
            print(label, file=sys.stderr, flush=True)
        return self

    def advance(self, count: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, count)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()
        if self.total >= 200:
            print(f"decoded {self.total} images in {time.perf_counter() - self.start:.1f} s", file=sys.stderr, flush=True)


def load_images(listing: Listing, data_spec: Any) -> dict[str, Any]:
    """Decode (or reuse) the listing; refuse data where most files are unreadable or a class is empty."""
    if not data_spec.image_size:
        raise DataError("data.image_size: image folders and manifests need [height, width] to decode every image to")
    size = (int(data_spec.image_size[0]), int(data_spec.image_size[1]))
    images, kept, skipped = decode_all(listing, size, data_spec.color_mode)
    total = len(listing.files)
    if total == 0:
        raise DataError(f"{listing.origin}: no image files found")
    if len(kept) < total / 2:
        examples = "; ".join(f"{s['file']}: {s['reason']}" for s in skipped[:3])
        raise DataError(f"{listing.origin}: {total - len(kept)} of {total} files could not be read as images (e.g. {examples}); check the path and the files")
    labels = [listing.labels[i] for i in kept]
    empty = [name for name in listing.class_names if name not in set(labels)]
    if empty:
        raise DataError(f"{listing.origin}: classes {empty} have no readable image; remove them or add images")
    index = {name: i for i, name in enumerate(listing.class_names)}
    from .data import LazyImages

    return {
        "x": LazyImages(images[: len(kept)]),
        "y": np.array([index[label] for label in labels], dtype=np.int64),
        "splits": [listing.splits[i] for i in kept],
        "class_names": listing.class_names,
        "skipped": skipped,
    }
