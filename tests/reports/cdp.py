"""Just enough of the Chrome DevTools protocol to open a file in headless Chromium and watch it.

Chromium is started with the flags of the brief, a fresh profile, and `--remote-debugging-port=0`; it writes the
port it picked into `DevToolsActivePort`. The page's network is switched off through CDP before navigation, and
every console error, uncaught exception, JavaScript dialog and non-local request is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome-error:")


@dataclass
class PageLog:
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    remote_requests: list[str] = field(default_factory=list)

    def take(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.console_errors.append(json.dumps(params.get("args"))[:500])
        elif method == "Runtime.exceptionThrown":
            self.exceptions.append(json.dumps(params.get("exceptionDetails"))[:500])
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            self.console_errors.append(str(params["entry"].get("text"))[:500])
        elif method == "Page.javascriptDialogOpening":
            self.dialogs.append(str(params.get("message")))
        elif method == "Network.requestWillBeSent":
            url = str(params.get("request", {}).get("url", ""))
            if not url.startswith(LOCAL_SCHEMES):
                self.remote_requests.append(url)


class Page:
    """One CDP session on one tab: commands are awaited by id, events go to the log."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.log = PageLog()
        self._ids = itertools.count(1)

    async def send(self, method: str, timeout_s: float = 30.0, **params: Any) -> dict[str, Any]:
        command_id = next(self._ids)
        await self.socket.send_json({"id": command_id, "method": method, "params": params})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = await self.socket.receive_json(timeout=max(deadline - time.monotonic(), 0.1))
            if message.get("id") == command_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.log.take(message)
            if message.get("method") == "Page.javascriptDialogOpening":
                await self.socket.send_json(
                    {"id": next(self._ids), "method": "Page.handleJavaScriptDialog", "params": {"accept": True}}
                )
        raise TimeoutError(f"{method}: no answer in {timeout_s} s")

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.2)
        raise TimeoutError(f"{expression!r} still false after {timeout_s} s")


def _devtools_port(profile: Path, process: subprocess.Popen[bytes], timeout_s: float) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with {process.returncode}")
        if marker.exists():
            lines = marker.read_text().splitlines()
            if lines and lines[0].strip().isdigit():
                return int(lines[0])
        time.sleep(0.1)
    raise TimeoutError(f"chromium wrote no DevToolsActivePort in {timeout_s} s")


@contextlib.asynccontextmanager
async def offline_page(chromium: str, profile: Path, timeout_s: float = 30.0) -> AsyncIterator[Page]:
    """A fresh headless Chromium with one tab, network off; the browser is killed on exit, always."""
    process = subprocess.Popen(  # noqa: ASYNC220 - a quick fork; the waiting happens off the loop below
        [chromium, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        port = await asyncio.to_thread(_devtools_port, profile, process, timeout_s)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json(content_type=None)
            page_target = next(target for target in targets if target.get("type") == "page")
            async with session.ws_connect(page_target["webSocketDebuggerUrl"], max_msg_size=0) as socket:
                page = Page(socket)
                for domain in ("Runtime", "Log", "Page", "Network"):
                    await page.send(f"{domain}.enable")
                await page.send(
                    "Network.emulateNetworkConditions",
                    offline=True,
                    latency=0,
                    downloadThroughput=-1,
                    uploadThroughput=-1,
                )
                yield page
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
