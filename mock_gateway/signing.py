"""Signed requests at the gateway (`[signing] required = true`): the checks a payment platform's staging API makes,
so the embedded scenarios can rehearse a signing client (a target profile's [request.sign], docs/targets.md §8).

`POST /v1/repayments` must carry `X-Timestamp` (Unix milliseconds within `window_s` of the gateway's wall clock),
`X-Nonce` (never seen before by this replica within the window) and `X-Signature`: the base64 HMAC-SHA256, keyed
with the environment variable `key_env`, of "POST\\n/v1/repayments\\n<X-Timestamp>\\n<X-Nonce>\\n<body>". Anything
else is 401 SIGNATURE_INVALID, counted by reason. The key never sits in the config, so never in a run folder.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping

from mock_gateway.config import GatewayConfig
from mock_gateway.errors import SignatureInvalid

PRUNE_EVERY = 4096  # nonces remembered between two sweeps of the expired ones


class RequestSigning:
    """One replica's signature check and its memory of the nonces seen within the window."""

    def __init__(self, key: bytes, window_s: float, wall: Callable[[], float] = time.time) -> None:
        self._key = key
        self.window_s = window_s
        self._wall = wall
        self._nonces: dict[str, float] = {}
        self.refused: dict[str, int] = {"signature": 0, "timestamp": 0, "nonce": 0}

    @classmethod
    def from_config(cls, config: GatewayConfig, env: Mapping[str, str]) -> RequestSigning | None:
        """None unless `[signing] required`; the key from the environment (checked at start: missing is exit 2)."""
        if not config.signing.required:
            return None
        return cls(env.get(config.signing.key_env, "").encode(), config.signing.window_s)

    def check(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> None:
        stamp, nonce = headers.get("X-Timestamp", ""), headers.get("X-Nonce", "")
        message = b"\n".join((method.encode(), path.encode(), stamp.encode(), nonce.encode(), body))
        wanted = base64.b64encode(hmac.new(self._key, message, hashlib.sha256).digest())
        if not hmac.compare_digest(wanted, headers.get("X-Signature", "").encode()):
            self._refuse("signature")
        now = self._wall()
        try:
            skew_s = abs(now - int(stamp) / 1000)
        except ValueError:
            skew_s = float("inf")
        if skew_s > self.window_s:
            self._refuse("timestamp")
        if not nonce or nonce in self._nonces:
            self._refuse("nonce")
        self._nonces[nonce] = now
        if len(self._nonces) % PRUNE_EVERY == 0:  # a nonce older than the window can only come with a stale stamp
            self._nonces = {seen: at for seen, at in self._nonces.items() if now - at <= 2 * self.window_s}

    def _refuse(self, reason: str) -> None:
        self.refused[reason] += 1
        raise SignatureInvalid({"signature": "bad signature", "timestamp": "timestamp outside the window",
                                "nonce": "nonce missing or replayed"}[reason])  # fmt: skip
