"""Export in every format, reload without `tuning`, rebuild from best_config.yaml, and predict on image files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import tuning
from tuning import DataError, RunError, search
from tuning.cli import main
from tuning.export import export
from tuning.predict import load_predictor, predict, read_image

from .conftest import tiny

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    run = search(tiny(), name="export", out=folder, quiet=True)
    paths = export(run.path, quantize=True)
    return run, paths


def test_exporting_a_trial_that_did_not_complete_says_what_became_of_it(exported, tmp_path):
    run, _ = exported
    shutil.copytree(run.path, tmp_path / "copy")
    trial = sorted((tmp_path / "copy" / "trials").glob("*.json"))[-1]
    record = json.loads(trial.read_text())
    trial.write_text(json.dumps({**record, "status": "infeasible", "reason": "the feature map shrinks to 0x0 after block 3"}))
    with pytest.raises(
        RunError, match=rf"trial '{trial.stem}' of .* did not complete \(infeasible: the feature map shrinks to 0x0 after block 3\), so it left no model"
    ):
        export(tmp_path / "copy", trial=trial.stem)
    with pytest.raises(RunError, match=r"trial '999' of .* is not a trial; completed trials: "):
        export(tmp_path / "copy", trial="999")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Digits written as files of several kinds: grayscale PNG, RGBA PNG, RGB JPEG, BMP, other sizes."""
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("images")
    digits = (load_digits().images * 15).astype("uint8")
    Image.fromarray(digits[0], "L").resize((32, 32)).save(folder / "gray.png")
    Image.fromarray(np.dstack([digits[1]] * 3 + [np.full((8, 8), 255, "uint8")]), "RGBA").save(folder / "rgba.png")
    Image.fromarray(np.dstack([digits[2]] * 3)).resize((40, 24)).save(folder / "rgb.jpg")
    Image.fromarray(digits[3]).save(folder / "plain.bmp")
    (folder / "notes.txt").write_text("not an image, and not named like one")
    return folder


def test_every_format_is_written_with_card_and_config(exported):
    run, paths = exported
    assert {"keras", "savedmodel", "tflite", "tflite_quantized", "card", "card_json", "config"} <= set(paths)
    card = json.loads(paths["card_json"].read_text())
    best = run.best
    assert card["trial_id"] == best["trial_id"] and card["score"] == pytest.approx(best["score"])
    assert card["class_names"] == [str(i) for i in range(10)]
    assert card["input"] == {"shape": [8, 8, 1], "dtype": "uint8", "value_max": 16.0}
    assert card["hyperparameters"] == best["values"]
    assert card["test_metrics"]["accuracy"] == pytest.approx(best["test"]["accuracy"], abs=1e-6)
    assert card["spec_hash"] == run.manifest["spec_hash"] and "keras" in card["versions"]
    assert "checkpoint of trial" in card["model_source"]


def test_formats_agree_on_the_same_images(exported, images):
    _, paths = exported
    predictors = {name: load_predictor(paths[name]) for name in ("keras", "savedmodel", "tflite", "tflite_quantized")}
    files = sorted(p for p in images.iterdir() if p.suffix != ".txt")
    batch = np.stack([read_image(f, (8, 8, 1)) for f in files])
    probs = {name: p.predict(batch) for name, p in predictors.items()}
    np.testing.assert_allclose(probs["savedmodel"], probs["keras"], atol=1e-5)
    np.testing.assert_allclose(probs["tflite"], probs["keras"], atol=1e-5)
    np.testing.assert_allclose(probs["tflite_quantized"], probs["keras"], atol=0.05)  # dynamic-range int8 weights


