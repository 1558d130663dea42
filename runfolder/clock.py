"""The gateway's simulated clock as a run folder records it, and the zone business dates are counted in.

mock_gateway has its own `SimClock` (it imports nothing outside itself); this is the same formula read back from
a run folder, for the generator (which business day a plan part falls on) and for the reports.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Final, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, ValidationError

SHANGHAI: Final = ZoneInfo("Asia/Shanghai")  # business days are Asia/Shanghai days on the gateway's clock

_Seconds = TypeVar("_Seconds")  # a float, or anything that does float arithmetic element-wise (a pandas Series)


# The cluster clock ------------------------------------------------------------------------------------------


class ClusterClock(BaseModel):
    """The gateway's simulated clock (internals §3 `cluster.json:clock`): sim = start + (wall − anchor) · speed.

    mock_gateway has its own `SimClock` (it imports nothing outside itself); this is the same formula read from
    a run folder, for the generator (which business day a plan part falls on) and for the reports.
    """

    model_config = ConfigDict(frozen=True)

    start: datetime
    anchor_unix: float
    speed: float = 1.0

    @classmethod
    def wall(cls) -> ClusterClock:
        """Real time: what a gateway without a simulated clock shows."""
        return cls(start=datetime.fromtimestamp(0, SHANGHAI), anchor_unix=0.0, speed=1.0)

    def sim_unix(self, unix: _Seconds) -> _Seconds:
        """Simulated unix seconds of wall unix seconds: a float, or a whole column of them at once."""
        return self.start.timestamp() + (unix - self.anchor_unix) * self.speed  # type: ignore[operator,return-value]

    def sim_at(self, unix: float) -> datetime:
        return datetime.fromtimestamp(self.sim_unix(unix), SHANGHAI)

    def business_date(self, unix: float) -> date:
        return self.sim_at(unix).date()

    def unix_at(self, sim: datetime) -> float:
        """The wall time at which the gateway's clock will read `sim`."""
        return self.anchor_unix + (sim.timestamp() - self.start.timestamp()) / self.speed


CLUSTER_STATE_FILES: Final = (Path("cluster") / "cluster.json", Path("cluster.json"))


def read_cluster_clock(run_dir: Path) -> ClusterClock | None:
    """The anchored clock the cluster chose, from its state file in the run folder (`surge run` keeps it under
    `cluster/`, a probe or a plain run may hold it at the top); None when the folder has none. Only `clock` is
    taken from cluster.json: it also holds the admin token, which must never reach a report."""
    for candidate in CLUSTER_STATE_FILES:
        path = run_dir / candidate
        if not path.is_file():
            continue
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            return ClusterClock.model_validate(state["clock"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValidationError):
            return None
    return None
