"""Which addresses count as this machine's own: the servers bind only these without an explicit flag, and the
load tools send load only to these without one (README)."""

from __future__ import annotations

import ipaddress


def is_loopback_host(hostname: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (bracketed or not); a name or any other address is not."""
    if hostname.lower() in {"localhost", "localhost."}:
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False
