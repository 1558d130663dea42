"""The loopback guard (README): only 127.0.0.0/8, ::1 and localhost are loaded without --allow-remote."""

from __future__ import annotations

import pytest

from loadtests.errors import UsageError
from loadtests.scenario.targets import check_target
from mock_gateway.net import is_loopback_host


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "::1", "[::1]"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host",
    ["10.0.0.1", "192.168.1.1", "8.8.8.8", "example.com", "0.0.0.0", "::", "127.0.0.1.nip.io"],  # noqa: S104
)
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback_host(host)


def test_remote_target_refused_without_flag() -> None:
    with pytest.raises(UsageError, match="--allow-remote"):
        check_target("http://10.1.2.3:8080", allow_remote=False)
    assert check_target("http://10.1.2.3:8080/", allow_remote=True) == "http://10.1.2.3:8080"


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "ftp://127.0.0.1", "http://", "http://127.0.0.1:99999"])
def test_malformed_urls_are_usage_errors(url: str) -> None:
    with pytest.raises(UsageError, match="--host"):
        check_target(url, allow_remote=False)
