"""Plain `locust -f loadtests/locustfile.py` runs, headless and in the web UI, end with surge's verdict.

Locust runs in a subprocess against a real gateway replica (procs.py); an extra locustfile loaded next to
surge's plays the external Locust listener (and locust-plugins' `--ips`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadtests.generator.policy import request_name
from runfolder.outcomes import OUTCOME_CLASSES as OUTCOMES
from tests.support.procs import LOCUSTFILE, ROOT, free_port, replica
from tests.support.runs import history, windows

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

LISTENER = Path(__file__).resolve().parent / "listener_locustfile.py"
SCENARIO = """
name = "plain"
duration_s = 3
seed = 5
[population]
users = 300
bill_fen = {{ median = 100000, p99 = 2000000 }}
[[rate]]
at_s = 0
per_s = 20
[client]
timeout_s = 1.0
[arrivals]
pool = 10
[slo]
max_p99_ms = {p99}
"""


async def start_locust(*args: str, env: dict[str, str] | None = None, log: Path) -> asyncio.subprocess.Process:
    with log.open("wb") as handle:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "locust", *args, stdout=handle, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True, cwd=ROOT, env={**os.environ, **(env or {})},
        )  # fmt: skip


async def wait(process: asyncio.subprocess.Process, timeout_s: float) -> int:
    try:
        return await asyncio.wait_for(process.wait(), timeout_s)
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


def scenario_file(tmp_path: Path, p99: float) -> Path:
    path = tmp_path / "plain.toml"
    path.write_text(SCENARIO.format(p99=p99), encoding="utf-8")
    return path


async def test_headless_run_writes_the_whole_folder_and_exits_with_the_verdict(tmp_path: Path) -> None:
    out, requests, log = tmp_path / "run", tmp_path / "requests.jsonl", tmp_path / "locust.log"
    scenario = scenario_file(tmp_path, p99=0.01)  # no gateway answers in 10 µs: the p99 SLO fails, exit 1
    with replica(tmp_path) as url:
        process = await start_locust(
            "-f", f"{LOCUSTFILE},{LISTENER}", "--headless", "--host", url, "--scenario", str(scenario),
            "--surge-out", str(out), "--only-summary", env={"SURGE_TEST_REQUESTS": str(requests)}, log=log,
        )  # fmt: skip
        rc = await wait(process, 90)
    output = log.read_text(encoding="utf-8", errors="replace")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert rc == summary["exit_code"] == 1, output[-3000:]
    for name in ("timeseries.csv", "junit.xml", "report.html", "locust/report.html", "locust/locust_stats.csv"):
        assert (out / name).is_file(), name
    assert "surge: verdict FAIL (exit code 1)" in output
    assert f"surge: run folder {out.resolve()}" in output
    assert "Traceback" not in output

    seen = [json.loads(line) for line in requests.read_text(encoding="utf-8").splitlines()]
    rows = history(out)
    assert len(seen) == len(rows) > 0
    for request in seen:
        context = request["context"]
        assert context["outcome"] in OUTCOMES and isinstance(context["intended"], float)
        assert request["name"] == request_name(context["attempt"], context["part"])
    assert sorted(r["context"]["key"] for r in seen) == sorted(row["key"] for row in rows)


async def test_locust_plugins_ips_is_refused_with_one_line(tmp_path: Path) -> None:
    log = tmp_path / "locust.log"
    process = await start_locust(
        "-f", f"{LOCUSTFILE},{LISTENER}", "--headless", "--host", "http://127.0.0.1:9", "--ips", "5",
        "--surge-out", str(tmp_path / "run"), log=log,
    )  # fmt: skip
    rc = await wait(process, 60)
    lines = [line for line in log.read_text(encoding="utf-8").splitlines() if line.startswith("surge:")]
    assert rc == 2
    assert len(lines) == 1 and "--ips" in lines[0], lines
    assert not (tmp_path / "run").exists()


async def _logs(session: aiohttp.ClientSession, web: str) -> list[str]:
    async with session.get(f"{web}/logs") as response:
        return list((await response.json())["master"])


async def test_web_ui_rejects_a_bad_scenario_then_writes_the_verdict_and_serves_metrics(tmp_path: Path) -> None:
    out, log = tmp_path / "run", tmp_path / "locust.log"
    scenario = scenario_file(tmp_path, p99=5000)
    web_port, metrics_port = free_port(), free_port()
    web = f"http://127.0.0.1:{web_port}"
    with replica(tmp_path) as url:
        process = await start_locust(
            "-f", str(LOCUSTFILE), "--host", url, "--scenario", str(scenario), "--surge-out", str(out),
            "--web-host", "127.0.0.1", "--web-port", str(web_port), "--metrics-port", str(metrics_port), log=log,
        )  # fmt: skip
        try:
            async with aiohttp.ClientSession() as session:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(f"{web}/stats/requests") as response:
                            if response.status == 200:
                                break
                    await asyncio.sleep(0.3)
                form = {"user_count": "1", "spawn_rate": "1", "host": url, "surge_duration": "0"}
                async with session.post(f"{web}/swarm", data={**form, "scenario": "no-such", "scale": "1"}):
                    pass
                errors: list[str] = []
                while not errors and time.monotonic() < deadline:
                    await asyncio.sleep(0.3)
                    errors = [line for line in await _logs(session, web) if "/ERROR/" in line]
                assert len(errors) == 1 and "scenario 'no-such'" in errors[0], errors
                async with session.get(f"{web}/stats/requests") as response:
                    assert (await response.json())["state"] in ("ready", "stopped")  # never started

                async with session.post(f"{web}/swarm", data={**form, "scenario": str(scenario), "scale": "1"}):
                    pass
                # the test's 3 s, the drain and the analysis (`python -m reports`, while the web UI keeps serving):
                # well under 60 s; the folder's line is logged last, once summary.json has been read back
                logs: list[str] = []
                for _ in range(120):
                    logs = await _logs(session, web)
                    if any("surge: run folder" in line for line in logs):
                        break
                    await asyncio.sleep(0.5)
                async with session.get(f"http://127.0.0.1:{metrics_port}/metrics") as response:
                    scraped = await response.text()
            process.send_signal(signal.SIGTERM)
            rc = await wait(process, 30)
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    # No ledger of a gateway surge did not start: the invariants are unknown, so the run is "not proven" (3).
    assert rc == summary["exit_code"] == 3
    assert not [v for v in summary["slos"] if v["passed"] is False]
    assert (out / "report.html").is_file() and (out / "locust" / "report.html").is_file()
    assert any(f"surge: run folder {out.resolve()}" in line for line in logs), logs[-10:]
    assert not any("Traceback" in line for line in logs)

    metrics = {
        (sample.name, sample.labels.get("outcome", ""), sample.labels.get("le", "")): sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
    }
    lines = windows(out)
    for field in ("offered", "sent", "late", "dropped"):
        assert metrics[(f"surge_{field}_total", "", "")] == sum(w[field] for w in lines), field
    assert sum(w["offered"] for w in lines) > 0
    for outcome in OUTCOMES:
        count = sum(w["classes"].get(outcome, {}).get("count", 0) for w in lines)
        assert metrics[("surge_attempts_total", outcome, "")] == count, outcome
        if count:
            assert metrics[("surge_latency_seconds_count", outcome, "")] == count
            assert metrics[("surge_latency_seconds_bucket", outcome, "+Inf")] == count


@pytest.mark.parametrize(("asked", "bound"), [((), "127.0.0.1"), (("--web-host", "127.0.0.2"), "127.0.0.2")])
async def test_the_web_ui_listens_on_loopback_unless_asked_otherwise(
    tmp_path: Path, asked: tuple[str, ...], bound: str
) -> None:
    """Locust's own default is every interface: anyone on the network could start a test carrying the
    profile's secrets. surge's locustfile makes it 127.0.0.1 (run from outside the repository, so pyproject's
    [tool.locust] is not what decides); a --web-host the user gives still wins."""
    web_port = free_port()
    log = tmp_path / "locust.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("LOCUST_")}
    with log.open("wb") as handle:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", "http://127.0.0.1:9",
            "--surge-out", str(tmp_path / "run"), "--web-port", str(web_port), *asked,
            stdout=handle, stderr=asyncio.subprocess.STDOUT, start_new_session=True, cwd=tmp_path, env=env,
        )  # fmt: skip
    try:
        listening: set[str] = set()
        deadline = time.monotonic() + 60
        while not listening and time.monotonic() < deadline and process.returncode is None:
            await asyncio.sleep(0.3)
            with contextlib.suppress(psutil.Error):
                connections = psutil.Process(process.pid).net_connections(kind="tcp")
                listening = {
                    c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN and c.laddr.port == web_port
                }
        assert listening == {bound}, log.read_text(encoding="utf-8")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


CLUSTER_SCENARIO = """
name = "needs-the-cluster"
duration_s = 4
seed = 5
[population]
users = 300
[[rate]]
at_s = 0
per_s = 4
[[rate]]
at_s = 2
per_s = 40
[[rate]]
at_s = 4
per_s = 40
[[faults]]
at_s = 3
action = "kill"
target = "primary"
[arrivals]
pool = 20
[gateway.limits]
global_tps = 10
"""


async def test_plain_locust_warns_of_what_needs_the_cluster_and_judges_no_spike_against_other_caps(
    tmp_path: Path,
) -> None:
    """double11 under plain Locust against `surge gateway`: its [gateway] table and kill were silently ignored,
    0 × 429, and the report still said "recovery_s[spike] 0 s pass"."""
    out, log = tmp_path / "run", tmp_path / "locust.log"
    scenario = tmp_path / "cluster.toml"
    scenario.write_text(CLUSTER_SCENARIO, encoding="utf-8")
    with replica(tmp_path) as url:
        process = await start_locust(
            "-f", str(LOCUSTFILE), "--headless", "--host", url, "--scenario", str(scenario),
            "--surge-out", str(out), "--only-summary", log=log,
        )  # fmt: skip
        await wait(process, 90)
    output = log.read_text(encoding="utf-8", errors="replace")
    assert "the scenario's [gateway] table (limits) configures the embedded cluster and is ignored by plain" in output
    assert "1 fault(s) (kill) need the embedded cluster and are not played by plain Locust" in output
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    recovery = {entry["event"]: entry for entry in summary["recovery"]}
    assert recovery["spike"]["played"] is False and "caps (limits) were not applied" in recovery["spike"]["not_played"]
    spike_verdicts = [v for v in summary["slos"] if v["name"].startswith("recovery_s[spike")]
    assert spike_verdicts and all(v["verdict"] == "unknown" for v in spike_verdicts), spike_verdicts
    assert json.loads((out / "meta.json").read_text(encoding="utf-8"))["gateway_ignored"] == ["limits"]
