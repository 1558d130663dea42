"""argparse value types shared by the subcommands: a bad value is exit 2 with a message naming it."""

from __future__ import annotations

import argparse
import math


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number (got {text!r})") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0 (got {text})")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number (got {text!r})") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {value})")
    return value


def port_number(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 1..65535 (got {value})")
    return value


MAX_SCALE = 100.0  # with the default pool of 200 users, 100x is the documented ceiling of 20,000 (scenarios.md)


def scale_factor(text: str) -> float:
    """`--scale`: a finite number in (0, 100]; past that the rates and the user pool leave what surge supports."""
    value = positive_float(text)
    if value > MAX_SCALE:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SCALE:g} (got {text})")
    return value
