"""Parallel trials: the search process serves KerasTuner's oracle over gRPC and runs worker processes.

KerasTuner's distributed mode is the engine (a chief oracle handing out trials to workers that share
the run directory). What this module adds: the launcher (`--workers N`), one GPU per worker (or shared
GPUs, or shared CPU cores), one progress view, and resilience: a worker that dies has its trial handed
out again (it continues from its last resume point) and is restarted; a worker on another machine
joins with `tuning worker RUN --chief HOST:PORT`, keeps its trial across a restart of the search process,
and loses it (handed out again) only after `REMOTE_SILENCE_S` (or three resume intervals) without a sign of life.

The gRPC channel is unauthenticated: keep it on 127.0.0.1 or a trusted network.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import RunError, SearchAborted

MAX_RESTARTS = 3  # per worker slot: a worker that keeps dying (a machine problem) stops the search
EXIT_ABORTED = 1  # `tuning worker` exit code when too many consecutive trials failed
EXIT_ERROR = 2  # ... and for bad input (its data cannot be read, ...)
EXIT_RECYCLE = 75  # ... and after its `trials_per_process` trials: replace it with a fresh process
# Tuner ids of the workers this process launches, and of KerasTuner's in-process tuner (a search resumed with
# --workers after running without); any other id is a worker that joined from elsewhere.
LOCAL_ID = re.compile(r"worker\d+(-|$)|tuner0$")
# A trial of a worker launched elsewhere is presumed lost (and handed out again) after this long without a
# sign of life: a new file in its trial folder (a resume point, written after the first epoch that ends
# `search.resume_every` seconds after the last), or its report, which ends it. Never less than three resume intervals.
REMOTE_SILENCE_S = float(os.environ.get("TUNING_REMOTE_SILENCE_S", 900))
PARENT_PID = "TUNING_PARENT_PID"  # set for the workers a search starts: see `die_with_parent`
# How often a worker looks whether the search it serves has finished while its chief is unreachable.
CHIEF_CHECK_S = 2.0


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def worker_environments(count: int, gpus: Sequence[str] | None, cpus: int | None = None) -> list[dict[str, str]]:
    """Environment overrides per worker: its GPU(s) (round-robin, so workers may share one), else a share of the CPU.

    Workers that share a GPU allocate its memory as they need it: TensorFlow's memory growth is set in
    `prepare_devices`; JAX would take 75% of the GPU in its first worker, so preallocation is turned off.
    """
    cpus = cpus or os.cpu_count() or 1
    out = []
    for index in range(count):
        env = {}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(gpus[index % len(gpus)])
            if count > len(gpus):
                env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        else:
            threads = str(max(1, cpus // count))
            env.update(TF_NUM_INTRAOP_THREADS=threads, TF_NUM_INTEROP_THREADS="1", OMP_NUM_THREADS=threads)
        out.append(env)
    return out


def visible_gpus() -> list[str]:
    """GPU indices `nvidia-smi` lists (empty without NVIDIA GPUs), without importing a framework."""
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(line for line in listing.splitlines() if line.startswith("GPU "))]


@dataclass
class _Slot:
    """One worker process slot: restarted (with a fresh tuner id) when its process dies."""

    index: int
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    tuner_id: str = ""
    restarts: int = 0
    done: bool = False
    log: Any = None


class Chief:
    """Serves `oracle` on `host:port` and supervises `count` local worker processes until the search ends."""

    def __init__(
        self,
        oracle: Any,
        run_dir: Path,
        *,
        count: int,
        gpus: Sequence[str] | None,
        host: str,
        port: int | None,
        on_record: Any,
        stop: Any,
        trials_per_process: int | None = None,
        resume_every: float = 0.0,
    ):
        self.oracle, self.run_dir, self.host = oracle, run_dir, host
        self.remote_silence_s = max(REMOTE_SILENCE_S, 3 * resume_every)
        self.trials_per_process = trials_per_process
        self.launches = 0
        self.port = port or free_port(host)
        self.gpus = list(gpus) if gpus is not None else visible_gpus()
        self.on_record, self.stop = on_record, stop
        self.slots = [_Slot(i, env) for i, env in enumerate(worker_environments(count, self.gpus))]
        self.server: Any = None
        self.servicer: Any = None
        self.seen = {p.name: p.stat().st_mtime for p in (run_dir / "trials").glob("*.json")} if (run_dir / "trials").exists() else {}
        self.remote_since: dict[tuple[str, str], float] = {}  # (tuner id, trial id) -> when this process first saw it
        self._keep_remote_trials()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start_server(self) -> None:
        from concurrent import futures

        import grpc
        from keras_tuner.src import protos
        from keras_tuner.src.distribute.oracle_chief import OracleServicer

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.servicer = OracleServicer(self.oracle)
        protos.get_service_grpc().add_OracleServicer_to_server(self.servicer, self.server)
        if self.server.add_insecure_port(self.address) == 0:
            raise RunError(f"cannot listen on {self.address} (in use?); pick another --port")
        self.server.start()

    def run(self) -> None:
        """Until every worker has been told the search is over (or the search is stopped or aborted)."""
        self.start_server()
        logs = self.run_dir / "workers"
        logs.mkdir(exist_ok=True)
        try:
            for slot in self.slots:
                self._launch(slot)
            while True:
                remote = self._remote_trials()  # checked every round: a silent one is handed out again
                if not remote and all(slot.done for slot in self.slots):
                    break
                time.sleep(0.25)
                self._watch_records()
                if self.stop.requested:
                    self._forward_stop()
                    if all(slot.done for slot in self.slots):
                        break  # a stopped search does not wait for workers elsewhere: their trials run again on resume
                for slot in self.slots:
                    self._check(slot)
            self._watch_records()
        finally:
            for slot in self.slots:
                if slot.process is not None and slot.process.poll() is None:
                    slot.process.kill()
                    slot.process.wait()
                if slot.log is not None:
                    slot.log.close()
            self.server.stop(grace=1)
        if self.stop.requested:
            raise KeyboardInterrupt("stop requested")

    def _launch(self, slot: _Slot) -> None:
        self.launches += 1
        slot.tuner_id = (
            f"worker{slot.index}" + (f"-restart{slot.restarts}" if slot.restarts else "") + (f"-process{self.launches}" if self.trials_per_process else "")
        )
        command = [sys.executable, "-m", "tuning", "worker", str(self.run_dir), "--chief", self.address, "--id", slot.tuner_id]
        if self.trials_per_process:
            command += ["--trials-per-process", str(self.trials_per_process)]
        env = {**os.environ, **slot.env, "PYTHONUNBUFFERED": "1", PARENT_PID: str(os.getpid())}
        if slot.log is None:
            slot.log = open(self.run_dir / "workers" / f"worker{slot.index}.log", "ab")  # noqa: SIM115 - closed in run()
        slot.log.write(f"--- {slot.tuner_id} {' '.join(f'{k}={v}' for k, v in slot.env.items())}\n".encode())
        slot.log.flush()
        # No preexec_fn: Python then starts the child with vfork, which runs no fork handlers. Forked the
        # usual way, a child of this process (whose gRPC server is polling) sometimes aborted in gRPC's
        # fork handler ("epoll_wait error: Bad file descriptor") before it could exec.
        slot.process = subprocess.Popen(command, env=env, stdout=slot.log, stderr=subprocess.STDOUT)

    def _check(self, slot: _Slot) -> None:
        if slot.done or slot.process is None or slot.process.poll() is None:
            return
        code = slot.process.returncode
        if code == 0 or self.stop.requested:
            slot.done = True
            return
        if code == EXIT_RECYCLE:
            self.hand_out_again(slot.tuner_id)  # the trial it was handed before it left, if any: its successor's
            deadline = getattr(self.oracle, "deadline", None)
            if deadline is not None and time.time() >= deadline:
                slot.done = True  # the successor would only be told the time budget is used up; the trial waits for a raised one
                return
            self._launch(slot)
            return
        if code in (EXIT_ABORTED, EXIT_ERROR):  # deterministic: restarting would fail the same way
            self._forward_stop()
            message = _last_line(self.run_dir / "workers" / f"worker{slot.index}.log") or f"worker {slot.tuner_id} stopped with exit code {code}"
            raise (SearchAborted if code == EXIT_ABORTED else RunError)(message)
        requeued = self.hand_out_again(slot.tuner_id)
        if slot.restarts >= MAX_RESTARTS:
            raise RunError(
                f"worker {slot.index} died {slot.restarts + 1} times (last exit code {code}); see {self.run_dir / 'workers' / f'worker{slot.index}.log'}. "
                "Finished trials are kept: run the same command again to continue"
            )
        slot.restarts += 1
        print(f"worker {slot.tuner_id} died (exit code {code}); trial {requeued or '-'} handed out again, worker restarted", file=sys.stderr, flush=True)
        self._launch(slot)

    def hand_out_again(self, tuner_id: str) -> str | None:
        """The trial a dead worker was running (or a recycled one was handed before it left) goes back to
        KerasTuner's retry queue, ahead of new trials."""
        from keras_tuner.src.engine.oracle import LOCKS

        with LOCKS[self.oracle]:
            trial = self.oracle.ongoing_trials.pop(tuner_id, None)
            self.oracle.tuner_ids.discard(tuner_id)
            if trial is not None and trial.trial_id not in self.oracle._retry_queue:
                self.oracle._retry_queue.append(trial.trial_id)
        self.oracle.save()
        return trial.trial_id if trial is not None else None

    def _keep_remote_trials(self) -> None:
        """After a restart, trials that workers elsewhere were running stay theirs (they reconnect and report
        them) instead of being queued to run twice; `_remote_trials` hands them out if their worker is gone."""
        from keras_tuner.src.engine.oracle import LOCKS

        with LOCKS[self.oracle]:
            for tuner_id, trial_id in getattr(self.oracle, "interrupted", {}).items():
                if LOCAL_ID.match(tuner_id) or trial_id not in self.oracle._retry_queue or trial_id not in self.oracle.trials:
                    continue  # our own workers died with the previous process: their trials do run again
                self.oracle._retry_queue.remove(trial_id)
                trial = self.oracle.trials[trial_id]
                trial.status = "RUNNING"
                self.oracle.ongoing_trials[tuner_id] = trial
                self.oracle.tuner_ids.add(tuner_id)
            self.oracle.interrupted = {}

    def _remote_trials(self) -> list[str]:
        """Tuner ids of workers elsewhere with a trial under way; one silent for `remote_silence_s` loses it."""
        from keras_tuner.src.engine.oracle import LOCKS

        with LOCKS[self.oracle]:  # the gRPC threads change it
            ongoing = [(tuner_id, trial.trial_id) for tuner_id, trial in self.oracle.ongoing_trials.items() if not LOCAL_ID.match(tuner_id)]
        now, busy = time.time(), []
        for tuner_id, trial_id in ongoing:
            since = self.remote_since.setdefault((tuner_id, trial_id), now)
            folder = self.run_dir / "kerastuner" / f"trial_{trial_id}"
            with contextlib.suppress(OSError):  # a file replaced while we look
                since = max([since, *(p.stat().st_mtime for p in folder.glob("*") if p.is_file())])
            if now - since > self.remote_silence_s:
                self.hand_out_again(tuner_id)
                print(f"worker {tuner_id}: no sign of trial {trial_id} for {self.remote_silence_s:.0f} s; handed out again", file=sys.stderr, flush=True)
                idle = [slot for slot in self.slots if slot.done]
                if len(idle) == len(self.slots) and not self.stop.requested:  # ours were told the search was over
                    idle[0].done = False
                    self._launch(idle[0])
            else:
                busy.append(tuner_id)
        return busy

    def _forward_stop(self) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.process.send_signal(signal.SIGTERM)  # workers finish their epoch, then stop

    def _watch_records(self) -> None:
        import json

        from .records import TrialRecord

        for path in sorted((self.run_dir / "trials").glob("*.json")):
            with contextlib.suppress(OSError, ValueError, TypeError):
                mtime = path.stat().st_mtime
                if self.seen.get(path.name) == mtime or path.name.startswith("infeasible-"):
                    continue
                record = TrialRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
                self.seen[path.name] = mtime
                self.on_record(record)


