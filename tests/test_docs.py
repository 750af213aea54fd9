"""Every documented example is also a test: the README's Python example and the example notebook."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.slow


def test_readme_python_example_runs_as_written(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## From Python") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[0] == "6"
    assert (tmp_path / "reports" / "from_python" / "export").is_dir()


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").exists(), reason="apt-get install dataset-fashion-mnist")
def test_example_notebook_runs_headless(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(ROOT / "examples" / "fashion_mnist.ipynb", as_version=4)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = {
        i: "".join(o.get("text", "") + str(o.get("data", {}).get("text/html", "")) for o in cell.get("outputs", [])) for i, cell in enumerate(notebook.cells)
    }
    assert "trials," in outputs[1]
    assert "tuning run fashion_notebook" in outputs[2] and "finished" in outputs[2]
    assert "model.tflite" in outputs[5]
    assert outputs[6].count("->") == 4


def test_readme_annotated_spec_is_valid_and_names_every_field(tmp_path):
    """The README's complete spec loads as written, and no field of the schema is missing from it."""
    from tuning import load_spec
    from tuning.spec import AugmentSpec, DataSpec, ModelSpec, SearchSection, TrainingSpec

    readme = (ROOT / "README.md").read_text()
    start = readme.index("A complete, annotated spec")
    block = readme[readme.index("```yaml", start) + len("```yaml") : readme.index("```", readme.index("```yaml", start) + 7)]
    (tmp_path / "annotated.yaml").write_text(block)
    spec = load_spec(tmp_path / "annotated.yaml")
    assert spec.search.keep_checkpoints == 5 and spec.training.mixed_precision == "auto"
    documented = set(re.findall(r"^\s*#?\s*([a-z_]+):", block, flags=re.MULTILINE))
    for section in (DataSpec, ModelSpec, AugmentSpec, TrainingSpec, SearchSection):
        missing = set(section.model_fields) - documented
        assert not missing, f"README's annotated spec lacks {section.__name__} fields {sorted(missing)}"


def test_every_command_has_a_readme_section():
    """`tuning --help` and the README list the same commands."""
    from tuning.cli import _parser

    commands = next(a for a in _parser()._actions if a.dest == "command").choices
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^### `tuning ([a-z]+)", readme, flags=re.MULTILINE))
    assert set(commands) - {"worker"} <= documented, f"README lacks a section for {sorted(set(commands) - documented)}"
    assert "tuning worker RUN" in readme
