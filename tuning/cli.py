"""The `tuning` command: parses arguments, calls the Python API, prints. No behaviour lives only here."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from .errors import TuningError
from .wording import counted

EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what the shell reports for `cat`, `grep` or `git` when the reader stops early


def entry_point() -> NoReturn:
    """The `tuning` executable (and `python -m tuning`): `main` in a process of its own, so Keras is imported
    without extras no command uses (`skip_keras_extras`), then a quick exit (`exit_without_final_collections`:
    1.3-1.4 s less for every command that imported TensorFlow)."""
    from .runtime import exit_without_final_collections, skip_keras_extras

    skip_keras_extras()
    exit_without_final_collections(main())


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the exit's own flush where it could not be caught
        return code
    except TuningError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted: finished trials are kept; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _reader_gone()
    except OSError as exc:  # the machine's, not the input's: a full disk, a folder without write permission
        if args.debug:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}; free some space or fix the permission, then run the same command again", file=sys.stderr)
        return 1


def _reader_gone() -> int:
    """The reader of our output went away (`tuning evaluate ... | head -3`): what it read is all it wanted, so
    exit quietly, with the shell's code for a writer stopped by a closed pipe (141), as coreutils and git do.
    The rest of stdout goes to the null device, or Python's final flush would raise again at exit."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # a stdout without a file descriptor (replaced in-process): nothing to redirect
        pass
    return EXIT_BROKEN_PIPE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tuning", description="Declarative hyperparameter search for Keras image-classification CNNs.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-paragraph errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    validate = commands.add_parser("validate", help="check a spec and print its space, feasibility and Hyperband plan (no TensorFlow)")
    validate.add_argument("spec", metavar="SPEC", help="YAML search space")
    validate.add_argument(
        "--time",
        action="store_true",
        help="also time a few configurations on the data, on this machine, and estimate the search's duration (loads Keras and the data)",
    )
    validate.add_argument("--samples", type=_positive, help="with --time: configurations to time (default 4)")
    validate.add_argument("--workers", type=_positive, metavar="N", help="with --time: for a search with --workers N (default: in one process)")
    validate.add_argument("--gpus", type=_gpu_list, help="with --time and --workers: the search's --gpus (default: all GPUs, else the CPU)")
    validate.set_defaults(handler=_validate)

    search = commands.add_parser("search", help="run (or resume) a search")
    _run_options(search, "YAML search space")
    search.add_argument("--retry-failed", action="store_true", help="when resuming, run the failed and out-of-memory trials again")
    search.add_argument(
        "--extend",
        type=_positive,
        default=0,
        metavar="N",
        help="add N Hyperband iterations (or N trials, to a random, Bayesian or grid search) to an existing (finished) search",
    )
    search.add_argument("--workers", type=int, default=0, metavar="N", help="run trials in N worker processes (default 0: in this process)")
    search.add_argument("--gpus", type=_gpu_list, help="GPU indices for the workers, e.g. 0,1 (round-robin; default: all GPUs, else the CPU)")
    search.add_argument("--host", default="127.0.0.1", help="address the oracle listens on for workers (default 127.0.0.1; unauthenticated)")
    search.add_argument("--port", type=_port, default=None, help="port for workers (default: a free one)")
    search.add_argument(
        "--trials-per-process",
        type=int,
        default=None,
        metavar="K",
        help="replace each worker by a fresh process after K trials (1: each trial in its own process)",
    )
    search.set_defaults(handler=_search)

    worker = commands.add_parser("worker", help="join a running search (started with --workers) from this machine")
    worker.add_argument("run", metavar="RUN", help="the run directory, shared with the search's machine")
    worker.add_argument("--chief", required=True, metavar="HOST:PORT", help="where the search serves its oracle")
    worker.add_argument("--id", help="this worker's name (default: host-pid)")
    worker.add_argument("--quiet", action="store_true")
    worker.add_argument("--trials-per-process", type=int, default=None, help=argparse.SUPPRESS)
    worker.set_defaults(handler=_worker)

    train = commands.add_parser("train", help="train one fixed configuration (e.g. an exported best_config.yaml) without a search")
    _run_options(train, "YAML spec with every value fixed")
    train.set_defaults(handler=_train)

    export = commands.add_parser("export", help="export a trial's model: Keras, SavedModel, TFLite, model card, best_config.yaml")
    export.add_argument("run", metavar="RUN", help="run directory, e.g. reports/digits")
    export.add_argument("--trial", help="trial id (default: the best trial)")
    export.add_argument("--format", default="keras,savedmodel,tflite", help="comma-separated: keras, savedmodel, tflite (default: all)")
    export.add_argument("--out", help="output folder (default: RUN/export/<trial>)")
    export.add_argument("--retrain", action="store_true", help="retrain on train + validation for the trial's best epoch count, then export")
    export.add_argument("--quantize", action="store_true", help="also write a dynamic-range quantized TFLite model")
    export.set_defaults(handler=_export)

    predict = commands.add_parser("predict", help="top classes for images with an exported model (any format)")
    predict.add_argument("model", metavar="MODEL", help="model.keras, a SavedModel folder or model.tflite")
    predict.add_argument("images", metavar="IMAGE_OR_FOLDER", nargs="+", help="image files or folders of images")
    predict.add_argument("--top", type=_positive, default=3, help="classes to show per image (default 3)")
    predict.add_argument("--json", action="store_true", help="print JSON instead of text")
    predict.set_defaults(handler=_predict)

    evaluate = commands.add_parser("evaluate", help="accuracy, per-class metrics and confusion matrix of an exported model on labelled images")
    evaluate.add_argument("model", metavar="MODEL", help="model.keras, a SavedModel folder or model.tflite")
    evaluate.add_argument("data", metavar="FOLDER_OR_MANIFEST", help="a folder of class sub-folders, or a CSV/Excel file of image paths and labels")
    evaluate.add_argument("--path-column", default="path", help="manifest: the column of image paths (default: path)")
    evaluate.add_argument("--label-column", help="manifest: the column of class names (default: its column named label)")
    evaluate.add_argument("--label-columns", help="manifest: comma-separated one-hot columns, e.g. Cats,Dogs")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of text")
    evaluate.set_defaults(handler=_evaluate)

    features = commands.add_parser("features", help="penultimate-layer features of images, a 2-D PCA (or t-SNE) of them, saved per file")
    features.add_argument("model", metavar="MODEL", help="model.keras from `tuning export`, or a run's best_model.keras")
    features.add_argument("data", metavar="DATA", nargs="+", help="a folder of class sub-folders, CSV/Excel manifests, or image files and folders of images")
    features.add_argument("--out", help="output folder (default: features/ beside the model)")
    features.add_argument("--path-column", default="path", help="manifest: the column of image paths (default: path)")
    features.add_argument(
        "--label-column", help="manifest: the column of class names, which colours the plot (default: its column named label, if no cell is blank)"
    )
    features.add_argument("--label-columns", help="manifest: comma-separated one-hot columns, e.g. Cats,Dogs")
    features.add_argument("--tsne", action="store_true", help="also a t-SNE projection (slower; scikit-learn)")
    features.add_argument("--json", action="store_true", help="print JSON instead of text")
    features.set_defaults(handler=_features)

    maps = commands.add_parser("maps", help="feature maps of one image: each filter of the chosen layers (default: every convolution)")
    maps.add_argument("model", metavar="MODEL", help="model.keras from `tuning export`, or a run's best_model.keras")
    maps.add_argument("image", metavar="IMAGE", help="one image file")
    maps.add_argument("--layer", action="append", metavar="NAME", help="a layer to show, as model.summary() names it (repeat for several)")
    maps.add_argument("--filters", type=_positive, default=64, help="filters drawn per layer, the first N (default 64; the .npz keeps all)")
    maps.add_argument("--out", help="PNG to write (default: feature_maps_<image>.png beside the model)")
    maps.set_defaults(handler=_maps)

    report = commands.add_parser("report", help="rebuild a run's reports from its folder, or compare several runs")
    report.add_argument("runs", metavar="RUN", nargs="+", help="run directories; two or more print a comparison table")
    report.add_argument("--top", type=_positive, default=10, help="trials in the leaderboard and learning curves (default 10)")
    report.set_defaults(handler=_report)

    board = commands.add_parser("board", help="start TensorBoard (HParams dashboard) on one run or several side by side")
    board.add_argument("runs", metavar="RUN", nargs="+", help="run directories, e.g. reports/digits")
    board.add_argument("--port", type=_port, default=None, help="port (default: a free one)")
    board.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    board.set_defaults(handler=_board)
    return parser


