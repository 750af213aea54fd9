"""Image files as a data source: a folder of class sub-folders (manifests are listed by `manifests`).

Every image is decoded once: the decoded, resized array is cached on disk (a memory-mapped `.npy` keyed by
the files' paths, sizes and modification times, the image size and the colour mode), shared by all trials
and by later runs. Unreadable files (corrupt, truncated, empty, not images) are skipped, counted and
listed, never a crash in the middle of a search.
"""

from __future__ import annotations

import contextlib
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
CACHE_VERSION = 3  # 2: JPEGs decoded with libjpeg's scaling (draft mode); 3: 16-bit images scaled, not clipped
CHUNK = 512


@dataclass(frozen=True)
class Listing:
    """Image files with their class names and (optional) split names, before decoding."""

    files: list[Path]
    labels: list[str]
    splits: list[str | None]
    class_names: list[str]
    origin: str
    manifests: tuple[Path, ...] = ()  # the CSV/Excel files the paths came from (relative paths start at their folder)


def cache_root() -> Path:
    """Where decoded images are cached: `$TUNING_CACHE/images`, else `~/.cache/tuning/images`."""
    chosen = os.environ.get("TUNING_CACHE")
    if chosen and Path(chosen).exists() and not Path(chosen).is_dir():
        raise DataError(
            f"TUNING_CACHE={chosen} is a file, not a folder; point it at a folder for the decoded-image cache (created if missing), "
            "or unset it to use ~/.cache/tuning"
        )
    return Path(chosen or Path.home() / ".cache" / "tuning") / "images"


def decode(path: Path, size: tuple[int, int], mode: str) -> np.ndarray:
    """One image as uint8 HxWxC: first frame, EXIF orientation applied, converted to `mode`, resized."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image.seek(0)
        if image.format == "JPEG":  # let libjpeg scale down while decoding (2-8x less work for large photos)
            side = max(size)
            image.draft(image.mode if image.mode in ("L", "RGB") else None, (side, side))
        image.load()  # truncated files fail here, not later
        image = eight_bit(ImageOps.exif_transpose(image))
        if image.mode in ("P", "PA", "LA", "CMYK", "I", "I;16", "F", "1") and MODES[mode][0] == "RGB":
            image = image.convert("RGBA").convert("RGB") if image.mode in ("P", "PA", "LA") else image.convert("RGB")
        image = image.convert(MODES[mode][0]).resize((size[1], size[0]), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def eight_bit(image: Any) -> Any:
    """A wide grayscale image scaled to 8 bits, so that it decodes as its 8-bit original does: Pillow's own
    conversion clips every value above 255. One rule per mode, never per image (one data set must decode
    consistently): 16-bit and 32-bit integer images (`I;16*`; `I`, as TIFFs and, in Pillow before 10.3, 16-bit
    PNGs open) are read as 0-65535, float images (`F`) as 0-1, values beyond clipped. Others are returned as they are."""
    if not (image.mode.startswith("I;16") or image.mode in ("I", "F")):
        return image
    from PIL import Image

    wide = np.nan_to_num(np.asarray(image).astype(np.float64))
    full = 1.0 if image.mode == "F" else 65535.0
    return Image.fromarray(np.clip(np.round(wide * (255.0 / full)), 0, 255).astype(np.uint8), "L")


SPLITS = ("train", "validation", "test")
# Folder names people give their splits, and the one `tuning` reads instead.
SPLIT_ALIASES = {"val": "validation", "valid": "validation", "validate": "validation", "dev": "validation", "training": "train", "testing": "test"}


def list_folder(root: Path) -> Listing:
    """`root/<class>/*` or `root/{train,validation,test}/<class>/*`; class names sorted, as Keras does.

    Split folders beside other folders are refused: a `val/` next to `train/` would otherwise be silently left out,
    and class folders next to `train/` would never be read."""
    if not root.is_dir():
        raise DataError(f"data.path: {root} is not a folder of class sub-folders")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    split_dirs = [d for d in SPLITS if d in folders]
    others = [name for name in folders if name not in SPLITS]
    if split_dirs and others:
        hints = [f"{name}/ (rename it {SPLIT_ALIASES[name.lower()]}/?)" if name.lower() in SPLIT_ALIASES else f"{name}/" for name in others]
        raise DataError(
            f"data.path: {root} holds {' and '.join(d + '/' for d in split_dirs)} beside {', '.join(hints)}; only train/, validation/ and test/ "
            "are read beside each other, each holding class sub-folders: move or rename the other folders (a class folder goes inside train/)"
        )
    parts = [(root / d, d) for d in split_dirs] if split_dirs else [(root, None)]
    files, labels, splits = [], [], []
    names: set[str] = set()
    for folder, split in parts:
        # Hidden folders and files (Jupyter's .ipynb_checkpoints, macOS' ._ files) are neither classes nor images.
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            names.add(class_dir.name)
            inside = (p for p in class_dir.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(class_dir).parts))
            for file in sorted(inside):
                files.append(file)
                labels.append(class_dir.name)
                splits.append(split)
    if not names:
        raise DataError(f"data.path: {root} has no class sub-folders; expected {root}/<class>/<image> (or train/ and test/ folders holding class sub-folders)")
    return Listing(files, labels, splits, sorted(names), str(root))


def decode_all(listing: Listing, size: tuple[int, int], mode: str) -> tuple[np.ndarray, list[int], list[dict[str, str]]]:
    """Decoded images (memory-mapped from the cache), indices of the files kept, and the files skipped."""
    stamp = []
    for file in listing.files:
        try:
            stat = file.stat()
            stamp.append([str(file.resolve()), stat.st_size, stat.st_mtime_ns])
        except OSError:
            stamp.append([str(file), -1, -1])

    def key(version: int) -> str:
        return hashlib.sha256(json.dumps([version, list(size), mode, stamp]).encode()).hexdigest()[:24]

    folder = cache_root() / key(CACHE_VERSION)
    with contextlib.suppress(FileNotFoundError):  # none yet, or just replaced by another process: decode
        meta = json.loads((folder / "meta.json").read_text())
        return np.load(folder / "x.npy", mmap_mode="r"), meta["kept"], meta["skipped"]
    staging = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shape = (len(listing.files), size[0], size[1], MODES[mode][1])
    _check_room(folder.parent, shape)
    staging.mkdir(parents=True, exist_ok=True)
    try:
        kept, skipped = _decode_into(staging, listing, shape, mode)
    except BaseException:  # a failed or interrupted decode leaves no half-written (possibly huge, sparse) array behind
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)
    for version in range(1, CACHE_VERSION):  # the entry an earlier version of `tuning` made of these files is stale now
        shutil.rmtree(cache_root() / key(version), ignore_errors=True)
    _remove_earlier_decodes(folder)
    return np.load(folder / "x.npy", mmap_mode="r"), kept, skipped


def _remove_earlier_decodes(entry: Path) -> None:
    """Remove the cache's entries of the same folder or manifest at the same size and colour mode made before its
    files changed: a data set edited again and again (corrupt files removed, images added) would otherwise leave
    a full decoded copy per edit. A search still reading one keeps its memory map (the file goes when it ends)."""
    meta = json.loads((entry / "meta.json").read_text())
    same = {k: meta[k] for k in ("origin", "size", "mode")}
    for other in entry.parent.glob("*/meta.json"):
        if ".tmp" in other.parent.name:  # another process's decode under way
            continue
        with contextlib.suppress(OSError, ValueError):
            if other.parent != entry and {k: json.loads(other.read_text()).get(k) for k in same} == same:
                shutil.rmtree(other.parent, ignore_errors=True)


def _check_room(cache: Path, shape: tuple[int, int, int, int]) -> None:
    """Refuse a decode whose array would not fit on the cache's disk, before writing any of it."""
    needed = int(np.prod(shape, dtype=np.float64))
    cache.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache).free
    if needed > free:
        raise DataError(
            f"data.image_size: {shape[0]} images decoded at {shape[1]}x{shape[2]}x{shape[3]} take {_bytes(needed)} in the image cache "
            f"({cache}), which has {_bytes(free)} free; choose a smaller image_size, or point TUNING_CACHE at a larger disk"
        )


