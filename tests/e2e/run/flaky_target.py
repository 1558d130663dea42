"""A stand-in repayment API for the abort tests: 201 for every payment, except that inside the error spans set
through `POST /control` every second request gets a 500. It logs the arrival time of every request, so a test
can tell from the target's side when the load really stopped.

    python -m tests.e2e.run.flaky_target LOG_FILE      (prints "listening on http://127.0.0.1:PORT")
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from aiohttp import web

SPANS = web.AppKey("spans", list)
LOG = web.AppKey("log", Path)
COUNT = web.AppKey("count", list)


async def repay(request: web.Request) -> web.Response:
    now = time.time()
    with request.app[LOG].open("a", encoding="utf-8") as log:
        log.write(f"{now:.6f}\n")
    app = request.app
    app[COUNT][0] += 1
    failing = any(start <= now < end for start, end in app[SPANS])
    if failing and app[COUNT][0] % 2 == 0:
        problem = {"type": "about:blank", "title": "boom", "status": 500, "code": "INTERNAL", "retryable": False}
        return web.json_response(problem, status=500, content_type="application/problem+json")
    body = await request.json()
    return web.json_response({"repayment_id": f"r{app[COUNT][0]}", "status": "succeeded", **body}, status=201)


async def control(request: web.Request) -> web.Response:
    request.app[SPANS][:] = [tuple(span) for span in (await request.json())["error_spans"]]
    return web.json_response({"ok": True})


async def serve(log: Path) -> None:
    app = web.Application()
    app[SPANS] = []
    app[COUNT] = [0]
    app[LOG] = log
    app.router.add_post("/v1/repayments", repay)
    app.router.add_post("/control", control)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1])))
