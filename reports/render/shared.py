"""What every HTML page of surge shares: the Jinja environment, plotly.js inlined, numbers and JSON as text.

A page is one self-contained file that opens offline from a CI artifact. plotly.js is inlined once, gzip-compressed
and base64-encoded (about 1.9 MB instead of 4.8 MB) and unpacked by the browser's built-in `DecompressionStream`;
that is what keeps an hour-long soak with per-second series under the 5 MB budget. Chart data is plain JSON in a
`<script type="application/json">` block with `<`, `>` and `&` escaped (`script_json`); every string from the run
folder is HTML-escaped, by Jinja's autoescape in the page and explicitly before it reaches Plotly. report.html,
study.html and forecast.html all render through `environment()`, so a filter means the same on each.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from plotly.offline import get_plotlyjs

from reports.compare import fmt
from reports.violations import yuan
from runfolder.verdict import Headline as Words
from runfolder.verdict import Kind

GROUPS = {Kind.SLO: "SLO", Kind.INVARIANT: "invariant", Kind.RUN: "run"}  # a verdict's kind as the page names it


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("reports", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["yuan"] = yuan
    env.filters["num"] = num
    env.filters["fmt"] = fmt
    env.filters["pct"] = percent
    env.globals["words"] = Words
    env.globals["groups"] = GROUPS
    return env


@cache
def plotly_bundle() -> str:
    """plotly.js, gzip + base64: computed once per process, it is the same for every report."""
    return base64.b64encode(gzip.compress(get_plotlyjs().encode("utf-8"), compresslevel=6, mtime=0)).decode("ascii")


def percent(ratio: float | None, digits: int = 1) -> str:
    """A share as percent with `digits` decimals; a share that is not zero never reads as zero (one 503 in ten
    thousand attempts is "<0.1 %", not "0.0 %"), nor one short of everything as all of it (">99.9 %")."""
    if ratio is None or math.isnan(ratio):
        return "—"
    step = 10.0**-digits
    shown = round(ratio * 100, digits)
    if ratio > 0 and shown < step:
        return f"<{step:.{digits}f} %"
    if ratio < 1 and shown >= 100:
        return f">{100 - step:.{digits}f} %"
    return f"{shown:,.{digits}f} %"


def num(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def script_json(data: Any) -> str:
    """JSON safe inside a <script> element: no `</script>`, no `<!--`, whatever the strings hold."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
