"""One forwarded request: the router's connection pool to a replica and a single attempt on it.

An attempt either returns the replica's answer or raises `AttemptFailed` naming why no usable answer came
(refused, reset, timed out, the router's own resources, or the replica's own 503): the router decides from that
reason whether to retry elsewhere and whether the outcome is unknown. Each replica gets its own pool, capped so
the router's file descriptors never run out whatever the number of clients.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
from dataclasses import dataclass, field
from typing import Final

import aiohttp
from aiohttp import web

log = logging.getLogger(__name__)

HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
OWN_RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EADDRNOTAVAIL})
"""A connect that failed for lack of the router's *own* resources (file descriptors, ephemeral ports, memory):
the replica is not at fault, so it is not marked down, and another replica would fail the same way."""
MAX_CONNECTIONS_PER_REPLICA: Final = 1024


class AttemptFailed(Exception):
    """One forwarding attempt got no usable answer; `answer` is the replica's own 503, if it sent one."""

    def __init__(self, reason: str, answer: web.Response | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.answer = answer


@dataclass(slots=True)
class Backend:
    """A replica as the router reaches it: its address and its own connection pool."""

    name: str
    base_url: str
    session: aiohttp.ClientSession
    waiting: set[asyncio.Timeout] = field(default_factory=set)

    @classmethod
    def open(cls, name: str, base_url: str, *, connections: int, connect_timeout_s: float) -> Backend:
        connector = aiohttp.TCPConnector(limit=connections, limit_per_host=0, force_close=False)
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )
        return cls(name, base_url, session)

    async def forward(self, request: web.Request, body: bytes, timeout_s: float) -> tuple[web.Response, bytes]:
        """The replica's answer (and its raw body) to `request`; `AttemptFailed` when none usable came. A timeout
        is reason "timeout"; the caller knows whether the replica went down meanwhile."""
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            async with asyncio.timeout(timeout_s) as deadline:
                self.waiting.add(deadline)
                try:
                    async with self.session.request(
                        request.method, self.base_url + request.raw_path, data=body, headers=headers
                    ) as upstream:
                        payload = await upstream.read()
                finally:
                    self.waiting.discard(deadline)
        except TimeoutError:
            raise AttemptFailed("timeout") from None
        except aiohttp.ClientConnectorError as exc:
            if exc.os_error.errno in OWN_RESOURCE_ERRNOS:
                log.warning("router cannot open a connection to %s: %s", self.name, exc.os_error)
                raise AttemptFailed("router_resources") from None
            raise AttemptFailed("connect") from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError):
            raise AttemptFailed("disconnected") from None
        except aiohttp.ClientError as exc:  # anything else the transport can say: never a 500 to the client
            raise AttemptFailed(f"client_error:{type(exc).__name__}") from None
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        out_headers.setdefault("X-Replica", self.name)
        return web.Response(status=upstream.status, body=payload, headers=out_headers), payload

    def cut_waiting(self) -> None:
        """Make every request still waiting on this replica time out now, to be retried elsewhere."""
        now = asyncio.get_running_loop().time()
        for deadline in self.waiting:
            if not deadline.expired():
                deadline.reschedule(now)


def connection_cap(replicas: int) -> int:
    """Connections the router may hold open to each replica, so that its own file descriptors never run out.

    The soft descriptor limit is raised to the hard one first (what servers do at start); each client of the
    router uses a descriptor too, so the replicas share at most half of them.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > soft):
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS_PER_REPLICA
    return max(16, min(MAX_CONNECTIONS_PER_REPLICA, (soft - 64) // (2 * max(1, replicas))))
