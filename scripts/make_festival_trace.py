"""Write the synthetic festival day shipped as examples/traces/festival-day.csv.gz (docs/trace.md).

One repayment day of a 618-style festival, made up from the shapes such days have, not from anyone's data: a
spike at midnight when the festival opens, a lunch peak, an evening peak that is the day's busiest hour, a
quiet night; lognormal bills with a tail above the banks' card limits; twenty thousand borrowers with one to
three cards each on five banks. Seeded: the same command always writes the same file, so the example in the
docs and the tests keep their figures.

    python scripts/make_festival_trace.py [--out examples/traces/festival-day.csv.gz] [--payments 40000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

DAY = "2025-06-18"  # the festival day, Asia/Shanghai
SEED = 618
BANKS = ("ICBC", "CCB", "ABC", "BOC", "CMB")
BANK_SHARES = (0.30, 0.25, 0.20, 0.15, 0.10)
BILL_MEDIAN_FEN = 150_000
BILL_P99_FEN = 6_000_000  # above the default card limits of every bank: the daily caps refuse the tail
Z_99 = 2.3263478740408408

# Relative intensity per hour of the day: a quiet night, a morning climb, lunch, the evening peak.
HOUR_WEIGHTS = (
    2.0, 1.6, 1.0, 0.6, 0.4, 0.4, 0.8, 1.6, 2.6, 3.0, 3.2, 3.6,
    5.0, 4.4, 3.2, 3.0, 3.0, 3.2, 3.8, 5.0, 6.4, 7.0, 6.0, 4.2,
)  # fmt: skip
MIDNIGHT_SHARE = 0.04  # of the day's payments, in the first ten minutes: the festival opens
MIDNIGHT_S = 600


def festival_day(payments: int, seed: int = SEED) -> pd.DataFrame:
    """The day's rows, sorted by time: ts (ISO 8601, +08:00), amount_fen, user_id, card_id, channel."""
    rng = np.random.default_rng(seed)
    spike = int(payments * MIDNIGHT_SHARE)
    weights = np.asarray(HOUR_WEIGHTS) / sum(HOUR_WEIGHTS)
    per_hour = rng.multinomial(payments - spike, weights)
    seconds = np.concatenate(
        [hour * 3600 + rng.uniform(0, 3600, count) for hour, count in enumerate(per_hour)]
        + [MIDNIGHT_S * rng.beta(1.0, 3.0, spike)]  # decays from the first second
    )
    seconds.sort()
    users = max(1, payments // 2)
    user = rng.integers(0, users, len(seconds))  # about two payments per borrower: several bills, several cards
    cards = 1 + (user * 2654435761 % 3)  # one to three cards per user, fixed per user
    card = rng.integers(0, 3, len(seconds)) % cards
    channel_of_card = rng.choice(len(BANKS), size=(users, 3), p=BANK_SHARES)
    sigma = np.log(BILL_P99_FEN / BILL_MEDIAN_FEN) / Z_99
    amount = np.maximum(100, np.round(rng.lognormal(np.log(BILL_MEDIAN_FEN), sigma, len(seconds)))).astype(np.int64)
    start = pd.Timestamp(f"{DAY}T00:00:00+08:00")
    stamps = start + pd.to_timedelta(np.floor(seconds * 1000) / 1000, unit="s")
    return pd.DataFrame(
        {
            "ts": stamps.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "+08:00",
            "amount_fen": amount,
            "user_id": [f"u{u:06d}" for u in user],
            "card_id": [f"u{u:06d}-c{c + 1}" for u, c in zip(user, card, strict=True)],
            "channel": [BANKS[channel_of_card[u, c]] for u, c in zip(user, card, strict=True)],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/traces/festival-day.csv.gz"))
    parser.add_argument("--payments", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame = festival_day(args.payments, args.seed)
    frame.to_csv(args.out, index=False, compression={"method": "gzip", "mtime": 0})  # byte-identical reruns
    print(f"{args.out}: {len(frame)} payments, {args.out.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
