"""Reading Slack payloads without trusting their shape: every field is checked for its type, and
a payload that lacks what a listener needs raises ``MalformedPayload`` (logged, answered with
nothing) instead of a ``KeyError`` deep in a handler."""

from __future__ import annotations

from typing import Any

from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError

from core.domain import Platform, RequestKey

__all__ = [
    "MalformedPayload",
    "bind_args",
    "field",
    "listener",
    "part",
    "request_key",
    "required",
    "sender",
    "who",
]


def listener(body: dict[str, Any]) -> str:
    """What a payload asked for, for the log: ``/imagine``, ``block_actions``, an event type."""
    return str(body.get("command") or body.get("type") or part(body, "event").get("type"))


def who(body: dict[str, Any]) -> tuple[str, str, str | None] | None:
    """(channel, user, thread) of the person a payload came from; None when it doesn't say."""
    if body.get("command"):
        where = field(body, "channel_id"), field(body, "user_id"), None
    elif body.get("type") == "block_actions":
        container = part(body, "container")
        channel = field(container, "channel_id") or field(part(body, "channel"), "id")
        thread = field(container, "thread_ts") or field(part(body, "message"), "thread_ts")
        where = channel, field(part(body, "user"), "id"), thread
    else:
        event = part(body, "event")
        channel = field(part(event, "item"), "channel") or field(event, "channel")
        where = channel, field(event, "user"), None
    channel, user, thread = where
    return (channel, user, thread) if channel and user else None


def request_key(body: dict[str, Any]) -> RequestKey | None:
    """Slack's id for the request in ``body``, the same in every copy of it (a replay, a retry
    with ``X-Slack-Retry-Num``, a redelivered Socket Mode envelope, whose payload is the body
    bolt hands to listeners either way): a command's or a click's ``trigger_id`` (a click
    without one: its user and ``action_ts``), an event's ``event_id``. None when it has none."""
    if body.get("command"):
        trigger = field(body, "trigger_id")
        return RequestKey(Platform.SLACK, "command", trigger) if trigger else None
    if body.get("type") == "block_actions":
        trigger = field(body, "trigger_id")
        if trigger:
            return RequestKey(Platform.SLACK, "action", trigger)
        actions = body.get("actions")
        first = (
            part({"first": actions[0]}, "first") if isinstance(actions, list) and actions else {}
        )
        user, at = field(part(body, "user"), "id"), field(first, "action_ts")
        return RequestKey(Platform.SLACK, "action", f"{user}:{at}") if user and at else None
    event_id = field(body, "event_id")
    return RequestKey(Platform.SLACK, "event", event_id) if event_id else None


class MalformedPayload(Exception):
    """A payload from Slack that lacks what a listener reads: logged, answered with nothing."""


def sender(command: dict[str, Any]) -> tuple[str, str, str]:
    """(team, user, channel) of a slash command."""
    return (
        required(command, "team_id", ""),
        required(command, "user_id", ""),
        required(command, "channel_id", ""),
    )


def part(body: Any, key: str) -> dict[str, Any]:
    """``body[key]`` when it is an object, else an empty one."""
    value = body.get(key) if isinstance(body, dict) else None
    return value if isinstance(value, dict) else {}


def field(body: dict[str, Any], key: str) -> str | None:
    """``body[key]`` when it is a non-empty string."""
    value = body.get(key)
    return value if isinstance(value, str) and value else None


def required(body: dict[str, Any], key: str, where: str) -> str:
    value = field(body, key)
    if value is None:
        raise MalformedPayload(f"no {where}{key}")
    return value


def bind_args(args: list[str]) -> tuple[str | None, str | None, bool] | None:
    """``[campaign] [--preset <preset>] [locked]`` → (campaign, preset, locked); None when the
    words don't read that way (the usage is shown)."""
    campaign: str | None = None
    preset: str | None = None
    locked = False
    rest = list(args)
    while rest:
        word = rest.pop(0)
        if word == "--preset" and rest and preset is None:
            preset = rest.pop(0)
        elif word.lower() == "locked" and not locked:
            locked = True
        elif not word.startswith("--") and campaign is None and not locked:
            campaign = word
        else:
            return None
    return (campaign, preset, locked) if campaign or preset else None


def api_error(exc: SlackApiError) -> str:
    """The error code Slack answered with (``channel_not_found``…), or the exception's name."""
    try:
        return str(exc.response["error"])
    except (KeyError, TypeError):
        return type(exc).__name__


def header(request: AsyncBoltRequest, name: str) -> str | None:
    """The first value of a request header, if any."""
    values = request.headers.get(name) or [None]
    return values[0]
