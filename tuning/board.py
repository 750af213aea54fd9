"""Start TensorBoard on one run or several side by side, bound to 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import atexit
import contextlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import RunError


class Board:
    """A running TensorBoard process; `stop()` (or leaving a `with` block) ends it."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, log: Path):
        self.process, self.url, self.log = process, url, log

    def stop(self, keep_log: bool = False) -> None:
        """End TensorBoard; its log goes too unless kept for an error that names it (one per start piled up in /tmp)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if not keep_log:
            self.log.unlink(missing_ok=True)

    def wait(self) -> int:
        return self.process.wait()

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def logdir_spec(runs: Sequence[str | Path]) -> list[str]:
    """TensorBoard arguments showing each run's `logs/` under the run's name."""
    folders = []
    for run in runs:
        logs = Path(run) / "logs"
        if not logs.is_dir():
            raise RunError(f"{run} has no logs/ folder; pass a run directory written by `tuning search` (e.g. reports/<name>)")
        folders.append(logs)
    if len(folders) == 1:
        return ["--logdir", str(folders[0])]
    names = [Path(run).resolve().name for run in runs]
    if len(set(names)) != len(names):
        names = [f"{name}_{i + 1}" for i, name in enumerate(names)]
    return ["--logdir_spec", ",".join(f"{name}:{folder}" for name, folder in zip(names, folders))]


def start_board(runs: Sequence[str | Path], *, host: str = "127.0.0.1", port: int | None = None, timeout: float = 90.0) -> Board:
    """Start TensorBoard for `runs` and wait until it answers; the HParams tab lists every trial."""
    port = port or _free_port(host)
    log = Path(tempfile.mkstemp(prefix="tuning-board-", suffix=".log")[1])
    command = [sys.executable, "-m", "tensorboard.main", *logdir_spec(runs), "--host", host, "--port", str(port), "--load_fast", "false"]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
    board = Board(process, url, log)
    atexit.register(board.stop)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            last = log.read_text(errors="replace").strip().splitlines()[-1:] or "no output"
            board.stop()
            raise RunError(f"TensorBoard exited at start ({last}); is port {port} free?")
        try:
            with urllib.request.urlopen(url + "data/environment", timeout=2):
                return board
        except OSError:
            time.sleep(0.5)
    board.stop(keep_log=True)
    raise RunError(f"TensorBoard did not answer on {url} within {timeout:.0f}s; its output is in {log}")


@contextlib.contextmanager
def stops_like_ctrl_c() -> Iterator[None]:
    """Inside the block SIGTERM (`timeout`, systemd, a notebook kernel's stop) and SIGHUP (a closed terminal) raise
    KeyboardInterrupt, as Ctrl-C does: by default they end this process at once, and TensorBoard serves on."""

    from .runtime import signals_handled

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    with signals_handled(interrupt, signal.SIGTERM, signal.SIGHUP):
        yield


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host if host not in ("0.0.0.0", "::") else "127.0.0.1", 0))
        return int(sock.getsockname()[1])
