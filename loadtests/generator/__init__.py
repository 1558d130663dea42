"""The load generator: runs ONLY inside the Locust (gevent) process.

Arrivals, the paying clients, their policies, the recorder of per-second windows and the request history.
Nothing in `orchestration` or `cli` imports it: it lives in another process (import-linter contract).
"""
