"""User-facing text for bad input, shared by every package: it imports nothing of ours, so the gateway, the
run-folder format, the harness and the reports may all speak in its one shape."""
