"""Faults, spikes and the router's reactions drawn on every time chart as vertical lines with labels.

Labels are laid out in rows (`label_rows`) so that two events a second apart are both readable, and every label is
HTML-escaped before it reaches Plotly, which would otherwise interpret tags in a replica name or a fault detail.
"""

from __future__ import annotations

import html
from typing import Any

from reports.analysis import Analysis
from runfolder.events import FAULT_CLEARED, FAULT_INJECTED

MARKED_EVENTS = {
    ("chaos", FAULT_INJECTED): "#d62728",
    ("chaos", FAULT_CLEARED): "#2ca02c",
    ("cluster", "fault_ended"): "#2ca02c",
    ("scenario", "spike_start"): "#ff7f0e",
    ("scenario", "spike_end"): "#bcbd22",
    ("cluster", "replica_down"): "#9467bd",
    ("cluster", "replica_up"): "#17becf",
    ("cluster", "failover"): "#8c564b",
}
MARKER_LABELS = {  # an event as a reader says it: "kill r1", not "fault_injected r1"
    ("chaos", FAULT_INJECTED): "{detail} {target}",
    ("chaos", FAULT_CLEARED): "fault cleared {target}",
    ("cluster", "fault_ended"): "fault ended {target}",
    ("scenario", "spike_start"): "spike {detail}",
    ("scenario", "spike_end"): "spike over",
    ("cluster", "replica_down"): "{target} down",
    ("cluster", "replica_up"): "{target} up",
    ("cluster", "failover"): "failover {detail}",
}
MAX_MARKERS = 60
LABEL_CHAR_PX = 6.0  # 9 px font: the width of a label, for laying labels out so that none covers another
PLOT_WIDTH_PX = 520.0  # the narrowest a chart is drawn (two charts side by side)
LABEL_ROW = 0.075  # paper height of one row of marker labels


def markers(analysis: Analysis) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Vertical lines and labels for faults, spikes and the router's reactions, from events.csv.

    One marker per (kind, target, time) — the cluster logs `fault_ended` once per replica of an `all` fault —
    and labels laid out in rows (`label_rows`) so that two events a second apart (double11's spike and kill)
    are both readable.
    """
    events = analysis.frames.events
    span = max(len(analysis.frames.windows), 1)
    events = events[(events["t_s"] >= 0) & (events["t_s"] <= span)]
    seen: set[tuple[str, str, float]] = set()
    marked: list[tuple[float, str, str]] = []
    targets = events["target"].fillna("").astype(str)
    details = events["detail"].fillna("").astype(str)
    for t_s, source, kind, target, detail in zip(
        events["t_s"].astype(float),
        events["source"].astype(str),
        events["kind"].astype(str),
        targets,
        details,
        strict=True,
    ):
        color = MARKED_EVENTS.get((source, kind))
        key = (kind, target, round(t_s, 1))
        if color is None or key in seen or len(marked) >= MAX_MARKERS:
            continue
        seen.add(key)
        label = MARKER_LABELS[source, kind].format(target=target, detail=detail.replace("->", "→") or kind)
        marked.append((t_s, " ".join(label.split()), color))
    widths = [len(label) * LABEL_CHAR_PX / PLOT_WIDTH_PX * span for _, label, _ in marked]
    rows = label_rows([t for t, _, _ in marked], widths)
    shapes = [
        {
            "type": "line",
            "xref": "x",
            "yref": "paper",
            "x0": t,
            "x1": t,
            "y0": 0,
            "y1": 1,
            "line": {"color": color, "dash": "dot", "width": 1},
        }
        for t, _, color in marked
    ]
    annotations = [
        {
            "x": t,
            "xref": "x",
            "y": 1 - row * LABEL_ROW,
            "yref": "paper",
            "text": html.escape(label),
            "showarrow": False,
            "xanchor": "left",
            "yanchor": "top",
            "bgcolor": "rgba(255,255,255,0.8)",
            "font": {"size": 9, "color": color},
        }
        for (t, label, color), row in zip(marked, rows, strict=True)
    ]
    return shapes, annotations


def label_rows(starts: list[float], widths: list[float]) -> list[int]:
    """A row for each label (drawn from `start`, `width` long, in x units) so that no two in one row overlap:
    each label takes the lowest row whose last label ends before it starts (greedy interval colouring)."""
    ends: list[float] = []  # per row, where its last label ends
    rows = [0] * len(starts)
    for index in sorted(range(len(starts)), key=lambda i: starts[i]):
        start, width = starts[index], widths[index]
        row = next((number for number, end in enumerate(ends) if end <= start), len(ends))
        if row == len(ends):
            ends.append(start + width)
        else:
            ends[row] = start + width
        rows[index] = row
    return rows
