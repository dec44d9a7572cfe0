"""A faulty S3: a proxy on 127.0.0.1 in front of moto's S3 server that injects the faults a
real object store has, on the requests a test names.

``FaultyS3.plan(kind, times, method)`` makes the next ``times`` requests with ``method`` fail:
``"500"`` (InternalError), ``"slow"`` (answer after ``delay_s``), ``"drop"`` (read part of the
body, then cut the connection), ``"denied"`` (403 AccessDenied). Everything else is forwarded
to moto unchanged (moto does not check signatures, so the Host header may differ).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    "<Error><Code>{code}</Code><Message>{message}</Message><RequestId>fake</RequestId></Error>"
)
_HOP = frozenset({"transfer-encoding", "connection", "keep-alive", "content-encoding"})


@dataclass
class _Plan:
    kind: str
    times: int
    method: str


@dataclass
class FaultyS3:
    upstream: str
    delay_s: float = 1.0
    plans: list[_Plan] = field(default_factory=list)
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, outcome
    url: str = ""

    def plan(self, kind: str, times: int = 1, method: str = "PUT") -> None:
        """From now on (earlier plans dropped), the next ``times`` ``method`` requests fail."""
        self.plans = [_Plan(kind, times, method)]

    def clear(self) -> None:
        self.plans = []

    def count(self, method: str) -> int:
        return sum(1 for m, _, _ in self.seen if m == method)

    def _take(self, method: str) -> str | None:
        for plan in self.plans:
            if plan.method == method and plan.times > 0:
                plan.times -= 1
                return plan.kind
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        fault = self._take(request.method)
        self.seen.append((request.method, request.path, fault or "forwarded"))
        if request.headers.get("Expect", "").lower() == "100-continue":
            # botocore asks before it uploads; unanswered, it waits a second, then sends anyway
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if fault == "drop":
            await request.content.readany()  # part of the upload arrives, then the line dies
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        if fault == "500":
            await request.read()
            return _error(500, "InternalError", "We encountered an internal error.")
        if fault == "denied":
            await request.read()
            return _error(403, "AccessDenied", "Access Denied")
        body = await request.read()
        if fault == "slow":  # the upload arrives; the answer takes its time
            await asyncio.sleep(self.delay_s)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(
                request.method, self.upstream + request.path_qs, headers=headers, data=body
            ) as answer,
        ):
            data = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
            return web.Response(status=answer.status, body=data, headers=kept)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=_ERROR.format(code=code, message=message).encode(),
        content_type="application/xml",
    )


@asynccontextmanager
async def faulty_s3(upstream: str, *, delay_s: float = 1.0) -> AsyncIterator[FaultyS3]:
    """A ``FaultyS3`` serving on a free port of 127.0.0.1 (its ``url``) in this event loop."""
    fake = FaultyS3(upstream.rstrip("/"), delay_s)
    server = web.Server(fake.handle)
    runner = web.ServerRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()
