"""Plain records of a run, written atomically as JSON: the hand-off from the search to everything after.

Each trial writes its own file (`trials/<id>.json`), so a kill mid-write never truncates another's and
parallel workers never contend. Nothing here imports KerasTuner or TensorFlow.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

STATUSES = ("completed", "diverged", "infeasible", "oversized", "out_of_memory", "failed")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")  # orders trials that start within one second


def write_atomic(path: Path, text: str, durable: bool = True) -> None:
    """Write `text` to `path` so that a reader sees the old file or the new one, never half of one; `durable`
    also flushes it to disk, so that it survives a power cut, not only a killed process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(_finite(data), indent=2, sort_keys=False) + "\n")


def _finite(value: Any) -> Any:
    """JSON has no NaN: non-finite floats become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


@dataclass
class TrialRecord:
    """Everything known about one trial: values, Hyperband fields, per-epoch history, outcome."""

    trial_id: str
    values: dict[str, Any]
    hyperband: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    status: str = "running"
    reason: str = ""
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    score: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    params: int | None = None
    wall_time: float = 0.0
    started_at: str = ""
    finished_at: str = ""
    stopped_by_budget: bool = False
    traceback: str | None = None
    resumed_from_epoch: int | None = None  # continued after an interruption, from this epoch's saved state
    rss_mb: float | None = None  # resident memory of the search process when the trial ended
    batch_size: int | None = None  # the batch size trained with (half the sampled one after running out of memory)

    @property
    def parent(self) -> str | None:
        return self.hyperband.get("trial_id")

    @property
    def epochs_trained(self) -> int:
        return len(self.history)

    @property
    def budget(self) -> int:
        """Cumulative epochs this trial was allowed (Hyperband's `tuner/epochs`)."""
        if "epochs" in self.hyperband:
            return int(self.hyperband["epochs"])
        return self.history[-1]["epoch"] if self.history else 0  # type: ignore[return-value]

    def finish_completed(self, objective: Any, budget_hit: bool = False) -> None:
        """Score = the objective at the best epoch of this trial (not the last one)."""
        sign = 1.0 if objective.direction == "max" else -1.0
        scored = [row for row in self.history if math.isfinite(row.get(objective.metric, math.nan))]
        if not scored:
            raise ValueError(f"no epoch reported the objective {objective.metric!r}")
        best = max(scored, key=lambda row: sign * row[objective.metric])
        self.best_epoch = int(best["epoch"])
        self.score = float(best[objective.metric])
        self.metrics = {k: v for k, v in best.items() if k not in ("epoch", "seconds")}
        self.status = "completed"
        self.stopped_by_budget = budget_hit

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialRecord:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def data_dir(manifest: dict[str, Any]) -> Path:
    """The folder a run's relative `data.path` resolves against, wherever the command runs from: the spec
    file's folder at the start of the search (recorded as `spec_dir`; older runs recorded only the file)."""
    if manifest.get("spec_dir"):
        return Path(manifest["spec_dir"])
    spec_file = manifest.get("spec_file")
    return Path(spec_file).resolve().parent if spec_file else Path.cwd()


class RunStore:
    """The files of one run directory, read and written in one place."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        self._lock: Any = None
        self._created = False

    def lock(self) -> None:
        """Claim the run directory for this process; a second search on it is refused.

        An OS file lock (`flock`): the kernel releases it when the process dies, so a crash never leaves
        the directory stuck.
        """
        import fcntl

        from .errors import RunError

        try:
            self._created = not self.dir.exists()
            self.dir.mkdir(parents=True, exist_ok=True)
            handle = open(self.dir / ".lock", "a+")  # noqa: SIM115 - held for the life of the search
        except OSError as exc:
            raise RunError(f"cannot write the run folder {self.dir} ({exc.strerror}); pass --out a folder you can write to") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise RunError(f"{self.dir} is in use by a running search ({owner}); wait for it to end, or pass --name to start a separate run") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {utc_now()}")
        handle.flush()
        self._lock = handle

    def unlock(self) -> None:
        """Release the run directory. One that `lock` created and that holds only the lock file (a search
        refused before it wrote anything, e.g. for its data) is removed, so a corrected command starts clean."""
        if self._lock is not None:
            if self._created and not self.exists():
                with contextlib.suppress(OSError):
                    if [p.name for p in self.dir.iterdir()] == [".lock"]:
                        (self.dir / ".lock").unlink()
                        self.dir.rmdir()
            self._lock.close()
            self._lock = None

    @property
    def manifest_path(self) -> Path:
        return self.dir / "run.json"

    @property
    def trials_dir(self) -> Path:
        return self.dir / "trials"

    def exists(self) -> bool:
        return self.manifest_path.exists()

    def read_manifest(self) -> dict[str, Any]:
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            from .errors import RunError

            raise RunError(
                f"{self.manifest_path} is damaged ({exc}); it is written whole or not at all, so something else changed it: "
                "restore it from a copy, or start the run again with --overwrite"
            ) from None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json(self.manifest_path, manifest)

    def update_manifest(self, **changes: Any) -> dict[str, Any]:
        manifest = {**self.read_manifest(), **changes, "updated_at": utc_now()}
        self.write_manifest(manifest)
        return manifest

    def write_trial(self, record: TrialRecord) -> None:
        write_json(self.trials_dir / f"{record.trial_id}.json", record.to_dict())

    def infeasible_record(self, values: dict[str, Any], reason: str) -> TrialRecord:
        """The record, numbered but not yet written, of a configuration drawn and rejected before training; it
        never becomes a KerasTuner trial."""
        count = len(list(self.trials_dir.glob("infeasible-*.json"))) if self.trials_dir.exists() else 0
        now = utc_now()
        status = "oversized" if "max_params" in reason else "infeasible"
        return TrialRecord(f"infeasible-{count + 1:03d}", dict(values), status=status, reason=reason, started_at=now, finished_at=now)

    def read_trials(self) -> list[TrialRecord]:
        if not self.trials_dir.exists():
            return []
        records = []
        for path in sorted(self.trials_dir.glob("*.json")):
            try:
                records.append(TrialRecord.from_dict(json.loads(path.read_text(encoding="utf-8"))))
            except (json.JSONDecodeError, TypeError):
                continue  # a record being written right now; the next read has it
        return records
