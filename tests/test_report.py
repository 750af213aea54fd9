"""Reports: numbers that match the run's files, a self-contained HTML page, stable importance, partial
reports of interrupted searches, and the comparison of runs."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser

import numpy as np
import pytest

from tuning import search
from tuning.cli import main
from tuning.report import collect, compare_runs
from tuning.results import _fmt
from tuning.run import Run

from .conftest import ROOT, interactive_ctrl_c, tiny, write_spec

pytestmark = pytest.mark.slow
FIGURES = (
    "score_vs_hyperparameters",
    "parallel_coordinates",
    "learning_curves",
    "score_over_time",
    "importance",
    "confusion_matrix",
    "test_samples",
    "misclassified",
    "feature_maps",
    "pca",
)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    spec = tiny(model={"blocks": {"int": [1, 2]}, "filters": {"choice": [8, 16]}, "batch_norm": {"choice": [True, False]}})
    return search(spec, name="report", out=tmp_path_factory.mktemp("report"), quiet=True)


class Page(HTMLParser):
    """Collects what a reader without JavaScript sees: tables, figures, images."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.figures: list[str] = []
        self.images: list[str] = []
        self.scripts = 0
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("class") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "figure":
            self.figures.append(attrs["id"])
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "script":
            self.scripts += 1

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_search_leaves_a_self_contained_html_report(finished):
    text = (finished.path / "report.html").read_text()
    page = Page()
    page.feed(text)
    assert page.scripts == 0 and "http://" not in text and "https://" not in text
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    assert set(FIGURES) <= set(page.figures)


def test_html_and_markdown_numbers_match_the_run_files(finished):
    rows = read_csv(finished.path / "trials.csv")
    ranked = [r for r in rows if r["rank"]]
    page = Page()
    page.feed((finished.path / "report.html").read_text())
    board = page.tables["leaderboard"]
    assert [line[1] for line in board[1:]] == [r["trial_id"] for r in ranked][:10]
    assert [line[2] for line in board[1:]] == [_fmt(float(r["score"])) for r in ranked][:10]
    markdown = (finished.path / "report.md").read_text()
    assert f"| 1 | {ranked[0]['trial_id']} | {_fmt(float(ranked[0]['score']))} |" in markdown
    best = finished.best
    assert f"test accuracy {best['test']['accuracy']:.4f}" in markdown
    assert all((finished.path / "report_files" / f"{name}.png").exists() for name in FIGURES)
    per_class = page.tables["per-class"]
    assert [line[0] for line in per_class[1:]] == [str(i) for i in range(10)]


def test_results_json_holds_trials_history_plan_and_summary(finished):
    results = json.loads((finished.path / "results.json").read_text())
    rows = read_csv(finished.path / "trials.csv")
    assert results["schema_version"] == 1 and results["partial"] is False
    assert [t["trial_id"] for t in results["trials"]] == [r["trial_id"] for r in rows]
    for trial, row in zip(results["trials"], rows):
        assert trial["status"] == row["status"] and (trial["score"] is None) == (row["score"] == "")
        if row["score"]:
            assert trial["score"] == pytest.approx(float(row["score"]))
    completed = [r["trial_id"] for r in rows if r["status"] == "completed"]
    assert set(completed) <= set(results["history"])
    assert results["budget"]["epochs_trained"] == sum(int(r["epochs_trained"]) for r in rows if not r["trial_id"].startswith("infeasible"))
    assert results["budget"]["disk_mb"] > 0 and results["precision"] == "float32" and results["budget"]["workers"] == 0
    assert results["plan"]["trials"] == 6 and results["best"]["analysis"]["test_count"] == results["data"]["test"]


def test_importance_is_stable_and_names_its_method(finished):
    first, second = collect(finished)["importance"], collect(finished)["importance"]
    assert first == second
    assert "random-forest" in first["method"] and "bootstrap" in first["method"]
    assert set(first["values"]) == {"blocks", "filters", "batch_norm", "learning_rate"}
    assert sum(v["importance"] for v in first["values"].values()) == pytest.approx(1.0)


def test_report_rebuilds_from_a_copy_of_the_folder(finished, tmp_path, capsys):
    copy = tmp_path / "elsewhere"
    shutil.copytree(finished.path, copy)
    for name in ("report.html", "report.md", "results.json"):
        (copy / name).unlink()
    assert main(["report", str(copy), "--top", "3"]) == 0
    page = Page()
    page.feed((copy / "report.html").read_text())
    assert len(page.tables["leaderboard"]) == 1 + 3
    assert "html:" in capsys.readouterr().out


