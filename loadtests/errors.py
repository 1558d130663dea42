"""Exceptions that carry their exit code (the Click way), so the CLI turns any of them into one line.

SurgeError            exit 3 unless a subclass says otherwise
 ├── UsageError       exit 2: a bad argument, scenario or config; nothing was started
 ├── HarnessError     exit 3: the harness itself failed (gateway did not start, Locust died)
 └── MissingEvidence  exit 3: evidence a forecast names is missing or invalid; nothing was forecast
"""

from runfolder.verdict import ExitCode


class SurgeError(Exception):
    """Base of every error the `surge` command reports as one line instead of a traceback."""

    exit_code: int = ExitCode.HARNESS


class UsageError(SurgeError):
    """The user asked for something impossible; the README says exit 2 and nothing started."""

    exit_code = ExitCode.USAGE


class HarnessError(SurgeError):
    """surge's own machinery broke; the gateway under test is not to blame."""

    exit_code = ExitCode.HARNESS


class MissingEvidence(SurgeError):
    """Evidence the forecast needs is missing or invalid (exit 3): nothing is forecast from it."""

    exit_code = ExitCode.HARNESS
