"""Each data source, from files made here (no network), and the errors bad data gets."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml

from tuning import DataError
from tuning.data import describe, load_data
from tuning.splits import stratified_subset

FASHION = Path("/usr/share/datasets/fashion-mnist")


def data_spec(**fields):
    """The `data` section of a spec, validated as `load_spec` would."""
    from tuning.spec import DataSpec

    return DataSpec.model_validate(fields)


def test_digits_split_is_stratified_seeded_and_disjoint(tmp_path):
    a = load_data(data_spec(), tmp_path, seed=0)
    b = load_data(data_spec(), tmp_path, seed=0)
    c = load_data(data_spec(), tmp_path, seed=1)
    assert a.input_shape == (8, 8, 1) and a.num_classes == 10 and a.value_max == 16.0
    assert len(a.y_train) + len(a.y_val) + len(a.y_test) == 1797
    assert np.array_equal(a.y_val, b.y_val) and not np.array_equal(a.x_val, c.x_val)
    for labels in (a.y_train, a.y_val, a.y_test):
        assert set(np.unique(labels)) == set(range(10))
    counts = np.bincount(a.y_val, minlength=10) / len(a.y_val)
    assert np.all(np.abs(counts - 0.1) < 0.02)


def test_subsets_keep_every_class(tmp_path):
    data = load_data(data_spec(max_train_samples=200, max_test_samples=50), tmp_path, seed=0)
    assert len(data.y_train) == 200 and len(data.y_test) == 50
    assert set(np.unique(data.y_train)) == set(range(10)) == set(np.unique(data.y_val))


def test_capped_training_validation_and_test_images_never_overlap(tmp_path):
    """Each image numbered in its pixels: the sets drawn with max_train_samples are disjoint, and proportioned."""
    index = np.arange(900)
    x = np.zeros((900, 8, 8), np.uint8)
    x[:, 0, 0], x[:, 0, 1] = index % 256, index // 256
    data = load_data(data_spec(max_train_samples=200), tmp_path, seed=0, arrays=(x, index % 3))
    number = {
        name: set((part[:, 0, 0, 0].astype(int) + 256 * part[:, 0, 1, 0].astype(int)).tolist())
        for name, part in (("train", data.x_train), ("val", data.x_val), ("test", data.x_test))
    }
    assert (len(number["train"]), len(number["val"]), len(number["test"])) == (200, 50, 180)
    assert not number["train"] & number["val"] and not number["train"] & number["test"] and not number["val"] & number["test"]


def test_max_train_samples_is_the_number_of_images_trained_on(tmp_path):
    """300 gives 300 training images, and validation images in the split's proportion beside them (75 at 0.2)."""
    data = load_data(data_spec(max_train_samples=300, validation_split=0.2), tmp_path, seed=0)
    assert len(data.y_train) == 300 and len(data.y_val) == 75
    whole = load_data(data_spec(), tmp_path, seed=0)
    rows = {image.tobytes() for image in whole.x_train} | {image.tobytes() for image in whole.x_val}
    assert not {image.tobytes() for image in data.x_train} & {image.tobytes() for image in data.x_test}
    assert {image.tobytes() for image in data.x_val} <= rows and np.all(np.bincount(data.y_train, minlength=10) >= 25)


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_from_a_folder_of_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (60, 28, 28)), np.arange(60) % 10
    for stem, array in (("train-images-idx3-ubyte", x), ("train-labels-idx1-ubyte", y), ("t10k-images-idx3-ubyte", x[:20]), ("t10k-labels-idx1-ubyte", y[:20])):
        write_idx(tmp_path / f"{stem}.gz", array)
    data = load_data(data_spec(source="fashion_mnist", path=str(tmp_path)), tmp_path, seed=0)
    assert data.input_shape == (28, 28, 1) and data.x_train.dtype == np.uint8
    assert data.class_names[0] == "T-shirt/top" and len(data.y_test) == 20
    assert np.array_equal(np.sort(np.concatenate([data.y_train, data.y_val])), np.sort(y))


@pytest.mark.skipif(not FASHION.exists(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_debian_files():
    data = load_data(data_spec(source="fashion_mnist", path=str(FASHION), max_train_samples=500, max_test_samples=100), Path("."), seed=0)
    assert data.input_shape == (28, 28, 1) and data.num_classes == 10 and len(data.y_test) == 100


def test_missing_idx_files_are_named(tmp_path):
    with pytest.raises(DataError, match="lacks train-images-idx3-ubyte"):
        load_data(data_spec(source="mnist", path=str(tmp_path)), tmp_path, seed=0)


def test_cifar10_from_python_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 255, (20, 3072), dtype=np.uint8), b"labels": list(np.arange(20) % 10)}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}))
    data = load_data(data_spec(source="cifar10", path=str(tmp_path)), tmp_path, seed=0)
    assert data.input_shape == (32, 32, 3) and data.class_names[3] == "c3" and len(data.y_test) == 20


