"""Bad input never gives a traceback: generated malformed specs all get a clear error and exit code 2."""

from __future__ import annotations

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
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
