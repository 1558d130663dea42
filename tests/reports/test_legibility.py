"""The report's first screen answers the question, and every chart can be read: the headline
strip, legends, marker labels that do not overlap, 1-2-5 log ticks, the traffic share cut where the load stops,
context rows of a comparison not coloured as passes."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from reports.analysis import analyse
from reports.compare import compare
from reports.finalize import finalize_run
from reports.frames import load_run
from reports.render.charts import build_charts
from reports.render.charts.markers import LABEL_CHAR_PX, PLOT_WIDTH_PX, label_rows
from reports.render.charts.plot import log_ticks
from reports.render.page import render_comparison
from reports.render.shared import percent
from runfolder.figures import read_figures
from tests.reports.runs import finished

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "run_recorded"


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    target = tmp_path / "recorded"
    shutil.copytree(RECORDED, target)
    return target


def charts_of(run_dir: Path) -> dict[str, dict[str, Any]]:
    return {chart["id"]: chart for chart in build_charts(analyse(load_run(run_dir)))}


def test_labels_a_second_apart_take_different_rows_and_distant_ones_share() -> None:
    # double11: spike_start at 30 s, the kill at 31 s; a label 3 s wide; the spike's end far later
    assert label_rows([30.0, 31.0, 45.0], [3.0, 3.0, 3.0]) == [0, 1, 0]
    assert label_rows([10.0, 10.0, 10.0], [1.0, 1.0, 1.0]) == [0, 1, 2]


def test_no_two_marker_labels_overlap_on_the_recorded_double11(recorded: Path) -> None:
    chart = charts_of(recorded)["throughput"]
    span = len(chart["data"][0]["y"])
    labels = [
        (a["y"], a["x"], a["x"] + len(a["text"]) * LABEL_CHAR_PX / PLOT_WIDTH_PX * span)
        for a in chart["layout"]["annotations"]
    ]
    assert {"spike to 50/s", "kill r1"} <= {a["text"] for a in chart["layout"]["annotations"]}
    for y, start, end in labels:
        for other_y, other_start, other_end in labels:
            if (y, start) != (other_y, other_start) and y == other_y:
                assert end <= other_start or other_end <= start, f"labels overlap at {start:.1f}/{other_start:.1f}"
    assert len({y for y, _, _ in labels}) > 1


def test_every_chart_keeps_its_legend_and_its_title_clears_the_mode_bar(recorded: Path) -> None:
    for chart in charts_of(recorded).values():
        assert chart["layout"]["showlegend"] is True, chart["id"]
        assert chart["layout"]["title"]["xanchor"] == "left" and chart["layout"]["margin"]["t"] >= 60


def test_log_axes_are_labelled_at_1_2_5(recorded: Path) -> None:
    assert log_ticks([3.0, 700.0])["tickvals"] == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
    yaxis = charts_of(recorded)["latency_intended"]["layout"]["yaxis"]
    assert yaxis["type"] == "log" and {10, 20, 50, 100} <= set(yaxis["tickvals"])


def test_the_traffic_share_stops_where_the_load_stops(recorded: Path) -> None:
    frames = load_run(recorded)
    served = frames.replicas.sum(axis=1)
    last = int(served[served > 0].index.max())
    assert last + 1 < len(served), "the fixture has silent seconds after the load"
    chart = charts_of(recorded)["replicas"]
    assert all(len(trace["y"]) == last + 1 for trace in chart["data"])


def headline_of(page: str) -> dict[str, str]:
    section = page[page.index('id="headline"') : page.index("</section>", page.index('id="headline"'))]
    return dict(re.findall(r'data-key="(\w+)"><dt>[^<]*</dt><dd>([^<]*)</dd>', section))


def test_the_headline_strip_answers_the_question_before_the_verdicts(recorded: Path) -> None:
    summary = finalize_run(recorded)
    page = (recorded / "report.html").read_text(encoding="utf-8")
    assert page.index('id="headline"') < page.index('id="verdict"')
    figures = headline_of(page)
    windows = [json.loads(line) for line in (recorded / "windows.jsonl").read_text().splitlines()]
    assert figures["offered"] == f"{max(w['offered'] for w in windows):,}/s"
    assert figures["p99"] == f"{summary['latency_ms']['intended']['p99_ms']:,.0f} ms"
    worst = max(entry["recover_s"] for entry in summary["recovery"])
    assert figures["recovery"] == f"{worst:.1f} s"
    assert figures["invariants"] == "all 4 held"
    assert set(figures) == {"offered", "goodput", "rejected", "p99", "recovery", "invariants"}


def test_the_headline_never_says_held_for_unchecked_invariants(recorded: Path) -> None:
    (recorded / "ledger.sqlite").unlink()
    finalize_run(recorded)
    figures = headline_of((recorded / "report.html").read_text(encoding="utf-8"))
    assert figures["invariants"] == "unknown (not checked)"


def test_context_rows_of_a_comparison_are_not_coloured_as_passes(recorded: Path) -> None:
    figures = read_figures(finished(recorded))
    page = render_comparison(compare(figures, figures))
    rows = re.findall(r'<tr class="(\w+)">\s*<td>([^<]*)<span', page)
    assert ("context", "worst recovery ") in rows
    assert all(kind != "pass" for kind, name in rows if name.strip() == "worst recovery")


def test_charts_show_a_loading_state_until_drawn(recorded: Path) -> None:
    finalize_run(recorded)
    page = (recorded / "report.html").read_text(encoding="utf-8")
    assert '.chart:not(.drawn)::before { content: "loading chart…"' in page
    assert 'classList.add("drawn")' in page


def test_chart_markers_say_what_happened_in_words_not_event_kinds(recorded: Path) -> None:
    texts = {a["text"] for a in charts_of(recorded)["throughput"]["layout"]["annotations"]}
    assert {"kill r1", "r1 down", "failover r1→r2", "spike over", "fault cleared r1"} <= texts, texts
    assert not any("_" in text for text in texts), texts  # no raw kind such as fault_injected or replica_down


def test_the_throughput_chart_tells_arrivals_from_attempts(recorded: Path) -> None:
    chart = charts_of(recorded)["throughput"]
    names = [trace["name"] for trace in chart["data"]]
    assert names[:2] == ["arrivals offered", "arrivals sent"] and all(n.startswith("attempts ") for n in names[2:])
    assert all(trace["line"]["dash"] == "dot" for trace in chart["data"][:2])
    assert chart["layout"]["title"]["text"] != "Attempts per second"


def test_no_percentile_is_drawn_above_the_max_and_the_max_is_dashed(recorded: Path) -> None:
    for kind in ("intended", "service"):
        traces = {trace["name"]: trace for trace in charts_of(recorded)[f"latency_{kind}"]["data"]}
        highest = traces["max"]["y"]
        assert traces["max"]["line"]["dash"] == "dash" and list(traces)[-1] == "max"
        for name in ("p50", "p95", "p99"):
            assert all(v is None or m is None or v <= m for v, m in zip(traces[name]["y"], highest, strict=True))


@pytest.mark.parametrize(
    ("ratio", "text"),
    [
        (1 / 30000, "<0.1 %"),
        (0.0, "0.0 %"),
        (0.0333, "3.3 %"),
        (29999 / 30000, ">99.9 %"),
        (1.0, "100.0 %"),
        (None, "—"),
    ],
)
def test_a_share_of_one_in_many_never_reads_as_zero(ratio: float | None, text: str) -> None:
    assert percent(ratio) == text