def test_interrupted_search_writes_a_partial_report_and_runs_compare(finished, tmp_path, capsys):
    spec = write_spec(tmp_path, tiny(), "partial.yaml")
    command = [sys.executable, "-m", "tuning", "search", str(spec), "--out", str(tmp_path), "--quiet"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=interactive_ctrl_c)
    deadline = time.time() + 240
    while time.time() < deadline and len(list((tmp_path / "partial" / "trials").glob("0*.json"))) < 2:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130
    assert "run the same command again to resume" in process.stderr.read()
    run = Run(tmp_path / "partial")
    assert run.status == "interrupted"
    results = json.loads((run.path / "results.json").read_text())
    assert results["partial"] is True and results["budget"]["trials"] < 6
    assert "Partial report" in (run.path / "report.html").read_text()

    assert main(["report", str(finished.path), str(run.path)]) == 0
    table = capsys.readouterr().out
    assert f"| report | finished | val_accuracy (max) | {finished.best['trial_id']} |" in table
    assert "| partial | interrupted |" in table
    assert _fmt(finished.best["test"]["accuracy"]) in table
    assert compare_runs([finished.path]).count("\n") == 3


def test_the_test_samples_are_the_best_models_predictions(finished):
    import keras

    with np.load(finished.path / "best" / "analysis.npz") as arrays:
        images, true, predicted = arrays["sample_images"], arrays["sample_true"], arrays["sample_pred"]
        assert "augmented_images" not in arrays.files  # this space does not augment
    assert len(images) == 20 and set(true.tolist()) <= set(range(10))
    model = keras.saving.load_model(finished.path / "best_model.keras", safe_mode=True)
    np.testing.assert_array_equal(np.asarray(model.predict(images, verbose=0)).argmax(axis=1), predicted)


def test_the_best_models_layer_summary_is_whole_in_both_reports(finished):
    import keras

    model = keras.saving.load_model(finished.path / "best_model.keras", safe_mode=True)
    summary = json.loads((finished.path / "best" / "analysis.json").read_text())["summary"]
    assert summary[1].split() == ["Layer", "(type)", "Output", "Shape", "Param", "#"]
    rows = {line.split()[0]: line for line in summary[3:-4]}
    assert list(rows) == [layer.name for layer in model.layers]
    for layer in model.layers:  # every row ends in the layer's parameter count, nothing cropped
        assert rows[layer.name].endswith(f" {layer.count_params():,}")
    assert f"Total params: {model.count_params():,}" in summary
    assert all(line.isascii() for line in summary)  # no box drawing: plain text in Markdown and HTML alike
    assert "\n".join(summary) in (finished.path / "report.md").read_text()
    page = (finished.path / "report.html").read_text()
    assert "probabilities (Dense)" in page and f"Total params: {model.count_params():,}" in page


def test_trials_csv_writes_whole_number_hyperparameters_as_integers(tmp_path, capsys):
    """A conditional integer (dense_units only with a dense layer) is blank where inactive, never `32.0`."""
    spec = tiny(
        model={"blocks": 1, "filters": 8, "dense_layers": {"int": [0, 1]}, "dense_units": {"choice": [16, 32]}},
        training={"learning_rate": 0.01, "batch_size": 64},
        search={"algorithm": "grid", "max_epochs": 1, "seed": 0},
    )
    assert main(["search", str(write_spec(tmp_path, spec, "grid.yaml")), "--out", str(tmp_path), "--quiet"]) == 0
    rows = read_csv(tmp_path / "grid" / "trials.csv")
    assert sorted((r["dense_layers"], r["dense_units"]) for r in rows) == [("0", ""), ("1", "16"), ("1", "32")]


