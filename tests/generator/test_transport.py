"""Each repaying user's own connection (generator/transport.py), end to end through the locustfile.

The attempts must come out as they did through Locust's FastHttpSession: a refused connection is one
CONNECTION_ERROR row per attempt (never re-sent behind surge's back) and a failure in Locust's own statistics; a
server that closes every connection after its answer costs no attempt (the next request opens a new one); a
`--host` with a base path prefixes every request path.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from aiohttp import web

from tests.support.procs import closed_port_url, run_locust, serving
from tests.support.runs import history

LEAD_S = 5.0  # the Locust process boots inside it; 3 s was too short on a loaded 2-core machine
SCENARIO = """
name = "transport"
duration_s = 2
seed = 3
[population]
users = 50
[[rate]]
at_s = 0
per_s = 10
[client]
timeout_s = 1
max_retries = 0
[arrivals]
process = "even"
pool = 5
"""


def locust_requests(out: Path) -> tuple[int, int]:
    """(requests, failures) of the Aggregated row of Locust's own statistics."""
    with (out / "locust" / "locust_stats.csv").open(newline="", encoding="utf-8") as handle:
        row = next(r for r in csv.DictReader(handle) if r["Name"] == "Aggregated")
    return int(row["Request Count"]), int(row["Failure Count"])


async def test_a_refused_connection_is_one_connection_error_row_per_attempt_and_a_locust_failure(
    tmp_path: Path,
) -> None:
    url = closed_port_url()
    scenario = tmp_path / "transport.toml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    out = tmp_path / "run"
    t0 = time.time() + LEAD_S
    rc = await run_locust(url, scenario, out, "--surge-start-unix", repr(t0), timeout_s=45)
    rows = history(out)
    assert len(rows) == 20, "10/s for 2 s, one attempt each (max_retries = 0)"
    assert {(row["status"], row["code"], row["outcome"]) for row in rows} == {("0", "CONNECTION_ERROR", "error")}
    assert len({row["key"] for row in rows}) == 20
    assert locust_requests(out) == (20, 20)
    assert rc == 1, "failures in Locust's own statistics make Locust exit 1"


async def test_connections_closed_by_the_server_cost_no_attempt_and_the_host_base_path_is_kept(
    tmp_path: Path,
) -> None:
    paths: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        paths.append(request.path)
        body = {"repayment_id": f"rp_{len(paths)}", "replica": "t1", "business_date": "2026-11-11"}
        return web.json_response(body, status=201, headers={"Connection": "close"})

    app = web.Application()
    app.router.add_post("/base/v1/repayments", answer)
    scenario = tmp_path / "transport.toml"
    scenario.write_text(SCENARIO.replace("pool = 5", "pool = 2"), encoding="utf-8")  # each user sends ~5 times
    out = tmp_path / "run"
    t0 = time.time() + LEAD_S
    async with serving(app) as url:
        rc = await run_locust(f"{url}/base", scenario, out, "--surge-start-unix", repr(t0), timeout_s=45)
    rows = history(out)
    assert len(rows) == 20 and {row["outcome"] for row in rows} == {"succeeded"}
    assert {row["replica"] for row in rows} == {"t1"}
    assert paths == ["/base/v1/repayments"] * 20
    assert locust_requests(out) == (20, 0)
    assert rc == 0