def _bytes(count: int) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if count >= size:
            return f"{count / size:,.1f} {unit}"
    return f"{count:,} bytes"


def _decode_into(staging: Path, listing: Listing, shape: tuple[int, int, int, int], mode: str) -> tuple[list[int], list[dict[str, str]]]:
    """Decode every file into `staging/x.npy` (only the images kept, in order); the indices kept and the files skipped."""
    size = (shape[1], shape[2])
    images = np.lib.format.open_memmap(staging / "x.npy", mode="w+", dtype=np.uint8, shape=shape)
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
    (staging / "meta.json").write_text(json.dumps({"kept": kept, "skipped": skipped, "origin": listing.origin, "size": list(size), "mode": mode}))
    return kept, skipped


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


def unreadable_examples(skipped: Sequence[dict[str, str]], manifests: Sequence[Path] = (), count: int = 3) -> str:
    """A few of the files that could not be read, for an error. Missing files are named together, with the folder
    the `manifests`' relative paths are read from: a manifest moved away from its images is the usual cause.

    Example: `no such file: sub/a.png, sub/b.png, sub/c.png and 57 more; paths are relative to the manifest's folder, sub`.
    """
    missing = [s["file"] for s in skipped if not Path(s["file"]).exists()]
    others = [s for s in skipped if Path(s["file"]).exists()]
    parts = []
    if missing:
        more = f" and {len(missing) - count} more" if len(missing) > count else ""
        folders = sorted({str(m.parent) for m in manifests if any(Path(f).is_relative_to(m.parent) for f in missing)})  # relative paths only
        where = f"; paths are relative to the manifest's folder, {' or '.join(folders)}" if folders else ""
        parts.append(f"no such file: {', '.join(missing[:count])}{more}{where}")
    if others:
        parts.append("; ".join(f"{s['file']}: {s['reason']}" for s in others[:count]))
    return "; ".join(parts)


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
        raise DataError(
            f"{listing.origin}: {total - len(kept)} of {total} files could not be read as images ({unreadable_examples(skipped, listing.manifests)}); check the paths and the files"
        )
    labels = [listing.labels[i] for i in kept]
    empty = [name for name in listing.class_names if name not in set(labels)]
    if empty:
        raise DataError(f"{listing.origin}: classes {empty} have no readable image; remove them or add images")
    index = {name: i for i, name in enumerate(listing.class_names)}
    from .lazy_images import LazyImages

    return {
        "x": LazyImages(images[: len(kept)]),
        "y": np.array([index[label] for label in labels], dtype=np.int64),
        "splits": [listing.splits[i] for i in kept],
        "class_names": listing.class_names,
        "skipped": skipped,
    }
