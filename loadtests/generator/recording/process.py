"""One generating process from its start to its last delta: the lone process and every worker run it alike.

Every FLUSH_INTERVAL_S the process samples its health and hands its delta over (`send`); FINAL_AFTER_S after
`hard_stop`, or at once when the run stops early, it stops its generator, lets the attempts in flight finish
for at most IN_FLIGHT_WAIT_S, closes its history and sends its last delta with its run-wide wake-up lag. A
worker's history goes to the master as it is written (stream.py), and the last delta waits, for at most
HISTORY_DRAIN_S, until the master has all of it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

import gevent
from hdrh.histogram import HdrHistogram

from errortext.console_text import one_line
from loadtests.generator.recording.protocol import (
    FINAL_AFTER_S,
    HISTORY_DRAIN_S,
    IN_FLIGHT_WAIT_S,
    Running,
    RunSettings,
)
from loadtests.generator.recording.recorder import ProcessRecorder
from loadtests.generator.stream import Batch, HistoryStream
from loadtests.generator.windows import Window

FLUSH_INTERVAL_S = 1.0
HISTORY_TICK_S = 0.05  # a worker sends history batches this often while it has some and the window allows
log = logging.getLogger("surge")

# Starts this process's generator on a recorder (share index, share count).
StartGenerator = Callable[[RunSettings, ProcessRecorder, int, int], Running]
# Hands a process's delta over: its recorder, the windows, and with the last delta its whole run's wake-up lag.
Send = Callable[[ProcessRecorder, list[Window], HdrHistogram | None], None]


class ProcessRun:
    """The greenlets of one process's run: the flush loop, the history stream of a worker, the last words."""

    def __init__(
        self,
        settings: RunSettings,
        recorder: ProcessRecorder,
        running: Running,
        send: Send,
        stream: HistoryStream | None = None,
        send_batch: Callable[[Batch], None] | None = None,
    ) -> None:
        self.settings = settings
        self.recorder = recorder
        self.running = running
        self._send = send
        self._stream = stream
        self._send_batch = send_batch
        self._done = False  # stopping: no delta but the last one follows
        self._final = False  # the last delta is sent

    def start(self) -> None:
        gevent.spawn(self._loop)
        if self._stream is not None:
            gevent.spawn(self._stream_history)

    def stop(self) -> None:
        """Stop generating and send the last delta (idempotent): at the planned end, or early."""
        if self._done:
            return
        self._done = True
        recorder, stream = self.recorder, self._stream
        self.running.stop()
        deadline = time.time() + IN_FLIGHT_WAIT_S
        while recorder.in_flight > 0 and time.time() < deadline:
            gevent.sleep(0.05)
        recorder.close()  # before the last delta: the master may read history/ as soon as it has every final
        if stream is not None:
            deadline = time.time() + HISTORY_DRAIN_S
            while not stream.delivered() and time.time() < deadline:
                gevent.sleep(HISTORY_TICK_S)
        self._send(recorder, recorder.take_delta(), recorder.lag.samples)
        self._final = True
        if stream is not None:
            stream.close()
            if stream.delivered():
                stream.path.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    stream.path.parent.rmdir()  # the spool directory, once no run of this worker needs it
            else:
                log.error(
                    "surge: %d bytes of history did not reach the master; they stay in %s",
                    stream.backlog_bytes(),
                    one_line(stream.path),
                )

    def _stream_history(self) -> None:
        stream, send_batch = self._stream, self._send_batch
        assert stream is not None and send_batch is not None
        while not self._final:
            batch = stream.next_batch()
            if batch is None:
                gevent.sleep(HISTORY_TICK_S)
            else:
                send_batch(batch)
                gevent.sleep(0)

    def _loop(self) -> None:
        settings, recorder = self.settings, self.recorder
        final_at = settings.hard_stop + FINAL_AFTER_S
        tick = time.time()
        while True:
            tick += FLUSH_INTERVAL_S
            gevent.sleep(max(0.0, min(tick, final_at) - time.time()))
            now = time.time()
            if now >= final_at:
                break
            if now >= settings.t0:
                recorder.sample_health(now)
            if self._stream is not None and recorder.history is not None:
                recorder.history.flush()  # what the stream sends is what reached the spool file
            self._send(recorder, recorder.take_delta(), None)
            if self._done:
                return
        self.stop()


def start_process(
    previous: ProcessRun | None,
    settings: RunSettings,
    start_generator: StartGenerator,
    share: tuple[int, int],
    history: Path,
    send: Send,
    *,
    offset_s: float = 0.0,
    stream: HistoryStream | None = None,
    send_batch: Callable[[Batch], None] | None = None,
) -> ProcessRun:
    """Start this process's generator on share `share`; `stream`: its history is spooled at `history` and sent
    to the master by `send_batch` (a worker), else written into the run folder (the lone process)."""
    if previous is not None:
        previous.stop()  # a new test in the web UI: the previous one's generator ends here
    recorder = ProcessRecorder(settings.t0, history, settings.late_ms, offset_s)
    if stream is not None:
        recorder.sample_path = None  # the master writes it into the run folder
    running = start_generator(settings, recorder, *share)
    run = ProcessRun(settings, recorder, running, send, stream, send_batch)
    run.start()
    return run
