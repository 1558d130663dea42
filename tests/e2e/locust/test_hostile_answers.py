"""Whatever a body holds, every answer is exactly one recorded attempt (black box, through a real Locust process).

A server answers each payment with a body built to break the reader: a 201 nested 100,000 levels deep (the
JSON parser's RecursionError), a 503 asking to wait 10^400 ms (float overflow) or a Retry-After of 400 digits,
a decline whose suggested plan's amount is 1e400 (int(inf)), a body past the bound surge reads (1 MiB, or the
profile's `max_body_bytes`). Each is one history row, counted once by Locust's own statistics and once by the
server: no attempt lost from the history (what the invariants would call a phantom), no exception in the Locust
user. The reader classifies by the status alone and records why; a 900 kB problem code or a 60 kB replica name
is kept as its first 200 characters.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web

from tests.support.procs import run_locust, serving
from tests.support.runs import history

pytestmark = pytest.mark.e2e
SCENARIO = """
name = "hostile"
duration_s = 2
seed = 5
[population]
users = 60
[[rate]]
at_s = 0
per_s = 12
[client]
policy = "follow-plan"
timeout_s = 2
max_retries = 2
[arrivals]
pool = 20
"""
DEEP = b"[" * 100_000 + b"]" * 100_000
HUGE_WAIT = b'{"code": "CHANNEL_BUSY", "retry_after_ms": 1' + b"0" * 400 + b"}"
INFINITE_PLAN = (
    b'{"code": "DAILY_LIMIT_EXCEEDED", "scope": "card",'
    b' "suggested_plan": [{"business_date": "2026-11-11", "amount_fen": 1e400}]}'
)
MEGA_CODE = b'{"code": "' + b"C" * 900_000 + b'"}'
PROFILE = """
name = "hostile"
base_url = "http://127.0.0.1:1"
[request]
path = "/pay"
body = '{{"key": "{{key}}", "fen": {{amount_fen}}}}'
[[response.rules]]
status = 201
json = {{ "/ok" = true }}
outcome = "succeeded"
payment_id = "/id"
[[response.rules]]
status = 503
outcome = "shed"
retry_after_header = "Retry-After"
[response]
max_body_bytes = 65536
"""


def locust_requests(out: Path) -> int:
    with (out / "locust" / "locust_stats.csv").open(newline="", encoding="utf-8") as handle:
        return int(next(r for r in csv.DictReader(handle) if r["Name"] == "Aggregated")["Request Count"])


async def serve(answers: list[web.Response], path: str, tmp_path: Path, *extra: str) -> tuple[int, Path, int]:
    """Locust against a server cycling through `answers`; (requests the server read, run folder, exit code)."""
    cycle: Callable[[], web.Response] = itertools.cycle(answers).__next__
    seen = 0

    async def answer(request: web.Request) -> web.Response:
        nonlocal seen
        await request.read()
        seen += 1
        template = cycle()
        return web.Response(status=template.status, body=template.body, headers=dict(template.headers))

    app = web.Application()
    app.router.add_post(path, answer)
    scenario = tmp_path / "hostile.toml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    out = tmp_path / "run"
    async with serving(app) as url:
        rc = await run_locust(url, scenario, out, *extra, timeout_s=60)
    return seen, out, rc


def one_row_per_answer(seen: int, out: Path) -> list[dict[str, str]]:
    """The history, checked: one row per answer the server sent, each counted by Locust; a payment's only
    retries follow an answer too large to read (no answer: retried with the same key)."""
    log = (out / "locust" / "stdout.log").read_text(encoding="utf-8")
    assert "Traceback" not in log and "Error" not in log.split("Error report")[0], log
    rows = history(out)
    assert seen > 0 and len(rows) == seen, f"{seen} answers sent, {len(rows)} attempts recorded"
    assert locust_requests(out) == seen
    by_key: dict[str, list[dict[str, str]]] = {}
    for row in sorted(rows, key=lambda row: int(row["attempt"])):
        by_key.setdefault(row["key"], []).append(row)
    for attempts in by_key.values():
        assert [row["attempt"] for row in attempts] == [str(n) for n in range(1, len(attempts) + 1)]
        assert all(row["code"] == "RESPONSE_TOO_LARGE" for row in attempts[:-1]), attempts
    return rows


async def test_the_builtin_api_records_every_hostile_answer_once(tmp_path: Path) -> None:
    answers = [
        web.Response(status=201, body=DEEP, headers={"X-Replica": "r" * 60_000}, content_type="application/json"),
        web.Response(status=503, body=HUGE_WAIT, content_type="application/json"),
        web.Response(status=422, body=INFINITE_PLAN, content_type="application/json"),
        web.Response(status=201, body=b'{"pad": "' + b"x" * (2 << 20) + b'"}', content_type="application/json"),
        web.Response(status=400, body=MEGA_CODE, content_type="application/json"),
    ]
    seen, out, _ = await serve(answers, "/v1/repayments", tmp_path)
    rows = one_row_per_answer(seen, out)
    found = {(row["status"], row["outcome"], row["code"]) for row in rows}
    assert found == {
        ("201", "succeeded", "UNREADABLE_BODY"),  # by its status; the body could not be held
        ("503", "shed", "CHANNEL_BUSY"),  # its wish clamped: longer than the client waits, so no retry
        ("422", "declined", "DAILY_LIMIT_EXCEEDED"),  # a plan with an infinite amount is no plan
        ("0", "error", "RESPONSE_TOO_LARGE"),  # 2 MiB: past the default bound, read no further
        ("400", "error", "C" * 200),  # a 900 kB code is kept as its first 200 characters
    }
    assert {row["replica"] for row in rows if row["status"] == "201"} == {"r" * 200}


async def test_a_target_profile_records_every_hostile_answer_once(tmp_path: Path) -> None:
    profile = tmp_path / "hostile-target.toml"
    profile.write_text(PROFILE.format(), encoding="utf-8")
    answers = [
        web.Response(status=201, body=DEEP[:30_000] + DEEP[-30_000:], content_type="application/json"),  # < 64 KiB
        web.Response(status=503, body=b"busy", headers={"Retry-After": "9" * 400}),
        web.Response(status=201, body=b'{"ok": true, "pad": "' + b"x" * 100_000 + b'"}'),
    ]
    seen, out, _ = await serve(answers, "/pay", tmp_path, "--target", str(profile))
    rows = one_row_per_answer(seen, out)
    found = {(row["status"], row["outcome"], row["code"], row["repayment_id"]) for row in rows}
    assert found == {
        ("201", "error", "UNREADABLE_BODY", ""),  # a 2xx no rule matched: not retried
        ("503", "shed", "", ""),  # a 400-digit wait: longer than the client waits, not retried
        ("0", "error", "RESPONSE_TOO_LARGE", ""),  # 100 kB past the profile's 64 KiB
    }
