"""What makes two runs like for like (reports/comparable.py), on plain meta.json dicts."""

from __future__ import annotations

from typing import Any

from reports.comparable import unlike, unlike_line


def _meta(**changes: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "scenario": "baseline",
        "scale": 1.0,
        "seed": 7,
        "duration_s": 60,
        "replicas": 3,
        "started_unix": 1_700_000_000.0,
        "gateway_config": {
            "limits": {"global_tps": 340.0},
            "ledger": {"path": "/tmp/a/ledger.sqlite"},
            "clock": {"anchor_unix": 1.0},
            "channels": [{"code": "ICBC", "concurrency": 4}, {"code": "CMB", "concurrency": 2}],
        },
    }
    meta.update(changes)
    return meta


def test_two_runs_of_one_setup_started_apart_are_like_for_like() -> None:
    later = _meta(started_unix=1_700_009_999.0)
    later["gateway_config"] = {**later["gateway_config"], "ledger": {"path": "/tmp/b/ledger.sqlite"}}
    later["gateway_config"]["clock"] = {"anchor_unix": 2.0}
    assert unlike(_meta(), later) == []


def test_each_difference_is_named_with_both_values() -> None:
    assert unlike(_meta(), _meta(scale=0.25, seed=8)) == ["scale 1 vs 0.25", "seed 7 vs 8"]


def test_a_gateway_key_is_named_by_its_path_and_a_channel_by_its_code() -> None:
    changed = _meta()
    changed["gateway_config"] = {
        **changed["gateway_config"],
        "limits": {"global_tps": 85.0},
        "channels": [{"code": "CMB", "concurrency": 2}, {"code": "ICBC", "concurrency": 1}],
    }
    assert unlike(_meta(), changed) == [
        "gateway channels.ICBC.concurrency 4 vs 1",
        "gateway limits.global_tps 340 vs 85",
    ]


def test_an_external_gateway_is_not_like_the_embedded_one() -> None:
    assert unlike(_meta(), _meta(gateway_config=None)) == ["gateway embedded vs external"]


def test_the_line_names_four_differences_and_counts_the_rest() -> None:
    differences = [f"d{i}" for i in range(6)]
    assert unlike_line(differences) == "the runs are not like for like (d0; d1; d2; d3; and 2 more)"
