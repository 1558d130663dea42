"""THE run-folder format: what surge's processes write into a run folder and what the reports read back.

The generator (inside Locust), the orchestration (surge's own process) and `reports` all import it, and it imports
none of them — nor mock_gateway — so the format belongs to no one side. Kept light (standard library and pydantic
only; no pandas, numpy or hdrh) so a gevent-patched Locust worker imports it at no cost. `layout` names the
files and writes and reads their JSON; `outcomes`, `history`, `events`, `steps`, `clock`, `models` and `stop`
each own one part of the format (docs/internals.md §5, §6).
"""
