"""What a comparison of two runs presumes: runs that are like for like, and how much worse counts as a regression.

Two runs of different scenarios, scales, seeds, durations, replica counts or gateway configs differ by design, and
"no regression" between them says nothing: `unlike` names what differs, and `surge compare` refuses a verdict on
such runs unless forced. Plain data only (meta.json as a dict), so a command can refuse before the report stack
loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Tolerances:
    """How much worse the candidate may be before it regressed: goodput drop and p99 rise in percent, success-ratio
    drop in percentage points (each widened to the runs' own noise by `compare`)."""

    throughput_pct: float = 5.0
    p99_pct: float = 10.0
    success_points: float = 0.5


# What makes two runs comparable: the meta.json keys a regression verdict assumes equal (docs/report.md).
LIKE_FOR_LIKE = ("scenario", "scale", "seed", "duration_s", "replicas")
# Gateway config keys that name where a run kept its state, not how the gateway behaved.
_RUN_LOCAL = frozenset({"ledger.path", "clock.anchor_unix"})
_SHOWN = 4  # differences named in the one line; the rest are counted


def unlike(base: dict[str, Any], candidate: dict[str, Any]) -> list[str]:
    """What differs between two runs' meta.json that a comparison would silently absorb, as short phrases
    ("scale 0.25 vs 1", "gateway limits.global_tps 85 vs 340"); empty when the runs are like for like."""
    found = [
        f"{key} {_show(base.get(key))} vs {_show(candidate.get(key))}"
        for key in LIKE_FOR_LIKE
        if base.get(key) != candidate.get(key)
    ]
    base_gateway, cand_gateway = base.get("gateway_config"), candidate.get("gateway_config")
    if (base_gateway is None) != (cand_gateway is None):
        found.append(f"gateway {_origin(base_gateway)} vs {_origin(cand_gateway)}")
    elif base_gateway is not None and cand_gateway is not None:
        flat_base, flat_cand = _flatten(base_gateway), _flatten(cand_gateway)
        for key in sorted(set(flat_base) | set(flat_cand)):
            if key not in _RUN_LOCAL and flat_base.get(key) != flat_cand.get(key):
                found.append(f"gateway {key} {_show(flat_base.get(key))} vs {_show(flat_cand.get(key))}")
    return found


def unlike_line(differences: list[str]) -> str:
    """The differences as one line for the console."""
    shown = "; ".join(differences[:_SHOWN])
    more = f"; and {len(differences) - _SHOWN} more" if len(differences) > _SHOWN else ""
    return f"the runs are not like for like ({shown}{more})"


def _origin(gateway: object) -> str:
    return "external" if gateway is None else "embedded"


def _show(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return "—" if value is None else str(value)


def _flatten(data: object, prefix: str = "") -> dict[str, object]:
    """Nested config → {"limits.global_tps": 85.0, "channels.ICBC.concurrency": 1, ...}; channels by code."""
    if isinstance(data, dict):
        items: list[tuple[str, object]] = list(data.items())
    elif isinstance(data, list):
        items = [
            (str(item.get("code", index)) if isinstance(item, dict) else str(index), item)
            for index, item in enumerate(data)
        ]
    else:
        return {prefix: data}
    flat: dict[str, object] = {}
    for key, value in items:
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat
