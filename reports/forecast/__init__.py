"""The forecast's arithmetic and its two outputs, forecast.json and forecast.html (docs/forecast.md).

Inputs are plain numbers and frames that `loadtests/orchestration/forecast_evidence.py` read from the evidence
(a trace or a calendar, run folders, a gateway config), each with its source (`inputs`). The model, in the order
the page shows it: demand per hour against capacity at N and N−1 (`demand`), refusals by the money caps
(`refusals`), the banks' quota pressure and calls in flight (`banks`), and the levers that close the gap
(`levers`); `document` is forecast.json, `page` forecast.html.
"""
