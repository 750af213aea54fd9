"""Export a trial's model so it runs anywhere: Keras, SavedModel, TFLite, a model card, and a spec that
rebuilds exactly this model. Either the trial's checkpoint (optimizer state and all) or a retrain on
train + validation for the trial's best epoch count, as KerasTuner's documentation recommends."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .errors import RunError
from .records import TrialRecord, data_dir, write_atomic, write_json
from .run import Run
from .space import PER_BLOCK, parameters, resolve
from .spec import MAX_NAME, SearchSpec, load_stored_spec
from .wording import counted

FORMATS = ("keras", "savedmodel", "tflite")


def fixed_spec(
    spec: SearchSpec,
    values: dict[str, Any],
    epochs: int,
    base_dir: Path | None = None,
    trial_seed: int | None = None,
    *,
    on_arrays: bool = False,
) -> dict[str, Any]:
    """The spec with every tunable value fixed to `values`: `tuning train` rebuilds exactly this model.

    A relative `data.path` (and `test_path`) is made absolute against `base_dir` (the folder the search resolved it from), as the
    written file lives elsewhere, in the run's export folder. `trial_seed`, the trial's own seed, becomes `search.trial_seed`:
    its one trial then draws the search trial's initial weights, dropout, augmentation and epoch orders (`search.seed` stays,
    as it also splits the data), so it trains as the search trained it. `on_arrays`: the search trained on arrays passed
    from Python, not on the spec's source: the data section becomes `source: arrays` with the settings that apply to
    arrays (the split, image size, classes...), which `tuning train` refuses without those arrays instead of training on
    the spec's source.
    """
    data = spec.to_dict()
    if on_arrays:
        from .sources import ARRAY_SETTINGS

        data["data"] = {"source": "arrays", **{key: data["data"][key] for key in ARRAY_SETTINGS if key in data["data"]}}
    for key in ("path", "test_path"):
        if base_dir is not None and data["data"].get(key) and not Path(data["data"][key]).expanduser().is_absolute():
            data["data"][key] = str((base_dir / data["data"][key]).resolve())
    for param in parameters(spec):
        value = values.get(param.name, param.domain.values()[0] if param.domain.values() else param.domain.low)
        section, key = str(param.path[0]), str(param.path[1])
        if len(param.path) == 3:
            data[section][key][param.path[2]] = value
        else:
            data[section][key] = value
    config = resolve(spec, values)
    for name in PER_BLOCK:  # blocks is fixed now: one value per block it has
        values = data["model"][name]
        if isinstance(values, list):
            data["model"][name] = values[: config.blocks] if config.blocks else values[0]
    data["search"] = {**data["search"], "algorithm": "random", "max_trials": 1, "max_epochs": max(1, epochs)}
    data["search"].pop("time_budget", None)
    data["search"].pop("trial_seed", None)
    if trial_seed is not None:
        data["search"]["trial_seed"] = trial_seed
    data.pop("name", None)  # the caller names the one-trial run
    return data


class TrialModel:
    """A finished trial of a run: its spec, values and checkpointed model."""

    def __init__(self, run: Run, trial_id: str | None):
        self.run = run
        manifest = run.manifest
        records = {r.trial_id: r for r in run.records()}
        trial_id = trial_id or (run.best or {}).get("trial_id")
        if trial_id is None:
            raise RunError(f"{run.path} has no completed trial to export yet")
        if trial_id not in records or records[trial_id].status != "completed":
            known = ", ".join(r for r, rec in records.items() if rec.status == "completed")
            found = records.get(trial_id)
            what = f"did not complete ({found.status}: {found.reason or 'no reason recorded'}), so it left no model to export" if found else "is not a trial"
            raise RunError(f"trial {trial_id!r} of {run.path} {what}; completed trials: {known or 'none'}")
        self.record = records[trial_id]
        # The trials whose checkpoints this one continued from (Hyperband promotions), its parent first.
        self.lineage: list[TrialRecord] = []
        parent = self.record.parent
        while parent in records and all(r.trial_id != parent for r in self.lineage):
            self.lineage.append(records[parent])
            parent = records[parent].parent
        self.spec = load_stored_spec(manifest["spec"])
        self.data_dir = data_dir(manifest)
        self.data = manifest["data"]
        self.config = resolve(self.spec, self.record.values)
        if self.record.batch_size and self.record.batch_size != self.config.batch_size:  # halved after running out of memory
            self.config = dataclasses.replace(self.config, batch_size=self.record.batch_size)
        # `tuning.search(spec, data=(x, y))` records its data's origin as "arrays": the spec's source is not what it trained on.
        self.searched_on_arrays = self.data.get("origin") == "arrays"

    @property
    def not_reproduced(self) -> str | None:
        """Why `tuning train best_config.yaml` cannot reproduce this trial's score exactly, or None.

        A promotion trained its epochs on top of its parent's checkpoint, whose epochs had the parent's seed (and
        perhaps a grandparent's before them); one run from scratch with one seed is not that training.
        """
        if self.record.parent is None:
            return None
        earlier = "".join(f" (itself continued from trial {r.parent}'s)" for r in self.lineage if r.parent is not None)
        epochs = counted(int(self.record.best_epoch or 1), "epoch")
        return (
            f"trial {self.record.trial_id} continued from trial {self.record.parent}'s checkpoint{earlier} (a Hyperband promotion), "
            f"and `tuning train` trains its {epochs} from scratch with one seed, this trial's"
        )

    @property
    def checkpoint(self) -> Path:
        return self.run.path / "kerastuner" / f"trial_{self.record.trial_id}" / "checkpoint.weights.h5"

    def build(self) -> Any:
        from .hypermodel import build_model, compile_model, prepare_for_training

        size = (self.spec.data.image_size[0], self.spec.data.image_size[1]) if self.spec.data.image_size else None
        model = build_model(
            self.config, tuple(self.data["image_shape"]), len(self.data["classes"]), value_max=float(self.data.get("value_max", 255.0)), image_size=size
        )  # type: ignore[arg-type]
        model = compile_model(model, self.config)
        prepare_for_training(model, tuple(self.data["image_shape"]), len(self.data["classes"]))
        return model

    def from_checkpoint(self) -> Any:
        model = self.build()
        if not self.checkpoint.exists():
            raise RunError(
                f"trial {self.record.trial_id} has no saved weights ({self.checkpoint} is missing: a search keeps only the best "
                f"search.keep_checkpoints trials' weights); pass --retrain to train this configuration again"
            )
        model.load_weights(self.checkpoint)
        return model

    def retrain(self, dataset: Any) -> Any:
        """Train on train + validation for the trial's best (cumulative) epoch count, with the run's seed."""
        import keras

        keras.utils.set_random_seed(self.spec.search.seed)
        model = self.build()
        from .batches import fit_data
        from .lazy_images import concat

        x = concat(dataset.x_train, dataset.x_val)
        y = np.eye(dataset.num_classes, dtype="float32")[np.concatenate([dataset.y_train, dataset.y_val])]
        model.fit(**fit_data(x, y, self.config.batch_size, seed=self.spec.search.seed), epochs=int(self.record.best_epoch or 1), verbose=0)
        return model


def export(
    run_dir: str | Path,
    *,
    trial: str | None = None,
    formats: str | Sequence[str] = FORMATS,
    out: str | Path | None = None,
    retrain: bool = False,
    quantize: bool = False,
    data: Sequence[np.ndarray] | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Write the chosen trial's model in `formats`, its model card and `best_config.yaml`; return the paths.

    A run searched on arrays (`tuning.search(spec, data=...)`) keeps no copy of them: pass the same `data`
    (and `class_names`) to test or retrain the model; without them the card keeps the search's test metrics.

    Example:
        >>> paths = export("reports/digits", formats=["keras", "tflite"])
    """
    formats = [formats] if isinstance(formats, str) else list(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise RunError(f"unknown export format {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    from .runtime import quiet_logs

    quiet_logs()
    chosen = TrialModel(Run(run_dir), trial)
    out_dir = Path(out) if out else chosen.run.path / "export" / chosen.record.trial_id
    if out_dir.exists() and not out_dir.is_dir():
        raise RunError(f"--out {out_dir} is a file; give a folder (it is created if missing) for the exported model and its card")
    if chosen.searched_on_arrays and data is None and retrain:
        raise RunError(
            f"{chosen.run.path} was searched on arrays passed to tuning.search(data=...), which a run does not keep, so --retrain has "
            f"nothing to train on; from Python, pass the same arrays: tuning.open_run({str(chosen.run.path)!r}).export(retrain=True, data=(x_train, y_train, ...))"
        )
    untested = None  # why the card has no test metrics of its own
    if data is not None:
        dataset = _given_arrays(chosen, data, class_names)
    elif chosen.searched_on_arrays:
        dataset = None
        untested = "the run was searched on arrays it does not keep; export(data=...) tests it on them"
    elif retrain:
        dataset = _load_data(chosen)
    else:
        dataset, untested = _try_load(chosen)
    out_dir.mkdir(parents=True, exist_ok=True)
    if retrain:
        model = chosen.retrain(dataset)
        source = f"retrained on train + validation for {counted(chosen.record.best_epoch or 0, 'epoch')} (seed {chosen.spec.search.seed})"
    else:
        model = chosen.from_checkpoint()
        source = f"checkpoint of trial {chosen.record.trial_id} at its best epoch {chosen.record.best_epoch}"
    paths: dict[str, Path] = {}
    shape, dtype = tuple(chosen.data["image_shape"]), str(chosen.data.get("dtype", "uint8"))
    import keras

    in_tensorflow = [name for name in formats if name != "keras"] if keras.backend.backend() != "tensorflow" else []
    for name in formats:
        if name not in in_tensorflow:
            paths.update(EXPORTERS[name](model, out_dir, shape, dtype, quantize))
    if in_tensorflow:
        paths.update(_converted_by_tensorflow(model, paths.get("keras"), out_dir, shape, dtype, in_tensorflow, quantize))
    test = _test_metrics(model, dataset, chosen, retrain)
    card = _model_card(chosen, source, test, sorted(paths))
    if data is not None:
        card["data_source"] = "arrays passed to export(data=...)"
    card["test_note"] = None if test else untested or "the search did not test this trial; --retrain or the best trial has test metrics"
    write_json(out_dir / "model_card.json", card)
    write_atomic(out_dir / "model_card.md", _card_markdown(card))
    config = fixed_spec(
        chosen.spec, chosen.record.values, int(chosen.record.best_epoch or 1), chosen.data_dir, chosen.record.seed, on_arrays=chosen.searched_on_arrays
    )
    config["training"]["batch_size"] = chosen.config.batch_size  # the size it trained with (halved if it ran out of memory)
    suffix = f"-trial{chosen.record.trial_id}"
    config = {"version": config.pop("version"), "name": chosen.run.manifest["name"][: MAX_NAME - len(suffix)] + suffix, **config}
    note = ""
    if chosen.searched_on_arrays:
        note += (
            "# This run was searched on arrays passed to tuning.search(data=...), which no file holds (data.source: arrays).\n"
            "# Train this configuration on them from Python: tuning.train(this_file, data=(x_train, y_train, ...))\n"
        )
    if chosen.not_reproduced:
        note += "".join(
            f"# {line}\n" for line in textwrap.wrap(f"`tuning train` on this file will not reproduce the trial's score exactly: {chosen.not_reproduced}.", 110)
        )
    write_atomic(out_dir / "best_config.yaml", note + yaml.safe_dump(config, sort_keys=False))
    paths.update(card=out_dir / "model_card.md", card_json=out_dir / "model_card.json", config=out_dir / "best_config.yaml")
    return paths


def _keras(model: Any, out: Path, shape: tuple[int, ...], dtype: str, quantize: bool) -> dict[str, Path]:
    from .runtime import saving_without_tensorflow

    with saving_without_tensorflow():
        model.save(out / "model.keras")
    return {"keras": out / "model.keras"}


def _savedmodel(model: Any, out: Path, shape: tuple[int, ...], dtype: str, quantize: bool) -> dict[str, Path]:
    from .export_tf import write_savedmodel

    return {"savedmodel": write_savedmodel(model, out / "savedmodel", shape, dtype)}


def _tflite(model: Any, out: Path, shape: tuple[int, ...], dtype: str, quantize: bool) -> dict[str, Path]:
    import shutil
    import tempfile

    from .export_tf import tflite_predict, write_savedmodel, write_tflite

    saved = out / "savedmodel"
    scratch = None
    if not (saved / "saved_model.pb").exists():
        scratch = Path(tempfile.mkdtemp(prefix="tuning-export-"))
        saved = write_savedmodel(model, scratch / "savedmodel", shape, dtype)
    paths = {"tflite": write_tflite(saved, out / "model.tflite")}
    if quantize:
        paths["tflite_quantized"] = write_tflite(saved, out / "model_quantized.tflite", quantize=True)
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    probe = np.zeros((1, *shape), dtype=dtype)
    for path in paths.values():
        probs = tflite_predict(path, probe)
        if probs.shape != (1, model.output_shape[-1]) or not np.isclose(probs.sum(), 1.0, atol=1e-3):
            raise RunError(f"{path}: the TFLite interpreter returned {probs.shape} probabilities summing to {probs.sum():.3f}; the conversion is broken")
    return paths


def _converted_by_tensorflow(
    model: Any, keras_file: Path | None, out: Path, shape: tuple[int, ...], dtype: str, formats: list[str], quantize: bool
) -> dict[str, Path]:
    """SavedModel and TFLite from another backend: a TensorFlow process converts the model's `.keras` file."""
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tuning-export-") as scratch:
        if keras_file is None:
            keras_file = _keras(model, Path(scratch), shape, dtype, quantize)["keras"]
        job = {"keras_file": str(keras_file), "out": str(out), "shape": list(shape), "dtype": dtype, "formats": formats, "quantize": quantize}
        done = subprocess.run(
            [sys.executable, "-m", "tuning.export_tf", json.dumps(job)],
            env={**os.environ, "KERAS_BACKEND": "tensorflow"},
            capture_output=True,
            text=True,
        )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise RunError(
            f"{', '.join(formats)} from the {os.environ.get('KERAS_BACKEND', 'tensorflow')} backend: the TensorFlow process that converts "
            f"the model failed ({last}); `--format keras` exports without TensorFlow"
        )
    return {name: Path(path) for name, path in json.loads(done.stdout.strip().splitlines()[-1]).items()}


EXPORTERS: dict[str, Callable[[Any, Path, tuple[int, ...], str, bool], dict[str, Path]]] = {"keras": _keras, "savedmodel": _savedmodel, "tflite": _tflite}


def _load_data(chosen: TrialModel) -> Any:
    """The run's data, split as in the search (the same seed), with relative paths read from the search's folder."""
    from .data import load_data

    return load_data(chosen.spec.data, chosen.data_dir, seed=chosen.spec.search.seed)


def _try_load(chosen: TrialModel) -> tuple[Any, str | None]:
    """The run's data for the test metrics, or None and why where it cannot be read here (the export goes on without)."""
    from .errors import DataError

    try:
        return _load_data(chosen), None
    except DataError as exc:
        return None, f"the run's data could not be loaded here: {exc}"


def _given_arrays(chosen: TrialModel, data: Sequence[np.ndarray], class_names: Sequence[str] | None) -> Any:
    """`data=` arrays, split as the search split its own, refused unless they are of the run's classes and image shape."""
    from .data import load_data
    from .errors import DataError

    dataset = load_data(chosen.spec.data, chosen.data_dir, seed=chosen.spec.search.seed, arrays=data, class_names=class_names)
    summary = dataset.summary()
    for key in ("classes", "image_shape"):
        if list(summary[key]) != list(chosen.data[key]):
            raise DataError(
                f"data: the arrays' {key.replace('_', ' ')} {summary[key]} are not the run's {chosen.data[key]}; pass the arrays "
                f"{chosen.run.path} was searched on{' (and its class_names)' if key == 'classes' else ''}"
            )
    return dataset


def _test_metrics(model: Any, dataset: Any, chosen: TrialModel, retrain: bool) -> dict[str, float] | None:
    if dataset is not None:
        y = np.eye(dataset.num_classes, dtype="float32")[dataset.y_test]
        from .batches import evaluate

        return evaluate(model, dataset.x_test, y)
    best = chosen.run.best or {}
    return best.get("test") if best.get("trial_id") == chosen.record.trial_id and not retrain else None


def _plain(value: Any) -> Any:
    """Tuples as lists, for JSON."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _model_card(chosen: TrialModel, source: str, test: dict[str, float] | None, formats: list[str]) -> dict[str, Any]:
    manifest, data = chosen.run.manifest, chosen.data
    size = chosen.spec.data.image_size
    if size and tuple(size) == tuple(data["image_shape"][:2]):
        size = None  # image files are decoded at this size already: the model has no Resizing layer
    return {
        "run": manifest["name"],
        "trial_id": chosen.record.trial_id,
        "model_source": source,
        "objective": manifest["objective"],
        "score": chosen.record.score,
        "best_epoch": chosen.record.best_epoch,
        "hyperparameters": chosen.record.values,
        "configuration": _plain(dataclasses.asdict(chosen.config)),
        "test_metrics": test,
        "class_names": data["classes"],
        "input": {"shape": data["image_shape"], "dtype": data.get("dtype", "uint8"), "value_max": data.get("value_max", 255.0)},
        "preprocessing": f"inside the model: Rescaling(1/{data.get('value_max', 255.0):g}){f' then Resizing{tuple(size)}' if size else ''}; feed raw images of shape {data['image_shape']}",
        "output": "class probabilities (softmax), in the order of class_names",
        "data_source": data.get("origin"),
        "spec_hash": manifest.get("spec_hash"),
        "versions": manifest.get("versions"),
        "formats": formats,
        "rebuild": _rebuild(chosen),
    }


def _rebuild(chosen: TrialModel) -> str:
    """What `tuning train best_config.yaml` gives back: the trial as the search trained it, or why not."""
    command = "`tuning train best_config.yaml`"
    if chosen.searched_on_arrays:  # its data section says `source: arrays`, which only Python can pass
        command = "`tuning.train('best_config.yaml', data=(x_train, y_train, ...))` on the arrays it was searched on"
    if chosen.not_reproduced:
        return f"{command} rebuilds this configuration, but the retrained model will not reproduce the score exactly: {chosen.not_reproduced}."
    seeded = f", seeded as the search seeded it (search.trial_seed: {chosen.record.seed})" if chosen.record.seed is not None else ""
    return f"Rebuild it with {command}{seeded}."


def _card_markdown(card: dict[str, Any]) -> str:
    test = card["test_metrics"] or {}
    lines = [
        f"# Model card: {card['run']} trial {card['trial_id']}",
        "",
        f"- **Model**: {card['model_source']}",
        f"- **Score**: {card['objective']['metric']} = {card['score']:.4f} (best epoch {card['best_epoch']})",
        f"- **Test**: accuracy {test.get('accuracy', float('nan')):.4f}, loss {test.get('loss', float('nan')):.4f}"
        if test
        else f"- **Test**: not evaluated ({card.get('test_note') or 'the data could not be loaded here'})",
        f"- **Input**: {card['input']['dtype']} images of shape {card['input']['shape']}; {card['preprocessing']}",
        f"- **Output**: {card['output']}",
        f"- **Classes**: {', '.join(card['class_names'])}",
        f"- **Data**: {card['data_source']}",
        f"- **Spec hash**: {card['spec_hash']}",
        f"- **Versions**: {', '.join(f'{k} {v}' for k, v in (card['versions'] or {}).items())}",
        "",
        "## Hyperparameters",
        "",
        "| name | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in card["configuration"].items()],
        "",
        card["rebuild"],
    ]
    return "\n".join(lines) + "\n"