def test_max_trials_is_what_the_search_plans_in_results_progress_and_report(tmp_path, capsys):
    """max_trials = 2 of a 23-trial Hyperband plan: the search plans 2 trials of 1 epoch, so the report must not
    say "2 of 23 planned trials", nor the progress line price 75 epochs for its ETA."""
    spec = write_spec(tmp_path, tiny(search={"max_epochs": 9, "max_trials": 2}), "cut.yaml")
    assert main(["search", str(spec), "--out", str(tmp_path)]) == 0
    progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert [line.split()[0] for line in progress] == ["[1/2]", "[2/2]"]
    assert progress[-1].endswith("ETA <=0:00")  # the last planned epoch is done: nothing left
    results = json.loads((tmp_path / "cut" / "results.json").read_text())
    budget = results["budget"]
    assert (budget["planned_trials"], budget["planned_epochs"], budget["trials"]) == (2, 2, 2) and budget["max_trials"] == 2
    assert (results["plan"]["trials"], results["plan"]["epochs"]) == (23, 75)  # the whole plan stays in its place
    assert "2 of 2 planned trials (max_trials = 2 of the plan's 23); 2 epochs trained of 2 planned" in (tmp_path / "cut" / "report.md").read_text()
    assert "with 2 trials (max_trials = 2 of the plan's 23), 2 epochs" in Run(tmp_path / "cut")._repr_html_()
    assert "| 2 (2) | 2 |" in compare_runs([tmp_path / "cut"])  # trials (planned), epochs trained


def test_the_time_axis_leaves_out_the_hours_between_sessions():
    """A run searched 100 s, stopped, and resumed the next day: a trial ending 20 s into the second session is at
    120 s of search, as run.json's elapsed_s counts it, not at a day and 2 minutes."""
    from tuning.report import _search_seconds

    sessions = [
        {"started_at": "2026-11-01T10:00:00.000+00:00", "elapsed_before_s": 0.0},
        {"started_at": "2026-11-02T09:00:00.000+00:00", "elapsed_before_s": 100.0},
    ]
    assert _search_seconds("2026-11-01T10:01:00.000+00:00", sessions, "") == 60.0
    assert _search_seconds("2026-11-02T09:00:20.000+00:00", sessions, "") == 120.0
    assert _search_seconds("2026-11-01T10:01:00.000+00:00", [], "2026-11-01T10:00:30.000+00:00") == 30.0  # an older run


def test_a_run_begun_before_the_session_log_is_timed_by_the_wall_clock_throughout(tmp_path, monkeypatch):
    """Two sessions before `session_log`, one after: mixing the two clocks drew the best-so-far line backwards."""
    from tuning import open_run, report

    run = search(tiny(search={"algorithm": "random", "max_trials": 2, "max_epochs": 1}), name="old", out=tmp_path, quiet=True)
    manifest = json.loads((run.path / "run.json").read_text())
    manifest["sessions"], manifest["session_log"][0]["elapsed_before_s"] = 3, 500.0  # as if two sessions came before it
    (run.path / "run.json").write_text(json.dumps(manifest))
    seen: list[float] = []
    drawn = report.plots.score_over_time
    monkeypatch.setattr(report.plots, "score_over_time", lambda points, *rest: seen.extend(x for x, _ in points) or drawn(points, *rest))
    reopened = open_run(run.path)
    report._figures(reopened, collect(reopened), top=5)
    assert len(seen) == 2 and seen == sorted(seen) and max(seen) < 500


def test_the_eta_of_a_resumed_search_prices_only_what_is_left(monkeypatch):
    """A resumed run kept 3 trials (30 of its 40 planned epochs): one 5-epoch trial in 50 s leaves 5 epochs, ~50 s,
    not the 35 epochs a count of this session's alone would leave."""
    import io

    from tuning.progress import SearchProgress
    from tuning.records import TrialRecord

    now = [1000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    out = io.StringIO()
    view = SearchProgress(planned_trials=4, planned_epochs=40, metric="val_accuracy", direction="max", done_trials=3, done_epochs=30, stream=out, live=False)
    record = TrialRecord("3", {}, {"epochs": 9, "initial_epoch": 4})
    view.trial_started(record, 5)
    now[0] += 50.0
    record.status, record.score, record.history = "completed", 0.9, [{"epoch": e} for e in range(5, 10)]
    view.trial_finished(record)
    assert out.getvalue().splitlines()[-1].endswith("ETA <=0:50")


def test_a_search_with_augmentation_shows_what_its_layers_do(tmp_path):
    run = search(tiny(model={"blocks": 1, "filters": {"choice": [8, 16]}, "augment": {"rotation": 0.2, "contrast": 0.5}}), name="aug", out=tmp_path, quiet=True)
    with np.load(run.path / "best" / "analysis.npz") as arrays:
        draws = arrays["augmented_images"]
    assert draws.shape == (8, 8, 8, 3) and draws.dtype == np.uint8
    assert len({d.tobytes() for d in draws}) == 8  # every draw differs
    assert (run.path / "report_files" / "augmentation.png").exists()


def test_ctrl_c_while_the_search_loads_stops_it(tmp_path):
    """Before any trial (TensorFlow still loading) a Ctrl-C ends the command at once, exit 130. (A process
    started in the background by a script inherits SIGINT ignored, as every program does: not a bug.)"""
    spec = write_spec(tmp_path, tiny(), "early.yaml")
    command = [sys.executable, "-m", "tuning", "search", str(spec), "--out", str(tmp_path), "--quiet"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=interactive_ctrl_c)
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "early" / ".lock").exists():  # locked: TensorFlow loads next
        time.sleep(0.02)
    time.sleep(1.0)  # inside TensorFlow's import (about 3 s here)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=240) == 130
    trials = list((tmp_path / "early" / "trials").glob("0*.json"))
    assert len(trials) <= 1, "the search went on after Ctrl-C"


