"""The bearer token guarding `/admin/*`, shared by the replicas and the router.

Admin endpoints kill processes and inject faults, so even on loopback they need a token: a load test pointed
at the wrong port must not be able to break a gateway by accident. The comparison is constant-time.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping

from aiohttp import web

from mock_gateway.config import GatewayConfig
from mock_gateway.errors import Unauthorized

ENV_TOKEN = "SURGE_ADMIN_TOKEN"  # noqa: S105  # the name of a variable, not a secret
ADMIN_TOKEN_KEY = web.AppKey("admin_token", str)


def require_admin(request: web.Request, token: str) -> None:
    """Raises `Unauthorized` (401 problem+json) unless the request carries `Authorization: Bearer <token>`.

    aiohttp hands over header bytes that are not UTF-8 as lone surrogates; they are compared as the bytes they
    were (`surrogateescape`), so such a header is simply a wrong token, never an encoding error (a 500).
    """
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    presented = given.strip().encode("utf-8", "surrogateescape")
    if not token or scheme.lower() != "bearer" or not hmac.compare_digest(presented, token.encode()):
        raise Unauthorized


def load_admin_token(config: GatewayConfig, env: Mapping[str, str]) -> tuple[str, bool]:
    """(token, generated): the config's token, else `SURGE_ADMIN_TOKEN`, else a fresh random one."""
    if config.admin.token:
        return config.admin.token, False
    from_env = env.get(ENV_TOKEN, "")
    if from_env:
        return from_env, False
    return secrets.token_urlsafe(24), True
