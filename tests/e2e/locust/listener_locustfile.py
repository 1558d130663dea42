"""Loaded next to surge's locustfile (`-f loadtests/locustfile.py,tests/loadtests/listener_locustfile.py`) by
tests/e2e/locust/test_plain_locust.py, only ever inside a Locust subprocess: an external Locust listener of the
kind locust-plugins' Timescale or OpenTelemetry listeners are, and locust-plugins' `--ips` option."""

from __future__ import annotations

import json
import os
from typing import Any

from locust import events


def _add_options(parser: Any) -> None:
    parser.add_argument("--ips", type=float, default=0.0, help="like locust-plugins: iterations per second")


def _on_request(name: str, context: dict[str, Any], **_: Any) -> None:
    with open(os.environ["SURGE_TEST_REQUESTS"], "a", encoding="utf-8") as handle:  # noqa: PTH123
        handle.write(json.dumps({"name": name, "context": context}) + "\n")


events.init_command_line_parser.add_listener(_add_options)  # type: ignore[no-untyped-call]
events.request.add_listener(_on_request)  # type: ignore[no-untyped-call]