def _run_options(command: argparse.ArgumentParser, spec_help: str) -> None:
    """The options of commands that write a run: `search` and `train`."""
    command.add_argument("spec", metavar="SPEC", help=spec_help)
    command.add_argument("--name", help="run name (default: the spec's name, else the file name)")
    command.add_argument("--out", help="output root (default: reports)")
    command.add_argument("--overwrite", action="store_true", help="delete an existing run of that name and start over")
    command.add_argument("--quiet", action="store_true", help="print only the final summary")


def _validate(args: argparse.Namespace) -> int:
    from .errors import RunError
    from .planner import plan
    from .spec import load_spec

    if args.samples is not None and not args.time:
        raise RunError("--samples sets how many configurations --time trains; add --time")
    if (args.workers or args.gpus) and not args.time:
        raise RunError("--workers and --gpus say how the search whose time --time estimates will run; add --time")
    if args.gpus and not args.workers:
        raise RunError("--gpus places worker processes; add --workers N")

    spec = load_spec(args.spec)
    the_plan = plan(spec)
    print(describe_plan(spec, the_plan))
    if the_plan.feasibility.all_infeasible:
        print(
            f"error: {args.spec}: no configuration of the space can be built on {_shape(the_plan.input_shape)} images; see the infeasible groups above",
            file=sys.stderr,
        )
        return 2
    if args.time:
        from .timing import SAMPLES, describe_estimate, estimate

        started = time.perf_counter()
        result = estimate(spec, samples=args.samples or SAMPLES, the_plan=the_plan, workers=args.workers or 0, gpus=args.gpus)
        print()
        print(describe_estimate(result, time.perf_counter() - started))
    return 0