def test_image_grids_show_every_image_whole_in_its_own_colours():
    import io

    import numpy as np
    from PIL import Image

    from tuning import plots

    red = np.zeros((10, 20, 3), np.uint8)
    red[..., 0] = 255  # a wide colour image: kept red, scaled to the panel's width
    ramp = np.linspace(-1.0, 3.0, 64 * 64, dtype="float32").reshape(64, 64)  # floats: shown over their range
    digit = np.full((8, 8), 16, np.uint8)
    digit[2:6, 2:6] = 0  # a digits-style image (values 0..16): black square on white
    png = plots.image_grid(np.array([red, red]), ["true a\npred b (90%)", "second"], columns=2)
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    is_red = (pixels[..., 0] > 250) & (pixels[..., 1] < 5) & (pixels[..., 2] < 5)
    rows, columns = np.nonzero(is_red)
    assert is_red.sum() == 2 * plots.CELL * plots.CELL // 2  # two panels, each CELL wide and CELL/2 high
    assert columns.max() - columns.min() > plots.CELL  # side by side
    mixed = plots.image_grid([ramp, digit], ["ramp", "digit"])
    pixels = np.asarray(Image.open(io.BytesIO(mixed)).convert("L")).astype(int)
    assert (pixels == 0).sum() >= plots.CELL // 2 * plots.CELL // 2  # the digit's black square, scaled up
    assert len(np.unique(pixels)) > 100  # the ramp's range becomes the whole grey scale


