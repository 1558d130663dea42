"""Start N clusters on fresh ledgers, one after another, and print how many failed to start.

    python scripts/cluster_starts.py [--clusters 100] [--replicas 3]

A cluster start fails when the router or any replica exits before every replica answered its first health
check; before the ledger was created once by the cluster, a few percent of starts failed with "database is
locked". Not a timed test: it takes about a second per cluster.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mock_gateway.cluster.handle import ClusterProcess  # noqa: E402 - after the path fix for a plain checkout
from mock_gateway.errors import ClusterStartError  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=3)
    args = parser.parse_args()
    failures: list[str] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="surge-starts-") as tmp:
        for i in range(args.clusters):
            state = Path(tmp) / f"cluster-{i}"
            try:
                with ClusterProcess.start(None, args.replicas, state, timeout_s=30):
                    pass
            except ClusterStartError as exc:
                failures.append(f"cluster {i}: {exc}")
                print(failures[-1], flush=True)
    elapsed = time.monotonic() - started
    print(
        f"{args.clusters} cluster starts ({args.replicas} replicas each, fresh ledgers) in {elapsed:.0f} s: "
        f"{len(failures)} failed"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
