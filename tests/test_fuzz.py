"""Bad input never gives a traceback: generated malformed specs all get a clear error and exit code 2."""

from __future__ import annotations

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tuning.cli import main  # noqa: E402

SECTIONS = {
    "data": ["source", "path", "validation_split", "image_size", "classes", "color_mode", "max_train_samples"],
    "model": ["blocks", "filters", "filters_growth", "kernel_size", "padding", "batch_norm", "pooling", "head", "dense_units", "augmentation"],
    "training": ["optimizer", "learning_rate", "momentum", "batch_size", "early_stopping", "label_smoothing"],
    "search": ["algorithm", "objective", "max_epochs", "factor", "seed", "max_trials", "time_budget", "max_params"],
}
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["same", "valid", "adam", "digits", "npz", "max", "1e-4", "30m", "hyperband"]),
)  # fmt: skip
domains = st.one_of(
    st.fixed_dictionaries({"choice": st.lists(scalars, max_size=4)}),
    st.fixed_dictionaries({"int": st.lists(st.one_of(st.integers(-5, 300), scalars), max_size=3)}, optional={"step": scalars, "log": scalars}),
    st.fixed_dictionaries({"float": st.lists(st.one_of(st.floats(-1, 2), scalars), max_size=3)}, optional={"step": scalars, "log": scalars}),
    st.dictionaries(st.text(max_size=6), scalars, max_size=2),
)
values = st.one_of(scalars, domains, st.lists(scalars, max_size=3))
sections = {name: st.dictionaries(st.one_of(st.sampled_from(keys), st.text(max_size=8)), values, max_size=5) for name, keys in SECTIONS.items()}
specs = st.fixed_dictionaries({}, optional={"version": st.one_of(st.just(1), scalars), **sections, "extra": values})


def _check(path, capsys) -> None:
    code = main(["validate", str(path)])
    captured = capsys.readouterr()
    assert code in (0, 2), captured.err
    assert "Traceback" not in captured.err + captured.out
    if code == 2:
        assert captured.err.startswith("error: ") and len(captured.err.strip()) > 10


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=specs)
def test_malformed_spec_mappings(tmp_path, capsys, spec):
    import yaml

    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    _check(path, capsys)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.one_of(
        st.text(max_size=200),
        st.sampled_from(["", "\x00", "version: 1\nmodel: {blocks: [", "version: 1\n  bad indent: 2\n", "- 1\n- 2", "version: 1e999", "&a [*a]"]),
    )
)
def test_arbitrary_yaml_text(tmp_path, capsys, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass") if "\ud800" not in text else path.write_bytes(b"\xff\xfe")
    _check(path, capsys)


# --- malformed data ----------------------------------------------------------------------------------------

from hypothesis.extra import numpy as hnp  # noqa: E402

image_dtypes = st.sampled_from(["uint8", "float32", "float64", "int64", "bool", "complex64", "<U2"])
label_dtypes = st.sampled_from(["int64", "uint8", "float64", "bool", "<U3"])
images = image_dtypes.flatmap(lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=1, max_dims=5, min_side=0, max_side=6)))
labels = label_dtypes.flatmap(lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=9)))
npz_contents = st.fixed_dictionaries(
    {"x_train": images},
    optional={"y_train": labels, "x_test": images, "y_test": labels, "class_names": st.lists(st.text(max_size=4), max_size=4)},
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(contents=npz_contents, size=st.one_of(st.none(), st.just([8, 8])))
@example(contents={"x_train": [[[0]], [[0]]], "y_train": [0, 2**40]}, size=None)  # once sized a list of class names by it
@example(contents={"x_train": [[[0]], [[0]]], "y_train": [0.0, 1e300]}, size=None)
def test_malformed_npz_data_gives_a_data_error(tmp_path, contents, size):
    """Labels out of range, mismatched lengths, one class, NaNs, wrong shapes and dtypes: a DataError, never a crash."""
    import numpy as np

    from tuning import DataError, load_spec
    from tuning.data import describe, load_data

    path = tmp_path / "data.npz"
    np.savez(path, **{k: np.asarray(v) for k, v in contents.items()})
    spec = load_spec({"version": 1, "data": {"source": "npz", "path": str(path), "image_size": size}})
    try:
        describe(spec.data, tmp_path)  # what `validate` and the plan read: headers only
    except DataError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
    try:
        dataset = load_data(spec.data, tmp_path, seed=0)
    except DataError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
    else:  # accepted data is consistent
        assert len(dataset.x_train) == len(dataset.y_train) > 0 and dataset.y_train.max() < dataset.num_classes
        assert dataset.x_test.shape[1:] == dataset.x_train.shape[1:]


def _write_npz(folder, **arrays):
    import numpy as np

    path = folder / "data.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("different_sizes", "images of different sizes"),
        ("mismatched", "x_train has 6 images but y_train has 5 labels"),
        ("one_class", "only one class"),
        ("out_of_range", "labels from 0 to 7; expected 0..2"),
        ("empty_folder", "has no class sub-folders"),
        ("empty_class_folder", "no image files found"),
    ],
)
def test_malformed_data_through_the_cli_exits_2_with_one_paragraph(tmp_path, capsys, case, message):
    import numpy as np

    from tests.conftest import write_spec

    x = np.zeros((6, 8, 8), np.uint8)
    data: dict = {"source": "npz"}
    if case == "different_sizes":
        data["path"] = str(_write_npz(tmp_path, x_train=np.array([np.zeros((8, 8)), np.zeros((9, 9))], dtype=object), y_train=np.array([0, 1])))
    elif case == "mismatched":
        data["path"] = str(_write_npz(tmp_path, x_train=x, y_train=np.array([0, 1, 0, 1, 0])))
    elif case == "one_class":
        data["path"] = str(_write_npz(tmp_path, x_train=x, y_train=np.zeros(6, int)))
    elif case == "out_of_range":
        data["path"] = str(_write_npz(tmp_path, x_train=x, y_train=np.array([0, 1, 2, 0, 1, 7]), class_names=np.array(["a", "b", "c"])))
    else:
        (tmp_path / "images").mkdir()
        if case == "empty_class_folder":
            (tmp_path / "images" / "cat").mkdir()
        data = {"directory": str(tmp_path / "images"), "image_size": [8, 8]}
    spec = write_spec(tmp_path, {"version": 1, "data": data, "model": {"filters": {"choice": [8, 16]}}, "search": {"max_epochs": 1}}, "bad_data.yaml")
    code = main(["search", str(spec), "--out", str(tmp_path / "reports"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 2 and "Traceback" not in captured.err
    assert captured.err.startswith("error: ") and message in captured.err and captured.err.count("\n") == 1
    assert not (tmp_path / "reports" / "bad_data").exists()  # refused before it wrote anything: no folder left behind
