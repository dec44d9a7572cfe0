"""The bot token's OAuth scopes against what onbrand uses, checked once at start.

Slack names a token's scopes in the ``X-OAuth-Scopes`` header of every Web API answer. A scope
added to ``deploy/slack-manifest.yaml`` reaches a workspace only when the app is reinstalled
there, so an upgraded onbrand may run on an older grant: each missing scope is logged with what
goes without it, once, when the adapter starts (nothing stops: the rest works).
"""

from __future__ import annotations

import logging

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

# Each scope of the manifest, and what goes without it.
SCOPES = {
    "commands": "the /imagine commands",
    "chat:write": "posting results and status messages",
    "files:write": "uploading grids, packs and reports",
    "files:read": "the Imagine from this image and Verify image shortcuts",
    "reactions:read": "favourites, likes and approvals from reactions",
    "users:read": "recognising workspace admins",
    "channels:history": "looking for a post whose answer was lost in public channels "
    "(it may be posted twice)",
    "groups:history": "looking for a post whose answer was lost in private channels "
    "(it may be posted twice)",
}


async def missing_scopes(client: AsyncWebClient) -> list[str]:
    """The scopes of ``SCOPES`` the token lacks (``auth.test``), each logged as a warning; none
    when Slack's answer doesn't say (or the call fails: that is logged too)."""
    try:
        answer = await client.auth_test()
    except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
        log.warning("could not check the Slack token's scopes: %r", exc)
        return []
    header = answer.headers.get("x-oauth-scopes")
    if header is None:
        return []
    granted = {scope.strip() for scope in str(header).split(",")}
    missing = [scope for scope in SCOPES if scope not in granted]
    for scope in missing:
        log.warning(
            "the Slack bot token lacks the %s scope: no %s. Reinstall the app to the workspace "
            "(deploy/slack-manifest.yaml lists every scope)",
            scope,
            SCOPES[scope],
        )
    return missing
