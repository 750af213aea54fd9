"""Splitting the training images: held-out sets, capped subsets and the classes kept, stratified and seeded.

Every held-out set (validation, test) takes its share of every class, at least one image each, and a capped
set (`max_train_samples`, `max_test_samples`) keeps the class proportions, so that a small class is never
split away; a class too small to split is refused before anything is split, by its name. Numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import DataError
from .lazy_images import LazyImages
from .sources import RawData
from .wording import counted, hinted


def enough_to_split(y_train: np.ndarray, raw: RawData, data_spec: Any) -> None:
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


def at_most(
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


def keep_classes(raw: RawData, names: list[str]) -> RawData:
    """Only the classes named, relabelled 0..k-1 in the order given (e.g. three CIFAR-10 classes)."""
    from dataclasses import replace

    check_classes(names, raw.class_names, raw.origin)
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


def check_classes(chosen: Sequence[str], known: Sequence[str], origin: str) -> None:
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
