"""The report's figures, drawn with matplotlib (Agg backend, no display) and returned as PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


DPI = 90


def _png(fig: Any, tight: bool = True) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight" if tight else None)
    _plt().close(fig)
    return buffer.getvalue()


def _numeric(values: Sequence[Any]) -> tuple[np.ndarray, list[str] | None]:
    """Values on an axis: numbers as they are, categories as positions with their labels."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v is not None):
        return np.array([np.nan if v is None else float(v) for v in values]), None
    labels = sorted({str(v) for v in values if v is not None})
    return np.array([np.nan if v is None else labels.index(str(v)) for v in values], dtype=float), labels


def score_vs_params(rows: list[dict[str, Any]], params: Sequence[str], metric: str) -> bytes:
    plt = _plt()
    columns = min(3, max(1, len(params)))
    lines = max(1, -(-len(params) // columns))
    fig, axes = plt.subplots(lines, columns, figsize=(4 * columns, 3 * lines), squeeze=False)
    scores = np.array([r["score"] for r in rows], dtype=float)
    budgets = np.array([r["epochs"] or r["epochs_trained"] or 1 for r in rows], dtype=float)
    for ax, name in zip(axes.flat, params):
        x, labels = _numeric([r[name] for r in rows])
        jitter = np.random.default_rng(0).uniform(-0.08, 0.08, len(x)) if labels else 0
        ax.scatter(x + jitter, scores, c=budgets, cmap="viridis", s=24, alpha=0.85)
        ax.set_xlabel(name)
        ax.set_ylabel(metric)
        if labels:
            ax.set_xticks(range(len(labels)), labels, rotation=20)
        elif len(x) and np.nanmin(x) > 0 and np.nanmax(x) / max(np.nanmin(x), 1e-12) > 50:
            ax.set_xscale("log")
    for ax in list(axes.flat)[len(params) :]:
        ax.axis("off")
    fig.suptitle(f"{metric} against each hyperparameter (colour: epoch budget)")
    return _png(fig)


NOT_APPLICABLE = -0.2  # where a parallel-coordinates line crosses the axis of a value its trial does not have


def parallel_positions(rows: list[dict[str, Any]], axes_names: Sequence[str], metric: str) -> tuple[np.ndarray, list[str]]:
    """Each trial's height on each axis (0-1, its range), and the axes' labels. A value the trial does not have
    (`filters_3` of a 2-block model) sits at `NOT_APPLICABLE`, below the range, so that every line still
    reaches the score axis (a gap there hid the score of every trial without some conditional value)."""
    matrix, tick_labels = [], []
    for name in axes_names:
        values, labels = _numeric([r.get(name) if name != metric else r["score"] for r in rows])
        given = values[~np.isnan(values)]
        low, high = (given.min(), given.max()) if len(given) else (0.0, 0.0)
        scaled = (values - low) / (high - low) if high > low else np.full_like(values, 0.5)
        matrix.append(np.where(np.isnan(values), NOT_APPLICABLE, scaled))
        span = f"{labels[0]}..{labels[-1]}" if labels else f"{low:.3g}..{high:.3g}" if len(given) else "n/a"
        tick_labels.append(f"{name}\n{span}")
    return np.array(matrix).T, tick_labels


def parallel_coordinates(rows: list[dict[str, Any]], params: Sequence[str], metric: str) -> bytes:
    plt = _plt()
    axes_names = [*params, metric]
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(axes_names)), 4))
    data, tick_labels = parallel_positions(rows, axes_names, metric)
    scores = np.array([r["score"] for r in rows], dtype=float)
    colours = plt.cm.viridis((scores - scores.min()) / (np.ptp(scores) or 1))
    for line, colour in sorted(zip(data, colours), key=lambda item: item[1][0]):
        ax.plot(range(len(axes_names)), line, color=colour, alpha=0.7)
    if (data == NOT_APPLICABLE).any():
        ax.axhline(NOT_APPLICABLE, color="grey", linewidth=0.5, linestyle=":")
        ax.text(-0.3, NOT_APPLICABLE, "n/a", fontsize=7, color="grey", va="center", ha="right")
    ax.set_xticks(range(len(axes_names)), tick_labels, fontsize=8)
    ax.set_yticks([])
    ax.set_title(f"Completed trials (colour: {metric}; each axis scaled to its range; n/a: not in that trial)")
    return _png(fig)


