"""What a run measured: pure functions over the frames of `reports.frames` (no I/O, no globals).

Counters, latency, incidents and recovery, caps: each a module with one job, read by the analysis and the
renderers alike, so a figure is computed in one place and only formatted elsewhere.
"""
