"""Polling a status that misbehaves, through a real Locust subprocess against a scripted gateway (black box).

Every payment is answered 202 + Location + `poll_after_ms` = FIRST_WAIT_MS and takes one of four turns: settled
SETTLE_S later (`plain`); its first two polls answered 500 with no hint, so the client's own backoff applies
(`errors`); its first poll answered only after the client's `timeout_s` (`timeout`); never settled, every poll
answered `processing` with `poll_after_ms` = STUCK_WAIT_MS (`stuck`). The gateway notes when it saw each request,
so the waits are checked where they matter: no poll comes before the wait the client was given. A second run whose
payments never settle, with `settle_pending_max` = PENDING_MAX, shows the bound on the pending set.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import pytest
from aiohttp import web

from tests.support.procs import locust_exit_code, run_locust, serving
from tests.support.runs import history

TURNS = ("plain", "errors", "timeout", "stuck")
FIRST_WAIT_MS = 200
STUCK_WAIT_MS = 300
SETTLE_S = 0.6
TIMEOUT_S = 1.0
SETTLE_TIMEOUT_S = 3
DURATION_S = 3
RATE = 8
PENDING_MAX = 5
LEAD_S = 8.0  # two Locust processes boot at once on a busy machine before t=0
SLACK_S = 0.001  # the gateway's clock reading of one request against the next


def scenario(pending_max: int) -> str:
    return f"""
