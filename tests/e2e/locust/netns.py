"""Network namespaces on one veth bridge: separate hosts for the distributed tests, made and removed by the test.

`hosts(["master", "gateway", "w1", "w2"])` creates a bridge in the root namespace and, for each name, a namespace
with a veth pair plugged into the bridge and its own address in a /24 of 10.231.0.0/16 chosen from the test's
pid, with its loopback up; it yields {name: Host}. Everything is removed in `finally`, whatever happened.

The loopback guard stays: these addresses are not loopback, so a test passes `--allow-remote` (to `surge run`
and `surge worker`) and `--allow-public-bind` (to the gateway) — and only with an address `hosts` made and
checked to be on its own bridge (`Host.address`). That is the one path by which load leaves loopback in the
test suite (docs/distributed.md, "How it is tested").

Where namespaces cannot be made (not root, no `ip`, a container without CAP_NET_ADMIN) the test skips with the
reason; under CI=true, where the runner is root, it fails instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Host:
    name: str
    namespace: str
    address: str

    def command(self, *argv: str) -> list[str]:
        """`argv` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=20)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"network namespaces should work under CI=true: {reason}")
    pytest.skip(f"network namespaces unavailable here: {reason}")


@contextlib.contextmanager
def hosts(names: list[str]) -> Iterator[dict[str, Host]]:
    if shutil.which("ip") is None:
        _unavailable("no `ip` command (iproute2)")
    if os.geteuid() != 0:
        _unavailable("not root")
    tag = f"sg{os.getpid() % 100000}"
    subnet = f"10.231.{os.getpid() % 250}"
    bridge = f"{tag}br"
    made: list[str] = []
    links: list[str] = []
    try:
        try:
            _ip("link", "add", bridge, "type", "bridge")
            links.append(bridge)
            _ip("link", "set", bridge, "up")
        except subprocess.CalledProcessError as exc:
            _unavailable(f"cannot create a bridge: {exc.stderr.strip()}")
        found: dict[str, Host] = {}
        for number, name in enumerate(names, start=1):
            namespace = f"{tag}-{name}"
            outside, inside = f"{tag}v{number}", f"{tag}p{number}"
            _ip("netns", "add", namespace)
            made.append(namespace)
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            links.append(outside)
            _ip("link", "set", outside, "master", bridge)
            _ip("link", "set", outside, "up")
            _ip("link", "set", inside, "netns", namespace)
            address = f"{subnet}.{number}"
            _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", inside)
            _ip("-n", namespace, "link", "set", inside, "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
            found[name] = Host(name, namespace, address)
        yield found
    finally:
        for namespace in made:
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                _ip("netns", "del", namespace)
        for link in reversed(links):
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                _ip("link", "del", link)
