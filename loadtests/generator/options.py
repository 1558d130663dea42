"""surge's Locust options: declared on Locust's parser, read back as a scaled Scenario, a checked host, a profile.

`--scale` and `--surge-duration` stay text until `scenario_of` reads them: the web UI's form converts a field to
its option's type itself, and a typo in a float field would be an HTTP 500 instead of one logged line. Every
check raises UsageError, which the locustfile turns into exit 2 at init or one logged line at test start.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from loadtests.errors import UsageError
from loadtests.scenario.files import load_scenario
from loadtests.scenario.model import Scenario
from loadtests.scenario.profile import TargetProfile, load_profile
from mock_gateway.net import is_loopback_host


def add_options(parser: Any) -> None:
    # Locust's web UI listens on every interface by default, unauthenticated, and a test started from it carries
    # the target profile's ${NAME} secrets: loopback unless asked otherwise (--web-host, LOCUST_WEB_HOST or a
    # config file's web-host all still win over this default).
    parser.set_defaults(web_host="127.0.0.1")
    parser.add_argument("--scenario", default="double11", help="surge: a built-in scenario name or a TOML file")
    parser.add_argument("--scale", default="1", help="surge: multiply every rate and the user pool")
    parser.add_argument("--surge-duration", default="0", help="surge: stretch the scenario to S seconds (0: its own)")
    parser.add_argument(
        "--surge-out", default="", include_in_web_ui=False, help="surge: the run folder (default runs/locust-<time>)"
    )
    parser.add_argument(
        "--surge-start-unix", type=float, default=0.0, include_in_web_ui=False, help="surge: the shared t=0"
    )
    parser.add_argument(
        "--target", default="", include_in_web_ui=False, help="surge: a target profile TOML for another API (§7)"
    )
    parser.add_argument(
        "--surge-no-abort", action="store_true", default=False, help="surge: ignore the scenario's [[abort]] rules"
    )
    parser.add_argument(
        "--surge-max-clock-offset",
        type=float,
        default=5.0,
        include_in_web_ui=False,
        help="surge: refuse a worker whose clock is further off the master's, in seconds (default 5)",
    )
    parser.add_argument(
        "--surge-managed",
        action="store_true",
        include_in_web_ui=False,
        help="surge: set by `surge run`, which analyses the run folder itself (no verdict at the end here)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        include_in_web_ui=False,
        help="surge: serve Prometheus metrics on 127.0.0.1:PORT from the master (default 0: off)",
    )


def scenario_of(options: Any) -> Scenario:
    scale, duration_s = numbers(options)
    return load_scenario(options.scenario).scaled(scale, duration_s)


def numbers(options: Any) -> tuple[float, float | None]:
    """--scale and --surge-duration (None: the scenario's own) from their text; UsageError names a bad one."""
    values: list[float] = []
    for flag, text in (("--scale", options.scale), ("--surge-duration", options.surge_duration)):
        try:
            values.append(float(text))
        except (TypeError, ValueError):
            raise UsageError(f"{flag} must be a number (got {text!r})") from None
    return values[0], values[1] or None


def check_host(host: str) -> None:
    parts = urlsplit(host)
    if not parts.hostname:
        raise UsageError(f"--host must be an http URL such as http://127.0.0.1:8080 (got {host!r})")
    if os.environ.get("SURGE_ALLOW_REMOTE") != "1" and not is_loopback_host(parts.hostname):
        raise UsageError(
            f"--host {parts.hostname} is not a loopback address; set SURGE_ALLOW_REMOTE=1 to load a remote gateway"
        )


def loopback(url: str) -> bool:
    hostname = urlsplit(url).hostname
    return bool(hostname) and is_loopback_host(hostname or "")


def profile_of(path: str, host: str | None) -> TargetProfile:
    """The --target profile, checked as `surge run` checks it (exit 2 from the locustfile's init when wrong)."""
    return load_profile(path, allow_remote=os.environ.get("SURGE_ALLOW_REMOTE") == "1", host=host, env=os.environ)
