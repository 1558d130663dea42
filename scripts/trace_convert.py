"""Write a trace (docs/trace.md) from what a team already has: an access log, or a surge run folder.

    python scripts/trace_convert.py access-log access.log --out trace.csv.gz [--path /v1/repayments] [--key-field]
    python scripts/trace_convert.py run runs/2026-06-18T... --out trace.csv.gz

Access logs: nginx's default "combined" format (Apache's too; milliseconds in the time as HAProxy writes
them), read with one regular expression — a single documented format (docs/trace.md) does not justify a
log-parsing dependency. Lines that are not `POST` to `--path` are skipped and counted; with `--key-field` the last
quoted field is the idempotency key and a key seen again is a retry, dropped.

A surge run folder: the first attempt of each payment (history/*.csv, attempt 1, part 0) at its intended time,
with its amount, user, card and channel.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd

SHANGHAI = ZoneInfo("Asia/Shanghai")
COMBINED = re.compile(
    r'^\S+ \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>\S+)[^"]*" (?P<status>\d{3}) \S+(?P<rest>.*)$'
)
QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


class ConvertError(Exception):
    """A file that cannot be converted; one line naming it."""


def parse_time(text: str) -> datetime:
    """`18/Jun/2025:21:00:01 +0800` or `18/Jun/2025:21:00:01.123 +0800`."""
    for layout in ("%d/%b/%Y:%H:%M:%S.%f %z", "%d/%b/%Y:%H:%M:%S %z"):
        try:
            return datetime.strptime(text, layout)
        except ValueError:
            continue
    raise ValueError(f"not a $time_local: {text!r}")


def from_access_log(lines: Iterable[str], path_prefix: str, key_field: bool) -> tuple[pd.DataFrame, int, int]:
    """(trace rows, lines skipped, retries dropped) of the repayment POSTs of a combined-format log."""
    stamps: list[datetime] = []
    seen: set[str] = set()
    skipped = retries = 0
    for line in lines:
        match = COMBINED.match(line.rstrip("\n"))
        if match is None or match["method"] != "POST" or not match["path"].split("?")[0].startswith(path_prefix):
            skipped += 1
            continue
        if key_field:
            quoted = QUOTED.findall(match["rest"])
            key = quoted[-1] if quoted else ""
            if key and key != "-":
                if key in seen:
                    retries += 1
                    continue
                seen.add(key)
        try:
            stamps.append(parse_time(match["time"]))
        except ValueError:
            skipped += 1
    stamps.sort()
    frame = pd.DataFrame({"ts": [stamp.isoformat(timespec="milliseconds") for stamp in stamps]})
    return frame, skipped, retries


def from_run(run_dir: Path) -> pd.DataFrame:
    """The payments of a surge run (their first attempts) as trace rows, at their intended times."""
    files = sorted((run_dir / "history").glob("*.csv"))
    if not files:
        raise ConvertError(f"{run_dir}: no history/*.csv (is it a surge run folder?)")
    columns = ["intended", "attempt", "part", "amount_fen", "user_id", "card_id", "channel"]
    history = pd.concat([pd.read_csv(f, usecols=columns, dtype={"user_id": str, "card_id": str}) for f in files])
    first = history[(history["attempt"] == 1) & (history["part"] == 0)].sort_values("intended", kind="stable")
    stamps = pd.to_datetime(first["intended"], unit="s", utc=True).dt.tz_convert(SHANGHAI)
    return pd.DataFrame(
        {
            "ts": stamps.map(lambda t: t.isoformat(timespec="milliseconds")).to_numpy(),
            "amount_fen": first["amount_fen"].astype("int64").to_numpy(),
            "user_id": first["user_id"].to_numpy(),
            "card_id": first["card_id"].to_numpy(),
            "channel": first["channel"].to_numpy(),
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="source", required=True)
    log = sub.add_parser("access-log", help="a combined-format access log (nginx, Apache, HAProxy %%tr)")
    log.add_argument("log", type=Path)
    log.add_argument("--path", default="/v1/repayments", help="repayment POSTs start with this path")
    log.add_argument("--key-field", action="store_true", help="the last quoted field is the Idempotency-Key")
    run = sub.add_parser("run", help="a surge run folder")
    run.add_argument("run_dir", type=Path)
    for each in (log, run):
        each.add_argument("--out", type=Path, required=True, help="trace file: .csv, .csv.gz or .parquet")
    args = parser.parse_args(argv)
    try:
        if args.source == "access-log":
            try:
                with args.log.open(encoding="utf-8", errors="replace") as handle:
                    frame, skipped, retries = from_access_log(handle, args.path, args.key_field)
            except OSError as exc:
                raise ConvertError(f"{args.log}: {exc.strerror}") from None
            note = f" ({skipped} other lines skipped, {retries} retries dropped)"
        else:
            frame, note = from_run(args.run_dir), ""
        if frame.empty:
            raise ConvertError("no repayment found: nothing to write")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.out.name.endswith(".parquet"):
            frame.to_parquet(args.out, index=False)
        else:
            frame.to_csv(args.out, index=False)
    except ConvertError as exc:
        print(f"trace_convert: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: {len(frame)} arrivals from {frame['ts'].iloc[0]} to {frame['ts'].iloc[-1]}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