def test_image_grid_captions_are_green_when_right_and_red_when_wrong():
    import io

    import numpy as np
    from PIL import Image

    from tuning import plots

    grey = np.full((2, 8, 8), 128, np.uint8)
    png = plots.image_grid(grey, ["true cat\npred cat (90%)", "true dog\npred cat (60%)"], columns=2, correct=[True, False])
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    captions = pixels[: pixels.shape[0] - plots.CELL - plots.GAP // 2]  # the band above the images

    def near(colour: str) -> np.ndarray:
        rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
        return np.abs(captions - rgb).sum(axis=-1) < 60

    middle = pixels.shape[1] // 2
    assert near(plots.RIGHT)[:, :middle].sum() > 20 and near(plots.RIGHT)[:, middle:].sum() == 0
    assert near(plots.WRONG)[:, middle:].sum() > 20 and near(plots.WRONG)[:, :middle].sum() == 0


def test_an_image_grid_is_drawn_in_little_memory():
    import tracemalloc

    import numpy as np

    from tuning import plots

    images = np.random.default_rng(0).integers(0, 255, (25, 28, 28), dtype=np.uint8)
    plots.image_grid(images[:1], ["warm-up"])
    tracemalloc.start()
    try:
        plots.image_grid(images, ["true Coat\npred Shirt (90%)"] * 25)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20  # drawn as one figure-sized image, matplotlib resampled ~85 MB of floats


def test_parallel_coordinates_draw_every_trial_to_its_score_even_without_a_conditional_value():
    from tuning.plots import NOT_APPLICABLE, parallel_positions

    rows = [
        {"blocks": 1, "filters_2": None, "optimizer": "adam", "score": 0.18},
        {"blocks": 2, "filters_2": 32, "optimizer": "sgd", "score": 0.91},
        {"blocks": 2, "filters_2": 64, "optimizer": "adam", "score": 0.55},
    ]
    positions, labels = parallel_positions(rows, ["blocks", "filters_2", "optimizer", "val_accuracy"], "val_accuracy")
    assert not np.isnan(positions).any()
    assert positions[:, 1].tolist() == [NOT_APPLICABLE, 0.0, 1.0]  # no filters_2 in a 1-block trial: below the range
    assert positions[:, 3].tolist() == pytest.approx([0.0, 1.0, (0.55 - 0.18) / (0.91 - 0.18)])  # every score drawn
    assert labels == ["blocks\n1..2", "filters_2\n32..64", "optimizer\nadam..sgd", "val_accuracy\n0.18..0.91"]
    alone = parallel_positions([{"augment_flip": None, "score": 0.5}], ["augment_flip", "val_accuracy"], "val_accuracy")
    assert alone[0].tolist() == [[NOT_APPLICABLE, 0.5]] and alone[1][0] == "augment_flip\nn/a"


def test_the_terminal_top_counts_a_promoted_trials_epochs_from_its_start():
    from tuning.results import top_text

    rows = [
        {"rank": 1, "trial_id": "0007", "score": 0.9, "initial_epoch": 1, "epochs_trained": 2, "blocks": 2},
        {"rank": 2, "trial_id": "0002", "score": 0.8, "initial_epoch": None, "epochs_trained": 1, "blocks": 1},
    ]
    lines = top_text(rows, ["blocks"]).splitlines()
    assert lines[0].split() == ["rank", "trial", "score", "epochs", "blocks"]
    assert lines[1].split() == ["1", "0007", "0.9", "3", "2"] and lines[2].split() == ["2", "0002", "0.8", "1", "1"]


def test_a_leaderboard_leaves_out_hyperbands_columns_when_no_trial_has_them():
    from tuning.results import leaderboard_table

    random_search = [{"rank": 1, "trial_id": "0", "score": 0.9, "lr": 0.01, "bracket": None, "round": None, "epochs": None, "best_epoch": 3}]
    header, body, _ = leaderboard_table(random_search, ["lr"], top=5)
    assert header == ["rank", "trial", "score", "lr", "best epoch", "params", "time (s)"] and body[0][:5] == ["1", "0", "0.9", "0.01", "3"]
    hyperband = [{**random_search[0], "iteration": 0, "bracket": 1, "round": 0, "epochs": 3}]
    assert leaderboard_table(hyperband, ["lr"], top=5)[0][4:7] == ["bracket", "round", "epochs"]
    extended = [*hyperband, {**hyperband[0], "rank": 2, "trial_id": "9", "iteration": 1}]  # --extend added an iteration
    assert leaderboard_table(extended, ["lr"], top=5)[0][4:8] == ["iteration", "bracket", "round", "epochs"]


def test_results_that_cannot_be_written_leave_a_run_that_says_so(tmp_path, monkeypatch):
    """An error while the results are written (a full disk) leaves run.json saying what happened, neither
    'running' nor 'finished'; the same search run again writes them."""
    import tuning.evaluation

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tuning.evaluation, "analyze_best", full_disk)
    spec = tiny(search={"algorithm": "random", "max_trials": 2, "max_epochs": 1})
    with pytest.raises(OSError):
        search(spec, name="full", out=tmp_path, quiet=True)
    manifest = json.loads((tmp_path / "full" / "run.json").read_text())
    assert manifest["status"] == "interrupted"
    assert "the results could not be written (OSError: [Errno 28] No space left on device): run the same command again" in manifest["stop_reason"]
    monkeypatch.undo()
    again = search(spec, name="full", out=tmp_path, quiet=True)
    assert again.status == "finished" and "test" in again.best and (again.path / "report.html").exists()


def test_the_command_reports_a_full_disk_in_one_line(tmp_path, monkeypatch, capsys):
    import tuning.evaluation

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "full" / "best"))

    monkeypatch.setattr(tuning.evaluation, "analyze_best", full_disk)
    spec = write_spec(tmp_path, tiny(search={"algorithm": "random", "max_trials": 1, "max_epochs": 1}), "full.yaml")
    assert main(["search", str(spec), "--out", str(tmp_path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"error: No space left on device ({tmp_path / 'full' / 'best'}); free some space or fix the permission" in err
    assert "Traceback" not in err
