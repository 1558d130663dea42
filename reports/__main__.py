"""`python -m reports RUN_DIR`: a run folder's derived files (timeseries.csv, summary.json, junit.xml, report.html)
written by a process of their own.

The end of a plain `locust -f` run calls it (loadtests/generator/plain_run.py): inside the Locust process the
analysis would import pandas and plotly into a gevent process and hold its hub — the web UI with it — for as
long as it runs. Exit 0 once the folder is complete (summary.json carries the verdict); 3 and one line on
stderr when the folder cannot be analysed; 2 on a wrong command line.
"""

from __future__ import annotations

import sys
from pathlib import Path

from errortext.console_text import one_line
from runfolder.layout import RunFolderError
from runfolder.verdict import ExitCode


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m reports RUN_DIR", file=sys.stderr)
        return ExitCode.USAGE
    from reports.finalize import finalize_run  # pandas and plotly: only once the command line is right

    try:
        finalize_run(Path(argv[0]))
    except (RunFolderError, OSError) as exc:
        print(one_line(exc), file=sys.stderr)
        return ExitCode.HARNESS
    return ExitCode.PASS


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
