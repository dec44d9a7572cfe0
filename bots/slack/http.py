"""Slack's HTTP endpoint: nothing reaches the bolt app before it is proven to come from Slack.

bolt's own aiohttp server parses a body before its signature is checked (a signed but malformed
payload was a 500 with a traceback), and its verifier raises on a non-numeric timestamp, which
handed the unauthenticated body to the error handler. Here each POST is read (at most
``MAX_BODY_BYTES``), its signature checked over the bytes received (``authentic``), then parsed
the way bolt parses it, and only then dispatched:

* not signed by Slack — no or a non-numeric timestamp, one older than ``MAX_AGE_S``, no or a
  wrong signature, a body larger than Slack ever sends — 401, and nothing else happens;
* signed but not a Slack payload (not UTF-8, not JSON, not an object, an envelope of the wrong
  shape) — 400 and a warning in the log;
* otherwise bolt answers.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024  # aiohttp's default; Slack's payloads are far smaller
MAX_AGE_S = 300  # Slack's own replay window for X-Slack-Request-Timestamp
REFUSED = {"error": "invalid request"}

# Envelope fields that bolt's matchers and our listeners index into, and the type each must have.
_ENVELOPE: dict[str, type] = {
    "type": str,
    "command": str,
    "event": dict,
    "actions": list,
    "user": dict,
    "team": dict,
    "channel": dict,
    "container": dict,
    "message": dict,
    "view": dict,
}


def authentic(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, *, now: float
) -> bool:
    """Whether ``body`` carries Slack's signature (``v0=`` HMAC-SHA256 of ``v0:{ts}:{body}``
    with ``secret``) and a timestamp within ``MAX_AGE_S`` of ``now``. Never raises."""
    if not secret.strip() or timestamp is None or signature is None:
        return False
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return False
    if abs(now - int(timestamp)) > MAX_AGE_S or not signature.isascii():
        return False
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode())


def bolt_request(body: bytes, query: str, headers: Any) -> AsyncBoltRequest | str:
    """The bolt request for a verified ``body``, or why it is not a Slack payload."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "the body is not UTF-8"
    try:  # bolt parses JSON / form / payload=<json> and reads the envelope as it builds this
        request = AsyncBoltRequest(body=text, query=query, headers=headers)
    except ValueError as exc:  # JSON that does not parse (JSONDecodeError is a ValueError)
        return f"the payload is not JSON ({exc})"
    except (AttributeError, TypeError, KeyError, IndexError):
        return "the payload is not a JSON object of Slack's shape"
    if not isinstance(request.body, dict):
        return "the payload is not a JSON object"
    for key, kind in _ENVELOPE.items():
        value = request.body.get(key)
        if value is not None and not isinstance(value, kind):
            return f"“{key}” is not a JSON {'string' if kind is str else kind.__name__}"
    if not all(isinstance(action, dict) for action in request.body.get("actions") or []):
        return "“actions” holds something other than JSON objects"
    return request


async def _read(request: web.Request) -> bytes | None:
    """The body, or None when it is larger than ``MAX_BODY_BYTES``."""
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def web_app(bolt: AsyncApp, signing_secret: str, path: str) -> web.Application:
    """An aiohttp app that serves ``bolt`` at ``path`` behind the checks above."""
    if not signing_secret.strip():  # checked by SlackBot too; never serve without one
        raise ValueError("an empty signing secret verifies nothing")

    async def post(request: web.Request) -> web.StreamResponse:
        body = await _read(request)
        timestamp = request.headers.get("X-Slack-Request-Timestamp")
        signature = request.headers.get("X-Slack-Signature")
        if body is None or not authentic(
            signing_secret, timestamp, signature, body, now=time.time()
        ):
            log.warning(
                "refused a request to %s that is not signed by Slack (from %s)",
                path,
                request.remote,
            )
            return web.json_response(REFUSED, status=401)
        parsed = bolt_request(body, request.query_string, request.headers)
        if isinstance(parsed, str):
            log.warning("ignored a signed request that is not a Slack payload: %s", parsed)
            return web.json_response({"error": parsed}, status=400)
        return await to_aiohttp_response(await bolt.async_dispatch(parsed))

    app = web.Application()
    app.router.add_post(path, post)
    return app
