"""A Locust worker's recording (`--processes`, `--hosts`, a plain `--worker`): it generates, the master records.

The master tells it when and what to run (MSG_START, in the master's time plus this worker's measured clock
offset), answers its clock pings, may narrow its share when another worker joins (MSG_SHARE) or stop it early
(MSG_STOP). It sends its deltas as MSG_WINDOWS and its history as MSG_HISTORY batches from a spool file on its
own disk (stream.py), so a worker on another machine needs no shared run folder.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gevent
from hdrh.histogram import HdrHistogram
from locust.env import Environment
from locust.runners import WorkerRunner

from loadtests.generator.recording.process import ProcessRun, StartGenerator, start_process
from loadtests.generator.recording.protocol import (
    MSG_HISTORY,
    MSG_HISTORY_ACK,
    MSG_PING,
    MSG_PONG,
    MSG_SHARE,
    MSG_START,
    MSG_STOP,
    MSG_WINDOWS,
    RunSettings,
    on_own_clock,
)
from loadtests.generator.recording.recorder import ProcessRecorder
from loadtests.generator.stream import Batch, HistoryStream
from loadtests.generator.windows import Window

SPOOL_DIR = "surge-spool"  # under a worker's working directory: its history until the master has it


class WorkerRecording:
    """This worker's generator, started, re-shared and stopped by the master's messages."""

    def __init__(self, environment: Environment, runner: WorkerRunner, start_generator: StartGenerator) -> None:
        self.environment = environment
        self.runner = runner
        self.start_generator = start_generator
        self._run: ProcessRun | None = None
        self._stream: HistoryStream | None = None
        runner.register_message(MSG_START, self._on_start_message)
        runner.register_message(MSG_STOP, self._on_stop_message)
        runner.register_message(MSG_PING, self._on_ping)
        runner.register_message(MSG_HISTORY_ACK, self._on_history_ack)
        runner.register_message(MSG_SHARE, self._on_share)
        # Locust's EventHook.add_listener carries no type hints.
        environment.events.test_stopping.add_listener(self._on_test_stopping)  # type: ignore[no-untyped-call]
        environment.events.test_stop.add_listener(self._on_test_stop)  # type: ignore[no-untyped-call]
        environment.events.quitting.add_listener(self._on_test_stop)  # type: ignore[no-untyped-call]

    def _on_start_message(self, msg: Any, **_: Any) -> None:
        data = msg.data
        offset_s = float(data.get("offset_s", 0.0))
        settings = on_own_clock(RunSettings(**data["settings"]), offset_s)
        index = int(data["index"])
        spool = Path(SPOOL_DIR).resolve() / f"{Path(settings.out_dir).name}-worker-{index}.csv"
        stream = self._stream = HistoryStream(spool)
        runner = self.runner

        def send(recorder: ProcessRecorder, windows: list[Window], lag: HdrHistogram | None) -> None:
            lines = [window.to_json() for window in windows]
            encoded = lag.encode().decode("ascii") if lag is not None else None
            writer = recorder.history
            written = 0 if writer is None else writer.written + 1  # the header is a line of the file too
            history: dict[str, Any] = {"lines": written, "backlog": stream.backlog_bytes()}
            if recorder.sample is not None:
                history["unmatched"], recorder.sample = recorder.sample, None
            runner.send_message(MSG_WINDOWS, {"index": index, "windows": lines, "lag": encoded, "history": history})

        def send_batch(batch: Batch) -> None:
            data = {"index": index, "seq": batch.seq, "rows": batch.rows, "data": batch.data}
            runner.send_message(MSG_HISTORY, data)

        share = data.get("share") or {"index": index, "count": int(data["count"])}
        self._run = start_process(
            self._run,
            settings,
            self.start_generator,
            (int(share["index"]), int(share["count"])),
            spool,
            send,
            offset_s=offset_s,
            stream=stream,
            send_batch=send_batch,
        )

    def _on_stop_message(self, msg: Any, **_: Any) -> None:
        if self._run is not None:
            gevent.spawn(self._run.stop)

    def _on_ping(self, msg: Any, **_: Any) -> None:
        self.runner.send_message(MSG_PONG, {"seq": msg.data["seq"], "sent": msg.data["sent"], "clock": time.time()})

    def _on_share(self, msg: Any, **_: Any) -> None:
        if self._run is not None:
            data = msg.data
            self._run.running.reshare(float(data["from_s"]), int(data["index"]), int(data["count"]))

    def _on_history_ack(self, msg: Any, **_: Any) -> None:
        if self._stream is not None:
            self._stream.ack(int(msg.data["seq"]))

    def _on_test_stopping(self, **_: Any) -> None:
        """Locust's master stopped the test before the recording finished: stop generating, send the last delta."""
        if self._run is not None:
            gevent.spawn(self._run.stop)

    def _on_test_stop(self, **_: Any) -> None:
        """The test stopped or the worker quits: stop generating and send the last delta (idempotent)."""
        if self._run is not None:
            self._run.stop()