def describe_plan(spec: Any, the_plan: Any) -> str:
    """The text `tuning validate` prints: space, configurations, feasibility, schedule and totals."""
    from .domains import format_value
    from .results import text_table

    lines = [f"{spec.file or 'spec'}: valid (version {spec.version}{', name ' + spec.name if spec.name else ''})"]
    lines.append(
        f"data: {spec.data.source}{' ' + spec.data.path if spec.data.path else ''}; model input {_shape(the_plan.input_shape)}, {the_plan.num_classes} classes"
    )
    lines.append("")
    params = the_plan.params
    lines.append(f"Search space: {len(params)} hyperparameter{'' if len(params) == 1 else 's'}")
    table = [["name", "kind", "domain", "condition"]] + [
        [p.name, p.domain.kind, p.domain.describe(), p.condition.describe() if p.condition else ""] for p in params
    ]
    lines += text_table(table)
    size = the_plan.space_size
    lines.append(f"distinct configurations: {size:,}" if size is not None else "distinct configurations: unlimited (a continuous range)")
    feas = the_plan.feasibility
    lines.append("")
    method = "all combinations" if feas.exhaustive else "a seeded sample"
    if feas.infeasible == 0:
        lines.append(
            f"Feasibility on {_shape(feas.input_shape)}: every configuration can be built ({method} of the values that set shape{' and size' if spec.search.max_params else ''} checked: {feas.checked:,})"
        )
    else:
        lines.append(
            f"Feasibility on {_shape(feas.input_shape)}: {feas.infeasible:,} of {feas.checked:,} checked combinations ({method}) cannot be built; they are never trained:"
        )
        for settings, reason, count in feas.groups[:12]:
            lines.append(f"  {settings}: {reason} ({counted(count, 'combination')})")
        if len(feas.groups) > 12:
            lines.append(f"  ... and {len(feas.groups) - 12} more groups")
    lines.append("")
    if feas.all_infeasible:
        return "\n".join(lines[:-1])  # no schedule to show: `validate` says why next
    search = spec.search
    if the_plan.algorithm == "hyperband":
        lines.append(f"Hyperband plan (max_epochs {search.max_epochs}, factor {search.factor}, iterations {search.iterations}), as KerasTuner schedules it:")
        rows = [["iteration", "bracket", "round", "trials", "epochs (from-to)", "epochs trained"]]
        rows += [
            [str(r.iteration), str(r.bracket), str(r.round), str(r.trials), f"{r.initial_epoch}-{r.epochs}", str(r.epochs_trained)] for r in the_plan.rounds
        ]
        lines += text_table(rows)
    else:
        lines.append(f"{the_plan.algorithm} search: {counted(the_plan.total_trials, 'trial')} of up to {counted(search.max_epochs, 'epoch')}")
    lines.append(
        f"totals: {counted(the_plan.total_trials, 'trial')}, {counted(the_plan.distinct_configurations, 'distinct configuration')}, {counted(the_plan.total_epochs, 'epoch')} before early stopping"
    )
    caps = [f"max_trials {search.max_trials}" if search.max_trials else "", f"time budget {format_value(search.time_budget)}" if search.time_budget else ""]
    if any(caps):
        lines.append("caps: " + ", ".join(c for c in caps if c))
    for warning in the_plan.warnings:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


