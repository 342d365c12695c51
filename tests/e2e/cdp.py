"""A small Chrome DevTools Protocol client over `--remote-debugging-pipe` (fd 3 in, fd 4 out,
messages ending in NUL), for tests that log in, fill forms, click and read cookies in headless
Chromium. One `Chromium` is one browser process with its own profile; `page()` opens a tab."""

from __future__ import annotations

import base64
import json
import os
import queue
import shlex
import subprocess
import threading
import time
from pathlib import Path
from typing import Any


class CdpError(RuntimeError):
    pass


class Chromium:
    def __init__(self, exe: str, profile: Path, *, width: int = 1280, height: int = 900) -> None:
        self.width, self.height = width, height
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        args = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        command = f"exec {shlex.join(args)} 3<&{to_chrome_r} 4>&{from_chrome_w}"
        env = {**os.environ, "HOME": str(profile.parent), "TZ": "UTC"}
        self.proc = subprocess.Popen(
            ["bash", "-c", command],
            pass_fds=(to_chrome_r, from_chrome_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next = 0
        self._lock = threading.Lock()
        self._replies: dict[int, queue.Queue[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True, name="cdp-reader")
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_chrome, 65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        box = self._replies.get(message["id"])
                    if box is not None:
                        box.put(message)
                else:
                    self.events.append(message)

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        with self._lock:
            self._next += 1
            ident = self._next
            box: queue.Queue[dict[str, Any]] = queue.Queue()
            self._replies[ident] = box
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        try:
            reply = box.get(timeout=60)
        except queue.Empty:
            raise CdpError(f"{method}: no answer from Chromium") from None
        finally:
            with self._lock:
                self._replies.pop(ident, None)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def page(self) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        return Page(self, session["sessionId"])

    def cookies(self) -> list[dict[str, Any]]:
        cookies: list[dict[str, Any]] = self.send("Storage.getCookies")["cookies"]
        return cookies

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (CdpError, OSError):
            pass
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass


class Page:
    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {
                "width": browser.width,
                "height": browser.height,
                "deviceScaleFactor": 1,
                "mobile": False,
            },
        )
        # Downloads are refused: a download that was never saved is one that never rendered.
        browser.send("Browser.setDownloadBehavior", {"behavior": "deny"})

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, self.session)

    def goto(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})
        self.wait("document.readyState === 'complete'")

    def eval(self, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
        )
        if "exceptionDetails" in result:
            raise CdpError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, condition: str, timeout: float = 20.0) -> Any:
        """Polls the JavaScript `condition` until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.eval(condition)
            except CdpError:
                last = None  # mid-navigation: the context is being replaced
            if last:
                return last
            time.sleep(0.1)
        raise CdpError(f"timed out waiting for {condition} (last {last!r}) at {self.url()}")

    def url(self) -> str:
        try:
            return str(self.eval("location.href"))
        except CdpError:
            return "?"

    def html(self) -> str:
        return str(self.eval("document.documentElement.outerHTML"))

    def screenshot(self) -> bytes:
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        return base64.b64decode(data)

    def login(self, base: str, name: str, password: str) -> None:
        """Logs in through the console's own form."""
        self.goto(f"{base}/")
        self.wait("location.pathname === '/login.html' && !!document.getElementById('login')")
        self.fill_login(name, password)
        self.wait("location.pathname === '/' && !!document.querySelector('#who .who-name')")

    def fill_login(self, name: str, password: str) -> None:
        self.eval(
            f"document.getElementById('name').value = {json.dumps(name)};"
            f"document.getElementById('password').value = {json.dumps(password)};"
            "document.getElementById('submit').click(); true"
        )