def learning_curves(curves: dict[str, list[tuple[int, float, str]]], metric: str) -> bytes:
    """`curves[trial] = [(epoch, value, segment_trial), ...]`: a promotion drawn on from its parent's curve."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for trial_id, points in curves.items():
        epochs = [p[0] for p in points]
        values = [p[1] for p in points]
        (line,) = ax.plot(epochs, values, marker="o", markersize=3, label=trial_id)
        joins = [i for i in range(1, len(points)) if points[i][2] != points[i - 1][2]]
        for i in joins:
            ax.axvline(epochs[i] - 0.5, color=line.get_color(), alpha=0.25, linestyle=":")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title("Learning curves of the top trials (dotted: a Hyperband promotion continues its parent)")
    ax.legend(fontsize=8)
    return _png(fig)


def score_over_time(points: list[tuple[float, float]], metric: str, sign: float) -> bytes:
    """Each trial's score at the time it finished, and the best so far."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    times = [t / 60 for t, _ in points]
    scores = [s for _, s in points]
    best, running = [], None
    for score in scores:
        running = score if running is None or sign * score > sign * running else running
        best.append(running)
    ax.scatter(times, scores, s=16, alpha=0.6, label="trial")
    ax.step(times, best, where="post", color="C3", label="best so far")
    ax.set_xlabel("minutes since the search started")
    ax.set_ylabel(metric)
    ax.legend()
    return _png(fig)


def importance_bars(values: dict[str, dict[str, float]]) -> bytes:
    plt = _plt()
    names = sorted(values, key=lambda n: values[n]["mean"])
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(names) + 1.2))
    ax.barh(names, [values[n]["mean"] for n in names], xerr=[values[n]["std"] for n in names], color="C0", alpha=0.8)
    ax.set_xlabel("importance (mean and spread over bootstrap resamples)")
    return _png(fig)


def confusion_matrix(confusion: np.ndarray, class_names: Sequence[str]) -> bytes:
    plt = _plt()
    size = max(4, 0.45 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(confusion, cmap="Blues")
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(class_names) <= 20:
        for (i, j), count in np.ndenumerate(confusion):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color="white" if count > confusion.max() / 2 else "black")
    return _png(fig)


def _rgb(image: np.ndarray, cmap: str) -> np.ndarray:
    """An image as `imshow` shows it, as RGB floats in [0, 1]: one channel through `cmap` over its own range,
    colour as it is (uint8) or stretched to its range (floats)."""
    from matplotlib import colormaps

    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    if image.ndim == 3 and image.dtype == np.uint8:
        return image / 255.0
    low, high = float(image.min()), float(image.max())
    scaled = (image - low) / (high - low) if high > low else np.zeros(image.shape)
    return scaled if image.ndim == 3 else colormaps[cmap](scaled)[..., :3]


CELL, GAP = 128, 32  # pixels of each panel's image and of the space beside it (for its caption's overhang)