def _last_line(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.startswith("error:")]
        return lines[-1][len("error: ") :] if lines else ""
    return ""


def die_with_parent() -> None:
    """Linux: a worker started by a search gets SIGKILL when that search process dies, so no orphan keeps
    training; if the search is already gone, the worker exits now. Armed by the worker itself (the search
    names itself in `TUNING_PARENT_PID`), so the search can start it without running code in a forked child."""
    parent = os.environ.get(PARENT_PID)
    if not parent:
        return  # started by hand on another machine: it stops when the chief stops answering
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):
        os._exit(1)  # the search died before the signal was armed


def run_worker(run_dir: str | Path, chief: str, tuner_id: str | None = None, quiet: bool = False, trials_per_process: int | None = None) -> int:
    """Join the search of `run_dir` served at `chief` (HOST:PORT): take trials until the chief says it is over."""
    from .records import RunStore
    from .runtime import compile_options, dtype_policy, precision_policy, prepare_devices, quiet_logs
    from .spec import load_spec

    die_with_parent()
    store = RunStore(run_dir)
    if not store.exists():
        raise RunError(f"{run_dir} is not a run directory (no run.json); start the search first with `tuning search SPEC --workers N`")
    manifest = store.read_manifest()
    host, _, port = chief.rpartition(":")
    if not host or not port.isdigit():
        raise RunError(f"--chief {chief!r}: expected HOST:PORT, e.g. 10.0.0.5:8470")
    spec = load_spec(manifest["spec"])
    tuner_id = tuner_id or f"{socket.gethostname()}-{os.getpid()}"
    os.environ.update(KERASTUNER_ORACLE_IP=host, KERASTUNER_ORACLE_PORT=port, KERASTUNER_TUNER_ID=tuner_id)

    quiet_logs()
    accelerator = prepare_devices()
    with dtype_policy(precision_policy(spec.training.mixed_precision, accelerator)):
        return _work(store, manifest, spec, chief, tuner_id, quiet, trials_per_process, compile_options(spec, accelerator))