def _search(args: argparse.Namespace) -> int:
    from .runner import search

    run = search(
        args.spec,
        name=args.name,
        out=args.out,
        overwrite=args.overwrite,
        retry_failed=args.retry_failed,
        extend=args.extend,
        workers=args.workers,
        gpus=args.gpus,
        host=args.host,
        port=args.port,
        trials_per_process=args.trials_per_process,
        quiet=args.quiet,
    )
    return _summarize(run)


def _worker(args: argparse.Namespace) -> int:
    from .workers import run_worker

    return run_worker(args.run, args.chief, args.id, quiet=args.quiet, trials_per_process=args.trials_per_process)


def _train(args: argparse.Namespace) -> int:
    from .runner import train

    return _summarize(train(args.spec, name=args.name, out=args.out, overwrite=args.overwrite, quiet=args.quiet), what="training")


def _export(args: argparse.Namespace) -> int:
    from .export import export

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    paths = export(args.run, trial=args.trial, formats=formats, out=args.out, retrain=args.retrain, quantize=args.quantize)
    for label, path in paths.items():
        print(f"{label + ':':18}{path}")
    return 0


def _positive(text: str) -> int:
    """argparse type: a whole number of at least 1 (a negative --top silently cut lists short)."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return int(text)


def _gpu_list(text: str) -> list[str]:
    """argparse type: GPU indices as nvidia-smi numbers them, e.g. `0,1` (a name such as `x` reached the workers)."""
    gpus = [g.strip() for g in text.split(",") if g.strip()]
    if not gpus or not all(g.isdigit() for g in gpus):
        raise argparse.ArgumentTypeError(f"expected GPU indices separated by commas, such as 0,1, not {text!r}")
    return gpus


def _port(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port from 1 to 65535, not {text!r}")
    return int(text)


def _predict(args: argparse.Namespace) -> int:
    import json

    from .predict import predict

    results = predict(args.model, args.images, top=args.top)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        if "error" in result:
            print(f"{result['image']}: skipped, {result['error']}", file=sys.stderr)
        else:
            ranked = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in result["top"])
            print(f"{result['image']}: {ranked}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import json

    from .predict import evaluate

    columns = [c.strip() for c in args.label_columns.split(",")] if args.label_columns else None
    result = evaluate(args.model, args.data, path_column=args.path_column, label_column=args.label_column, label_columns=columns)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    from .data import skipped_text

    names, per_class = result["class_names"], result["per_class"]
    print(f"accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f} on {result['images']} images of {result['data']}")
    if skipped := skipped_text({"skipped_files": len(result["skipped"]), "skipped": result["skipped"]}, where="every path with --json"):
        print(skipped, file=sys.stderr)
    if result["ignored"]:
        left_out = ", ".join(f"{counted(n, 'image')} of {c}" for c, n in result["ignored"].items())
        print(f"left out, not classes of this model: {left_out}", file=sys.stderr)
    width = max(len(n) for n in [*names, "class"]) + 2
    print(f"\n{'class':{width}}precision  recall  F1     support")
    for i, name in enumerate(names):
        print(f"{name:{width}}{per_class['precision'][i]:<11.3f}{per_class['recall'][i]:<8.3f}{per_class['f1'][i]:<7.3f}{per_class['support'][i]}")
    print("\nconfusion matrix (rows: true class, columns: predicted):")
    column = max(7, *(len(n) for n in names))
    print(" " * width + " ".join(f"{n:>{column}}" for n in names))
    for name, row in zip(names, result["confusion_matrix"]):
        print(f"{name:{width}}" + " ".join(f"{v:>{column}}" for v in row))
    if result["mistakes"]:
        print("\nmost confident mistakes:")
        for m in result["mistakes"]:
            print(f"  {m['image']}: {m['true']}, predicted {m['predicted']} ({m['probability']:.3f})")
    return 0


def _features(args: argparse.Namespace) -> int:
    import json

    from .data import skipped_text
    from .features import extract_features

    columns = [c.strip() for c in args.label_columns.split(",")] if args.label_columns else None
    result = extract_features(
        args.model, args.data, out=args.out, path_column=args.path_column, label_column=args.label_column, label_columns=columns, tsne=args.tsne
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    share = result["explained_variance"]
    count = counted(result["images"], "image")
    print(f"{count} of {result['data']}: {result['dimensions']} features {'each ' if result['images'] != 1 else ''}({result['layer']})")
    if result["images"] > 1:
        print(f"PCA: the first two components explain {share[0]:.0%} and {share[1]:.0%} of their variance")
    else:
        print("PCA: one image has no variance to explain; its features are in the .npy file")
    if result.get("accuracy") is not None:
        print(f"accuracy on the {result['labelled_images']} images of the model's classes: {result['accuracy']:.4f}")
    if others := result.get("other_labels"):
        shown = ", ".join(f"{label} ({count})" for label, count in list(others.items())[:8]) + (", ..." if len(others) > 8 else "")
        print(f"labels that are not classes of this model, left out of the accuracy: {shown}", file=sys.stderr)
    if skipped := skipped_text({"skipped_files": len(result["skipped"]), "skipped": result["skipped"]}, where="every path with --json"):
        print(skipped, file=sys.stderr)
    print("wrote " + ", ".join(result["files"]))
    return 0


def _maps(args: argparse.Namespace) -> int:
    from .features import feature_maps

    result = feature_maps(args.model, args.image, layers=args.layer, filters=args.filters, out=args.out)
    for name, shape in result["layers"].items():
        print(f"{name}: {shape[0]}x{shape[1]}, {counted(shape[2], 'filter')}")
    print("wrote " + ", ".join(result["files"]))
    return 0


def _summarize(run: Any, what: str = "search") -> int:
    manifest = run.manifest
    print()
    print(
        f"{what} {manifest['status']}: {manifest.get('stop_reason')}; {counted(len([r for r in run.records() if not r.trial_id.startswith('infeasible-')]), 'trial')} in {manifest['elapsed_s']:.0f}s"
    )
    from .results import top_text

    print(f"top 5 by {manifest['objective']['metric']} ({manifest['objective']['direction']}):")
    print(top_text(run.rows(), run.parameters, 5))
    from .data import skipped_text

    if skipped := skipped_text(manifest.get("data") or {}):
        print(f"data: {skipped}")
    best = run.best
    if best and best.get("test"):
        print(
            f"best trial {best['trial_id']}: test accuracy {best['test'].get('accuracy', float('nan')):.4f}, test loss {best['test'].get('loss', float('nan')):.4f}"
        )
    print()
    for label, name in (
        ("report", "report.html"),
        ("leaderboard", "leaderboard.md"),
        ("trials", "trials.csv"),
        ("best model", "best_model.keras"),
        ("manifest", "run.json"),
    ):
        if (run.path / name).exists():
            print(f"{label + ':':13}{run.path / name}")
    if manifest.get("disk_mb") is not None:
        print(f"{'run folder:':13}{manifest['disk_mb']:.1f} MB on disk, besides its reports")
    import shlex

    where = shlex.quote(str(run.path))
    print(f"{'next:':13}tuning board {where}    (TensorBoard: curves and the HParams dashboard)")
    if best:  # no completed trial (all failed, diverged or unbuildable): nothing to export
        print(f"{'':13}tuning export {where}   (the best model as Keras, SavedModel and TFLite, with its card)")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report import build_report, compare_runs

    if len(args.runs) > 1:
        print(compare_runs(args.runs), end="")
        return 0
    paths = build_report(args.runs[0], top=args.top)
    for label, path in paths.items():
        print(f"{label + ':':10}{path}")
    return 0


def _board(args: argparse.Namespace) -> int:
    from .board import start_board, stops_like_ctrl_c

    with stops_like_ctrl_c():
        board = start_board(args.runs, host=args.host, port=args.port)
        print(f"TensorBoard: {board.url}#hparams  (Ctrl-C to stop)", flush=True)
        try:
            board.wait()
        except KeyboardInterrupt:
            print("stopping TensorBoard", flush=True)
        finally:
            board.stop()
    return 0


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape)
