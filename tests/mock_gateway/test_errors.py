"""Every error of the gateway is a class of `mock_gateway.errors`, so one file shows all it can say or raise."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import mock_gateway
from mock_gateway import errors

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