def test_npz_with_and_without_test_arrays(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (90, 12, 10, 3), dtype=np.uint8), np.arange(90) % 3
    np.savez(tmp_path / "train_only.npz", x_train=x, y_train=y, class_names=np.array(["a", "b", "c"]))
    np.savez(tmp_path / "both.npz", x_train=x, y_train=y, x_test=x[:9], y_test=y[:9])
    only = load_data(data_spec(source="npz", path="train_only.npz"), tmp_path, seed=0)
    assert only.class_names == ("a", "b", "c") and len(only.y_test) == 18
    assert describe(data_spec(source="npz", path="train_only.npz"), tmp_path) == ((12, 10, 3), 3)
    both = load_data(data_spec(source="npz", path="both.npz"), tmp_path, seed=0)
    assert len(both.y_test) == 9 and both.class_names == ("0", "1", "2")


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x_train": np.zeros((10, 8, 8)), "y_train": np.arange(9) % 2}, "x_train has 10 images but y_train has 9 labels"),
        ({"x_train": np.zeros((10, 8, 8)), "y_train": np.arange(10) % 2 + 5}, r"no training images of '0', '1', '2', '3', '4' \(class index 0, 1, 2, 3, 4\)"),
        ({"x_train": np.zeros((10, 8, 8)), "y_train": np.zeros(10)}, "only one class"),
        ({"x_train": np.zeros((10, 8)), "y_train": np.arange(10) % 2}, r"x_train has shape \(10, 8\)"),
        ({"y_train": np.arange(10) % 2}, "missing x_train"),
        ({"x_train": np.zeros((10, 8, 8)), "y_train": np.arange(10) % 2, "x_test": np.zeros((4, 9, 9)), "y_test": np.arange(4) % 2}, "test images are"),
    ],
)
def test_bad_npz_files_get_clear_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_data(data_spec(source="npz", path="bad.npz"), tmp_path, seed=0)


def test_not_an_npz_file(tmp_path):
    (tmp_path / "bad.npz").write_text("hello")
    with pytest.raises(DataError, match="not a readable .npz file"):
        load_data(data_spec(source="npz", path="bad.npz"), tmp_path, seed=0)


@pytest.mark.parametrize(("size", "classes"), [(120, 10), (600, 10), (7, 3), (1000, 7)])
def test_max_train_samples_gives_exactly_that_many_images_in_proportion(size, classes):
    y = np.random.default_rng(1).integers(0, classes, 1797)
    picked = stratified_subset(y, size, np.random.default_rng(0))
    assert len(picked) == size and len(set(picked.tolist())) == size
    shares = np.bincount(y[picked], minlength=classes) / size
    assert np.all(np.abs(shares - np.bincount(y, minlength=classes) / len(y)) <= 1 / size + 1e-9)


@pytest.mark.parametrize(("counts", "size"), [([1000] + [3] * 10, 100), ([1000] + [1] * 10, 100), ([500, 500] + [2] * 6, 20)])
def test_max_train_samples_is_exact_with_small_classes_too(counts, size):
    """Each class keeps at least one image; the large classes give up what the rounding of the small ones added."""
    y = np.repeat(np.arange(len(counts)), counts)
    picked = stratified_subset(y, size, np.random.default_rng(0))
    assert len(picked) == size and np.all(np.bincount(y[picked], minlength=len(counts)) >= 1)


def test_digit_classes_can_be_chosen_by_number():
    from tuning import load_spec

    spec = load_spec({"version": 1, "data": {"source": "digits", "classes": [3, 8]}})
    assert spec.data.classes == ["3", "8"]
    data = load_data(spec.data, Path.cwd(), seed=0)
    assert data.class_names == ("3", "8") and set(np.unique(data.y_train)) == {0, 1}


def test_validate_refuses_classes_the_data_does_not_have_as_the_search_would(tmp_path, capsys):
    """`tuning validate` said "valid, 2 classes" for a misspelt class, which the search then refused."""
    from tuning.cli import main

    for cls in ("Cat", "Dog"):
        (tmp_path / "PetImages" / cls).mkdir(parents=True)
        (tmp_path / "PetImages" / cls / "1.png").write_bytes(b"")
    for data, wrong in [
        (
            {"source": "fashion_mnist", "classes": ["Shirt", "Dres"]},
            "'Dres' (did you mean 'Dress'?) not among the classes of fashion_mnist: T-shirt/top, Trouser",
        ),
        ({"source": "digits", "classes": [3, 8, 12]}, "'12' (did you mean '2'?) not among the classes of digits: 0, 1, 2"),
        (
            {"directory": "PetImages", "image_size": [8, 8], "classes": ["Cat", "Dgo"]},
            "'Dgo' (did you mean 'Dog'?) not among the classes of folder PetImages: Cat, Dog",
        ),
    ]:
        spec = tmp_path / "spec.yaml"
        spec.write_text(yaml.safe_dump({"version": 1, "data": data, "model": {"filters": {"choice": [4, 8]}}}))
        assert main(["validate", str(spec)]) == 2
        assert f"data.classes: {wrong}" in capsys.readouterr().err


def test_an_npz_with_other_names_lists_what_it_holds(tmp_path):
    np.savez(tmp_path / "wrong.npz", images=np.zeros((4, 8, 8)), labels=np.arange(4) % 2)
    with pytest.raises(DataError, match="missing x_train, y_train; found images, labels"):
        describe(data_spec(source="npz", path="wrong.npz"), tmp_path)


def test_class_names_given_twice_are_refused(tmp_path):
    """`class_names=["a"] * 10` would train ten classes that no one can tell apart in the report or the predictions."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    with pytest.raises(DataError, match=r"arrays: class_names lists 'a' twice; each class needs its own name \(the names are in label order"):
        load_data(data_spec(), tmp_path, seed=0, arrays=(digits.images, digits.target), class_names=["a"] * 10)
    with pytest.raises(DataError, match=r"lists 'odd', 'even' twice"):
        load_data(data_spec(), tmp_path, seed=0, arrays=(digits.images, digits.target), class_names=["odd", "even"] * 5)
    np.savez(tmp_path / "twice.npz", x_train=np.zeros((6, 8, 8)), y_train=np.arange(6) % 3, class_names=np.array(["cat", "dog", "cat"]))
    for read in (describe, lambda spec, base: load_data(spec, base, seed=0)):
        with pytest.raises(DataError, match=r"twice.npz: class_names lists 'cat' twice; each class needs its own name"):
            read(data_spec(source="npz", path="twice.npz"), tmp_path)
