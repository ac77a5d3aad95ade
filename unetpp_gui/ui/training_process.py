"""The training child process: started, read and stopped for the training dialog, which only draws.

Training runs as a separate process (``python -m training train --progress-json``, or the packaged app
started with ``--train-child``), so a crash or a cancel never takes the viewer down. Its stdout carries one
JSON object per line; each becomes an ``event``; other output becomes ``log`` lines.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

#: How long a cancelled run may take to stop between batches before it is killed.
KILL_AFTER_MS = 30_000


def training_command(args: list[str]) -> tuple[str, list[str], dict[str, str]]:
    """Program, arguments and extra environment that start the training module."""
    if getattr(sys, "frozen", False):
        return sys.executable, ["--train-child", *args], {"UNETPP_TRAINING_CHILD": "1"}
    return sys.executable, ["-m", "training", *args], {}


def cancel_file_for(out: str | Path) -> Path:
    """The file whose appearance tells a run writing ``out`` to stop (``--cancel-file``)."""
    out = Path(out)
    return out.with_name(f".{out.stem}.cancel")


class TrainingProcess(QObject):
    """One training run at a time. ``event`` gets each progress object (start, batch, epoch, checkpoint,
    done / cancelled / stopped_early / error), ``log`` each other line, ``finished`` the final status
    (the last status event's name, or "crashed") and the exit code."""

    event = Signal(dict)
    log = Signal(str)
    finished = Signal(str, int)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.proc: QProcess | None = None
        self.events: list[dict[str, Any]] = []
        self.result: dict[str, Any] = {}
        self.cancel_file: Path | None = None
        self._buffer = b""
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._kill_if_stuck)

    @property
    def running(self) -> bool:
        return self.proc is not None

    def start(self, args: list[str], cancel_file: Path) -> str:
        """Start ``training`` with ``args`` (which must include ``--cancel-file cancel_file``); returns the
        command line, for the log."""
        self.cancel_file = cancel_file
        cancel_file.unlink(missing_ok=True)
        program, full_args, env = training_command(args)
        proc = QProcess(self)
        penv = QProcessEnvironment.systemEnvironment()
        for k, v in {**env, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}.items():
            penv.insert(k, v)
        proc.setProcessEnvironment(penv)
        proc.readyReadStandardOutput.connect(self._read_stdout)
        proc.readyReadStandardError.connect(lambda: self.log.emit(bytes(proc.readAllStandardError()).decode(errors="replace")))
        proc.finished.connect(self._on_finished)
        self.events.clear()
        self.result = {}
        self._buffer = b""
        self.proc = proc
        proc.start(program, full_args)
        return f"$ {program} {' '.join(full_args)}"

    def cancel(self) -> None:
        """Ask the child to stop between batches; kill it if it has not stopped in time."""
        if self.proc is None or self.cancel_file is None:
            return
        self.cancel_file.touch()
        self._kill_timer.start(KILL_AFTER_MS)

    def _kill_if_stuck(self) -> None:
        if self.proc is not None and self.proc.state() != QProcess.NotRunning:
            self.log.emit(f"the training process did not stop in {KILL_AFTER_MS // 1000} s: killed")
            self.proc.kill()

    def _read_stdout(self) -> None:
        if self.proc is None:
            return
        self._buffer += bytes(self.proc.readAllStandardOutput())
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace").strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                self.log.emit(line)
                continue
            if not isinstance(ev, dict):
                self.log.emit(line)
                continue
            self.events.append(ev)
            if ev.get("event") in ("done", "cancelled", "stopped_early", "error"):
                self.result = ev
            self.event.emit(ev)

    def _on_finished(self, code: int, _status: Any) -> None:
        self._kill_timer.stop()
        self._read_stdout()
        if self.cancel_file is not None:
            self.cancel_file.unlink(missing_ok=True)
        self.proc = None
        self.finished.emit(str(self.result.get("event", "crashed")), int(code))