def _work(
    store: Any, manifest: dict[str, Any], spec: Any, chief: str, tuner_id: str, quiet: bool, trials_per_process: int | None, options: dict[str, Any]
) -> int:
    from .data import load_data
    from .records import data_dir

    dataset = load_data(spec.data, data_dir(manifest), seed=spec.search.seed)
    import numpy as np

    from .engine import SpecHyperModel, SpecTuner
    from .events import Events, graceful_stop
    from .hparams import HParamsLog
    from .oracles import make_oracle
    from .resume import with_iterations
    from .runner import brackets_of
    from .runtime import long_lived_objects_frozen
    from .space import parameters

    params = parameters(spec)
    hypermodel = SpecHyperModel(spec, dataset.input_shape, dataset.num_classes, dataset.value_max)
    hypermodel.compile_options = options
    brackets = brackets_of(with_iterations(spec, int(manifest.get("iterations", spec.search.iterations))))
    board_log = HParamsLog(store.dir / "logs", params, spec.search.objective.metric, max_epochs=spec.search.max_epochs, brackets=brackets)
    tuner = SpecTuner(spec=spec, oracle=make_oracle(spec, params), hypermodel=hypermodel, directory=str(store.dir), events=Events(board_log), store=store)
    tuner.deadline = manifest.get("deadline")
    _pace_idle_requests(tuner.oracle)
    if trials_per_process and os.environ.get(PARENT_PID):
        _recycle_holding_the_next_trial(tuner, trials_per_process)
    else:
        tuner.trials_per_process = trials_per_process
    one_hot = np.eye(dataset.num_classes, dtype="float32")
    weights = dataset.class_weights() if spec.data.class_weight == "balanced" else None
    print(f"worker {tuner_id}: joined {chief} for {store.dir}", flush=True)
    _leave_once_the_search_is_over(store, chief, tuner_id)
    from .engine import ProcessRecycle

    try:
        with graceful_stop(tuner.stop, quiet), long_lived_objects_frozen():
            tuner.search(train=(dataset.x_train, one_hot[dataset.y_train]), validation=(dataset.x_val, one_hot[dataset.y_val]), class_weight=weights)
    except ProcessRecycle as done:
        print(f"worker {tuner_id}: ran {done} trials; exiting for a fresh process", flush=True)
        return EXIT_RECYCLE
    print(f"worker {tuner_id}: the search is over", flush=True)
    return 0


