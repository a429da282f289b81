"""Run code in a kernel of a running Jupyter server over its REST + websocket API (test helper)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

import websockets


def _request(url: str, method: str = "GET", body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


@dataclass
class CellResult:
    status: str
    stdout: str = ""
    stderr: str = ""
    results: list[str] = field(default_factory=list)
    error: str | None = None


class KernelSession:
    """One kernel started through ``POST /api/sessions`` (so it belongs to a notebook path)."""

    def __init__(self, base: str, token: str, path: str) -> None:
        self.base = base
        self.token = token
        self.path = path
        self.session_id: str | None = None
        self.kernel_id: str | None = None
        self._ws: Any = None
        self._client_session = uuid.uuid4().hex

    async def __aenter__(self) -> KernelSession:
        body = {"path": self.path, "type": "notebook", "name": "", "kernel": {"name": "python3"}}
        info = await asyncio.to_thread(_request, f"{self.base}/api/sessions?token={self.token}", "POST", body)
        self.session_id = info["id"]
        self.kernel_id = info["kernel"]["id"]
        ws_url = self.base.replace("http://", "ws://")
        self._ws = await websockets.connect(
            f"{ws_url}/api/kernels/{self.kernel_id}/channels?session_id={self._client_session}&token={self.token}",
            max_size=None,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self.session_id is not None:
            await asyncio.to_thread(
                _request, f"{self.base}/api/sessions/{self.session_id}?token={self.token}", "DELETE"
            )

    async def execute(self, code: str, timeout: float = 120.0) -> CellResult:  # noqa: ASYNC109
        msg_id = uuid.uuid4().hex
        msg = {
            "header": {
                "msg_id": msg_id,
                "username": "test",
                "session": self._client_session,
                "msg_type": "execute_request",
                "version": "5.3",
                "date": dt.datetime.now(dt.UTC).isoformat(),
            },
            "parent_header": {},
            "metadata": {},
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True},
            "channel": "shell",
            "buffers": [],
        }  # fmt: skip
        await self._ws.send(json.dumps(msg))
        result = CellResult(status="?")
        got_reply = got_idle = False
        async with asyncio.timeout(timeout):
            while not (got_reply and got_idle):
                raw = await self._ws.recv()
                if isinstance(raw, bytes):
                    continue  # binary-framed messages carry widget buffers; not needed here
                m = json.loads(raw)
                if m.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = m["header"]["msg_type"]
                content = m["content"]
                if kind == "execute_reply":
                    got_reply = True
                    result.status = content["status"]
                elif kind == "status" and content.get("execution_state") == "idle":
                    got_idle = True
                elif kind == "stream":
                    if content["name"] == "stdout":
                        result.stdout += content["text"]
                    else:
                        result.stderr += content["text"]
                elif kind in ("execute_result", "display_data"):
                    result.results.append(content["data"].get("text/plain", ""))
                elif kind == "error":
                    trace = "\n".join(content["traceback"])
                    result.error = f"{content['ename']}: {content['evalue']}\n{trace}"
        return result
