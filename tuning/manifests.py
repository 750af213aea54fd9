"""CSV and Excel manifests: a table of image paths with a label column, or one-hot label columns, and an
optional split column; relative paths start at the manifest's folder. Each problem is named by file, row and
column, as a user would look it up in a spreadsheet (the header counts as row 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .images import Listing
from .wording import counted, hinted


def read_manifests(path: Path, test_path: Path | None, data_spec: Any) -> Listing:
    """The manifest, and with `test_path` a second one (same columns) whose rows are all test images."""
    listing = read_manifest(path, data_spec)
    if test_path is None:
        return listing
    test = read_manifest(test_path, data_spec)
    names = listing.class_names if data_spec.label_columns else sorted(set(listing.class_names) | set(test.class_names))
    return Listing(
        listing.files + test.files,
        listing.labels + test.labels,
        listing.splits + ["test"] * len(test.files),
        names,
        f"{listing.origin} + {test.origin}",
        listing.manifests + test.manifests,
    )


def is_workbook(path: Path) -> bool:
    return path.suffix.lower() in (".xlsx", ".xls")


def read_table(path: Path, sheet: str | None = None) -> Any:
    """A manifest's rows as a pandas DataFrame: Excel by its suffix (its first sheet, or `sheet`), else CSV."""
    import pandas as pd

    if sheet is not None and is_workbook(path):
        sheets = _sheet_names(path)
        if sheets is not None and sheet not in sheets:
            raise DataError(
                f"{path}: data.sheet names {hinted(sheet, sheets)}, which the workbook does not have; its sheets are {', '.join(map(repr, sheets))}"
            )
    try:
        return pd.read_excel(path, sheet_name=sheet if sheet is not None else 0) if is_workbook(path) else pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable manifest gets the same message
        raise DataError(f"{path}: cannot read the manifest ({type(exc).__name__}: {exc}); expected a CSV or .xlsx file") from None


def _sheet_names(path: Path) -> list[str] | None:
    """A workbook's sheets, or None when it cannot be opened (reading it then says why)."""
    import pandas as pd

    try:
        return [str(name) for name in pd.ExcelFile(path).sheet_names]
    except Exception:  # noqa: BLE001 - read_excel reports an unreadable file
        return None


def _sheet_note(path: Path, sheet: str | None) -> str:
    """For a workbook: which sheet was read, when the columns sought may be on another."""
    if sheet is not None and is_workbook(path):
        return f" in its sheet {sheet!r}, the one data.sheet names"
    sheets = _sheet_names(path) if is_workbook(path) else None
    if not sheets or len(sheets) < 2:
        return ""
    return (
        f" in its first sheet, {sheets[0]!r}, the one read (the workbook has {len(sheets)}: {', '.join(map(repr, sheets))}; "
        "name the sheet to read with data.sheet, or put the manifest first)"
    )


def read_labelled_manifest(path: Path, path_column: str, label_column: str | None, label_columns: Sequence[str] | None, frame: Any = None) -> Listing:
    """A manifest named on the command line (`evaluate`, `features`), its columns given by flags."""
    from types import SimpleNamespace

    columns = SimpleNamespace(path_column=path_column, label_column=label_column, label_columns=list(label_columns or []) or None, split_column=None)
    return read_manifest(path, columns, CLI_COLUMNS_ADVICE, frame)


def blank_rows(frame: Any, column: str) -> np.ndarray:
    """Indices of the rows whose `column` cell is empty or only spaces."""
    cells = frame[column]
    return np.flatnonzero(cells.isna().to_numpy() | (cells.astype(str).str.strip() == "").to_numpy())


def manifest_paths(path: Path, frame: Any, column: str) -> list[Path]:
    """The image paths of a manifest's rows, relative ones from the manifest's folder; blank cells refused by row."""
    blank = blank_rows(frame, column)
    if len(blank):
        rows = ", ".join(str(int(i) + 2) for i in blank[:5]) + (f" and {len(blank) - 5} more" if len(blank) > 5 else "")
        raise DataError(
            f"{path}: column {column!r} is blank in {counted(len(blank), 'row')} ({rows}, counting the header as row 1); "
            "every row needs the path of its image: fill them in or remove those rows"
        )
    return [Path(p) if Path(str(p)).is_absolute() else path.parent / str(p) for p in frame[column]]


SPEC_COLUMNS_ADVICE = "set data.path_column, data.label_column or data.label_columns"
CLI_COLUMNS_ADVICE = "name them with --path-column and --label-column or --label-columns"