def test_exports_load_in_a_process_without_tuning(exported):
    _, paths = exported
    code = f"""
import sys, numpy as np, keras, tensorflow as tf
images = np.random.default_rng(0).integers(0, 17, (3, 8, 8, 1)).astype('uint8')
model = keras.saving.load_model({str(paths["keras"])!r}, safe_mode=True)
a = model.predict(images.astype('float32'), verbose=0)
served = tf.saved_model.load({str(paths["savedmodel"])!r})  # keep a reference while calling it
b = served.serve(tf.constant(images)).numpy()
assert np.allclose(a, b, atol=1e-5) and a.shape == (3, 10)
print('tuning imported:', 'tuning' in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tuning imported: False" in result.stdout


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_the_export_command_writes_a_tflite_model_that_predicts_like_the_keras_one(exported, tmp_path, images, backend):
    """`tuning export` in its own process, as a user runs it (where tuning's start skips TensorFlow's
    optional JAX import, see `runtime.quiet_logs`). On JAX (as on PyTorch) a TensorFlow process converts the
    model: JAX's own route could not convert the dropout and augmentation layers' seed state to TFLite."""
    run, paths = exported
    result = subprocess.run(
        [sys.executable, "-m", "tuning", "export", str(run.path), "--format", "tflite", "--out", str(tmp_path / "cli")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KERAS_BACKEND": backend},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    batch = np.stack([read_image(f, (8, 8, 1)) for f in sorted(images.glob("*.png"))])
    ours = load_predictor(tmp_path / "cli" / "model.tflite").predict(batch)
    np.testing.assert_allclose(ours, load_predictor(paths["keras"]).predict(batch), atol=1e-5)


def test_best_config_validates_and_train_rebuilds_the_same_model(exported, tmp_path, capsys):
    import keras

    _, paths = exported
    assert main(["validate", str(paths["config"])]) == 0
    assert "Search space: 0 hyperparameters" in capsys.readouterr().out
    assert main(["train", str(paths["config"]), "--out", str(tmp_path), "--quiet"]) == 0
    assert "training finished: " in (printed := capsys.readouterr().out) and "; 1 trial in " in printed
    retrained = keras.saving.load_model(tmp_path / f"export-trial{paths['keras'].parent.name}" / "best_model.keras", safe_mode=True)
    original = keras.saving.load_model(paths["keras"], safe_mode=True)
    assert [type(layer).__name__ for layer in retrained.layers] == [type(layer).__name__ for layer in original.layers]
    assert retrained.count_params() == original.count_params()


def test_best_config_retrains_a_trial_epoch_for_epoch(tmp_path, capsys):
    """best_config.yaml rebuilds the trial as the search trained it, not merely its architecture: seeded with the
    trial's own seed, its weights, dropout and epoch orders are the search's, so is every validation score."""
    from tuning.engine import trial_seed

    spec = tiny(
        model={"blocks": 1, "filters": {"choice": [8, 16]}, "head_dropout": 0.3},
        search={"algorithm": "random", "max_trials": 3, "max_epochs": 3, "seed": 5},
    )
    run = search(spec, name="replay", out=tmp_path, quiet=True)
    last = max((r for r in run.records() if r.status == "completed"), key=lambda r: int(r.trial_id))
    assert int(last.trial_id) > 0  # trial 0 of the search has the seed that a one-trial run derives from the same seed
    assert main(["export", str(run.path), "--trial", last.trial_id, "--format", "keras", "--out", str(tmp_path / "export")]) == 0
    assert main(["train", str(tmp_path / "export" / "best_config.yaml"), "--out", str(tmp_path / "trained"), "--quiet"]) == 0
    capsys.readouterr()
    (again,) = tuning.open_run(tmp_path / "trained" / f"replay-trial{last.trial_id}").records()
    assert len(again.history) == last.best_epoch  # best_config.yaml trains to the trial's best epoch
    for ours, theirs in zip(again.history, last.history):
        assert (ours["val_loss"], ours["val_accuracy"]) == pytest.approx((theirs["val_loss"], theirs["val_accuracy"]), abs=1e-6)
    config = (tmp_path / "export" / "best_config.yaml").read_text()
    assert again.seed == last.seed and f"  trial_seed: {last.seed}\n" in config and not config.startswith("#")
    card = (tmp_path / "export" / "model_card.md").read_text()
    assert f"Rebuild it with `tuning train best_config.yaml`, seeded as the search seeded it (search.trial_seed: {last.seed})." in card

    old = tmp_path / "old_best_config.yaml"  # as export wrote it before search.trial_seed: it still trains, seeded as then
    old.write_text(config.replace(f"  trial_seed: {last.seed}\n", ""))
    assert main(["train", str(old), "--name", "old", "--out", str(tmp_path / "trained"), "--quiet"]) == 0
    (before,) = tuning.open_run(tmp_path / "trained" / "old").records()
    assert before.seed == trial_seed(5, "0") != last.seed


def test_best_config_of_a_promoted_trial_says_it_will_not_reproduce_the_score(exported, tmp_path):
    """A Hyperband promotion trained on top of its parent's checkpoint, which one seed from scratch cannot replay:
    the file and the card say so, naming the parent, instead of promising the score."""
    import yaml

    run, _ = exported
    promoted = next(r for r in run.records() if r.status == "completed" and r.parent is not None)
    paths = export(run.path, trial=promoted.trial_id, formats=["keras"], out=tmp_path)
    text = paths["config"].read_text()
    comment = " ".join(line[2:] for line in text.splitlines() if line.startswith("# "))
    why = f"trial {promoted.trial_id} continued from trial {promoted.parent}'s checkpoint"
    assert text.startswith("# ") and comment.startswith(f"`tuning train` on this file will not reproduce the trial's score exactly: {why}")
    assert yaml.safe_load(text)["search"]["trial_seed"] == promoted.seed
    assert f"the retrained model will not reproduce the score exactly: {why}" in paths["card"].read_text()
    assert json.loads(paths["card_json"].read_text())["rebuild"].startswith("`tuning train best_config.yaml` rebuilds this configuration, but")


def test_train_refuses_a_spec_with_tuned_values(tmp_path, capsys):
    from .conftest import write_spec

    assert main(["train", str(write_spec(tmp_path, tiny()))]) == 2
    assert "needs every value fixed, but these are tuned: blocks, filters, learning_rate" in capsys.readouterr().err


def test_a_run_searched_on_arrays_exports_with_its_own_test_metrics(tmp_path, capsys):
    """The spec's source (digits, by default) is not what such a run trained on: export must not reload it."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.repeat((digits.images[:400] * 15).astype("uint8")[..., None], 3, axis=-1)  # 8x8x3: digits' own shape is 8x8x1
    y = digits.target[:400]
    name = "arrays_" + "x" * 57  # 64 characters, the longest run name: best_config.yaml's name must still fit
    run = search(tiny(search={"max_epochs": 2, "max_trials": 2}), name=name, out=tmp_path, data=(x, y), quiet=True)
    paths = run.export(formats="keras")
    card = json.loads(paths["card_json"].read_text())
    assert (card["data_source"], card["test_metrics"]) == ("arrays", run.best["test"])
    config = paths["config"].read_text()
    trained_name = f"{name[: 64 - len('-trial' + run.best['trial_id'])]}-trial{run.best['trial_id']}"
    assert config.startswith("# This run was searched on arrays") and f"name: {trained_name}\n" in config

    assert main(["export", str(run.path), "--retrain", "--format", "keras", "--out", str(tmp_path / "cli")]) == 2
    assert f"tuning.open_run({str(run.path)!r}).export(retrain=True, data=" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("")
    assert main(["export", str(run.path), "--format", "keras", "--out", str(tmp_path / "a_file")]) == 2
    assert "a_file is a file; give a folder" in capsys.readouterr().err

    other = run.trials[(run.trials["status"] == "completed") & (run.trials["trial_id"] != run.best["trial_id"])]["trial_id"].iloc[0]
    untested = json.loads(run.export(trial=other, formats="keras", out=tmp_path / "other")["card_json"].read_text())
    assert untested["test_metrics"] is None and "searched on arrays it does not keep; export(data=...) tests it" in untested["test_note"]
    with pytest.raises(DataError, match=r"the arrays' classes \['0', '1', '2'\] are not the run's \['0', '1', '2', '3'"):
        run.export(formats="keras", out=tmp_path / "wrong", data=(x, y % 3))
    assert not (tmp_path / "wrong").exists()  # refused before anything was written
    again = run.export(formats=["keras"], out=tmp_path / "again", retrain=True, data=(x, y))
    card = json.loads(again["card_json"].read_text())
    assert card["model_source"].startswith("retrained") and 0 <= card["test_metrics"]["accuracy"] <= 1
    assert card["data_source"] == "arrays passed to export(data=...)"
    trained = tuning.train(paths["config"], out=tmp_path, data=(x, y), quiet=True)
    assert trained.path.name == trained_name and trained.best["test"]["accuracy"] > 0.3


