"""What the CLI says when a model file has no card or a damaged one, or when its reader goes away: one line
of warning or error naming the file, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tuning.cli import main

from .conftest import ROOT

CLASSES = ["zero", "one", "two"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """An untrained 8x8 grayscale classifier of three classes, saved as `tuning export` saves one (no card yet)."""
    import keras

    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Rescaling(1 / 16, name="rescale")(inputs)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax", name="probabilities")(x)
    path = tmp_path_factory.mktemp("model") / "model.keras"
    keras.Model(inputs, outputs, name="tuning_cnn").save(path)
    return path


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A folder of class sub-folders named by index, as a model without a card names its classes."""
    folder = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(0)
    for label in ("0", "1"):
        (folder / label).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / label / f"{i}.png")
    return folder


def card(value_max: float = 16.0) -> dict:
    return {"class_names": CLASSES, "input": {"shape": [8, 8, 1], "dtype": "uint8", "value_max": value_max}}


def beside(model, folder, files: dict[str, str] | None = None):
    """A copy of the model in `folder`, with the given files (name: text) beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, folder / "model.keras")
    for name, text in (files or {}).items():
        (folder / name).write_text(text)
    return folder / "model.keras"


def test_a_model_without_its_card_predicts_with_a_warning_of_what_it_assumes(model, labelled, tmp_path, capsys):
    lone = beside(model, tmp_path / "copied")

    assert main(["predict", str(lone), str(labelled / "0" / "0.png")]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{labelled / '0' / '0.png'}: ")
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1
    assert f"no model_card.json beside {lone}" in warning[0]
    assert "assuming images of 0-255 (uint8) and classes named by their index (0-2)" in warning[0]
    assert "keep the model_card.json that `tuning export` writes beside the model" in warning[0]

    assert main(["evaluate", str(lone), str(labelled)]) == 0
    assert "warning: no model_card.json beside" in capsys.readouterr().err


def test_a_model_with_its_card_or_a_runs_best_model_predicts_without_a_warning(model, labelled, tmp_path, capsys):
    exported = beside(model, tmp_path / "export", {"model_card.json": json.dumps(card())})
    run_data = {"data": {"classes": CLASSES, "image_shape": [8, 8, 1], "dtype": "uint8", "value_max": 16.0}}
    best = beside(model, tmp_path / "run", {"run.json": json.dumps(run_data)}).rename(tmp_path / "run" / "best_model.keras")

    for path in (exported, best):
        assert main(["predict", str(path), str(labelled / "1" / "0.png")]) == 0
        out, err = capsys.readouterr()
        assert "warning" not in err
        assert out.split(": ", 1)[1].split()[0] in CLASSES


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"class_names": [', "not a readable model card (JSONDecodeError: Expecting value: line 1 column 18"),
        ('["zero", "one"]', "not a usable model card (class_names: expected a list of class names; input: expected {shape, dtype, value_max})"),
        (json.dumps({**card(), "input": {"shape": [8, 8], "dtype": "uint8"}}), "input.shape: expected [height, width, channels]. Received: [8, 8]"),
        (json.dumps({**card(), "class_names": ["cat", "dog"]}), "class_names has 2 names, but"),
    ],
    ids=["not JSON", "not an object", "a wrong shape", "another model's classes"],
)
def test_a_damaged_model_card_is_named_in_a_one_line_error(model, labelled, tmp_path, capsys, text, message):
    damaged = beside(model, tmp_path / "export", {"model_card.json": text})

    assert main(["predict", str(damaged), str(labelled)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"error: {tmp_path / 'export' / 'model_card.json'}: ")
    assert message in err
    assert "Traceback" not in err


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path):
    """`tuning ... | head -3`: the pipe is closed before the command writes, as when `head` has read enough."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tuning", "validate", str(ROOT / "search_spaces" / "digits.yaml")],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == 141


def test_a_manifest_moved_away_from_its_images_names_them_and_where_they_were_looked_for(model, labelled, tmp_path, capsys):
    exported = beside(model, tmp_path / "export", {"model_card.json": json.dumps(card())})
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "images.csv").write_text("path,label\n" + "".join(f"{label}/{i}.png,{CLASSES[int(label)]}\n" for label in "01" for i in range(2)))
    (moved / "kinds.csv").write_text("path,kind\n0/0.png,zero\n")
    assert main(["evaluate", str(exported), str(moved / "kinds.csv")]) == 2
    assert (
        "a manifest needs --label-column (one column of class names) or --label-columns (one-hot columns); neither is given, "
        "and it has no `label` column (its columns: path, kind)"
    ) in capsys.readouterr().err
    for command in (
        ["evaluate", str(exported), str(moved / "images.csv")],  # its `label` column is taken, as `path` is
        ["evaluate", str(exported), str(moved / "images.csv"), "--label-column", "label"],
        ["features", str(exported), str(moved / "images.csv"), "--out", str(tmp_path / "f")],
    ):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "none of the 4 files could be read as images (no such file: " in err and "0/0.png" in err, err
        assert f"paths are relative to the manifest's folder, {moved}" in err


@pytest.mark.parametrize(
    "option, message",
    [(["--extend", "0"], "expected a whole number of at least 1, not '0'"), (["--gpus", "x,y"], "expected GPU indices separated by commas, such as 0,1")],
)
def test_search_options_are_checked_as_they_are_read(option, message, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["search", "spec.yaml", *option])
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_a_class_with_a_slash_in_its_name_is_found_in_a_folder_named_without_it(model, tmp_path):
    """Fashion-MNIST's `T-shirt/top` cannot be a folder name; `T-shirt_top` stands for it in evaluate and features."""
    from tuning.features import extract_features
    from tuning.predict import evaluate

    names = ["T-shirt/top", "Trouser", "Pullover"]
    exported = beside(model, tmp_path / "export", {"model_card.json": json.dumps({**card(), "class_names": names})})
    rng = np.random.default_rng(1)
    for folder in ("T-shirt_top", "Trouser"):
        (tmp_path / "photos" / folder).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / "photos" / folder / f"{i}.png")
    result = evaluate(exported, tmp_path / "photos")
    assert (result["images"], result["ignored"]) == (4, {}) and sum(result["confusion_matrix"][0]) == 2
    features = extract_features(exported, tmp_path / "photos", out=tmp_path / "features")
    table = (tmp_path / "features" / "features.csv").read_text()
    assert features["images"] == 4 and table.count("T-shirt/top,") >= 2 and "T-shirt_top," not in table


def test_labels_written_as_whole_numbers_match_a_model_trained_before_they_were_named_as_integers(model, labelled, tmp_path):
    """A CSV column holding 2.0 once named its classes '0.0', '1.0': an old model's card says so, new manifests say '0'."""
    from tuning.predict import evaluate, model_labels

    old = beside(model, tmp_path / "old", {"model_card.json": json.dumps({**card(), "class_names": ["0.0", "1.0", "2.0"]})})
    (tmp_path / "sheet.csv").write_text("path,label\n" + "".join(f"{labelled}/{d}/{i}.png,{d}\n" for d in "01" for i in range(2)))
    result = evaluate(old, tmp_path / "sheet.csv", label_column="label")
    assert (result["images"], result["ignored"]) == (4, {}) and [sum(row) for row in result["confusion_matrix"]] == [2, 2, 0]
    assert model_labels(["2.0", "x", "T-shirt_top", "3"], ["2", "x", "T-shirt/top", "1.0"]) == ["2", "x", "T-shirt/top", "3"]