def read_manifest(path: Path, data_spec: Any, advice: str = SPEC_COLUMNS_ADVICE, frame: Any = None) -> Listing:
    """A CSV or Excel file: a path column, and a label column or one-hot label columns; optional split column.
    `advice` says how to name other columns where the manifest was given (a spec, or the command line);
    `frame` is its rows when the caller has read them already."""
    sheet = getattr(data_spec, "sheet", None)
    frame = read_table(path, sheet) if frame is None else frame
    columns = list(frame.columns)
    wanted = [
        data_spec.path_column,
        *(data_spec.label_columns or []),
        *([data_spec.label_column] if data_spec.label_column else []),
        *([data_spec.split_column] if data_spec.split_column else []),
    ]
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise DataError(
            f"{path}: no column {', '.join(map(repr, missing))}; the manifest has {', '.join(map(repr, columns))}{_sheet_note(path, sheet)} ({advice})"
        )
    if data_spec.label_columns:
        onehot = one_hot_rows(path, frame, list(data_spec.label_columns))
        labels = [data_spec.label_columns[i] for i in onehot.argmax(axis=1)]
        names = list(data_spec.label_columns)
    else:
        column = frame[data_spec.label_column]
        blank = blank_rows(frame, data_spec.label_column)
        if len(blank):
            rows = ", ".join(str(int(i) + 2) for i in blank[:5]) + (f" and {len(blank) - 5} more" if len(blank) > 5 else "")
            raise DataError(
                f"{path}: column {data_spec.label_column!r} is blank in {counted(len(blank), 'row')} ({rows}, counting the header as row 1); "
                "every image needs a label: fill them in or remove those rows"
            )
        labels = [label_name(v) for v in column]
        names = sorted(set(labels))
    files = manifest_paths(path, frame, data_spec.path_column)
    splits: list[str | None] = [str(s).strip().lower() for s in frame[data_spec.split_column]] if data_spec.split_column else [None] * len(files)
    unknown = sorted({s for s in splits if s not in (None, "train", "validation", "test")})
    if unknown:
        raise DataError(f"{path}: column {data_spec.split_column!r} has {unknown}; expected train, validation or test")
    return Listing(files, labels, splits, names, str(path), (path,))


def label_name(value: Any) -> str:
    """A label cell as a class name. Whole numbers are named as integers: a CSV column holding `2.0` is read as
    floats, so without this its labels 0, 1 would be '0.0', '1.0', while the same cells from Excel give '0', '1'."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def whole_number_name(name: str) -> str:
    """A class name as `label_name` gives it now: `2.0` -> `2` (runs and models from before kept `2.0`)."""
    try:
        value = float(name)
    except ValueError:
        return name
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else name


def one_hot_rows(path: Path, frame: Any, columns: list[str]) -> np.ndarray:
    """The one-hot columns as a 0/1 matrix, one 1 per row. A cell may be 0 or 1 written as a number (1, 1.0),
    a boolean or text ("1", as a CSV column with one stray word holds); anything else is refused by row and column."""
    import pandas as pd

    bad: list[tuple[int, int, str]] = []
    matrix = np.zeros((len(frame), len(columns)), dtype=np.int64)
    for j, column in enumerate(columns):
        for i, cell in enumerate(frame[column].tolist()):
            value = _zero_or_one(cell)
            if value is not None:
                matrix[i, j] = value
                continue
            blank = (not isinstance(cell, str) and bool(pd.isna(cell))) or (isinstance(cell, str) and not cell.strip())
            bad.append((i, j, f"row {i + 2}, column {column!r} {'is blank' if blank else f'holds {cell!r}'}"))
    if bad:
        named = "; ".join(text for _, _, text in sorted(bad)[:3]) + (f"; and {counted(len(bad) - 3, 'more cell')}" if len(bad) > 3 else "")
        raise DataError(f"{path}: {named} (counting the header as row 1); one-hot columns {', '.join(map(repr, columns))} hold 0 or 1, one 1 per row")
    counts = matrix.sum(axis=1)
    wrong = np.flatnonzero(counts != 1)
    if len(wrong):
        rows = ", ".join(f"row {int(i) + 2} marks {f'{int(counts[i])} classes' if counts[i] else 'no class'}" for i in wrong[:5])
        more = f" and {len(wrong) - 5} more rows" if len(wrong) > 5 else ""
        raise DataError(
            f"{path}: {rows}{more} among {', '.join(map(repr, columns))} (counting the header as row 1); one-hot columns need exactly one 1 per row"
        )
    return matrix


def _zero_or_one(cell: Any) -> int | None:
    """0 or 1 from a one-hot cell as pandas read it, or None for anything else (blank, 2, "yes")."""
    if isinstance(cell, (bool, np.bool_)):
        return int(cell)
    if isinstance(cell, (int, float, np.integer, np.floating)):
        return int(cell) if cell == 0 or cell == 1 else None
    if isinstance(cell, str) and cell.strip() in ("0", "1", "0.0", "1.0"):
        return int(float(cell))
    return None
