"""Folders and manifests of real image files, including broken ones; the decode cache; augmentation."""

from __future__ import annotations

import io
import json
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
    Image.fromarray(shape_image(1, seed=42)).save(tmp_path / "pets" / "dog" / "0.jpg")  # a file changes
    load_data(spec, tmp_path, seed=0)
    assert len(calls) == 44  # a new cache entry: everything decoded again


def test_train_test_folders_and_class_subsets(tmp_path):
    for split in ("train", "test"):
        make_tree(tmp_path / "split" / split, per_class=6)
    data = load_data(folder_spec(tmp_path / "split", classes=["fox", "cat"]), tmp_path, seed=0)
    assert data.class_names == ("fox", "cat")
    assert np.bincount(data.y_test).tolist() == [6 + 2, 6 + 1]  # fox (+ palette, cmyk) and cat (+ rgba) of test/
    assert set(np.unique(data.y_train)) == {0, 1}
    with pytest.raises(DataError, match=r"'fx' \(did you mean 'fox'\?\) not among the classes"):
        load_data(folder_spec(tmp_path / "split", classes=["fx", "cat"]), tmp_path, seed=0)


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
    with pytest.raises(SpecError, match="either label_column .* or label_columns"):
        load_spec({"version": 1, "data": {"manifest": "train.xlsx", "image_size": [8, 8]}})


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
    from tuning.data import LazyImages

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
