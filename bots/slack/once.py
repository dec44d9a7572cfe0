"""Posting a message at most once, although an answer can be lost after Slack posted it.

``chat.postMessage`` has no idempotency key. When its answer is a 5xx, a dropped connection or a
timeout, the message may well be in the channel already, and posting again blindly shows it
twice (slack_sdk's retry handlers used to do just that; ``app.slack_client`` no longer lets them
retry this method). Instead, every message posted here carries Slack message metadata naming
what it is (``event_type``) and for what (``event_payload.key``: a generation id, a request key);
after an answer that leaves the outcome unknown the channel or thread is read back (``find``:
``conversations.history`` / ``conversations.replies`` with ``include_all_metadata``, from
``since`` on) and a message found there is the answer. ``SlackSink`` also calls ``find`` before
a delivery tried again after an earlier try whose answer was lost (or a crash), before it uploads
anything.

Reading needs the ``channels:history`` scope (``groups:history`` for private channels); without
it (or in a direct message) the lookup fails with a warning and the post goes ahead as before.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

RESULT = "onbrand_result"  # a generation's result message; key: the generation id
STATUS = "onbrand_status"  # its "Queued" status message; key: the generation id
REPORT = "onbrand_report"  # a report's summary; key: the request's key
LOOKUP_LIMIT = 200  # messages read back, newest first, from ``since`` on
LOOKBACK_S = 60.0  # ``since`` starts this long before the first try (Slack's clock is not ours)


async def post_once(
    client: AsyncWebClient,
    kind: str,
    key: str,
    *,
    channel: str,
    thread_ts: str | None,
    since: float | None = None,
    **message: Any,
) -> tuple[str, str]:
    """``chat.postMessage`` of ``message`` into ``channel`` (or the thread), tagged ``kind`` /
    ``key``; the (channel, ts) of the message, found or posted. An answer that leaves the
    outcome unknown is followed by a lookup, then one more post; an error that says the post
    was refused (``SlackApiError`` with a 4xx or ``ok: false``) is raised at once. ``since``
    (epoch seconds): where a lookup starts; by default ``LOOKBACK_S`` before now."""
    since = time.time() - LOOKBACK_S if since is None else since
    metadata = {"event_type": kind, "event_payload": {"key": key}}

    async def post() -> tuple[str, str]:
        posted = await client.chat_postMessage(
            channel=channel, thread_ts=thread_ts, metadata=metadata, **message
        )
        return str(posted["channel"]), str(posted["ts"])

    try:
        return await post()
    except Exception as exc:
        if not outcome_unknown(exc):
            raise
        log.warning("posting %s %s: %s; looking whether it was posted", kind, key, _why(exc))
    return await find(client, kind, key, channel, thread_ts, since) or await post()


def outcome_unknown(exc: BaseException) -> bool:
    """Whether a failed call may have taken effect: a 5xx, a lost connection, a timeout."""
    if isinstance(exc, SlackApiError):
        return exc.response is not None and exc.response.status_code >= 500
    return isinstance(exc, aiohttp.ClientError | TimeoutError)


async def find(
    client: AsyncWebClient,
    kind: str,
    key: str,
    channel: str,
    thread_ts: str | None,
    since: float,
) -> tuple[str, str] | None:
    """The (channel, ts) of a message tagged ``kind`` / ``key`` posted since ``since`` (epoch
    seconds) in ``channel`` or its thread, if Slack shows one; None when it doesn't or the
    lookup fails (logged: posting again is then the lesser harm)."""
    page = {"channel": channel, "oldest": f"{since:.6f}", "limit": LOOKUP_LIMIT}
    try:
        if thread_ts:
            answer = await client.conversations_replies(
                ts=thread_ts, include_all_metadata=True, **page
            )
        else:
            answer = await client.conversations_history(include_all_metadata=True, **page)
    except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
        log.warning("could not look for %s %s in %s: %s", kind, key, channel, _why(exc))
        return None
    for message in answer.get("messages") or []:
        metadata = message.get("metadata") or {}
        payload = metadata.get("event_payload") or {}
        if metadata.get("event_type") == kind and payload.get("key") == key and message.get("ts"):
            return channel, str(message["ts"])
    return None


def _why(exc: BaseException) -> str:
    if isinstance(exc, SlackApiError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.get('error', '')}".strip()
    return repr(exc)


def _posts_a_message(request: HttpRequest) -> bool:
    return request.url.rstrip("/").endswith("/chat.postMessage")


class _LeavesPostsAlone(AsyncRetryHandler):
    """A retry handler that never retries ``chat.postMessage`` (``post_once`` looks before it
    posts again); anything else as the handler it is mixed into decides."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if _posts_a_message(request):
            return False
        return await super()._can_retry_async(
            state=state, request=request, response=response, error=error
        )


class ServerErrorRetries(_LeavesPostsAlone, AsyncServerErrorRetryHandler):
    """slack_sdk's retry after a 500 or 503, except of ``chat.postMessage``."""


class ConnectionErrorRetries(_LeavesPostsAlone, AsyncConnectionErrorRetryHandler):
    """slack_sdk's retry after a lost connection, except of ``chat.postMessage``."""
