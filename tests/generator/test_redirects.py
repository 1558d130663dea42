"""The load generator never follows a redirect: a loopback target answering 307 to elsewhere must not lead the
load past the loopback guard (the elsewhere here is a second loopback server that counts what reaches it)."""

from __future__ import annotations

import time
from pathlib import Path

from aiohttp import web

from tests.support.procs import run_locust, serving
from tests.support.runs import history

LEAD_S = 3.0
SCENARIO = """
name = "redirected"
duration_s = 2
seed = 5
[population]
users = 50
[[rate]]
at_s = 0
per_s = 10
[client]
timeout_s = 1
max_retries = 1
[arrivals]
process = "even"
pool = 10
"""


async def test_a_307_is_recorded_as_an_error_and_never_followed(tmp_path: Path) -> None:
    followed: list[str] = []

    async def elsewhere(request: web.Request) -> web.Response:
        followed.append(request.path)
        return web.json_response({"repayment_id": "rp_x"}, status=201)

    sink = web.Application()
    sink.router.add_route("*", "/{tail:.*}", elsewhere)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"{sink_url}/v1/repayments")

    source = web.Application()
    source.router.add_post("/v1/repayments", redirect)
    scenario = tmp_path / "redirected.toml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    out = tmp_path / "run"
    async with serving(sink) as sink_url, serving(source) as url:
        t0 = time.time() + LEAD_S
        await run_locust(url, scenario, out, "--surge-start-unix", repr(t0), timeout_s=45)
    rows = history(out)
    assert rows, "the run sent nothing"
    assert followed == [], "a redirect was followed"
    assert {(row["status"], row["outcome"]) for row in rows} == {("307", "error")}
