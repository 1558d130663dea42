"""The loopback guard: a load tool must never hit production by mistake (README)."""

from __future__ import annotations

from urllib.parse import urlsplit

from loadtests.errors import UsageError
from mock_gateway.net import is_loopback_host


def check_target(url: str, *, allow_remote: bool) -> str:
    """Validate a --host URL and return it without a trailing slash; refuse non-loopback unless allowed."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise UsageError(f"--host must be an http(s) URL such as http://127.0.0.1:8080 (got {url!r})")
    try:
        _ = parts.port
    except ValueError:
        raise UsageError(f"--host has an invalid port (got {url!r})") from None
    if not allow_remote and not is_loopback_host(parts.hostname):
        raise UsageError(
            f"--host {parts.hostname} is not a loopback address; pass --allow-remote to load a remote gateway"
        )
    return url.rstrip("/")
