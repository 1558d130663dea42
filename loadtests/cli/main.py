"""The `surge` command: parses arguments and hands each subcommand to its own module.

Every `SurgeError` becomes one line on stderr and its exit code (README); argparse's own usage errors
already exit 2; any other exception is the harness's own failure: one line and exit 3, never a traceback.
A subcommand module exposes `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Collection, Sequence
from types import FrameType

from errortext.console_text import one_line
from loadtests.errors import SurgeError
from loadtests.orchestration.stopping import StoppedBySignal
from runfolder.verdict import ExitCode

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "gateway": (
        "loadtests.cli.gateway",
        "start the mock gateway cluster (router + replicas) in the foreground",
    ),
    "run": ("loadtests.cli.run", "run one load test: cluster, Locust, faults, verdicts, report"),
    "worker": ("loadtests.cli.worker", "a Locust worker of a distributed run (`surge run --hosts N` is the master)"),
    "report": ("loadtests.cli.report", "(re)build report.html from a run folder"),
    "compare": ("loadtests.cli.compare", "compare two runs; exit 1 when the candidate regresses"),
    "find-capacity": ("loadtests.cli.find_capacity", "search the highest arrival rate that meets the SLOs"),
    "forecast": ("loadtests.cli.forecast", "does this year's demand fit the capacity at N-1? (trace or calendar)"),
    "verify": ("loadtests.cli.verify", "re-check a run's invariants against its ledger"),
    "scenarios": ("loadtests.cli.scenarios", "list the built-in scenarios"),
    "study": ("loadtests.cli.study", "run one scenario under several variants and compare them on one page"),
    "studies": ("loadtests.cli.studies", "list the built-in studies"),
}


def build_parser(options_of: Collection[str] = SUBCOMMANDS.keys()) -> argparse.ArgumentParser:
    """Every subcommand is listed with its help; only those in `options_of` are imported to add their options:
    importing them all (pandas, SQLAlchemy, aiohttp, Locust's tools) costs every `surge` call seconds on a busy
    machine, before a refusal that needs none of it."""
    parser = argparse.ArgumentParser(prog="surge", description="Load-testing and capacity harness for repayments.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name in options_of:
            importlib.import_module(module_name).add_arguments(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    previous = signal.signal(signal.SIGTERM, _terminated_while_loading)
    try:
        given = sys.argv[1:] if argv is None else argv
        # the named subcommand's module only (the top-level parser has no options before it but --help)
        parser = build_parser(given[:1])  # seconds on a busy machine: a signal may come
    except KeyboardInterrupt as exc:
        by = "terminated (SIGTERM)" if isinstance(exc, StoppedBySignal) else "interrupted (SIGINT, Ctrl-C)"
        print(f"surge: not started — {by} while loading; nothing was run", file=sys.stderr)
        return exc.exit_code if isinstance(exc, StoppedBySignal) else ExitCode.SIGINT
    finally:
        signal.signal(signal.SIGTERM, previous)
    args = parser.parse_args(argv)
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    try:
        code: int = module.run(args)
    except SurgeError as exc:
        print(f"surge {args.command}: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except StoppedBySignal as exc:  # the run folders say where it stopped
        print(f"surge {args.command}: stopped by {'SIGTERM' if exc.exit_code == ExitCode.SIGTERM else 'SIGINT'}",
              file=sys.stderr)  # fmt: skip
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"surge {args.command}: interrupted", file=sys.stderr)
        return ExitCode.SIGINT
    except Exception as exc:  # a harness fault the subcommand did not foresee: exit 3, one line
        print(f"surge {args.command}: internal error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return ExitCode.HARNESS
    return code


def _terminated_while_loading(_signum: int, _frame: FrameType | None) -> None:
    raise StoppedBySignal("sigterm")


if __name__ == "__main__":
    sys.exit(main())
