"""The lone process (`locust -f` without --master or --processes): the leader that generates its load itself.

Its own generator is worker 0: the deltas go straight into the run folder's writer, the history into
history/worker-0.csv, and an early stop stops it in place — no message, no clock to measure.
"""

from __future__ import annotations

from pathlib import Path

from hdrh.histogram import HdrHistogram

from loadtests.generator.recording.leader import RunLeader
from loadtests.generator.recording.process import ProcessRun, start_process
from loadtests.generator.recording.protocol import RunSettings
from loadtests.generator.recording.recorder import ProcessRecorder
from loadtests.generator.windows import Window
from runfolder.layout import RunFolder


class LocalRecording(RunLeader):
    """The run folder's writer and the one generator, in one process."""

    _run: ProcessRun | None = None

    def worker_count(self) -> int:
        return 0

    def _prepare(self, settings: RunSettings) -> dict[str, float] | None:
        return {}

    def _start_generators(self, settings: RunSettings, offsets: dict[str, float]) -> None:
        self._expected_finals = 1
        history = RunFolder(Path(settings.out_dir)).history_of(0)
        self._run = start_process(self._run, settings, self.start_generator, (0, 1), history, self._send)

    def _send(self, recorder: ProcessRecorder, windows: list[Window], lag: HdrHistogram | None) -> None:
        self._receive(0, windows, lag)

    def _watch(self, now: float) -> None:
        """No worker to lose."""

    def _stop_generators(self) -> None:
        if self._run is not None:
            self._run.stop()  # its final delta finishes the recording

    def _wind_down(self) -> None:
        if self._run is not None:
            self._run.stop()