def test_best_config_of_a_run_searched_on_arrays_trains_only_on_those_arrays(tmp_path, capsys):
    """Its data section once kept the spec's `source: digits` under a comment, and `tuning train` trained an 8x8 network
    on scikit-learn's digits; now it says `source: arrays`, which the CLI refuses and Python takes with `data=`."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.kron((digits.images[:300] * 15).astype("uint8"), np.ones((2, 2), "uint8"))  # 16x16, as the search's network
    y = digits.target[:300]
    spec = tiny(search={"algorithm": "random", "max_trials": 1, "max_epochs": 1})
    run = search(spec, name="arr", out=tmp_path, data=(x, y), quiet=True)
    paths = run.export(formats="keras")
    config = paths["config"]
    data = yaml.safe_load(config.read_text())["data"]
    assert data == {"source": "arrays", "validation_split": 0.2, "test_split": 0.2, "max_train_samples": 480, "max_test_samples": 200}
    rebuild = json.loads(paths["card_json"].read_text())["rebuild"]
    assert rebuild.startswith("Rebuild it with `tuning.train('best_config.yaml', data=(x_train, y_train, ...))` on the arrays it was searched on")

    for command in ("train", "validate"):
        assert main([command, str(config), *(["--out", str(tmp_path / "cli")] if command == "train" else [])]) == 2
        out, err = capsys.readouterr()
        assert err.startswith(f"error: {config}: data.source is `arrays`: this spec trains on numpy arrays passed from Python") and err.count("\n") == 1
        assert f"tuning.train({str(config)!r}, data=(x_train, y_train, ...))" in err and "or replace the data section with a source" in err
        assert "Traceback" not in out + err
    assert not (tmp_path / "cli").exists()  # refused before anything was trained or written
    with pytest.raises(DataError, match=r"data.source is `arrays`: .* tuning.train\('.*best_config.yaml', data="):
        tuning.estimate(config)

    assert tuning.plan(config, data=(x, y)).input_shape == (16, 16, 1)
    estimated = tuning.estimate(config, samples=1, data=(x, y))
    assert estimated["trials"] == 1 and estimated["train_images"] + estimated["validation_images"] == 240  # 300, less the 20% test split
    trained = tuning.train(config, out=tmp_path, data=(x, y), quiet=True)
    assert trained.manifest["data"]["origin"] == "arrays" and trained.manifest["data"]["image_shape"] == [16, 16, 1]
    assert trained.best_model().input_shape == run.best_model().input_shape == (None, 16, 16, 1)
    assert trained.best_model().count_params() == run.best_model().count_params()


def test_retrain_on_train_and_validation(exported, tmp_path):
    run, _ = exported
    paths = export(run.path, formats=["keras"], out=tmp_path, retrain=True)
    card = json.loads(paths["card_json"].read_text())
    assert card["model_source"].startswith("retrained on train + validation for")
    assert 0 <= card["test_metrics"]["accuracy"] <= 1


def test_predict_cli_on_a_folder_of_mixed_images(exported, images, capsys):
    _, paths = exported
    assert main(["predict", str(paths["tflite"]), str(images), "--top", "2", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert sorted(r["image"].rsplit("/", 1)[1] for r in results) == ["gray.png", "plain.bmp", "rgb.jpg", "rgba.png"]
    for result in results:
        assert len(result["top"]) == 2 and result["top"][0]["probability"] >= result["top"][1]["probability"]
        assert result["top"][0]["class"] in [str(i) for i in range(10)]


def test_predict_on_a_folder_skips_its_unreadable_files_and_names_them(exported, images, tmp_path, capsys):
    """As the search skips a corrupt download in a class folder, so does predict, saying which."""
    _, paths = exported
    folder = tmp_path / "mixed"
    shutil.copytree(images, folder)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    assert main(["predict", str(paths["keras"]), str(folder), "--json"]) == 0
    results = {Path(r["image"]).name: r for r in json.loads(capsys.readouterr().out)}
    assert sorted(results) == ["broken.png", "gray.png", "plain.bmp", "rgb.jpg", "rgba.png"]
    assert results["broken.png"]["error"].startswith("not a readable image") and "top" not in results["broken.png"]
    assert all(len(r["top"]) == 3 for name, r in results.items() if name != "broken.png")
    assert main(["predict", str(paths["keras"]), str(folder)]) == 0
    printed = capsys.readouterr()
    assert "broken.png: skipped, not a readable image" in printed.err and printed.out.count("\n") == 4


def test_predict_errors_are_clear(exported, images, tmp_path, capsys):
    _, paths = exported
    assert main(["predict", str(paths["keras"]), str(images / "notes.txt")]) == 2
    assert "notes.txt: not a readable image" in capsys.readouterr().err
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    assert main(["predict", str(paths["keras"]), str(tmp_path)]) == 2  # a folder with no readable image
    assert "none of the 1 image files could be read (e.g. " in capsys.readouterr().err
    with pytest.raises(DataError, match="top: expected a positive number"):
        predict(paths["keras"], [images], top=0)
    assert main(["predict", str(tmp_path / "missing.keras"), str(images)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "garbage.keras").write_bytes(b"not a zip")
    assert main(["predict", str(tmp_path / "garbage.keras"), str(images)]) == 2
    assert "garbage.keras: not a Keras model file (a .keras file is a zip archive" in capsys.readouterr().err
    assert main(["export", str(tmp_path)]) == 2
    assert "is not a tuning run" in capsys.readouterr().err


def test_a_run_on_a_relative_folder_exports_and_retrains_from_anywhere(tmp_path, monkeypatch):
    """`data.path` is relative to the spec's folder; export, `--retrain` and the written best_config.yaml
    (which lives in the run's export folder) find the images from another working folder too."""
    import yaml

    from .conftest import write_spec
    from .test_images import make_tree

    make_tree(tmp_path / "project" / "pets", per_class=6)
    spec = tiny(
        data={"directory": "pets", "image_size": [16, 16]},
        model={"blocks": 1, "filters": 8},
        training={"learning_rate": 3e-3, "batch_size": 16},
        search={"algorithm": "grid", "max_epochs": 1},
    )
    for key in ("source", "max_train_samples", "max_test_samples"):
        spec["data"].pop(key)
    spec_path = write_spec(tmp_path / "project", spec)
    monkeypatch.setenv("TUNING_CACHE", str(tmp_path / "cache"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["search", str(spec_path), "--out", "reports", "--quiet"]) == 0
    assert main(["export", "reports/spec", "--format", "keras", "--retrain"]) == 0
    config = next(Path("reports/spec/export").glob("*/best_config.yaml"))
    assert yaml.safe_load(config.read_text())["data"]["path"] == str((tmp_path / "project" / "pets").resolve())
    card = json.loads((config.parent / "model_card.json").read_text())  # decoded at 16x16: the model does not resize
    assert card["preprocessing"].startswith("inside the model: Rescaling(1/255); feed raw images of shape [16, 16, 3]")
    monkeypatch.chdir(config.parent)
    assert main(["train", "best_config.yaml", "--out", str(tmp_path / "trained"), "--quiet"]) == 0
    assert json.loads(next((tmp_path / "trained").glob("spec-trial*/run.json")).read_text())["data"]["classes"] == ["cat", "dog", "fox"]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """120 digits the tiny search never saw as class folders (0-9), a manifest of the same, a stray class, a broken file."""
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("labelled")
    digits = load_digits()
    rows = []
    for i in range(1797 - 120, 1797):
        path = folder / str(digits.target[i]) / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray((digits.images[i] * 15).astype("uint8"), "L").save(path)
        rows.append({"file": str(path.relative_to(folder)), "digit": str(digits.target[i])})
    import pandas as pd

    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    onehot = pd.DataFrame([{"file": r["file"], **{str(d): int(r["digit"] == str(d)) for d in range(10)}} for r in rows])
    onehot.to_excel(folder / "onehot.xlsx", index=False)
    (folder / "7" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    (folder / "letters").mkdir()
    Image.fromarray(np.zeros((8, 8), "uint8"), "L").save(folder / "letters" / "a.png")
    return folder


def test_evaluate_an_exported_model_on_labelled_images(exported, labelled, capsys):
    """The tutorials' inference mode: a folder of class sub-folders or a manifest, any exported format."""
    from tuning.predict import evaluate

    _, paths = exported
    result = evaluate(paths["keras"], labelled)
    assert result["images"] == 120 and result["ignored"] == {"letters": 1} and [Path(s["file"]).name for s in result["skipped"]] == ["broken.png"]
    predictor = load_predictor(paths["keras"])
    files = sorted(labelled.glob("[0-9]/[0-9]*.png"))
    probs = predictor.predict(np.stack([read_image(f, predictor.input_shape, predictor.dtype, predictor.value_max) for f in files]))
    truth = np.array([int(f.parent.name) for f in files])
    assert result["accuracy"] == pytest.approx(float((probs.argmax(1) == truth).mean()))
    assert np.asarray(result["confusion_matrix"]).sum() == 120 and sum(result["per_class"]["support"]) == 120
    assert all(m["true"] != m["predicted"] for m in result["mistakes"])
    by_sheet = evaluate(paths["tflite"], labelled / "labels.csv", path_column="file", label_column="digit")
    assert by_sheet["images"] == 120 and by_sheet["accuracy"] == pytest.approx(result["accuracy"], abs=1 / 120)
    assert main(["evaluate", str(paths["savedmodel"]), str(labelled)]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith(f"accuracy {result['accuracy']:.4f}") and "confusion matrix" in printed.out
    assert "1 unreadable file skipped (7/broken.png" in printed.err and "left out, not classes of this model: 1 image of letters" in printed.err
    columns = ",".join(str(d) for d in range(10))
    assert main(["evaluate", str(paths["keras"]), str(labelled / "onehot.xlsx"), "--path-column", "file", "--label-columns", columns, "--json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert as_json["images"] == 120 and as_json["accuracy"] == pytest.approx(result["accuracy"]) and as_json["confusion_matrix"] == result["confusion_matrix"]
    assert main(["evaluate", str(paths["keras"]), str(labelled / "labels.csv"), "--label-column", "digit"]) == 2  # its paths are in "file"
    assert "no column 'path'" in capsys.readouterr().err
    assert main(["evaluate", str(paths["keras"]), str(labelled / "letters")]) == 2
    assert "has no class sub-folders" in capsys.readouterr().err


def test_evaluate_on_train_and_test_folders_takes_the_test_images(exported, labelled, tmp_path):
    from tuning.predict import evaluate

    _, paths = exported
    for split, digits in (("train", "01234"), ("test", "56")):
        for digit in digits:
            shutil.copytree(labelled / digit, tmp_path / "split" / split / digit)
    result = evaluate(paths["keras"], tmp_path / "split")
    assert result["data"].endswith("split/test") and sum(result["per_class"]["support"]) == result["images"]
    assert result["images"] == len(list((tmp_path / "split" / "test").rglob("[0-9]*.png")))


def test_features_of_labelled_images_are_saved_per_file_with_their_pca(exported, labelled, tmp_path, capsys):
    """The tutorials' `--mode features`: penultimate features of every image, a 2-D PCA, a table per file."""
    import pandas as pd

    from tuning.features import extract_features

    _, paths = exported
    result = extract_features(paths["keras"], labelled, out=tmp_path / "folder")
    table = pd.read_csv(tmp_path / "folder" / "features.csv")
    vectors = np.load(tmp_path / "folder" / "features.npy")
    assert result["images"] == len(table) == len(vectors) == 121  # 120 digits and the stray letter; broken.png skipped
    assert [Path(s["file"]).name for s in result["skipped"]] == ["broken.png"] and result["labelled_images"] == 120
    assert vectors.shape[1] == result["dimensions"] and set(table["label"]) == {*map(str, range(10)), "letters"}
    # The PCA columns are the feature vectors' first two principal components, with the variance they explain.
    centered = vectors - vectors.mean(axis=0)
    _, singular, vt = np.linalg.svd(centered.astype(np.float64), full_matrices=False)
    for column, component in zip(("pca_1", "pca_2"), vt[:2]):
        assert np.abs(table[column].to_numpy() - centered @ component).max() < 1e-3 * np.abs(centered @ component).max()
    assert result["explained_variance"] == pytest.approx((singular[:2] ** 2 / (singular**2).sum()).tolist(), rel=1e-4)
    # Its predictions are the model's, and its accuracy counts the images of the model's classes only.
    by_file = {Path(r["image"]).name: r["top"][0] for r in predict(paths["keras"], [labelled / d for d in "0123456789"], top=1) if "top" in r}
    assert [by_file[Path(f).name]["class"] for f in table["image"] if Path(f).parent.name != "letters"] == [
        str(p) for p, f in zip(table["predicted"], table["image"]) if Path(f).parent.name != "letters"
    ]
    digits = table[table["label"] != "letters"]
    assert result["accuracy"] == pytest.approx(float((digits["label"].astype(str) == digits["predicted"].astype(str)).mean()))
    assert (tmp_path / "folder" / "pca.png").read_bytes()[:4] == b"\x89PNG"

    # A manifest keeps its own columns (an Excel one is written back as Excel too); t-SNE on request.
    columns = ",".join(str(d) for d in range(10))
    args = [
        "features",
        str(paths["keras"]),
        str(labelled / "onehot.xlsx"),
        "--path-column",
        "file",
        "--label-columns",
        columns,
        "--tsne",
        "--out",
        str(tmp_path / "sheet"),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("120 images of") and f"accuracy on the 120 images of the model's classes: {result['accuracy']:.4f}" in printed
    sheet = pd.read_excel(tmp_path / "sheet" / "features.xlsx")
    assert list(sheet.columns[:11]) == ["file", *map(str, range(10))] and {"label", "predicted", "probability", "pca_1", "tsne_2"} <= set(sheet.columns)
    assert len(sheet) == 120 and (tmp_path / "sheet" / "tsne.png").exists()

    # Several folders of classes (a train/ and a test/ named one by one) keep their labels, each row its folder.
    for folder, digits in (("first", "35"), ("second", "6")):
        for digit in digits:
            shutil.copytree(labelled / digit, tmp_path / folder / digit, ignore=shutil.ignore_patterns("broken*"))
    both = extract_features(paths["keras"], [tmp_path / "first", tmp_path / "second"], out=tmp_path / "both")
    rows = pd.read_csv(tmp_path / "both" / "features.csv")
    assert both["labelled_images"] == len(rows) == sum(1 for d in "356" for _ in (labelled / d).glob("[0-9]*.png"))
    assert set(rows["label"].astype(str)) == {"3", "5", "6"} and set(rows["folder"]) == {str(tmp_path / "first"), str(tmp_path / "second")}

    # Loose images have no labels: the table has none, the plot is coloured by the predicted class.
    loose = extract_features(paths["keras"], [labelled / "3", labelled / "letters" / "a.png"], out=tmp_path / "loose")
    assert "accuracy" not in loose and "label" not in pd.read_csv(tmp_path / "loose" / "features.csv").columns
    assert main(["features", str(paths["tflite"]), str(labelled)]) == 2
    assert "only a .keras file keeps" in capsys.readouterr().err


def test_features_of_a_train_sheet_and_a_test_sheet_together(exported, labelled, tmp_path, capsys):
    """Tutorial 000's features mode reads its train.xlsx and test.xlsx as one table: each row keeps its sheet."""
    import pandas as pd

    _, paths = exported
    sheet = pd.read_excel(labelled / "onehot.xlsx")
    sheet["file"] = [str(labelled / f) for f in sheet["file"]]
    sheet[:80].to_excel(tmp_path / "train.xlsx", index=False)
    sheet[80:].to_excel(tmp_path / "test.xlsx", index=False)
    columns = ",".join(str(d) for d in range(10))
    sheets = [str(tmp_path / "train.xlsx"), str(tmp_path / "test.xlsx")]
    args = ["features", str(paths["keras"]), *sheets, "--path-column", "file", "--label-columns", columns, "--out", str(tmp_path / "both")]
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("120 images of")
    table = pd.read_excel(tmp_path / "both" / "features.xlsx")
    assert list(table["file"]) == list(sheet["file"]) and list(table["manifest"]) == [sheets[0]] * 80 + [sheets[1]] * 40
    assert list(table["label"].astype(str)) == [str(row.argmax()) for row in sheet[[str(d) for d in range(10)]].to_numpy()]
    assert len(np.load(tmp_path / "both" / "features.npy")) == 120
    assert main(["features", str(paths["keras"]), sheets[0], str(labelled / "3")]) == 2
    assert "train.xlsx is a manifest and " in capsys.readouterr().err


def test_features_take_a_filled_label_column_as_evaluate_does(exported, labelled, tmp_path, capsys):
    """No --label-column: a `label` column filled in every row labels the images (accuracy, colours); a test
    sheet whose `label` cells are still blank leaves the table unlabelled rather than refused."""
    import pandas as pd

    from tuning.features import extract_features

    _, paths = exported
    table = pd.read_csv(labelled / "labels.csv").rename(columns={"file": "path", "digit": "label"})
    table["path"] = [str(labelled / f) for f in table["path"]]
    table.to_csv(tmp_path / "train.csv", index=False)
    result = extract_features(paths["keras"], tmp_path / "train.csv", out=tmp_path / "labelled")
    assert result["labelled_images"] == 120 and result["accuracy"] > 0.5
    written = pd.read_csv(tmp_path / "labelled" / "features.csv")
    assert "true_label" not in written.columns and list(written["label"]) == list(table["label"])
    table.assign(label="").to_csv(tmp_path / "test.csv", index=False)
    both = extract_features(paths["keras"], [tmp_path / "train.csv", tmp_path / "test.csv"], out=tmp_path / "both")
    assert both["images"] == 240 and "accuracy" not in both  # one sheet unlabelled: none is taken as labelled


def test_feature_maps_of_one_image_for_chosen_layers(exported, labelled, tmp_path, capsys):
    """The tutorials' "peer inside the model": every filter of each convolution for one image."""
    import keras

    from tuning.features import feature_maps

    _, paths = exported
    image = sorted((labelled / "4").glob("*.png"))[0]
    result = feature_maps(paths["keras"], image, out=tmp_path / "maps.png")
    model = keras.saving.load_model(paths["keras"])
    convolutions = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert list(result["layers"]) == [f"{name}_relu" for name in convolutions]  # as the next layer sees them
    saved = np.load(tmp_path / "maps.npz")
    predictor = load_predictor(paths["keras"])  # digits: 0-255 files mapped to the model's 0-16
    pixels = read_image(image, model.input_shape[1:], predictor.dtype, predictor.value_max)[None].astype("float32")
    for name in result["layers"]:
        expected = keras.Model(model.inputs, model.get_layer(name).output).predict(pixels, verbose=0)[0]
        assert saved[name].shape == expected.shape and np.allclose(saved[name], expected, atol=1e-5)
        assert saved[name].min() >= 0  # after the ReLU
    assert (tmp_path / "maps.png").read_bytes()[:4] == b"\x89PNG"

    assert main(["maps", str(paths["keras"]), str(image), "--layer", convolutions[0], "--filters", "4", "--out", str(tmp_path / "one.png")]) == 0
    assert capsys.readouterr().out.startswith(f"{convolutions[0]}: ")
    assert list(np.load(tmp_path / "one.npz").files) == [convolutions[0]]
    assert main(["maps", str(paths["keras"]), str(image), "--layer", "block9_conv"]) == 2
    assert f"its layers with feature maps are rescale, {convolutions[0]}" in capsys.readouterr().err
    assert main(["maps", str(paths["keras"]), str(image), "--layer", convolutions[0][:-1]]) == 2  # its last letter left out
    assert f"layer {convolutions[0][:-1]!r} (did you mean {convolutions[0]!r}?): not in" in capsys.readouterr().err
    assert main(["maps", str(paths["keras"]), str(image), "--layer", "probabilities"]) == 2
    assert "not a feature map" in capsys.readouterr().err
    assert main(["maps", str(paths["keras"]), str(labelled)]) == 2
    assert "not an image file" in capsys.readouterr().err


def test_features_and_maps_refuse_what_they_cannot_do_before_writing(exported, labelled, tmp_path, capsys):
    _, paths = exported
    model = str(paths["keras"])
    (tmp_path / "blank.csv").write_text("path,digit\n3/1681.png,3\n,4\n")
    assert main(["features", model, str(tmp_path / "blank.csv")]) == 2
    assert "column 'path' is blank in 1 row (3, counting the header as row 1)" in capsys.readouterr().err
    assert main(["features", model, str(labelled / "labels.csv"), "--label-column", "digit"]) == 2
    assert "no column 'path'" in (err := capsys.readouterr().err) and "--path-column" in err and "data.path_column" not in err
    two = [str(p) for p in sorted((labelled / "5").glob("*.png"))[:2]]
    assert main(["features", model, *two, "--tsne", "--out", str(tmp_path / "few")]) == 2
    assert "t-SNE needs at least 3 images" in capsys.readouterr().err and not (tmp_path / "few").exists()
    (tmp_path / "taken").write_text("a file")
    assert main(["features", model, *two, "--out", str(tmp_path / "taken" / "here")]) == 2
    assert f"cannot write {tmp_path / 'taken' / 'here'}" in capsys.readouterr().err
    # Labels that are no class of the model are named; a second run into the same folder leaves no stale t-SNE plot.
    (tmp_path / "words.csv").write_text("path,name\n" + "".join(f"{p},digit{i}\n" for i, p in enumerate(two)))
    assert main(["features", model, str(tmp_path / "words.csv"), "--label-column", "name", "--out", str(tmp_path / "words")]) == 0
    printed = capsys.readouterr()
    assert "accuracy" not in printed.out and "not classes of this model, left out of the accuracy: digit0 (1), digit1 (1)" in printed.err
    three = [*two, str(sorted((labelled / "6").glob("*.png"))[0])]
    assert main(["features", model, *three, "--tsne", "--out", str(tmp_path / "again")]) == 0
    assert main(["features", model, *three, "--out", str(tmp_path / "again")]) == 0
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["features.csv", "features.npy", "pca.png"]
    capsys.readouterr()
    assert main(["features", model, two[0], str(tmp_path / "blank.csv")]) == 2  # a manifest among images: one kind per command
    assert f"blank.csv is a manifest and {two[0]} is not" in capsys.readouterr().err
    assert main(["features", model, str(labelled), "--label-column", "digit"]) == 2
    assert "apply to a CSV/Excel manifest" in capsys.readouterr().err
    assert main(["features", model, str(labelled), two[0]]) == 2  # its labels would be dropped among unlabelled images
    assert "holds class sub-folders (labelled images) while" in capsys.readouterr().err
    (tmp_path / "gone.csv").write_text("path\nnope.png\n")
    assert main(["features", model, str(tmp_path / "gone.csv")]) == 2
    assert "none of the 1 files could be read as images (no such file: " in (err := capsys.readouterr().err) and "nope.png; paths are relative to" in err
    assert main(["maps", model, str(tmp_path / "missing.png")]) == 2
    assert "missing.png does not exist" in capsys.readouterr().err
    assert main(["maps", model, two[0], "--out", str(tmp_path / "maps.jpg")]) == 2
    assert "name a .png file" in capsys.readouterr().err
    assert main(["maps", model, two[0], "--out", str(tmp_path / "taken" / "maps.png")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_an_image_file_is_mapped_to_the_value_range_the_model_trained_on(exported, tmp_path):
    """Digits hold 0-16, image files 0-255: a digit saved as a PNG is predicted as the digit itself, not 16x brighter."""
    import keras
    from sklearn.datasets import load_digits

    _, paths = exported
    digits = load_digits()
    model = keras.saving.load_model(paths["keras"], safe_mode=True)
    files = []
    for i in range(1700, 1720):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(np.round(digits.images[i] * 255 / 16).astype("uint8"), "L").save(files[-1])
    predictor = load_predictor(paths["keras"])
    pixels = np.stack([read_image(f, predictor.input_shape, predictor.dtype, predictor.value_max) for f in files])
    assert np.array_equal(pixels[..., 0], digits.images[1700:1720].astype("uint8"))  # back to 0-16 exactly
    expected = model.predict(digits.images[1700:1720, :, :, None].astype("float32"), verbose=0)
    from_files = predict(paths["keras"], files, top=1)
    assert [r["top"][0]["index"] for r in from_files] == list(expected.argmax(axis=1))
    assert [r["top"][0]["probability"] for r in from_files] == pytest.approx(list(expected.max(axis=1)), abs=1e-5)


def test_a_runs_own_best_model_predicts_with_the_runs_class_names(exported, images, tmp_path):
    """`reports/<run>/best_model.keras` has no model card beside it: its classes and input come from run.json."""
    run, _ = exported
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    manifest = json.loads((run.path / "run.json").read_text())
    manifest["data"]["classes"] = names
    shutil.copy(run.path / "best_model.keras", tmp_path / "best_model.keras")
    (tmp_path / "run.json").write_text(json.dumps(manifest))
    predictor = load_predictor(tmp_path / "best_model.keras")
    assert predictor.class_names == names and predictor.value_max == 16.0
    assert predict(tmp_path / "best_model.keras", [images / "gray.png"], top=1)[0]["top"][0]["class"] in names
    (tmp_path / "run.json").write_text("{damaged")
    assert load_predictor(tmp_path / "best_model.keras").class_names == [str(i) for i in range(10)]


def test_a_stored_spec_this_version_refuses_is_mended_where_no_trial_changes():
    """Session 13 accepted `blocks: 0` with a tuned kernel size (which no layer uses); this version refuses it
    for new specs, but `export` reads a run's stored spec with `load_stored_spec`, so that run stays exportable."""
    from tuning import SpecError, load_spec
    from tuning.spec import load_stored_spec

    stored = {"version": 1, "model": {"blocks": 0, "kernel_size": {"choice": [3, 5]}, "block_dropout": {"float": [0.1, 0.3]}}}
    with pytest.raises(SpecError, match="is tuned but blocks is 0"):
        load_spec(stored)
    mended = load_stored_spec(stored)
    assert (mended.model.blocks, mended.model.kernel_size, mended.model.block_dropout) == (0, 3, 0.1)
    with pytest.raises(SpecError, match="model.padding: expected 'same' or 'valid'"):  # what is not this refusal stays an error
        load_stored_spec({**stored, "model": {**stored["model"], "padding": "nope"}})
    # A step past the high end (refused since the fifteenth session) drew only the low value: fixed to it.
    wide = {"version": 1, "model": {"filters": {"int": [16, 24], "step": 16}}, "training": {"learning_rate": {"float": [1e-4, 1e-3], "step": 100, "log": True}}}
    with pytest.raises(SpecError, match="goes past the range"):
        load_spec(wide)
    mended = load_stored_spec(wide)
    assert (mended.model.filters, mended.training.learning_rate) == (16, 1e-4)
