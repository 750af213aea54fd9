"""What the best model does on the test set, saved once so reports can be rebuilt from the run folder alone.

Writes `best/analysis.json` (metrics, per-class precision/recall/F1, confusion matrix, layer summary) and
`best/analysis.npz` (random test images with their predictions, misclassified images, one image through the
augmentation layers, first-layer feature maps of one image, a 2-D PCA of the penultimate features). Keras 3
only, so it runs on every backend.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .records import write_json

MAX_MISCLASSIFIED = 25
MAX_FEATURE_MAPS = 16
TEST_SAMPLES = 20  # random test images shown with their predictions, as the tutorials' "P: ... (A: ...)" grid
AUGMENTED_DRAWS = 8
MAX_PCA_POINTS = 2000


def layer_summary(model: Any) -> list[str]:
    """The model's layers as plain-text lines (name and type, output shape, parameters, then the totals) for the
    reports. Keras' own `model.summary` draws a box table as wide as the terminal and crops what does not fit
    (with no terminal, at 80 columns: the parameter column was lost); these lines fit any width and read the
    same in Markdown and HTML."""
    rows = [["Layer (type)", "Output Shape", "Param #"]]
    rows += [[f"{layer.name} ({type(layer).__name__})", _output_shape(layer), f"{layer.count_params():,}"] for layer in model.layers]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    rule = "  ".join("-" * width for width in widths)
    table = [f"{name:<{widths[0]}}  {shape:<{widths[1]}}  {params:>{widths[2]}}" for name, shape, params in rows]
    total = int(model.count_params())
    trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    totals = [f"Total params: {total:,}", f"Trainable params: {trainable:,}", f"Non-trainable params: {total - trainable:,}"]
    return [f'Model: "{model.name}"', table[0], rule, *table[1:], rule, *totals]


def _output_shape(layer: Any) -> str:
    try:
        output = layer.output
    except (AttributeError, ValueError):  # a layer never called in a graph has no symbolic output
        return "?"
    outputs = output if isinstance(output, (list, tuple)) else [output]
    return ", ".join(str(tuple(o.shape)) for o in outputs)


def per_class_metrics(confusion: np.ndarray) -> dict[str, list[float]]:
    """Precision, recall and F1 per class from a confusion matrix (rows: true, columns: predicted)."""
    tp = np.diag(confusion).astype(float)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    return {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(), "support": actual.astype(int).tolist()}


def pca_2d(features: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """The first two principal components (via SVD) and the share of variance each explains."""
    centered = features - features.mean(axis=0, keepdims=True)
    _, singular, vt = np.linalg.svd(centered, full_matrices=False)
    variance = singular**2
    share = (variance / variance.sum()).tolist() if variance.sum() > 0 else [0.0, 0.0]
    components = vt[:2] if vt.shape[0] >= 2 else np.vstack([vt, np.zeros_like(vt)])[:2]
    return centered @ components.T, (share + [0.0, 0.0])[:2]


def metrics_from_predictions(model: keras.Model, probs: np.ndarray, y_test: np.ndarray) -> dict[str, float]:
    """Accuracy and loss as `model.evaluate` reports them (the compiled loss, regularization included),
    from the test predictions the analysis makes anyway: evaluating as well traced a test step for this
    once-used model and ran the test set twice (~0.3 s on 2 cores for 1,000 images)."""
    one_hot = np.eye(probs.shape[1], dtype="float32")[y_test]
    loss = model.compute_loss(y=one_hot, y_pred=probs.astype("float32"), training=False)
    return {"accuracy": float((probs.argmax(axis=1) == y_test).mean()), "loss": float(keras.ops.convert_to_numpy(loss))}


def _augmented(model: keras.Model, image: np.ndarray) -> np.ndarray | None:
    """One image through the model's augmentation layers as in training, several draws (None without any):
    what the network sees, to check that the amounts are sensible."""
    layers = [layer for layer in model.layers if layer.name.startswith("augment_")]
    if not layers:
        return None
    through = keras.Model(model.inputs[0], layers[-1].output)
    batch = np.repeat(image, AUGMENTED_DRAWS, axis=0)
    drawn = np.asarray(keras.ops.convert_to_numpy(through(batch, training=True)), dtype=np.float32)  # in [0, 1]
    # As 8-bit RGB, shown as they are: a plot stretching each to its own range would hide a contrast change.
    pixels = np.clip(np.round(drawn * 255), 0, 255).astype(np.uint8)
    return np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels[..., :3]


def analyze_best(model: keras.Model, x_test: np.ndarray, y_test: np.ndarray, class_names: tuple[str, ...], out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """Evaluate `model` on the test set and save what the report shows about it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    from .batches import predict

    probs = predict(model, x_test)
    predicted = probs.argmax(axis=1)
    classes = len(class_names)
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (y_test, predicted), 1)

    wrong = np.flatnonzero(predicted != y_test)
    wrong = wrong[np.argsort(-probs[wrong, predicted[wrong]])][:MAX_MISCLASSIFIED]  # most confident mistakes first

    conv_layers = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)][:2]
    maps: list[np.ndarray] = []
    if conv_layers:
        probe = keras.Model(model.inputs, [layer.output for layer in conv_layers])
        outputs = probe.predict(np.asarray(x_test[:1]), verbose=0)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        maps = [np.asarray(o)[0, :, :, :MAX_FEATURE_MAPS] for o in outputs]

    rng = np.random.default_rng(seed)
    sample = np.sort(rng.permutation(len(y_test))[:MAX_PCA_POINTS])
    penultimate = keras.Model(model.inputs, model.get_layer("probabilities").input)
    features = np.asarray(penultimate.predict(np.asarray(x_test[sample]), batch_size=256, verbose=0)).reshape(len(sample), -1)
    coords, share = pca_2d(features.astype(np.float64))

    shown = np.sort(np.random.default_rng(seed + 1).permutation(len(y_test))[:TEST_SAMPLES])
    try:
        augmented = _augmented(model, np.asarray(x_test[:1]))
    except Exception as exc:  # noqa: BLE001 - a preview must never cost the best model's analysis
        print(f"warning: no augmentation preview ({type(exc).__name__}: {exc})", file=sys.stderr)
        augmented = None

    lines = layer_summary(model)
    arrays: dict[str, Any] = {
        "misclassified_images": np.asarray(x_test[wrong]),
        "misclassified_true": y_test[wrong],
        "misclassified_pred": predicted[wrong],
        "misclassified_confidence": probs[wrong, predicted[wrong]],
        "feature_image": np.asarray(x_test[0]),
        "pca_coords": coords.astype(np.float32),
        "pca_labels": y_test[sample],
        "sample_images": np.asarray(x_test[shown]),
        "sample_true": y_test[shown],
        "sample_pred": predicted[shown],
        "sample_confidence": probs[shown, predicted[shown]],
    }
    if augmented is not None:
        arrays["augmented_images"] = augmented
    for index, feature_map in enumerate(maps):
        arrays[f"feature_maps_{index}"] = feature_map.astype(np.float32)
    np.savez_compressed(out_dir / "analysis.npz", **arrays)
    test = metrics_from_predictions(model, probs, y_test)
    analysis = {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "test_count": int(len(y_test)),
        "class_names": list(class_names),
        "confusion": confusion.tolist(),
        "per_class": per_class_metrics(confusion),
        "feature_map_layers": [layer.name for layer in conv_layers],
        "pca_explained_variance": share,
        "params": int(model.count_params()),
        "summary": lines,
    }
    write_json(out_dir / "analysis.json", analysis)
    return analysis
