"""Every error of the gateway is a class of `mock_gateway.errors`, and the run folder reads its codes as meant."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import mock_gateway
from loadtests.orchestration.capacity_probe import REJECTION_CODES
from mock_gateway import errors
from reports.invariants.evidence import LIMIT_DECLINES
from runfolder.outcomes import DECLINE_CODES, classify

SIGNALS = {
    ("mock_gateway.replica.ledger.batch", "LockBusy"),  # retry the batch on the writer thread
    ("mock_gateway.cluster.forwarding", "AttemptFailed"),  # retry on another replica
}
"""Exceptions used as control flow inside one package, never seen by a client, an operator or an exit code."""


def _modules() -> list[str]:
    names = [info.name for info in pkgutil.walk_packages(mock_gateway.__path__, "mock_gateway.")]
    return [name for name in names if not name.endswith(".__main__")]  # a __main__ runs when imported


def test_no_module_but_errors_defines_an_exception() -> None:
    strays = []
    for name in _modules():
        if name == errors.__name__:
            continue
        for attribute, value in vars(importlib.import_module(name)).items():
            defined_here = inspect.isclass(value) and value.__module__ == name
            if defined_here and issubclass(value, BaseException) and (name, attribute) not in SIGNALS:
                strays.append(f"{name}.{attribute}")
    assert not strays, f"define these in mock_gateway/errors.py, in its tree: {strays}"


def test_the_walk_sees_the_whole_package() -> None:
    """Guards the test above against passing because it found no module."""
    names = _modules()
    assert {"mock_gateway.errors", "mock_gateway.signing", "mock_gateway.cluster.admin_api"} <= set(names)
    assert "mock_gateway.replica.ledger.batch" in names


def _codes(base: type[errors.GatewayError]) -> set[str]:
    """The codes answered by `base` and every class below it (a family's base that names no code of its own,
    such as `Unavailable`, answers none)."""
    found, pending = set(), [base]
    while pending:
        kind = pending.pop()
        pending.extend(kind.__subclasses__())
        if "code" in vars(kind):
            found.add(kind.code)
    return found


def test_the_run_folder_classifies_every_gateway_answer_as_the_gateway_means_it() -> None:
    """The run folder's vocabulary cannot import the gateway's (neither package imports the other): this test is
    where the two lists must agree, so a new decline or shedding code is never counted as an error."""
    declines = _codes(errors.LimitExceeded)
    assert declines == DECLINE_CODES == set(LIMIT_DECLINES)
    for code in declines:
        assert classify(errors.LimitExceeded.status, code) == "declined"
    assert classify(errors.RateLimited.status, errors.RateLimited.code) == "rate_limited"
    for code in _codes(errors.Unavailable):
        assert classify(errors.Unavailable.status, code) == "shed"
    assert classify(errors.IdempotencyInFlight.status, errors.IdempotencyInFlight.code) == "shed"
    assert classify(errors.OutcomeUnknown.status, errors.OutcomeUnknown.code) == "error"  # unknown, never good
    assert REJECTION_CODES.issubset(_codes(errors.Unavailable) | {errors.RateLimited.code})