name = "async-polling"
duration_s = {DURATION_S}
seed = 5
[population]
users = 200
bill_fen = {{ median = 100000, p99 = 400000 }}
[[rate]]
at_s = 0
per_s = {RATE}
[client]
timeout_s = {TIMEOUT_S}
max_retries = 0
settlement = "poll"
settle_timeout_s = {SETTLE_TIMEOUT_S}
settle_pending_max = {pending_max}
[arrivals]
process = "even"
pool = 40
"""


class PollingGateway:
    def __init__(self, settles: bool) -> None:
        self.settles = settles
        self.turn: dict[str, str] = {}  # repayment id → its turn
        self.accepted: dict[str, float] = {}  # repayment id → when its 202 was written
        self.polls: defaultdict[str, list[tuple[float, int]]] = defaultdict(list)  # id → (seen, status answered)

    async def create(self, request: web.Request) -> web.Response:
        rid = f"rp_{request.headers['Idempotency-Key']}"
        if rid not in self.turn:
            self.turn[rid] = TURNS[len(self.turn) % len(TURNS)] if self.settles else "stuck"
        answer = {"repayment_id": rid, "status": "processing", "poll_after_ms": FIRST_WAIT_MS}
        self.accepted[rid] = time.time()
        return web.json_response(answer, status=202, headers={"Location": f"/v1/repayments/{rid}"})

    async def status(self, request: web.Request) -> web.Response:
        seen = time.time()
        rid = request.match_info["rid"]
        turn, earlier = self.turn[rid], len(self.polls[rid])
        if turn == "errors" and earlier < 2:
            self.polls[rid].append((seen, 500))
            return web.json_response({"title": "try again"}, status=500)
        if turn == "timeout" and earlier == 0:
            self.polls[rid].append((seen, 200))
            await asyncio.sleep(TIMEOUT_S + 0.5)
        else:
            self.polls[rid].append((seen, 200))
        if turn == "stuck" or seen < self.accepted[rid] + SETTLE_S:
            return web.json_response({"repayment_id": rid, "status": "processing", "poll_after_ms": STUCK_WAIT_MS})
        return web.json_response({"repayment_id": rid, "status": "succeeded", "code": None})


async def drive(tmp_path: Path, name: str, gateway: PollingGateway, pending_max: int, t0: float) -> tuple[Path, int]:
    app = web.Application()
    app.router.add_post("/v1/repayments", gateway.create)
    app.router.add_get("/v1/repayments/{rid}", gateway.status)
    path = tmp_path / f"{name}.toml"
    path.write_text(scenario(pending_max), encoding="utf-8")
    out = tmp_path / name
    async with serving(app) as url:
        rc = await run_locust(url, path, out, "--surge-start-unix", repr(t0), timeout_s=60)
    return out, rc


Run = tuple[Path, int, PollingGateway, float]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    tmp_path = tmp_path_factory.mktemp("polling")
    t0 = time.time() + LEAD_S
    gateways = {"turns": PollingGateway(settles=True), "bounded": PollingGateway(settles=False)}

    bounds = {"turns": 1000, "bounded": PENDING_MAX}

    async def both() -> list[tuple[Path, int]]:
        return list(await asyncio.gather(*(drive(tmp_path, name, gateways[name], bounds[name], t0) for name in bounds)))

    done = dict(zip(bounds, asyncio.run(both()), strict=True))
    return {name: (*done[name], gateways[name], t0) for name in bounds}


def rows_by_id(out: Path) -> dict[str, dict[str, str]]:
    return {row["repayment_id"]: row for row in history(out) if row["status"] == "202"}


def test_no_poll_comes_before_its_wait_and_a_broken_poll_is_made_again(runs: dict[str, Run]) -> None:
    out, rc, gateway, _ = runs["turns"]
    assert rc == locust_exit_code(out), (out / "locust" / "stdout.log").read_text()
    rows = rows_by_id(out)
    assert len(rows) == DURATION_S * RATE and set(rows) == set(gateway.turn)
    first_gaps: list[float] = []
    for rid, turn in gateway.turn.items():
        row, seen = rows[rid], gateway.polls[rid]
        in_flight_at_the_end = 1 if turn == "stuck" else 0  # sent, its answer after the row was written
        assert len(seen) - in_flight_at_the_end <= int(row["polls"]) <= len(seen), (turn, row, seen)
        first_gaps.append(seen[0][0] - gateway.accepted[rid])
        assert seen[0][0] >= gateway.accepted[rid] + FIRST_WAIT_MS / 1000 - SLACK_S, (turn, "poll_after_ms of the 202")
        for index, ((before, status), (after, _)) in enumerate(pairwise(seen)):
            # no answer, or a 500 without a hint: the client's backoff, 0.25 s doubled (±10 %) from the second poll on
            no_hint = status == 500 or (turn == "timeout" and index == 0)
            wait = 0.45 if no_hint else STUCK_WAIT_MS / 1000
            assert after - before >= wait - SLACK_S, (turn, seen)
        if turn == "stuck":
            assert row["settlement"] == "processing" and float(row["final_at"]) == 0, row
        else:
            assert row["settlement"] == "succeeded", (turn, row, seen)
            assert float(row["final_at"]) >= seen[-1][0], "learned from the answer, when it came"
    counts = {turn: [len(gateway.polls[rid]) for rid, t in gateway.turn.items() if t == turn] for turn in TURNS}
    assert all(n >= 3 for n in counts["errors"]), counts  # two 500s, then the final state
    assert all(n >= 2 for n in counts["timeout"]), counts  # one timed out, then the final state
    # the polls of a payment never settled: until the deadline, at its poll_after_ms, not a storm
    assert all(5 <= n <= (DURATION_S + SETTLE_TIMEOUT_S + 1) / (STUCK_WAIT_MS / 1000) + 1 for n in counts["stuck"])
    # a poll goes out at most one timer tick (25 ms) after it is due: generous on a loaded machine, but not a
    # second wait
    assert statistics.median(first_gaps) < FIRST_WAIT_MS / 1000 + 0.15, first_gaps


def test_polling_stops_at_the_deadline_and_the_pending_set_is_bounded(runs: dict[str, Run]) -> None:
    out, rc, gateway, t0 = runs["bounded"]
    assert rc == locust_exit_code(out), (out / "locust" / "stdout.log").read_text()
    rows = rows_by_id(out)
    assert len(rows) == DURATION_S * RATE
    watched = [row for row in rows.values() if row["settlement"] == "processing"]
    unwatched = [row for row in rows.values() if row["settlement"] == "unwatched"]
    assert len(watched) == PENDING_MAX and len(unwatched) == DURATION_S * RATE - PENDING_MAX
    assert all(int(row["polls"]) >= 5 for row in watched) and all(row["polls"] == "0" for row in unwatched)
    assert set(gateway.polls) == {row["repayment_id"] for row in watched}
    last = max(seen for polls in gateway.polls.values() for seen, _ in polls)
    deadline = t0 + DURATION_S + SETTLE_TIMEOUT_S + 1.0  # scenario.model.SETTLE_GRACE_S
    assert last < deadline + 0.5, "no poll after the deadline (but for one tick and a busy machine's lag)"
