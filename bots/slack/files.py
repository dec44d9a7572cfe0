"""Slack files' bytes, fetched with the bot token from Slack's own file host only (or the Web
API's own host, where a test or a proxy points the client): the token never goes elsewhere, over
plain HTTP, or through a redirect. Shared by "Imagine from this image" and "Verify image"."""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp

__all__ = ["FILE_HOSTS", "FileRefused", "NotOnSlack", "fetch"]

FILE_HOSTS = frozenset({"files.slack.com"})


class NotOnSlack(Exception):
    """The URL is not on Slack's file host: the bot token is not sent."""


class FileRefused(Exception):
    """Slack did not hand the file over (no files:read scope, a login page, a redirect)."""


async def fetch(url: str, token: str, api_base: str, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of the file at ``url`` (a caller sees it was too large)."""
    host = urlsplit(url).hostname
    api_host = urlsplit(api_base).hostname
    if host is None or host not in FILE_HOSTS | {api_host}:
        raise NotOnSlack(url)
    if not url.startswith("https://") and not (url.startswith("http://") and host == api_host):
        raise NotOnSlack(url)
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        session.get(url, headers=headers, allow_redirects=False) as response,
    ):
        if response.status != 200 or response.content_type.startswith("text/"):
            raise FileRefused(f"{response.status} {response.content_type}")
        return await response.content.read(limit + 1)
