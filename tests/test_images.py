"""Folders and manifests of real image files, including broken ones; the decode cache; augmentation."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tuning import DataError, SpecError, load_spec, search
from tuning.data import describe, load_data

from .conftest import tiny


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNING_CACHE", str(tmp_path / "cache"))


def shape_image(kind: int, size: int = 20, seed: int = 0) -> np.ndarray:
    """A learnable class: 0 = bright top half, 1 = bright left half, 2 = bright centre square."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    if kind == 0:
        image[: size // 2] += 150
    elif kind == 1:
        image[:, : size // 2] += 150
    else:
        image[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] += 150
    return image


def make_tree(root: Path, per_class: int = 12) -> dict[str, Path]:
    """cat/dog/fox folders of PNGs and JPEGs, with the usual broken and odd files mixed in."""
    special: dict[str, Path] = {}
    for kind, name in enumerate(("cat", "dog", "fox")):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            suffix = ".png" if i % 2 else ".jpg"
            Image.fromarray(shape_image(kind, seed=i)).save(folder / f"{i}{suffix}")
    cat = root / "cat"
    buffer = io.BytesIO()
    Image.fromarray(shape_image(0, seed=99)).save(buffer, format="JPEG")
    (cat / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (cat / "empty.jpg").write_bytes(b"")
    (cat / "text.jpg").write_text("this is not a picture")
    Image.fromarray(np.dstack([shape_image(0, seed=5), np.full((20, 20, 1), 128, np.uint8)]), "RGBA").save(cat / "rgba.png")
    Image.fromarray(shape_image(1, seed=6)[..., 0], "L").save(root / "dog" / "gray.png")
    Image.fromarray(shape_image(2, seed=7)).convert("P").save(root / "fox" / "palette.png")
    Image.fromarray(shape_image(2, seed=8)).convert("CMYK").save(root / "fox" / "cmyk.jpg")
    rotated = Image.fromarray(shape_image(1, seed=9)[:, :10])  # 20 high, 10 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    rotated.save(root / "dog" / "rotated.jpg", exif=exif)
    special.update(truncated=cat / "truncated.jpg", empty=cat / "empty.jpg", text=cat / "text.jpg", rotated=root / "dog" / "rotated.jpg")
    return special


def folder_spec(path: Path, **fields):
    """The `data` section of a spec for image files, validated as `load_spec` would."""
    from tuning.spec import DataSpec

    return DataSpec.model_validate({"source": "folder", "path": str(path), "image_size": [16, 16], **fields})


def test_folder_source_skips_and_lists_broken_files(tmp_path):
    special = make_tree(tmp_path / "pets")
    data = load_data(folder_spec(tmp_path / "pets"), tmp_path, seed=0)
    assert data.class_names == ("cat", "dog", "fox")
    assert data.input_shape == (16, 16, 3) and data.x_train.dtype == np.uint8
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 3 * 12 + 5  # 41 readable of 44 files
    skipped = {Path(s["file"]).name: s["reason"] for s in data.skipped}
    assert set(skipped) == {special["truncated"].name, special["empty"].name, special["text"].name}
    assert data.summary()["skipped_files"] == 3


def test_decoding_converts_modes_and_applies_exif_rotation(tmp_path):
    from tuning.images import decode

    special = make_tree(tmp_path / "pets")
    upright = decode(special["rotated"], (20, 20), "rgb")
    stored = Image.open(special["rotated"])
    assert stored.size == (10, 20)  # width 10, height 20 as stored ...
    from PIL import ImageOps

    assert ImageOps.exif_transpose(stored).size == (20, 10)  # ... and 20 wide once rotated for display
    assert upright.shape == (20, 20, 3)
    assert decode(tmp_path / "pets" / "cat" / "rgba.png", (8, 8), "grayscale").shape == (8, 8, 1)
    assert decode(tmp_path / "pets" / "fox" / "cmyk.jpg", (8, 8), "rgb").shape == (8, 8, 3)
    assert decode(tmp_path / "pets" / "fox" / "palette.png", (8, 8), "rgba").shape == (8, 8, 4)


def test_images_are_decoded_once_and_the_cache_follows_the_files(tmp_path, monkeypatch):
    import tuning.images as images

    make_tree(tmp_path / "pets")
    spec = folder_spec(tmp_path / "pets")
    first = load_data(spec, tmp_path, seed=0)
    calls = []
    real = images.decode
    monkeypatch.setattr(images, "decode", lambda *a: calls.append(a) or real(*a))
    second = load_data(spec, tmp_path, seed=0)
    assert calls == []  # nothing decoded again
    np.testing.assert_array_equal(first.x_train, second.x_train)
    load_data(folder_spec(tmp_path / "pets", image_size=[8, 8]), tmp_path, seed=0)  # another size: its own entry
    entries = set((tmp_path / "cache" / "images").iterdir())
    assert len(entries) == 2 and len(calls) == 44
    Image.fromarray(shape_image(1, seed=42)).save(tmp_path / "pets" / "dog" / "0.jpg")  # a file changes
    load_data(spec, tmp_path, seed=0)
    assert len(calls) == 88  # a new cache entry: everything decoded again
    after = set((tmp_path / "cache" / "images").iterdir())
    assert len(after) == 2 and len(after - entries) == 1  # ... which replaces the stale 16x16 one, not the 8x8 one


def test_train_test_folders_and_class_subsets(tmp_path):
    for split in ("train", "test"):
        make_tree(tmp_path / "split" / split, per_class=6)
    data = load_data(folder_spec(tmp_path / "split", classes=["fox", "cat"]), tmp_path, seed=0)
    assert data.class_names == ("fox", "cat")
    assert np.bincount(data.y_test).tolist() == [6 + 2, 6 + 1]  # fox (+ palette, cmyk) and cat (+ rgba) of test/
    assert set(np.unique(data.y_train)) == {0, 1}
    with pytest.raises(DataError, match=r"'fx' \(did you mean 'fox'\?\) not among the classes"):
        load_data(folder_spec(tmp_path / "split", classes=["fx", "cat"]), tmp_path, seed=0)


def test_max_train_samples_cuts_a_validation_folder_in_proportion(tmp_path):
    """A quick run on a train/ + validation/ tree: the training images capped, the validation ones cut alike."""
    make_tree(tmp_path / "pets" / "train")
    make_tree(tmp_path / "pets" / "validation", per_class=6)
    make_tree(tmp_path / "pets" / "test", per_class=4)
    whole = load_data(folder_spec(tmp_path / "pets"), tmp_path, seed=0)
    quick = load_data(folder_spec(tmp_path / "pets", max_train_samples=len(whole.y_train) // 2), tmp_path, seed=0)
    assert (len(whole.y_train), len(whole.y_val)) == (41, 23)
    assert (len(quick.y_train), len(quick.y_val), len(quick.y_test)) == (20, 11, len(whole.y_test))
    assert set(np.unique(quick.y_val)) == {0, 1, 2}


def test_a_class_with_too_few_images_to_split_is_named_with_its_count(tmp_path):
    """Two images of a class cannot give one each to training, validation and test: said by the class's name and
    the count the user sees in the folder, not by a label index after a split took one away."""
    for kind, name in enumerate(("a", "b")):
        (tmp_path / "few" / name).mkdir(parents=True)
        for i in range(2 if name == "a" else 6):
            Image.fromarray(shape_image(kind, seed=i)).save(tmp_path / "few" / name / f"{i}.png")
    with pytest.raises(DataError) as error:
        load_data(folder_spec(tmp_path / "few"), tmp_path, seed=0)
    assert (
        "too few images in class 'a' (2 images): each class needs at least 3, some held out to test on and to validate on "
        "(test_split 0.2 and validation_split 0.2 of every class, at least one image each) and one to train on"
    ) in str(error.value)
    with pytest.raises(DataError, match=r"class 'a' \(2 images\): each class needs at least 4, .*\(test_split 0.5 and validation_split 0.2"):
        load_data(folder_spec(tmp_path / "few", test_split=0.5), tmp_path, seed=0)


def test_mostly_unreadable_folder_is_refused_before_training(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "bad" / name).mkdir(parents=True)
        for i in range(4):
            (tmp_path / "bad" / name / f"{i}.jpg").write_text("nope")
        Image.fromarray(shape_image(0)).save(tmp_path / "bad" / name / "ok.png")
    with pytest.raises(DataError, match="8 of 10 files could not be read as images"):
        load_data(folder_spec(tmp_path / "bad"), tmp_path, seed=0)


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_manifests_with_one_hot_labels_and_splits(tmp_path, suffix):
    import pandas as pd

    make_tree(tmp_path / "pets", per_class=8)
    rows = []
    for path in sorted((tmp_path / "pets").rglob("*.*")):
        label = path.parent.name
        rows.append(
            {
                "File_paths": str(path.relative_to(tmp_path)),
                "Cats": int(label == "cat"),
                "Dogs": int(label == "dog"),
                "Foxes": int(label == "fox"),
                "split": "test" if path.stem in ("0", "1") else "train",
            }
        )
    frame = pd.DataFrame(rows)
    manifest = tmp_path / f"manifest{suffix}"
    frame.to_csv(manifest, index=False) if suffix == ".csv" else frame.to_excel(manifest, index=False)
    spec = folder_spec(manifest, source="manifest", path_column="File_paths", label_columns=["Cats", "Dogs", "Foxes"], split_column="split")
    data = load_data(spec, tmp_path, seed=0)
    assert data.class_names == ("Cats", "Dogs", "Foxes")
    assert len(data.y_test) == 6 and np.bincount(data.y_test).tolist() == [2, 2, 2]
    assert len(data.skipped) == 3


def test_a_train_sheet_and_a_test_sheet(tmp_path):
    """The tutorials' --train_excel / --test_excel pair: data.path and data.test_path."""
    import pandas as pd

    make_tree(tmp_path / "pets", per_class=6)
    files = sorted(p for p in (tmp_path / "pets").rglob("*.*") if p.stem.isdigit())
    rows = [{"File_paths": str(p.relative_to(tmp_path)), "label": p.parent.name} for p in files]
    pd.DataFrame([r for r, p in zip(rows, files) if p.stem not in ("0", "1")]).to_excel(tmp_path / "train.xlsx", index=False)
    pd.DataFrame([r for r, p in zip(rows, files) if p.stem in ("0", "1")]).to_excel(tmp_path / "test.xlsx", index=False)
    spec = load_spec(
        {
            "version": 1,
            "data": {"manifest": "train.xlsx", "test_path": "test.xlsx", "path_column": "File_paths", "label_column": "label", "image_size": [16, 16]},
        }
    )
    data = load_data(spec.data, tmp_path, seed=0)
    assert data.class_names == ("cat", "dog", "fox") and np.bincount(data.y_test).tolist() == [2, 2, 2]
    assert len(data.y_train) + len(data.y_val) == 3 * 4 and data.origin.endswith("train.xlsx + test.xlsx")
    with pytest.raises(SpecError, match="data.test_path: test_path is a second manifest of test images"):
        load_spec({"version": 1, "data": {"directory": "pets", "test_path": "test.xlsx", "image_size": [16, 16]}})


def test_manifest_errors_name_the_column(tmp_path):
    (tmp_path / "m.csv").write_text("file,label\na.png,cat\n")
    spec = folder_spec(tmp_path / "m.csv", source="manifest", path_column="File_paths", label_column="label")
    with pytest.raises(DataError, match="no column 'File_paths'; the manifest has 'file', 'label'"):
        load_data(spec, tmp_path, seed=0)


def test_blank_labels_and_single_classes_are_refused_by_name(tmp_path):
    (tmp_path / "m.csv").write_text("file,label\na.png,cat\nb.png,\nc.png,dog\nd.png,  \n")
    with pytest.raises(DataError, match=r"m.csv: column 'label' is blank in 2 rows \(3, 5, counting the header as row 1\)"):
        load_data(folder_spec(tmp_path / "m.csv", source="manifest", path_column="file", label_column="label"), tmp_path, seed=0)
    make_tree(tmp_path / "pets", per_class=4)
    for name in ("dog", "fox"):
        for file in (tmp_path / "pets" / name).iterdir():
            file.unlink()
        (tmp_path / "pets" / name).rmdir()
    with pytest.raises(DataError, match="holds only one class; classification needs at least 2 classes"):
        describe(folder_spec(tmp_path / "pets"), tmp_path)
    with pytest.raises(DataError, match=r"only one class \('cat'\); classification needs at least 2 classes"):
        load_data(folder_spec(tmp_path / "pets"), tmp_path, seed=0)


def test_a_class_found_only_among_test_images_is_named(tmp_path):
    make_tree(tmp_path / "split" / "train", per_class=4)
    make_tree(tmp_path / "split" / "test", per_class=4)
    (tmp_path / "split" / "test" / "owl").mkdir()
    Image.fromarray(shape_image(2)).save(tmp_path / "split" / "test" / "owl" / "0.png")
    with pytest.raises(DataError, match=r"no training images of 'owl' \(class index 3\)"):
        load_data(folder_spec(tmp_path / "split"), tmp_path, seed=0)


def test_spec_shorthands_and_checks():
    spec = load_spec({"version": 1, "data": {"directory": "PetImages", "image_size": [64, 64]}})
    assert (spec.data.source, spec.data.path) == ("folder", "PetImages")

    with pytest.raises(SpecError, match="image files need \\[height, width\\]"):
        load_spec({"version": 1, "data": {"directory": "PetImages"}})
    with pytest.raises(
        SpecError,
        match=r"data.label_column: a manifest needs label_column \(one column of class names\) or label_columns \(one-hot columns\); neither is given",
    ):
        load_spec({"version": 1, "data": {"manifest": "train.xlsx", "image_size": [8, 8]}})
    with pytest.raises(SpecError, match=r"a manifest needs either label_column .* or label_columns \(one-hot columns\), not both"):
        load_spec({"version": 1, "data": {"manifest": "train.xlsx", "image_size": [8, 8], "label_column": "label", "label_columns": ["cat", "dog"]}})


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (
            {"directory": "f1", "manifest": "m.csv"},
            "data.manifest: `manifest: m.csv` is short for {source: manifest, path: m.csv}, so it conflicts with "
            "`directory: f1` (short for {source: folder, path: f1}); keep one of them",
        ),
        (
            {"directory": "f1", "source": "digits"},
            "data.directory: `directory: f1` is short for {source: folder, path: f1}, so it conflicts with `source: digits`; keep one of them",
        ),
        (
            {"manifest": "m.csv", "path": "n.csv"},
            "data.manifest: `manifest: m.csv` is short for {source: manifest, path: m.csv}, so it conflicts with `path: n.csv`",
        ),
        ({"directroy": "f1"}, "data.directroy: unknown key 'directroy'. Allowed: source, path, "),
    ],
)
def test_a_shorthand_beside_the_keys_it_stands_for_is_explained(data, problem):
    with pytest.raises(SpecError) as info:
        load_spec({"version": 1, "data": {**data, "label_column": "label", "image_size": [8, 8]}})
    (message,) = map(str, info.value.problems)
    assert message.startswith(problem), message
    assert "unknown key 'directroy'" not in message or message.endswith("in_memory, directory, manifest. Did you mean 'directory'?")


def test_augmentation_acts_in_training_only():
    import keras

    from tuning.hypermodel import augmentation_layers
    from tuning.space import PRESETS, Augmentation

    images = np.random.default_rng(0).uniform(0, 1, (4, 16, 16, 3)).astype("float32")
    for augment in (PRESETS["light"], PRESETS["strong"], Augmentation(contrast=0.5), Augmentation(rotation=0.2)):
        pipeline = keras.Sequential([keras.Input((16, 16, 3)), *augmentation_layers(augment)])
        np.testing.assert_allclose(keras.ops.convert_to_numpy(pipeline(images, training=False)), images)
        assert not np.allclose(keras.ops.convert_to_numpy(pipeline(images, training=True)), images)
    assert augmentation_layers(PRESETS["none"]) == []


def test_contrast_augmentation_lowers_contrast_as_often_as_it_raises_it():
    """`contrast: c` means a factor drawn from 1 +/- c (Keras, given one number, would draw from [1, 1 + c])."""
    import keras

    from tuning.hypermodel import augmentation_layers
    from tuning.space import Augmentation

    images = np.random.default_rng(0).uniform(0.25, 0.75, (200, 8, 8, 1)).astype("float32")
    (layer,) = augmentation_layers(Augmentation(contrast=0.5))
    changed = keras.ops.convert_to_numpy(layer(images, training=True))
    ratios = changed.std(axis=(1, 2, 3)) / images.std(axis=(1, 2, 3))
    assert ratios.min() < 0.7 and ratios.max() > 1.3
    assert 0.3 < (ratios < 1).mean() < 0.7


def test_per_operation_augmentation_ranges_are_hyperparameters():
    from tuning.hypermodel import augmentation_layers
    from tuning.space import parameters, resolve

    spec = load_spec(tiny(model={"augment": {"flip": {"choice": ["none", "horizontal"]}, "rotation": {"float": [0.0, 0.2]}, "contrast": 0.1}}))
    tuned = {p.name: p for p in parameters(spec)}
    assert {"augment_flip", "augment_rotation"} <= set(tuned) and "augment_contrast" not in tuned
    assert tuned["augment_rotation"].path == ("model", "augment", "rotation")
    config = resolve(spec, {"blocks": 1, "filters": 8, "learning_rate": 1e-3, "augment_flip": "horizontal", "augment_rotation": 0.12})
    assert (config.augment.flip, config.augment.rotation, config.augment.contrast, config.augment.zoom) == ("horizontal", 0.12, 0.1, 0.0)
    assert [layer.name for layer in augmentation_layers(config.augment)] == ["augment_flip", "augment_rotation", "augment_contrast"]
    with pytest.raises(SpecError, match=r"model.augment: .*remove `augmentation` or `augment`"):
        load_spec(tiny(model={"augmentation": "light", "augment": {"zoom": 0.1}}))
    with pytest.raises(SpecError, match=r"model.augment.rotation: .*less than or equal to 0.5"):
        load_spec(tiny(model={"augment": {"rotation": 0.9}}))


@pytest.mark.slow
def test_a_streamed_folder_is_read_batch_by_batch_never_whole(tmp_path, monkeypatch):
    """`in_memory: false` (or data larger than half the free memory) trains from the cache without loading it."""
    from tuning.lazy_images import LazyImages

    make_tree(tmp_path / "pets", per_class=40)
    reads: list[int] = []
    original = LazyImages.rows
    monkeypatch.setattr(LazyImages, "rows", lambda self, positions: reads.append(len(positions)) or original(self, positions))
    spec = tiny(
        data={"directory": str(tmp_path / "pets"), "image_size": [16, 16], "in_memory": False},
        model={"blocks": 1, "filters": 8, "augment": {"flip": "horizontal", "zoom": {"choice": [0.0, 0.1]}}},
        search={"algorithm": "grid", "max_epochs": 2},
        training={"learning_rate": 3e-3, "batch_size": 16},
    )
    for key in ("source", "max_train_samples", "max_test_samples"):
        spec["data"].pop(key, None)
    run = search(spec, name="streamed", out=tmp_path / "reports", quiet=True)
    data = run.manifest["data"]
    assert data["in_memory"] is False and data["train"] > 60
    assert reads and max(reads) <= max(16, data["test"], data["validation"]) < data["train"]
    assert sorted(run.trials["augment_zoom"]) == [0.0, 0.1] and run.best["test"]["accuracy"] > 0


@pytest.mark.slow
def test_search_end_to_end_on_a_generated_folder(tmp_path):
    make_tree(tmp_path / "pets", per_class=20)
    spec = tiny(
        data={"directory": str(tmp_path / "pets"), "image_size": [16, 16], "class_weight": "balanced"},
        model={"blocks": 1, "filters": 8, "augmentation": {"choice": ["none", "light"]}},
        search={"algorithm": "grid", "max_epochs": 2},
        training={"learning_rate": 3e-3, "batch_size": 16},
    )
    for key in ("source", "max_train_samples", "max_test_samples"):
        spec["data"].pop(key, None)
    run = search(spec, name="pets", out=tmp_path / "reports", quiet=True)
    assert run.manifest["data"]["classes"] == ["cat", "dog", "fox"] and run.manifest["data"]["skipped_files"] == 3
    assert sorted(run.trials["augmentation"]) == ["light", "none"]
    model = run.best_model()
    assert model.input_shape == (None, 16, 16, 3) and model.output_shape == (None, 3)


def test_the_search_command_names_the_files_it_skipped(tmp_path, capsys):
    from tuning.cli import main

    from .conftest import write_spec

    special = make_tree(tmp_path / "pets", per_class=6)
    spec = tiny(
        data={"directory": str(tmp_path / "pets"), "image_size": [16, 16]},
        model={"blocks": 1, "filters": 8},
        training={"learning_rate": 3e-3},
        search={"algorithm": "grid", "max_epochs": 1},
    )
    for key in ("source", "max_train_samples", "max_test_samples"):
        spec["data"].pop(key)
    assert main(["search", str(write_spec(tmp_path, spec)), "--out", str(tmp_path / "reports")]) == 0
    printed = capsys.readouterr().out
    start, end = printed.split("top 5 by")
    assert f"data: folder {tmp_path / 'pets'}: 3 classes, images 16x16x3 uint8" in start
    for text in (start, end, (tmp_path / "reports" / "spec" / "report.md").read_text()):
        assert "3 unreadable files skipped" in text and all(special[kind].name in text for kind in ("truncated", "empty", "text"))


def test_skipped_files_of_the_same_name_in_two_splits_are_told_apart():
    from tuning.data import skipped_text

    skipped = [
        {"file": f"/data/pets/{split}/cat/bad.png", "reason": f"cannot identify image file '/data/pets/{split}/cat/bad.png'"} for split in ("train", "test")
    ]
    skipped.append({"file": "/data/pets/train/dog/7.jpg", "reason": "empty file"})
    text = skipped_text({"skipped_files": 3, "skipped": skipped})
    assert text == (
        "3 unreadable files skipped (train/cat/bad.png: cannot identify image file 'train/cat/bad.png'; test/cat/bad.png: cannot identify "
        "image file 'test/cat/bad.png'; dog/7.jpg: empty file; the first 100 paths in run.json, data.skipped)"
    )


def test_resuming_on_changed_images_warns(tmp_path, capsys):
    from tuning.cli import main

    from .conftest import write_spec

    make_tree(tmp_path / "pets", per_class=6)
    spec = tiny(
        data={"directory": str(tmp_path / "pets"), "image_size": [16, 16]},
        model={"blocks": 1, "filters": {"choice": [4, 8]}},
        search={"algorithm": "grid", "max_epochs": 1},
    )
    spec["training"]["learning_rate"] = 3e-3
    for key in ("source", "max_train_samples", "max_test_samples"):
        spec["data"].pop(key)
    command = ["search", str(write_spec(tmp_path, spec)), "--out", str(tmp_path / "reports"), "--quiet"]
    assert main(command) == 0
    assert "warning: the data" not in capsys.readouterr().err
    for i in range(6):
        Image.fromarray(shape_image(1, seed=50 + i)).save(tmp_path / "pets" / "dog" / f"new{i}.png")
    assert main(command) == 0
    assert "warning: the data are not those this run started with (train " in capsys.readouterr().err
    manifest = json.loads((tmp_path / "reports" / "spec" / "run.json").read_text())
    assert manifest["data_changes"][0]["changes"][0].startswith("train ")
    analysis = json.loads((tmp_path / "reports" / "spec" / "best" / "analysis.json").read_text())
    assert manifest["best"]["test"] and analysis["test_count"] == manifest["data"]["test"]  # evaluated again, on the new test set
    (tmp_path / "pets" / "owl").mkdir()
    for i in range(6):
        Image.fromarray(shape_image(2, seed=70 + i)).save(tmp_path / "pets" / "owl" / f"{i}.png")
    assert main(command) == 2
    assert "the data are not those this run started with (classes ['cat', 'dog', 'fox'] -> ['cat', 'dog', 'fox', 'owl']" in capsys.readouterr().err


def write_sheet(path: Path, rows: list[dict]) -> Path:
    """Rows as a CSV or Excel manifest, by the file's suffix."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    frame.to_csv(path, index=False) if path.suffix == ".csv" else frame.to_excel(path, index=False)
    return path


def pets_rows(root: Path) -> list[dict]:
    """One row per readable image of `make_tree(root, per_class=6)`, relative to `root`'s parent, one-hot labelled."""
    files = sorted(p for p in root.rglob("*.*") if p.stem.isdigit())
    return [{"file": str(p.relative_to(root.parent)), **{name: int(p.parent.name == name) for name in ("cat", "dog", "fox")}} for p in files]


def test_one_hot_cells_other_than_0_or_1_are_named_by_row_and_column(tmp_path):
    make_tree(tmp_path / "pets", per_class=6)
    rows = pets_rows(tmp_path / "pets")

    def load(sheet: Path):
        return load_data(folder_spec(sheet, source="manifest", path_column="file", label_columns=["cat", "dog", "fox"]), tmp_path, seed=0)

    stray = [dict(r) for r in rows]
    stray[2]["dog"] = "yes"
    with pytest.raises(
        DataError,
        match=r"one_hot.xlsx: row 4, column 'dog' holds 'yes' \(counting the header as row 1\); one-hot columns 'cat', 'dog', 'fox' hold 0 or 1, one 1 per row",
    ):
        load(write_sheet(tmp_path / "one_hot.xlsx", stray))
    other_numbers = [dict(r) for r in rows]
    other_numbers[0].update(cat=2, dog=-1, fox=0)  # sums to 1: once accepted as a cat
    with pytest.raises(DataError, match=r"row 2, column 'cat' holds 2; row 2, column 'dog' holds -1 \(counting"):
        load(write_sheet(tmp_path / "numbers.xlsx", other_numbers))
    blank = [dict(r) for r in rows]
    blank[2]["dog"] = None
    with pytest.raises(DataError, match=r"blank.csv: row 4, column 'dog' is blank \(counting the header as row 1\)"):
        load(write_sheet(tmp_path / "blank.csv", blank))
    two = [dict(r) for r in rows]
    two[5].update(cat=1, dog=1, fox=0)
    with pytest.raises(
        DataError, match=r"two.csv: row 7 marks 2 classes among 'cat', 'dog', 'fox' \(counting the header as row 1\); one-hot columns need exactly one 1"
    ):
        load(write_sheet(tmp_path / "two.csv", two))


def test_one_hot_cells_may_be_written_as_ints_floats_booleans_or_text(tmp_path):
    make_tree(tmp_path / "pets", per_class=6)
    rows = pets_rows(tmp_path / "pets")
    as_ints = load_data(
        folder_spec(write_sheet(tmp_path / "ints.xlsx", rows), source="manifest", path_column="file", label_columns=["cat", "dog", "fox"]), tmp_path, seed=0
    )
    written = [
        {"file": r["file"], "cat": float(r["cat"]), "dog": bool(r["dog"]), "fox": str(r["fox"])}  # 1.0, True, "1"
        for r in rows
    ]
    for sheet in (tmp_path / "mixed.xlsx", tmp_path / "mixed.csv"):
        data = load_data(folder_spec(write_sheet(sheet, written), source="manifest", path_column="file", label_columns=["cat", "dog", "fox"]), tmp_path, seed=0)
        assert data.class_names == ("cat", "dog", "fox")
        np.testing.assert_array_equal(data.y_train, as_ints.y_train)
        np.testing.assert_array_equal(data.y_test, as_ints.y_test)


def test_whole_number_labels_are_named_alike_from_csv_and_excel(tmp_path):
    """A CSV column holding `2.0` is read as floats; its labels are still named '0', '1', '2', as Excel's are."""
    make_tree(tmp_path / "pets", per_class=6)
    rows = [{"file": r["file"], "label": [0, 1, 2.0][[r["cat"], r["dog"], r["fox"]].index(1)]} for r in pets_rows(tmp_path / "pets")]
    for sheet in (tmp_path / "labels.csv", tmp_path / "labels.xlsx"):
        data = load_data(folder_spec(write_sheet(sheet, rows), source="manifest", path_column="file", label_column="label"), tmp_path, seed=0)
        assert data.class_names == ("0", "1", "2")


def test_a_manifest_whose_images_are_missing_names_them_and_where_it_looked(tmp_path):
    make_tree(tmp_path / "pets", per_class=6)
    (tmp_path / "sub").mkdir()
    sheet = write_sheet(tmp_path / "sub" / "moved.csv", pets_rows(tmp_path / "pets"))  # paths relative to tmp_path, not to sub/
    with pytest.raises(DataError) as info:
        load_data(folder_spec(sheet, source="manifest", path_column="file", label_columns=["cat", "dog", "fox"]), tmp_path, seed=0)
    message = str(info.value)
    assert message.startswith(f"{sheet}: 18 of 18 files could not be read as images (no such file: {tmp_path / 'sub' / 'pets' / 'cat' / '0.jpg'}, ")
    assert f"and 15 more; paths are relative to the manifest's folder, {tmp_path / 'sub'}); check the paths" in message and "\n" not in message


@pytest.mark.parametrize(
    ("folders", "named"),
    [
        (["train", "test", "val"], r"holds train/ and test/ beside val/ \(rename it validation/\?\)"),
        (["train", "valid"], r"holds train/ beside valid/ \(rename it validation/\?\)"),
        (["train", "cat"], r"holds train/ beside cat/; only train/, validation/ and test/ are read beside each other"),
    ],
)
def test_split_folders_beside_other_folders_are_refused(tmp_path, folders, named):
    """A `val/` beside `train/` and `test/` was once left out without a word; a hidden folder still is."""
    for folder in folders:
        make_tree(tmp_path / "data" / folder, per_class=2)
    with pytest.raises(DataError, match=named):
        load_data(folder_spec(tmp_path / "data"), tmp_path, seed=0)
    for folder in folders[1:]:
        shutil.rmtree(tmp_path / "data" / folder)
    (tmp_path / "data" / ".ipynb_checkpoints").mkdir()
    make_tree(tmp_path / "data" / "test", per_class=2)
    assert load_data(folder_spec(tmp_path / "data"), tmp_path, seed=0).class_names == ("cat", "dog", "fox")


def test_a_16_bit_image_decodes_like_its_8_bit_original(tmp_path):
    """Pillow opens a 16-bit grayscale PNG as mode I;16 and its own conversion clips it to 0 or 255."""
    from sklearn.datasets import load_digits

    from tuning.images import decode

    digit = (load_digits().images[0] * 15).astype(np.uint8)
    Image.fromarray(digit).save(tmp_path / "8bit.png")
    Image.fromarray(digit.astype(np.uint16) * 257).save(tmp_path / "16bit.png")
    assert Image.open(tmp_path / "16bit.png").mode == "I;16"
    Image.fromarray(digit.astype(np.int32) * 257).save(tmp_path / "32bit.tif")  # mode I, as older Pillow opens 16-bit PNGs
    Image.fromarray(digit.astype(np.float32) / 255.0, "F").save(tmp_path / "float_0_1.tif")
    dark = (digit // 4).astype(np.uint16) * 257  # a dark 16-bit image (values at most 64 * 257) stays dark: one rule per mode
    Image.fromarray(dark.astype(np.int32), "I").save(tmp_path / "dark.tif")
    for mode in ("grayscale", "rgb", "rgba"):
        original = decode(tmp_path / "8bit.png", (8, 8), mode)
        assert original[..., 0].max() == digit.max() > 200 and len(np.unique(original)) > 5
        for wide in ("16bit.png", "32bit.tif", "float_0_1.tif"):
            np.testing.assert_array_equal(decode(tmp_path / wide, (8, 8), mode), original, err_msg=wide)
        np.testing.assert_array_equal(decode(tmp_path / "dark.tif", (8, 8), mode)[..., 0], digit // 4)
    from tuning.predict import read_image  # what `tuning predict` and `evaluate` read

    np.testing.assert_array_equal(read_image(tmp_path / "16bit.png", (8, 8, 1)), read_image(tmp_path / "8bit.png", (8, 8, 1)))


def test_a_failed_decode_leaves_no_staging_folder_in_the_cache(tmp_path, monkeypatch):
    import tuning.images as images

    make_tree(tmp_path / "pets", per_class=2)

    def interrupted(self, count):
        raise KeyboardInterrupt

    monkeypatch.setattr(images._DecodeProgress, "advance", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_data(folder_spec(tmp_path / "pets"), tmp_path, seed=0)
    assert list((tmp_path / "cache" / "images").iterdir()) == []


def test_a_cache_variable_naming_a_file_is_refused_by_name(tmp_path, monkeypatch):
    make_tree(tmp_path / "pets", per_class=2)
    (tmp_path / "not_a_folder").write_text("")
    monkeypatch.setenv("TUNING_CACHE", str(tmp_path / "not_a_folder"))
    with pytest.raises(DataError, match=r"TUNING_CACHE=.*not_a_folder is a file, not a folder; point it at a folder"):
        load_data(folder_spec(tmp_path / "pets"), tmp_path, seed=0)


def test_a_decode_larger_than_the_free_disk_is_refused_before_writing(tmp_path, monkeypatch):
    import collections

    import tuning.images as images

    make_tree(tmp_path / "pets", per_class=2)
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(images.shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 4000, 4000))
    with pytest.raises(
        DataError,
        match=r"data.image_size: 14 images decoded at 16x16x3 take 10,752 bytes in the image cache .*, which has 4,000 bytes free; choose a smaller image_size",
    ):
        load_data(folder_spec(tmp_path / "pets"), tmp_path, seed=0)
    assert list((tmp_path / "cache" / "images").iterdir()) == []


def test_hidden_folders_are_neither_classes_nor_images(tmp_path):
    """Jupyter leaves .ipynb_checkpoints beside the class folders and inside them; Keras would call it a class."""
    from tuning.images import list_folder

    make_tree(tmp_path / "pets", per_class=2)
    before = list_folder(tmp_path / "pets")
    for hidden in (tmp_path / "pets" / ".ipynb_checkpoints", tmp_path / "pets" / "cat" / ".ipynb_checkpoints"):
        hidden.mkdir()
        Image.fromarray(shape_image(0, seed=5)).save(hidden / "copy.png")
    after = list_folder(tmp_path / "pets")
    assert after.class_names == before.class_names == ["cat", "dog", "fox"] and after.files == before.files


def test_a_workbook_whose_manifest_is_not_its_first_sheet_says_which_sheet_was_read(tmp_path):
    import pandas as pd

    with pd.ExcelWriter(tmp_path / "book.xlsx") as book:
        pd.DataFrame({"notes": ["read me"]}).to_excel(book, sheet_name="About", index=False)
        pd.DataFrame({"path": ["cat/0.png"], "label": ["cat"]}).to_excel(book, sheet_name="Images", index=False)
    with pytest.raises(DataError, match=r"the manifest has 'notes' in its first sheet, 'About', the one read \(the workbook has 2: 'About', 'Images'"):
        load_data(folder_spec(tmp_path / "book.xlsx", source="manifest", label_column="label"), tmp_path, seed=0)


def test_data_sheet_reads_the_named_sheet_of_each_workbook(tmp_path):
    """A workbook that keeps notes first: `data.sheet` names the manifest's sheet, in the train and test workbooks."""
    import pandas as pd

    make_tree(tmp_path / "pets", per_class=4)
    files = sorted(p for p in (tmp_path / "pets").rglob("*.*") if p.stem.isdigit())
    rows = pd.DataFrame({"path": [str(p.relative_to(tmp_path)) for p in files], "label": [p.parent.name for p in files]})
    for name, part in (("train.xlsx", rows[[p.stem != "0" for p in files]]), ("test.xlsx", rows[[p.stem == "0" for p in files]])):
        with pd.ExcelWriter(tmp_path / name) as book:
            pd.DataFrame({"notes": ["read me"]}).to_excel(book, sheet_name="About", index=False)
            part.to_excel(book, sheet_name="2024", index=False)
    data_section = {"manifest": "train.xlsx", "test_path": "test.xlsx", "label_column": "label", "image_size": [16, 16]}
    spec = load_spec({"version": 1, "data": {**data_section, "sheet": 2024}})  # a year as a sheet name, written as a number
    assert spec.data.sheet == "2024"
    data = load_data(spec.data, tmp_path, seed=0)
    assert np.bincount(data.y_test).tolist() == [1, 1, 1] and len(data.y_train) + len(data.y_val) == 9
    misspelled = load_spec({"version": 1, "data": {**data_section, "sheet": "2042"}})
    with pytest.raises(
        DataError, match=r"train.xlsx: data.sheet names '2042' \(did you mean '2024'\?\), which the workbook does not have; its sheets are 'About', '2024'"
    ):
        load_data(misspelled.data, tmp_path, seed=0)
    with pytest.raises(SpecError, match=r"data.sheet: sheet names the sheet of an Excel manifest"):
        load_spec({"version": 1, "data": {"manifest": "train.csv", "label_column": "label", "image_size": [16, 16], "sheet": "Images"}})


def test_a_new_cache_version_replaces_the_entry_an_earlier_one_made(tmp_path, monkeypatch):
    """Each version bump re-decodes once; the superseded entry of the same files must not stay on the disk."""
    import tuning.images as images

    make_tree(tmp_path / "pets", per_class=2)
    spec = folder_spec(tmp_path / "pets")
    monkeypatch.setattr(images, "CACHE_VERSION", images.CACHE_VERSION - 1)
    load_data(spec, tmp_path, seed=0)
    old = sorted((tmp_path / "cache" / "images").iterdir())
    monkeypatch.undo()
    monkeypatch.setenv("TUNING_CACHE", str(tmp_path / "cache"))
    load_data(spec, tmp_path, seed=0)
    new = sorted((tmp_path / "cache" / "images").iterdir())
    assert len(old) == len(new) == 1 and old != new
