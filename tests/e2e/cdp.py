"""A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe``.

Why not only ``--dump-dom``: a one-shot dump is taken at the load event or when the
``--virtual-time-budget`` runs out, and virtual time does not wait for the media
pipeline, whose range requests start from another thread in real time. A seek past the
buffered data is therefore still pending when the DOM is dumped. Over the pipe we can
instead wait, in real time and with a deadline, for a promise the page resolves.

The pipe protocol: Chromium reads commands from fd 3 and writes replies and events to
fd 4, each one JSON object terminated by a NUL byte. Commands for a page carry the
``sessionId`` of a flattened ``Target.attachToTarget``. Standard library only.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any


class CdpError(Exception):
    pass


class Browser:
    """Chromium with a DevTools pipe; use as a context manager."""

    def __init__(self, binary: str, flags: list[str], profile: Path) -> None:
        cmd_r, self._cmd_w = os.pipe()  # we write commands, Chromium reads fd 3
        self._res_r, res_w = os.pipe()  # Chromium writes fd 4, we read
        # bash puts the pipe ends on fds 3 and 4 (dash takes single-digit fds only; no
        # preexec_fn: the test process has a server thread running).
        argv = [
            "/bin/bash",
            "-c",
            f'exec "$@" 3<&{cmd_r} 4>&{res_w} {cmd_r}<&- {res_w}>&-',
            "sh",
            binary,
            *flags,
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        # stderr to a file: Chromium is chatty, and a full pipe would stall it.
        self.stderr_path = profile.parent / "chromium-stderr.txt"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            argv,
            pass_fds=(cmd_r, res_w),
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env={"HOME": str(profile.parent), "PATH": "/usr/bin:/bin"},
        )
        os.close(cmd_r)
        os.close(res_w)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("Browser.close", timeout=10)
            except (CdpError, OSError, TimeoutError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for fd in (self._cmd_w, self._res_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self._stderr.close()

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message from Chromium before the deadline")
            ready, _, _ = select.select([self._res_r], [], [], left)
            if ready:
                chunk = os.read(self._res_r, 1 << 20)
                if not chunk:
                    raise CdpError("Chromium closed the DevTools pipe")
                self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 60,
    ) -> dict[str, Any]:
        """Send one command and wait for its reply; events meanwhile go to ``events``."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CdpError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)

    def wait_event(self, method: str, session: str | None, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev.get("method") == method and ev.get("sessionId") == session:
                    del self.events[: i + 1]
                    return
            self.events.append(self._read_message(deadline))

    def open(self, url: str, timeout: float = 60) -> str:
        """Open ``url`` in a new tab, wait for its load event; return the session id."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session: str = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        self.call("Page.enable", session=session)
        self.call("Page.navigate", {"url": url}, session=session)
        self.wait_event("Page.loadEventFired", session, timeout)
        return session

    def evaluate(self, session: str, expression: str, timeout: float = 60) -> Any:
        """Evaluate in the page, awaiting a promise result; return it by value."""
        reply = self.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            session=session,
            timeout=timeout,
        )
        if "exceptionDetails" in reply:
            raise CdpError(f"page script failed: {reply['exceptionDetails']}")
        return reply["result"].get("value")