def _leave_once_the_search_is_over(store: Any, chief: str, tuner_id: str) -> None:
    """Exit when the run folder says the search finished and nothing answers at `chief` any more.

    KerasTuner's client waits for an unreachable chief for ever (it reconnects when a killed search is run
    again). A worker that was between trials when the chief died is unknown to the restarted one, which
    may finish the search without it: without this, such a worker would wait for a chief that never comes.
    """
    host, _, port = chief.rpartition(":")

    def answers() -> bool:
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
            return True
        except OSError:
            return False

    def watch() -> None:
        while True:
            time.sleep(CHIEF_CHECK_S)
            with contextlib.suppress(OSError, ValueError):  # the manifest may be replaced while read
                if store.read_manifest().get("status") == "finished" and not answers():
                    print(f"worker {tuner_id}: the search is over (finished, and nothing answers at {chief})", flush=True)
                    os._exit(0)  # the main thread is blocked in a gRPC call that would wait for ever

    threading.Thread(target=watch, name="chief-watch", daemon=True).start()


def _recycle_holding_the_next_trial(tuner: Any, limit: int) -> None:
    """A worker the search started leaves after `limit` trials only once it has been handed another, which the
    search gives to the fresh process it starts in its place (`Chief.hand_out_again`); told that the search is
    over, it exits for good, instead of being replaced by a process that would import Keras only to learn it.
    A worker started by hand leaves before asking (`SpecTuner.pre_create_trial`): nothing would pass its trial on."""
    from .engine import ProcessRecycle

    ask = tuner.oracle.create_trial

    def create_trial(tuner_id: str) -> Any:
        trial = ask(tuner_id)
        if trial.status == "RUNNING" and tuner.trials_done >= limit:
            raise ProcessRecycle(tuner.trials_done)
        return trial

    tuner.oracle.create_trial = create_trial


def _pace_idle_requests(client: Any) -> None:
    """KerasTuner's workers ask again at once when Hyperband waits for other trials; ask twice a second instead."""
    ask = client.create_trial

    def create_trial(tuner_id: str) -> Any:
        trial = ask(tuner_id)
        if trial.status == "IDLE":
            time.sleep(0.5)
        return trial

    client.create_trial = create_trial
