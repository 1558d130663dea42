"""The bank channels a gateway serves (`GET /v1/channels`): what the driver draws its users' cards on.

Against a gateway surge did not start, drawing cards on surge's default channels would make a gateway
configured with other banks answer most payments with 400 VALIDATION_ERROR; so the list is read once at test
start (the Locust master; `surge run --host` reads it too, to warn on its own console). It makes an HTTP call,
so it is no part of the pure `scenario` package; both processes call it, so it sits beside orchestration (which
the Locust process never imports). Standard library only.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from loadtests.scenario.model import Scenario

TIMEOUT_S = 3.0


class ChannelsUnavailable(Exception):
    """The gateway did not serve a usable channel list; the message says why, in one line."""


def served_channels(base_url: str, timeout_s: float = TIMEOUT_S) -> list[str]:
    """The channel codes at `base_url`/v1/channels, in the gateway's order."""
    url = f"{base_url.rstrip('/')}/v1/channels"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (an http(s) URL checked by the loopback guard)
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ChannelsUnavailable(f"GET {url} answered {exc.code}") from None
    except (OSError, ValueError) as exc:
        raise ChannelsUnavailable(f"GET {url} failed ({exc})") from None
    codes = channel_codes(body)
    if not codes:
        raise ChannelsUnavailable(f"GET {url} did not hold a channel list")
    return codes


def channel_codes(body: object) -> list[str]:
    """`{"channels": [{"code": …}, …]}` as codes; [] for anything else."""
    channels = body.get("channels") if isinstance(body, dict) else None
    if not isinstance(channels, list):
        return []
    codes = [item.get("code") for item in channels if isinstance(item, dict)]
    return [code for code in codes if isinstance(code, str) and code] if len(codes) == len(channels) else []


def default_channels(scenario: Scenario) -> list[str]:
    """The embedded gateway's channel codes for this scenario (defaults + its [gateway] overrides)."""
    from mock_gateway.config_sources import load_config  # pydantic models only; kept out of the module's import cost

    return [channel.code for channel in load_config(None, env={}, overrides=scenario.gateway or None).channels]