def _mosaic(panels: Sequence[Sequence[tuple[np.ndarray, str, str]]], caption_lines: int, fontsize: float) -> bytes:
    """Rows of image panels captioned in their colour, each scaled to a `CELL` square (nearest pixels, aspect kept) and
    placed pixel for pixel (`figimage`, no axes, no resampling). An axes per panel took 0.34 s to draw a
    25-image grid; one image of the whole grid, 0.2 s and ~85 MB (matplotlib resamples it in floats)."""
    plt = _plt()
    from matplotlib.transforms import IdentityTransform

    columns = max(len(row) for row in panels)
    band = int(fontsize * 1.35 * caption_lines * DPI / 72) + 4
    width, height = columns * (CELL + GAP), len(panels) * (CELL + GAP + band)
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    fig.suppressComposite = True  # each panel drawn as it is, not merged into one figure-sized image first
    for r, row in enumerate(panels):
        top = r * (CELL + GAP + band) + band  # pixels from the top; matplotlib counts from the bottom
        for c, (image, caption, colour) in enumerate(row):
            left = c * (CELL + GAP) + GAP // 2
            if caption:
                fig.text(left + CELL / 2, height - top + 2, caption, ha="center", va="bottom", fontsize=fontsize, color=colour, transform=IdentityTransform())
            h, w = image.shape[:2]
            scale = CELL / max(h, w)
            nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
            pixels = np.round(255 * image[np.arange(nh) * h // nh][:, np.arange(nw) * w // nw]).astype(np.uint8)
            fig.figimage(pixels, xo=left + (CELL - nw) // 2, yo=height - top - (CELL - nh) // 2 - nh, origin="upper")
    return _png(fig, tight=False)


RIGHT, WRONG = "#1a7f37", "#cf222e"  # captions of correct and wrong predictions, green and red as in the tutorials


def image_grid(images: np.ndarray, titles: Sequence[str], columns: int = 5, correct: Sequence[bool] | None = None) -> bytes:
    """Captioned images; with `correct`, each caption green or red by whether its prediction is right."""
    colours = ["black"] * len(titles) if correct is None else [RIGHT if right else WRONG for right in correct]
    panels = [(_rgb(image, "gray"), title, colour) for image, title, colour in zip(images, titles, colours)]
    return _mosaic([panels[i : i + columns] for i in range(0, len(panels), columns)], max((t.count("\n") + 1 for t in titles), default=1), 8)


def feature_maps(image: np.ndarray, maps: list[np.ndarray], layer_names: Sequence[str]) -> bytes:
    """Each layer's first 8 channels beside the input image, each channel over its own range."""
    rows = []
    for row, (feature_map, name) in enumerate(zip(maps, layer_names)):
        channels = [(_rgb(feature_map[:, :, i], "viridis"), f"{name}:{i}", "black") for i in range(min(8, feature_map.shape[-1]))]
        rows.append([(_rgb(image, "gray"), "input" if row == 0 else "", "black"), *channels])
    return _mosaic(rows, 1, 7)


def layer_maps(image: np.ndarray, maps: dict[str, np.ndarray], per_row: int = 8) -> bytes:
    """The input image, then each layer's filters in rows of `per_row`, each over its own range (as `imshow`)."""
    rows: list[list[tuple[np.ndarray, str, str]]] = [[(_rgb(image, "gray"), "input", "black")]]
    for name, feature_map in maps.items():
        channels = [(_rgb(feature_map[:, :, i], "viridis"), f"{name}:{i}", "black") for i in range(feature_map.shape[-1])]
        rows += [channels[i : i + per_row] for i in range(0, len(channels), per_row)]
    return _mosaic(rows, 1, 7)


def feature_scatter(
    coords: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    share: Sequence[float] | None,
    title: str = "Penultimate-layer features of the test set (PCA)",
) -> bytes:
    """Points coloured by class; `share` (the variance each component explains) labels PCA's axes."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 5))
    for index, name in enumerate(class_names):
        chosen = labels == index
        ax.scatter(coords[chosen, 0], coords[chosen, 1], s=8, alpha=0.7, label=name, color=plt.cm.tab20(index % 20))
    if share is not None:
        ax.set_xlabel(f"PC 1 ({share[0]:.0%} of variance)")
        ax.set_ylabel(f"PC 2 ({share[1]:.0%} of variance)")
    ax.legend(fontsize=7, markerscale=2, loc="best", ncol=2 if len(class_names) > 10 else 1)
    ax.set_title(title, fontsize=10)
    return _png(fig)
